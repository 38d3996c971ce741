"""Worker processes for long per-file commands: a pool that starts cleanly, survives crashes, and dies with
its parent.

``kill -9`` of a command leaves nothing behind: every worker exits within about a second of the process
that started it (``prctl(PR_SET_PDEATHSIG)`` for its direct parent, and a watcher thread on the command's
process, since a fork-server worker's parent is the fork server, not the command). Once the workers are
gone, the fork server and the resource tracker see their last client close and exit too.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

TaskT = TypeVar("TaskT")
ResultT = TypeVar("ResultT")

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_POLL_SECONDS = 0.5  # how often the fallback watcher looks for the parent


def _set_parent_death_signal() -> None:
    """Ask Linux to SIGKILL this process when its parent exits (no-op elsewhere, or without libc)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _watch(command_pid: int) -> None:
    """Block until ``command_pid`` has exited, then end this process at once."""
    try:
        handle = os.pidfd_open(command_pid)  # Linux ≥ 5.3: readable once the process has exited
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # other systems, older kernels: poll
        while True:
            try:
                os.kill(command_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass  # the process exists (signals are merely not allowed)
            time.sleep(_POLL_SECONDS)
    poller = select.poll()
    poller.register(handle, select.POLLIN)
    while not poller.poll():
        pass
    os._exit(1)


def exit_with_parent(command_pid: int) -> None:
    """Make this worker process exit when the command's process ``command_pid`` dies, however it dies.

    Call it first in a pool's initializer. ``os._exit`` skips clean-up on purpose: the parent is gone,
    nobody waits for the result, and an atomic output that was being written is left as a hidden
    temporary file, never as a half-written output.
    """
    _set_parent_death_signal()
    if os.name == "posix":  # (on Windows, os.kill(pid, 0) would send CTRL_C_EVENT)
        threading.Thread(target=_watch, args=(command_pid,), name="exit-with-parent", daemon=True).start()


def _initialize(command_pid: int, initializer: Callable[[], None] | None) -> None:
    exit_with_parent(command_pid)
    if initializer is not None:
        initializer()


def worker_pool(
    workers: int, *, preload: Sequence[str] = (), initializer: Callable[[], None] | None = None
) -> ProcessPoolExecutor:
    """A process pool whose workers are known to start (checked with a no-op task) and die with this one.

    Args:
        workers: Worker processes.
        preload: Modules the fork server imports once, so every worker starts with them loaded (numpy,
            scipy and the decoders take ~0.4 s to import). No effect once the server runs.
        initializer: Run in each worker after it is tied to this process.

    Raises:
        RuntimeError: workers cannot start, e.g. a script run from stdin, or one that starts the pool
            without an ``if __name__ == "__main__":`` guard.
    """
    methods = multiprocessing.get_all_start_methods()
    # forkserver/spawn: workers never inherit a parent's threads (torch, BLAS) mid-lock, as fork can.
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        context.set_forkserver_preload(["__main__", *preload])
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_initialize, initargs=(os.getpid(), initializer)
    )
    try:
        executor.submit(os.getpid).result()
    except BrokenProcessPool as error:
        executor.shutdown(wait=False, cancel_futures=True)
        raise RuntimeError(
            "worker processes could not start; run from a script file whose pool is started under "
            "`if __name__ == '__main__':`, or use workers=1"
        ) from error
    return executor


def run_isolated(
    task: TaskT,
    work: Callable[[TaskT], ResultT],
    died: Callable[[TaskT], ResultT],
    pool: Callable[[int], ProcessPoolExecutor],
) -> ResultT:
    """Run one task alone in a fresh process, so a crash is pinned on the task that caused it."""
    with pool(1) as executor:
        try:
            return executor.submit(work, task).result()
        except BrokenProcessPool:
            return died(task)


def run_parallel(
    tasks: Iterable[TaskT],
    workers: int,
    work: Callable[[TaskT], ResultT],
    died: Callable[[TaskT], ResultT],
    pool: Callable[[int], ProcessPoolExecutor] = worker_pool,
) -> Iterator[ResultT]:
    """Yield each task's result as workers finish it, at most ``4 × workers`` in flight (flat memory).

    When a worker dies, the pool is replaced; the tasks that were in flight are retried one by one in
    their own process, so only a task that kills its process gets ``died(task)``, and the run goes on.
    Closing the iterator early (an error in the consumer) cancels what has not started.

    Args:
        tasks: Picklable tasks.
        workers: Worker processes.
        work: Picklable function of one task; should not raise.
        died: The result of a task whose process died while running it.
        pool: Makes a pool of ``n`` workers (``worker_pool`` with the caller's preload).
    """
    pending = iter(tasks)
    executor = pool(workers)
    in_flight: dict[Future[ResultT], TaskT] = {}
    try:
        while True:
            broken = False
            while not broken and len(in_flight) < 4 * workers and (task := next(pending, None)) is not None:
                try:
                    in_flight[executor.submit(work, task)] = task
                except BrokenProcessPool:  # a worker died since the last wait
                    yield run_isolated(task, work, died, pool)
                    broken = True
            if not in_flight and not broken:
                return
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = broken or any(isinstance(future.exception(), BrokenProcessPool) for future in done)
            if not broken:
                for future in done:
                    in_flight.pop(future)
                    yield future.result()
                continue
            executor.shutdown(wait=True, cancel_futures=True)  # every future is now settled
            for future, task in in_flight.items():
                finished = future.done() and not future.cancelled() and future.exception() is None
                yield future.result() if finished else run_isolated(task, work, died, pool)
            in_flight.clear()
            executor = pool(workers)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
