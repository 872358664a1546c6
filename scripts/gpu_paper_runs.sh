#!/usr/bin/env bash
# Run the papers' full MNIST protocols (DAC, MMDC) as detached jobs on a lent GPU, checkpointed across leases.
#
# The papers' full protocols on MNIST (DAC: 51 passes, mini-batch 32, 10 passes per selection batch;
# MMDC: 50 epochs of the authors' MNIST command) on a CUDA machine, as detached jobs.
#
# Detached because a lent GPU machine runs one command at most 10 minutes: `start` launches the jobs and
# returns, `wait` watches them for a while, `finish` stops what is still running and labels the images
# with the last checkpoint, so that a DAC run cut short by the machine's time still gives an honest figure
# ("N of 51 passes"). Every run writes its JSON (the benchmark runner's shape) and a log into WORK.
#
# DAC's paper protocol is 1,142,400 steps (about 2.5 h at the 8 ms a step measured on an H100), longer than
# one session's device time: bring WORK/dac-seedS.ckpt/dac-checkpoint.pt back from the machine (through
# $OUT), carry it into the next lease under WORK and `start` with RESUME=1 to go on from it.
#
# DAC_PARAMS adds options to the DAC runs, e.g. DAC_PARAMS="-p cuda_graph=true" replays each step from a
# CUDA graph (check it first with scripts/check_cuda_graph_step.py); give it to `finish` too, so that the
# labelled result records the options the run was trained with.
#
# A lease, as done on 2026-11-23 (device tool, H100; its Python has torch/torchvision/scikit-learn but not
# platformdirs, and it reaches no network): keep a platformdirs wheel in .whl/ and MNIST's IDX files in
# .gpudata/mnist/ (both ignored by git via .git/info/exclude), name BOTH in `carry` on EVERY call (a call
# without them removes them there), and start each command with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
# then: python3 scripts/check_cuda_graph_step.py && DAC_PARAMS="-p cuda_graph=true" scripts/gpu_paper_runs.sh
# start .gpudata/mnist /tmp/work "0 1" "" (WORK outside $OUT: each call gets a fresh $OUT, /tmp lasts while
# the machine is held); later calls `wait /tmp/work 540` and copy /tmp/work/*.json *.log to $OUT; the last
# call runs `finish` (with the same DAC_PARAMS) and copies the JSONs and the *.ckpt folders to $OUT, so
# that RESUME=1 can go on from them in the next lease.
# The machine is handed back after ~30 s idle: chain the calls without pauses.
#
# usage: scripts/gpu_paper_runs.sh start  MNIST_DIR WORK "DAC_SEEDS" "MMDC_SEEDS"
#        scripts/gpu_paper_runs.sh wait   WORK SECONDS      (returns early when every job has ended)
#        scripts/gpu_paper_runs.sh finish MNIST_DIR WORK
set -u
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
LIMIT_ARGS=${LIMIT:+--limit $LIMIT}  # LIMIT=N: a smoke run on the first N images
cmd=$1; shift

run_bench() {  # run_bench NAME METHOD SEED DATA WORK [EXTRA...] — detached, survives the caller
    local name=$1 method=$2 seed=$3 data=$4 work=$5; shift 5
    setsid nohup "$PY" -m photocluster --headless --benchmark mnist --method "$method" --protocol paper \
        --data-dir "$data" --seed "$seed" --seeds 1 --device "$DEVICE" $LIMIT_ARGS --output "$work/$name.json" "$@" \
        >"$work/$name.log" 2>&1 </dev/null &
    echo $! >"$work/$name.pid"
}

running() {  # names of jobs whose process is alive
    local work=$1 f
    for f in "$work"/*.pid; do
        [ -e "$f" ] || continue
        kill -0 "$(cat "$f")" 2>/dev/null && basename "$f" .pid
    done
}

case $cmd in
start)
    data=$1 work=$2 dac_seeds=$3 mmdc_seeds=$4
    mkdir -p "$work"
    for s in $dac_seeds; do
        run_bench "dac-seed$s" dac "$s" "$data" "$work" -p "checkpoint_dir=$work/dac-seed$s.ckpt" \
            ${RESUME:+-p resume=true} ${DAC_PARAMS:-}
    done
    for s in $mmdc_seeds; do
        run_bench "mmdc-seed$s" mmdc "$s" "$data" "$work"
    done
    sleep 5
    echo "running: $(running "$work" | tr '\n' ' ')"
    ;;
wait)
    work=$1 seconds=$2 end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ] && [ -n "$(running "$work")" ]; do sleep 10; done
    echo "still running after ${seconds}s at most: $(running "$work" | tr '\n' ' ')"
    ;;
finish)
    data=$1 work=$2
    for name in $(running "$work"); do
        case $name in
        dac-*)
            # SIGINT is the CLI's cancel: the run saves a checkpoint within a second and exits
            kill -INT "$(cat "$work/$name.pid")"
            for _ in $(seq 60); do kill -0 "$(cat "$work/$name.pid")" 2>/dev/null || break; sleep 1; done
            ckpt=$work/$name.ckpt/dac-checkpoint.pt
            if [ ! -e "$ckpt" ]; then echo "$name stopped before its first checkpoint: nothing to label"; continue; fi
            passes=$("$PY" -c "import sys; from photocluster.checkpoints import load_checkpoint as load; s = load(sys.argv[1]); print(s['pass_index'], s['chunk_index'])" "$ckpt")
            echo "$name stopped at pass index / selection batch: $passes"
            set -- $passes
            # max_passes=0 would mean "the whole schedule": a run that finished no pass is not labelled
            if [ "$1" -eq 0 ]; then echo "$name finished no whole pass: nothing to label"; continue; fi
            seed=${name#dac-seed}
            # resume with the schedule capped at the passes done: no more training, only the labelling
            "$PY" -m photocluster --headless --benchmark mnist --method dac --protocol paper --data-dir "$data" \
                --seed "$seed" --seeds 1 --device "$DEVICE" $LIMIT_ARGS --output "$work/$name-at-pass$1.json" -q \
                -p "checkpoint_dir=$work/$name.ckpt" -p resume=true -p "max_passes=$1" ${DAC_PARAMS:-} >>"$work/$name.log" 2>&1
            ;;
        *) kill -INT "$(cat "$work/$name.pid")"; echo "$name was still running: stopped" ;;
        esac
    done
    ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
