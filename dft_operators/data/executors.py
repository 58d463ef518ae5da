"""Where dataset records are computed: local processes or a Dask cluster, a bounded window in flight.

``bounded_map`` keeps at most ``window`` tasks submitted and refills from ``as_completed``, so memory and
scheduler load stay flat for any number of tasks (never one submission per task up front); the same code
runs against a ``concurrent.futures`` pool, a Dask ``LocalCluster`` or a cluster's scheduler address.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class _Inline:
    """Runs each task in this process when it is submitted (one worker, no pool)."""

    def submit(self, fn, *args, **kwargs):
        future = cf.Future()
        future.set_result(fn(*args))
        return future


@contextlib.contextmanager
def make(kind: str | cf.Executor, workers: int = 1, scheduler: str | None = None):
    """An executor to submit tasks to, closed on exit.

    Args:
      kind: "process" (``workers`` spawned local processes, one OpenMP thread each; ``workers`` 1 runs in
        this process), "dask" (a ``distributed.Client`` on ``scheduler``, or on a LocalCluster of ``workers``
        single-threaded processes), or an existing executor (not closed here).
    Raises:
      ValueError: an unknown kind, or Dask without the ``[cluster]`` extra installed.
    """
    if not isinstance(kind, str):
        yield kind
        return
    if kind == "process":
        if workers <= 1:
            yield _Inline()
            return
        # One OpenMP thread per worker; spawn (not fork) because the parent may hold JAX threads.
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            yield pool
        finally:
            pool.shutdown(cancel_futures=True)
        return
    if kind != "dask":
        raise ValueError(f"unknown executor {kind!r}; choose process or dask")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ValueError('the dask executor needs Dask distributed: pip install "dft_operators[cluster]"') from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as err:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler} ({err})") from None
        with client:
            yield client
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with LocalCluster(n_workers=max(workers, 1), threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def _is_dask(executor) -> bool:
    return type(executor).__module__.startswith("distributed")


def _wait_first(executor, futures):
    """The futures of ``futures`` that are done, waiting for at least one."""
    if _is_dask(executor):
        from dask.distributed import wait

        return wait(list(futures), return_when="FIRST_COMPLETED").done
    return cf.wait(futures, return_when=cf.FIRST_COMPLETED).done


def bounded_map(executor, fn: Callable, items: Iterable, window: int,
                retry: Callable[[Any], bool] | None = None) -> Iterator[tuple[Any, int]]:
    """Yields ``(fn(item), tries)`` in completion order, with at most ``window`` tasks in flight.

    Args:
      executor: a concurrent.futures executor or a Dask client (anything with ``submit``).
      retry: a result for which this is True is computed once more (``tries`` 2); the second result is
        yielded whatever it is.
    """
    items = iter(items)
    extra = {"pure": False} if _is_dask(executor) else {}  # Dask would otherwise reuse a retried task's result
    in_flight: dict = {}

    def submit(item, tries):
        in_flight[executor.submit(fn, item, **extra)] = (item, tries)

    for item in itertools.islice(items, window):
        submit(item, 1)
    while in_flight:
        for future in _wait_first(executor, set(in_flight)):
            item, tries = in_flight.pop(future)
            result = future.result()
            if retry is not None and tries == 1 and retry(result):
                submit(item, 2)
                continue
            yield result, tries
            for item in itertools.islice(items, 1):
                submit(item, 1)
