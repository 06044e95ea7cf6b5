"""Where jobs run: local worker processes, or Ray tasks on a local instance or a cluster.

An executor takes (key, function, arguments) tasks and yields (key, outcome) as they finish, the
outcome being the function's return value or the exception it raised. Functions and outcomes are
plain picklable values, and the caller (the sweep's driver) writes every record, so Ray workers
need no shared disk with the driver. ``run_tasks`` is the one job runner of the project: sweeps
and the script that trains the shipped agents both go through it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pruningrl.numerics import worker_environment

Task = tuple[str, Callable[..., Any], tuple]
EXECUTORS = ("local", "ray")


class TaskFailed(Exception):
    """A task raised: ``message`` is its one-line reason."""


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _die_with_parent() -> None:
    """Worker initializer: on Linux, ask for SIGKILL when the driver dies (no orphans)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _call(function: Callable[..., Any], args: tuple) -> tuple[bool, Any]:
    try:
        return True, function(*args)
    except Exception as error:  # noqa: BLE001 - a job's failure is data for its record
        return False, one_line(error)


def run_local(tasks: Iterable[Task], jobs: int) -> Iterator[tuple[str, bool, Any]]:
    """Run tasks in ``jobs`` spawned worker processes; yield (key, ok, value) as they finish."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = list(tasks)
    if not pending:
        return
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                             initializer=_die_with_parent) as pool:
        futures = {pool.submit(_call, function, args): key for key, function, args in pending}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                key = futures.pop(future)
                try:
                    ok, value = future.result()
                except BrokenProcessPool:
                    ok, value = False, "a worker process died (killed, or out of memory)"
                yield key, ok, value


def run_ray(tasks: Iterable[Task], jobs: int, address: str | None) -> Iterator[
        tuple[str, bool, Any]]:
    """Run tasks as Ray tasks (one CPU each); yield (key, ok, value) as they finish."""
    try:
        import ray
    except ImportError:
        raise ValueError("the ray executor needs Ray: pip install 'pruningrl[ray]'") from None
    pending = list(tasks)
    if not pending:
        return
    started = not ray.is_initialized()
    if started:
        options = {"address": address} if address else {"num_cpus": jobs}
        ray.init(**options, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1",
                                                       **worker_environment()}})
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_call)
        refs = {remote.remote(function, args): key for key, function, args in pending}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                key = refs.pop(ref)
                try:
                    ok, value = ray.get(ref)
                except Exception as error:  # noqa: BLE001 - a lost worker fails its task only
                    ok, value = False, one_line(error)
                yield key, ok, value
    finally:
        if started:
            ray.shutdown()


def run_tasks(tasks: Iterable[Task], executor: str = "local", jobs: int | None = None,
              address: str | None = None) -> Iterator[tuple[str, bool, Any]]:
    """Run tasks on ``executor``; yield (key, ok, value): the return value, or the error line."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    if address is not None and executor != "ray":
        raise ValueError("--address names a Ray cluster: use it with --executor ray")
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise ValueError(f"jobs must be positive, got {jobs}")
    if executor == "ray":
        return run_ray(tasks, jobs, address)
    return run_local(tasks, jobs)
