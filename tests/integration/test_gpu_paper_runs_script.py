"""scripts/gpu_paper_runs.sh, run on the CPU: the detached paper-protocol jobs and the cut-off labelling.

On a lent GPU the script is the only way to run DAC's paper protocol past one 10-minute device call, and its
`finish` turns a run cut off by the machine's time into a labelled result. These tests run the same script
with DEVICE=cpu on tiny MNIST files, so that the cut-off path is checked where CI runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from photocluster.checkpoints import load_checkpoint
from test_benchmark_cli import write_tiny_mnist  # same folder (pytest puts it on sys.path)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_paper_runs.sh"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a bash script")


def script(*args: str, timeout: float = 240, **extra_env: str) -> str:
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO), **extra_env}
    done = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def checkpoint_pass(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["pass_index"])
    except Exception:  # not written yet, or being written
        return -1


@pytest.fixture
def work(tmp_path):
    """The script's WORK folder; jobs a failing test left running are killed (they are detached)."""
    folder = tmp_path / "work"
    yield folder
    for pid_file in folder.glob("*.pid"):
        subprocess.run(["kill", "-9", pid_file.read_text().strip()], capture_output=True)


def test_a_dac_run_cut_off_after_whole_passes_is_labelled_and_can_go_on(tmp_path, work):
    # 200 + 6 images: one selection batch, 7 mini-batches of ≤ 32, 10 passes each = 70 steps a pass, so the
    # 51-pass schedule takes about a minute on one CPU thread — long enough to be cut off after pass 1
    write_tiny_mnist(tmp_path / "mnist", n=200)
    out = script("start", str(tmp_path / "mnist"), str(work), "0", "")
    assert "running: dac-seed0" in out
    checkpoint = work / "dac-seed0.ckpt" / "dac-checkpoint.pt"
    deadline = time.monotonic() + 180
    while checkpoint_pass(checkpoint) < 1:
        assert time.monotonic() < deadline, (work / "dac-seed0.log").read_text()[-2000:]
        time.sleep(0.5)

    out = script("finish", str(tmp_path / "mnist"), str(work))

    passes = int(out.split("stopped at pass index / selection batch: ")[1].split()[0])
    assert 1 <= passes < 51
    assert not (work / "dac-seed0.json").exists()  # the uncut run wrote no result
    result = json.loads((work / f"dac-seed0-at-pass{passes}.json").read_text())
    assert result["protocol"] == "paper" and result["n_images"] == 206
    assert result["params"]["max_passes"] == passes and result["params"]["resume"] is True
    assert result["params"]["minibatch"] == 32 and result["params"]["passes_per_batch"] == 10
    assert 0.0 < result["runs"][0]["acc"] <= 1.0
    # labelling only: the checkpoint still says where training stopped
    assert checkpoint_pass(checkpoint) == passes

    # the next lease goes on from that checkpoint instead of starting again (DAC_PARAMS reach the run: the
    # CLI refuses unknown parameters; cuda_graph itself is ignored on the CPU)
    script("start", str(tmp_path / "mnist"), str(work), "0", "", RESUME="1", DAC_PARAMS="-p cuda_graph=true")
    log = work / "dac-seed0.log"
    while "dac seed 0 resume" not in log.read_text():
        assert time.monotonic() < deadline + 120, log.read_text()[-2000:]
        time.sleep(0.5)
    script("finish", str(tmp_path / "mnist"), str(work), DAC_PARAMS="-p cuda_graph=true")
    assert checkpoint_pass(checkpoint) >= passes
    labelled = json.loads(max(work.glob("dac-seed0-at-pass*.json"), key=lambda path: path.stat().st_mtime).read_text())
    assert labelled["params"]["cuda_graph"] is True  # the result records the options of the run


@pytest.mark.parametrize("checkpoint_state", [None, {"pass_index": 0, "chunk_index": 12}])
def test_a_run_stopped_before_a_whole_pass_is_not_labelled(tmp_path, work, checkpoint_state):
    # max_passes=0 means "the whole schedule": labelling a pass-0 checkpoint would train all 51 passes.
    # A stand-in process plays the stopped run, so that when it stops is not left to chance.
    write_tiny_mnist(tmp_path / "mnist", n=20)
    (work / "dac-seed0.ckpt").mkdir(parents=True)
    if checkpoint_state is not None:
        torch.save(checkpoint_state, work / "dac-seed0.ckpt" / "dac-checkpoint.pt")
    # Started through a shell that exits at once, like the script's setsid jobs, so that nothing here holds
    # it as a zombie that `kill -0` would still see; SIGINT back to its default, since a shell's
    # background jobs may inherit it ignored.
    stand_in = subprocess.run(
        ["bash", "-c", f"'{sys.executable}' -c 'import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
         "time.sleep(60)' >/dev/null 2>&1 & echo $!"], capture_output=True, text=True, check=True)
    pid = int(stand_in.stdout)
    time.sleep(0.5)  # let it install the handler
    (work / "dac-seed0.pid").write_text(f"{pid}\n")
    try:
        started = time.monotonic()
        out = script("finish", str(tmp_path / "mnist"), str(work))
        assert time.monotonic() - started < 30  # it stopped on SIGINT, not after the script's 60-s wait
    finally:
        subprocess.run(["kill", "-9", str(pid)], capture_output=True)
    assert "dac-seed0" in out and "nothing to label" in out
    assert not list(work.glob("dac-seed0*.json"))
