"""Replay a small network's training step from a captured CUDA graph.

Why: on an H100 (stop 10) DAC's bare training step on MNIST took 6.9 ms at mini-batch 32 and 7.1 ms at
128 — the same — because the GPU waits for the host to dispatch the step's ~220 operator calls one by one
(counted on the CPU with a ``TorchDispatchMode``), not for arithmetic. At that rate the paper's 1.14 million
DAC steps take 2.5 hours. A CUDA graph records the kernels of one step once and launches them all with one
call afterwards.

:class:`GraphedStep` follows PyTorch's "whole-network capture" recipe:

* ``step(*inputs)`` stands for ``fn(*inputs)``, where ``fn`` zeroes the gradients, runs forward, loss,
  backward and the optimiser update, and returns the loss tensor;
* for each input signature (shapes, dtypes), the first ``warmup`` calls run ``fn`` eagerly on a side stream
  (they are real training steps, not extra ones); the next call copies its inputs into static tensors,
  captures ``fn`` on them and replays the graph once (capturing runs nothing); later calls copy their inputs
  and replay;
* what ``fn`` reads on the host (a learning rate, a flag) is frozen at capture, and ``fn`` must not
  synchronise with the GPU (no ``.item()``); the optimiser must be built with ``capturable=True``
  (:func:`set_capturable` also mends one loaded from a checkpoint);
* a capture that fails turns the graphs off for good: the step runs eagerly and ``disabled_reason`` says why.

The GPU calls sit behind a small backend object so that the bookkeeping (signatures, warm-up, static
copies, fallback) can be tested on the CPU with a stand-in that replays by calling ``fn`` again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import torch

StepFunction = Callable[..., torch.Tensor]


class CudaGraphBackend:
    """The real thing: eager warm-up and capture on one side stream (PyTorch asks for a side stream; one
    stream for both keeps library handles created during warm-up valid for the capture)."""

    def __init__(self) -> None:
        self._stream: Any = None

    def _side_stream(self) -> Any:
        if self._stream is None:
            self._stream = torch.cuda.Stream()
        return self._stream

    def run_eager(self, fn: StepFunction, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        stream = self._side_stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            output = fn(*inputs)
        torch.cuda.current_stream().wait_stream(stream)
        return output

    def capture(self, fn: StepFunction, static_inputs: list[torch.Tensor]) -> tuple[Any, torch.Tensor]:
        stream = self._side_stream()
        stream.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            output = fn(*static_inputs)
        torch.cuda.current_stream().wait_stream(stream)
        return graph, output


class GraphedStep:
    """``fn`` run eagerly for ``warmup`` calls per input signature, then replayed from a CUDA graph."""

    def __init__(self, fn: StepFunction, warmup: int = 3, backend: Any = None) -> None:
        self.fn = fn
        self.warmup = int(warmup)
        self.backend = backend if backend is not None else CudaGraphBackend()
        self.disabled_reason: str | None = None
        self.replays = 0
        self.eager_calls = 0
        self._graphs: dict[tuple, tuple[Any, list[torch.Tensor], torch.Tensor]] = {}
        self._warm_calls: Counter = Counter()

    @staticmethod
    def signature(inputs: tuple[torch.Tensor, ...]) -> tuple:
        return tuple((tuple(t.shape), t.dtype, str(t.device)) for t in inputs)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.disabled_reason is not None:
            self.eager_calls += 1
            return self.fn(*inputs)
        key = self.signature(inputs)
        entry = self._graphs.get(key)
        if entry is None:
            if self._warm_calls[key] < self.warmup:
                self._warm_calls[key] += 1
                self.eager_calls += 1
                return self.backend.run_eager(self.fn, inputs)
            static_inputs = [t.detach().clone() for t in inputs]
            try:
                graph, output = self.backend.capture(self.fn, static_inputs)
            except Exception as error:  # noqa: BLE001 — any capture failure means: go on eagerly
                self.disabled_reason = f"capture failed: {type(error).__name__}: {error}"
                self.eager_calls += 1
                return self.fn(*inputs)  # the capture ran nothing: this call's step is still to do
            entry = self._graphs[key] = (graph, static_inputs, output)
        graph, static_inputs, output = entry
        for static, value in zip(static_inputs, inputs):
            static.copy_(value)
        graph.replay()
        self.replays += 1
        # the static output is overwritten by the next replay: hand out a copy
        return output.detach().clone()


def set_capturable(optimizer: torch.optim.Optimizer, capturable: bool) -> None:
    """Set ``capturable`` on every parameter group and put the ``step`` counters where that mode wants
    them: on the parameters' device when capturable (a graph cannot update a CPU counter), on the CPU when
    not (PyTorch refuses capturable state on the CPU).

    Needed after ``load_state_dict``, whose saved groups overwrite the flag: a checkpoint written by a
    graphed run must resume eagerly on the CPU, and one written eagerly must resume graphed on a GPU.
    """
    for group in optimizer.param_groups:
        group["capturable"] = bool(capturable)
        for parameter in group["params"]:
            state = optimizer.state.get(parameter)
            if state and "step" in state:
                device = parameter.device if capturable else torch.device("cpu")
                state["step"] = torch.as_tensor(state["step"], dtype=torch.float32).to(device)
