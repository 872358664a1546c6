"""The CUDA-graph step's bookkeeping, on the CPU: warm-up per input shape, capture, replay with the
current inputs copied in, fallback after a failed capture, and DAC's training through it.

No GPU here: a stand-in backend replays a "graph" by calling the step function again on the static
inputs, which is what a real replay computes. What only a GPU can show (that the capture succeeds and is
faster) is checked by ``scripts/check_cuda_graph_step.py`` on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from photocluster.cuda_graph import GraphedStep, set_capturable
from photocluster.data.dataset import ImageDataset
from photocluster.methods.dac import DAC, select_pairs


class ReplayByCalling:
    """CPU stand-in for CUDA graphs: capturing runs nothing, replaying runs ``fn`` on the static inputs
    and writes the result into the output tensor handed out at capture."""

    def __init__(self, fail_capture: bool = False) -> None:
        self.captures = 0
        self.fail_capture = fail_capture

    def run_eager(self, fn, inputs):
        return fn(*inputs)

    def capture(self, fn, static_inputs):
        self.captures += 1
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        output = torch.empty(0)

        class Graph:
            def replay(self_graph):
                result = fn(*static_inputs)
                output.resize_(result.shape).copy_(result)

        return Graph(), output


def _recording_step():
    seen: list[list[float]] = []

    def step(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.tolist())
        return x.sum()

    return step, seen


def test_warm_up_per_shape_then_capture_then_replay_with_the_current_inputs():
    step, seen = _recording_step()
    backend = ReplayByCalling()
    graphed = GraphedStep(step, warmup=2, backend=backend)
    calls = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), torch.tensor([5.0, 6.0]), torch.tensor([7.0, 8.0])]
    results = [float(graphed(x)) for x in calls]
    assert results == [3.0, 7.0, 11.0, 15.0]
    assert seen == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]  # each call's own values, once
    assert (graphed.eager_calls, backend.captures, graphed.replays) == (2, 1, 2)

    # another shape is another graph, with its own warm-up
    assert float(graphed(torch.tensor([1.0, 1.0, 1.0]))) == 3.0
    assert (graphed.eager_calls, backend.captures) == (3, 1)
    graphed(torch.tensor([1.0, 1.0, 1.0]))
    graphed(torch.tensor([2.0, 2.0, 2.0]))
    assert backend.captures == 2
    # the first shape still replays its graph
    assert float(graphed(torch.tensor([0.5, 0.5]))) == 1.0 and backend.captures == 2


def test_returned_loss_is_not_overwritten_by_the_next_replay():
    step, _ = _recording_step()
    graphed = GraphedStep(step, warmup=0, backend=ReplayByCalling())
    first = graphed(torch.tensor([1.0, 1.0]))
    graphed(torch.tensor([5.0, 5.0]))
    assert float(first) == 2.0


def test_failed_capture_runs_the_step_eagerly_and_turns_graphs_off():
    step, seen = _recording_step()
    backend = ReplayByCalling(fail_capture=True)
    graphed = GraphedStep(step, warmup=1, backend=backend)
    assert float(graphed(torch.tensor([1.0]))) == 1.0  # warm-up
    assert float(graphed(torch.tensor([2.0]))) == 2.0  # capture fails: the step still runs, once
    assert "operation not permitted" in graphed.disabled_reason
    assert float(graphed(torch.tensor([3.0]))) == 3.0
    assert seen == [[1.0], [2.0], [3.0]]
    assert backend.captures == 1 and graphed.replays == 0


def test_set_capturable_lets_a_graphed_runs_optimiser_state_resume_eagerly():
    weights = torch.nn.Parameter(torch.ones(3))
    optimiser = torch.optim.RMSprop([weights], lr=0.1)
    weights.grad = torch.ones(3)
    optimiser.step()
    saved = optimiser.state_dict()
    saved["param_groups"][0]["capturable"] = True  # what a graphed run's checkpoint holds

    resumed = torch.optim.RMSprop([weights], lr=0.1)
    resumed.load_state_dict(saved)
    weights.grad = torch.ones(3)
    with pytest.raises(Exception):  # PyTorch refuses capturable state on the CPU
        resumed.step()
    set_capturable(resumed, False)
    resumed.step()
    state = resumed.state[weights]
    assert state["step"].device.type == "cpu" and float(state["step"]) >= 2
    set_capturable(resumed, True)
    assert resumed.param_groups[0]["capturable"] and state["step"].dtype == torch.float32


def _digits_like(n: int = 120, seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    return ImageDataset("bars", rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8), rng.integers(0, 3, size=n))


@pytest.mark.parametrize("consistency", [0.0, 10.0])
def test_dac_trained_through_graph_replays_equals_eager_training(consistency):
    torch.set_num_threads(1)
    dataset = _digits_like()
    runs = []
    for graphed in (False, True):
        method = DAC(n_clusters=3, device="cpu", minibatch=20, self_consistency_weight=consistency, cuda_graph=True)
        method.prepare(dataset)
        assert method._graphed_step is None and method._graphed_train_step is None  # ignored off CUDA
        if graphed:
            method._graphed_step = GraphedStep(method._eager_model_step, backend=ReplayByCalling())
            method._graphed_train_step = GraphedStep(method._eager_train_step, backend=ReplayByCalling())
        rng = np.random.default_rng(1)
        features = torch.nn.functional.normalize(torch.rand(20, 3, generator=torch.Generator().manual_seed(2)), dim=1)
        targets, mask = select_pairs(features @ features.T, 0.95, 0.455)
        ready = method._to_network_input(method._uint8_batch(np.arange(20)), augment=True)
        losses = []
        for step in range(12):
            # full steps (data path in the graph), with a bare model step on a ready input every third step
            if step % 3 == 2:
                losses.append(float(method.model_step(ready, targets, mask, features)))
            else:
                losses.append(float(method.train_step(rng.choice(len(dataset), 20, replace=False), targets, mask, features)))
        # an odd-sized mini-batch, like the last one of a selection batch: its own warm-up
        losses.append(float(method.train_step(np.arange(7), targets[:7, :7], mask[:7, :7], features[:7])))
        runs.append((losses, [p.detach().clone() for p in method.model_.parameters()], method))
    (eager_losses, eager_weights, _), (graph_losses, graph_weights, graphed) = runs
    # the paths under test were taken: 8 full steps (3 warm-up, 5 replayed), 4 bare (3 warm-up, 1 replayed), 1 odd
    assert (graphed._graphed_train_step.eager_calls, graphed._graphed_train_step.replays) == (4, 5)
    assert (graphed._graphed_step.eager_calls, graphed._graphed_step.replays) == (3, 1)
    assert graph_losses == eager_losses
    assert all(torch.equal(a, b) for a, b in zip(eager_weights, graph_weights))


def test_gpu_check_script_says_clearly_that_it_needs_a_gpu():
    import subprocess
    import sys
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the script would run its check")
    script = Path(__file__).resolve().parents[2] / "scripts" / "check_cuda_graph_step.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "needs a CUDA GPU" in done.stderr and done.stdout == ""
