"""Micro-batching: concurrent requests for one model share one network call.

Each request decodes and preprocesses its own images in the worker pool (a slow decode delays only its own
request), then hands its inputs to the model's :class:`MicroBatcher`. The batcher waits at most ``wait_ms`` for
other requests, or until ``max_batch`` images are waiting, runs the network once on all of them, and gives each
request its own rows of the logits back. Decoding the logits (``allowed``, arithmetic) stays per request, so
requests with different character sets share a batch. A request that alone fills a batch skips the wait.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from models.engine import Engine


@dataclass
class _Waiting:
    inputs: np.ndarray
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Gathers the inputs of concurrent requests for ``engine`` into batches of at most ``max_batch`` images,
    waiting at most ``wait_ms`` after the first one arrives. ``wait_ms`` 0 or ``max_batch`` 1: no batching."""

    def __init__(self, engine: Engine, executor: Executor, max_batch: int = 32, wait_ms: float = 2.0) -> None:
        if max_batch < 1 or wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and wait_ms >= 0, got {max_batch} and {wait_ms}")
        self.engine, self.executor = engine, executor
        self.max_batch, self.wait_ms = max_batch, wait_ms
        self.waiting: list[_Waiting] = []
        self.timer: asyncio.TimerHandle | None = None
        self.calls = 0  # network calls made (tests and benchmarks read it)
        self.tasks: set[asyncio.Task] = set()  # running batches (a task needs a reference until it ends)

    @property
    def enabled(self) -> bool:
        return self.max_batch > 1 and self.wait_ms > 0

    async def logits(self, inputs: np.ndarray) -> np.ndarray:
        """The network's logits for ``inputs (N, C, H, W)``, computed in a batch with other requests' inputs."""
        loop = asyncio.get_running_loop()
        if len(inputs) == 0:
            return np.zeros((0, 0, self.engine.charset.num_classes), np.float32)
        if not self.enabled or len(inputs) >= self.max_batch:
            self.calls += 1
            return await loop.run_in_executor(self.executor, self.engine.logits, inputs)
        if self.waiting and self.pending_images() + len(inputs) > self.max_batch:
            self.flush()  # this request would not fit: the waiting ones go now, it starts the next batch
        waiting = _Waiting(inputs, loop.create_future())
        self.waiting.append(waiting)
        if self.pending_images() >= self.max_batch:
            self.flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.wait_ms / 1000, self.flush)
        return await waiting.future

    def pending_images(self) -> int:
        return sum(len(w.inputs) for w in self.waiting)

    def flush(self) -> None:
        """Send the waiting requests' inputs to the network as one batch (called on the event loop)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.waiting = self.waiting, []
        if batch:
            self.calls += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, batch: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        inputs = batch[0].inputs if len(batch) == 1 else np.concatenate([w.inputs for w in batch])
        try:
            logits = await loop.run_in_executor(self.executor, self.engine.logits, inputs)
        except Exception as e:  # every request of the batch fails the same way
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(e)
            return
        start = 0
        for w in batch:
            if not w.future.done():  # a cancelled request (client gone) simply drops its rows
                w.future.set_result(logits[start : start + len(w.inputs)])
            start += len(w.inputs)
