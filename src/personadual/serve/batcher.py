"""Micro-batching: requests that arrive close together are generated as one batch.

One worker task owns the engine. It takes the oldest waiting request, waits until that request is
``wait_ms`` old (or ``max_batch_size`` requests are waiting), groups what it holds by generation
settings (requests with different settings cannot share a ``generate`` call) and runs each group as
one `Engine.generate` call in a single worker thread, so the event loop keeps accepting requests
while the model runs. Requests that arrive during a run wait for the next one: under load, batches
fill up by themselves, and ``wait_ms`` only matters when the server is nearly idle.

Modes may differ inside a batch (the engine takes one mode per prompt). A request with a ``seed``
runs alone: sampling with a seed is then reproducible whatever else arrived at the same time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

log = logging.getLogger(__name__)

GenerateFn = Callable[[Sequence[str], Sequence[str], object], list]  # (prompts, modes, GenerationConfig)


class Overloaded(RuntimeError):
    """More requests waiting than ``max_pending``."""


@dataclass
class _Job:
    prompt: str
    mode: str
    config: object  # GenerationConfig
    key: tuple
    future: asyncio.Future
    t_enqueued: float


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    recent_sizes: deque = field(default_factory=lambda: deque(maxlen=4096))

    def as_dict(self) -> dict:
        sizes = list(self.recent_sizes)
        return {"batches": self.batches, "requests": self.requests, "max_batch": max(sizes, default=0),
                "mean_batch": round(sum(sizes) / len(sizes), 3) if sizes else 0.0}


def settings_key(config) -> tuple:
    """Requests batch together only with equal settings; a seeded request gets a key of its own."""
    unique = next(_unique) if getattr(config, "seed", None) is not None else 0
    return (config.max_new_tokens, config.temperature, config.top_p, tuple(config.stop), unique)


_unique = itertools.count(1)


class MicroBatcher:
    def __init__(self, generate: GenerateFn, max_batch_size: int = 32, wait_ms: float = 5.0, max_pending: int = 1024):
        if max_batch_size < 1 or wait_ms < 0 or max_pending < 1:
            raise ValueError("need max_batch_size >= 1, wait_ms >= 0, max_pending >= 1")
        self.generate, self.max_batch_size, self.max_pending = generate, max_batch_size, max_pending
        self.wait_s = wait_ms / 1000
        self.stats = BatchStats()
        self._waiting: deque[_Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pending = 0  # waiting + running
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")

    @property
    def pending(self) -> int:
        """Requests waiting or running now (what /health reports)."""
        return self._pending

    async def submit(self, prompt: str, mode: str, config) -> object:
        """Queue one prompt; returns its `Generation` once its batch is done."""
        if self._pending >= self.max_pending:
            raise Overloaded(f"{self._pending} requests already queued (max {self.max_pending})")
        loop = asyncio.get_running_loop()
        self._start(loop)
        job = _Job(prompt, mode, config, settings_key(config), loop.create_future(), loop.time())
        self._pending += 1
        self._waiting.append(job)
        self._wakeup.set()
        try:
            return await job.future
        finally:
            self._pending -= 1

    def _start(self, loop) -> None:
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name="micro-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            # let the oldest request gather company until it is wait_s old or the batch is full
            deadline = self._waiting[0].t_enqueued + self.wait_s
            while len(self._waiting) < self.max_batch_size and loop.time() < deadline:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), deadline - loop.time())
                except TimeoutError:
                    break
            for group in self._take_groups():
                await self._run_group(loop, group)

    def _take_groups(self) -> list[list[_Job]]:
        """Up to max_batch_size of the waiting jobs, grouped by settings key, oldest group first."""
        groups: dict[tuple, list[_Job]] = {}
        taken = 0
        while self._waiting and taken < self.max_batch_size:
            job = self._waiting.popleft()
            if job.future.done():  # the client went away
                continue
            groups.setdefault(job.key, []).append(job)
            taken += 1
        return list(groups.values())

    async def _run_group(self, loop, jobs: list[_Job]) -> None:
        jobs = [j for j in jobs if not j.future.done()]
        if not jobs:
            return
        self.stats.batches += 1
        self.stats.requests += len(jobs)
        self.stats.recent_sizes.append(len(jobs))
        prompts, modes = [j.prompt for j in jobs], [j.mode for j in jobs]
        try:
            results = await loop.run_in_executor(self._executor, self.generate, prompts, modes, jobs[0].config)
        except Exception as e:  # the engine failed: every request of this batch gets the error
            log.exception("generation failed for a batch of %d", len(jobs))
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        for j, r in zip(jobs, results):
            if not j.future.done():
                j.future.set_result(r)
