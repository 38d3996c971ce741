"""Points run one after another, or several at once in a queue of worker processes.

The rule: with ``parallel`` unset, one worker per CUDA device when there are any (worker ``i`` sees only
device ``i`` through ``CUDA_VISIBLE_DEVICES``), else one point at a time in this process. With
``parallel: N`` on the CPU, N workers each take ``cpu_count // N`` intra-op threads (at least one); with
N above the number of GPUs, workers share devices round-robin. A worker takes the next unfinished point
when it is free, so points of uneven length keep every device busy. A point that fails stops the sweep
once the points already running have finished; rerun to resume.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any

from raddino.ablate.point import PointJob, run_point

logger = logging.getLogger(__name__)


def cuda_devices() -> int:
    """CUDA devices this process may use (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_parallel(parallel: int | None) -> int:
    """Points at once: ``parallel`` when given, else one per CUDA device, else 1.

    Raises:
        ValueError: ``parallel`` below 1.
    """
    if parallel is not None:
        if parallel < 1:
            raise ValueError(f"parallel: must be at least 1, got {parallel}")
        return parallel
    return max(1, cuda_devices())


def _pin(slots: Any, gpus: int, threads: int) -> None:
    """Worker start-up: take a slot; see one GPU (round-robin) or set this worker's CPU threads."""
    slot = slots.get()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def run_queue(
    jobs: Sequence[PointJob],
    parallel: int,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every job; returns their ``point.json`` records in the order of ``jobs``.

    Args:
        jobs: The points to run (finished ones return their record at once).
        parallel: Worker processes; 1 runs the points here, one after another.
        on_done: Called with each record as its point finishes.
    """
    if parallel <= 1 or len(jobs) <= 1:
        in_order = []
        for job in jobs:
            in_order.append(run_point(job))
            if on_done is not None:
                on_done(in_order[-1])
        return in_order
    gpus = cuda_devices()
    threads = max(1, (os.cpu_count() or 1) // parallel)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked once initialised
    records: list[dict[str, Any]] = [{} for _ in jobs]
    with context.Manager() as manager:
        slots = manager.Queue()
        for slot in range(parallel):
            slots.put(slot)
        with ProcessPoolExecutor(
            parallel, mp_context=context, initializer=_pin, initargs=(slots, gpus, threads)
        ) as pool:
            futures = {pool.submit(run_point, job): index for index, job in enumerate(jobs)}
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            errors = [error for future in done if (error := future.exception()) is not None]
            if errors:
                raise errors[0]
            for future, index in futures.items():
                records[index] = future.result()
                if on_done is not None:
                    on_done(records[index])
    return records


__all__ = ["cuda_devices", "default_parallel", "run_queue"]
