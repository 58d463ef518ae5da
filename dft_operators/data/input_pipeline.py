"""The input pipeline: a random-access source streamed as shuffled, per-process batches, on Grain.

Roles (Grain's split): a *source* is any object with ``__len__`` and ``__getitem__(i) -> dict[str,
np.ndarray]`` (one record, no batch axis; :class:`ArraySource` wraps in-memory arrays); a
:class:`Pipeline` owns the order (seeded shuffle, epochs, the split of every global batch over
processes); a :class:`BatchIterator` yields one process's batches of one epoch, read ahead in a
background thread, and its state (a small JSON dict) is saved with the checkpoint.

Order. Epoch ``e`` visits the records in the order ``order_e = grain.MapDataset.range(n).shuffle(s_e)``
with ``s_e`` derived from ``(seed, e)``: Grain's lazy index shuffle (a bijection evaluated per index, no
permutation array held), a new permutation per epoch, the same in every process. Global batch ``b``
holds epoch positions ``[b * G, (b + 1) * G)``; process ``p`` of ``P`` reads the contiguous slice
``[b * G + p * L, b * G + (p + 1) * L)`` with ``L = G // P``. Stacking the P slices of one step in
process order gives the single-process global batch, whatever P is.

Padding. Every batch has exactly ``L`` rows, so the jitted step compiles once and every process yields
``ceil(n / G)`` batches per epoch, keeping collectives in step. Positions past the end of the epoch (only
in the last global batch; a process may get no real row at all) repeat the epoch's last record and
carry ``weight`` 0; real rows carry ``weight`` 1. The batch holds ``"weight"`` [L] float32, by which the
loop averages losses and metrics; records must not carry a ``"weight"`` of their own.

Why not Grain's ``IndexSampler(shard_options=ShardByJaxProcess())`` + ``DataLoader``: that shards the
*dataset* (each process shuffles its own contiguous 1/P of the records and batches locally), so the
rows of a step depend on the process count, batches run across epoch boundaries, and uneven shards
give processes different batch counts. The split of each global batch is therefore written here; the
shuffle, the thread-pool prefetch (``MapDataset.to_iter_dataset(ReadOptions)``) and the iterator state
(``{"next_index"}``, the number of global batches consumed) are Grain's. Threads, not processes: the host
work is reading and stacking (fingerprints are computed on the device), which releases the GIL.

Memory: the iterator holds the batch being read, at most ``prefetch`` read-ahead batches and the one
the caller holds, whatever the dataset's size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Protocol

import grain.python as grain
import jax
import numpy as np


class Source(Protocol):
    """A random-access record source: ``len(source)`` records, ``source[i]`` one record (no batch axis): a dict
    of arrays or of any pytrees of arrays (e.g. a graph dataclass), stacked leaf by leaf into batches."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, np.ndarray]: ...


class ArraySource:
    """In-memory arrays with a shared leading (record) axis as a :class:`Source`, for small data and tests.

    Args:
      arrays: name -> array [n_records, ...]; record ``i`` is ``{name: array[i]}``.
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        lengths = {k: len(v) for k, v in arrays.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise ValueError(f"arrays need one shared leading length, got {lengths}")
        self._arrays = arrays

    def __len__(self) -> int:
        return len(next(iter(self._arrays.values())))

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {k: v[index] for k, v in self._arrays.items()}


def epoch_seed(seed: int, epoch: int) -> int:
    """The 32-bit shuffle seed of an epoch, hashed from both numbers (so (seed, e+1) != (seed+1, e))."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class Pipeline:
    """Seeded, epoch-wise, per-process batches from a :class:`Source` (module docstring).

    Args:
      source: the records; must be thread-safe if ``read_threads > 1``.
      global_batch_size: G, rows of one step summed over processes; a multiple of the process count.
      seed: non-negative shuffle seed.
      shuffle: False visits records in source order every epoch (evaluation).
      process_index, process_count: this process and their number (default ``jax.process_index()``,
        ``jax.process_count()``); arguments let one process simulate another (tests).
      prefetch: batches read ahead in the background (0: read when asked, in the caller's thread).
      read_threads: threads reading batches concurrently.
      augment: ``augment(record, rng) -> record``, a random transform of each record as it is read (e.g.
        DeepSCF's crops), with ``rng`` seeded by (seed, epoch, position in the epoch): the same in every
        process and after a resume.
    Attributes:
      local_batch_size: L = G // P, the rows of every yielded batch.
      steps_per_epoch: ceil(n_records / G), the batches every process yields per epoch.
    """

    def __init__(self, source: Source, global_batch_size: int, seed: int, *, shuffle: bool = True,
                 process_index: int | None = None, process_count: int | None = None, prefetch: int = 2,
                 read_threads: int = 1, augment: Callable[[dict, np.random.Generator], dict] | None = None):
        self.source, self.augment = source, augment
        self.num_records = len(source)
        self.global_batch_size = int(global_batch_size)
        self.seed, self.shuffle = int(seed), bool(shuffle)
        self.process_index = jax.process_index() if process_index is None else int(process_index)
        self.process_count = jax.process_count() if process_count is None else int(process_count)
        if self.num_records < 1 or self.seed < 0:
            raise ValueError(f"need at least one record and a seed >= 0 (got {self.num_records}, {self.seed})")
        if self.global_batch_size < 1 or self.global_batch_size % self.process_count:
            raise ValueError(f"global batch {self.global_batch_size} is not a positive multiple of the "
                             f"process count {self.process_count}")
        if not 0 <= self.process_index < self.process_count:
            raise ValueError(f"process index {self.process_index} not in [0, {self.process_count})")
        self.local_batch_size = self.global_batch_size // self.process_count
        self.steps_per_epoch = math.ceil(self.num_records / self.global_batch_size)
        self._read_options = grain.ReadOptions(num_threads=read_threads if prefetch else 0,
                                               prefetch_buffer_size=prefetch)

    def identity(self) -> dict[str, Any]:
        """What fixes the order (not the process count): a saved state is valid only for the same values."""
        return {"seed": self.seed, "shuffle": self.shuffle, "num_records": self.num_records,
                "global_batch_size": self.global_batch_size}

    def epoch_batches(self, epoch: int) -> BatchIterator:
        """This process's batches of ``epoch``, from its start."""
        return BatchIterator(self, epoch)

    def restore(self, state: dict[str, Any]) -> BatchIterator:
        """The iterator a saved :meth:`BatchIterator.get_state` describes: the rest of that epoch."""
        iterator = BatchIterator(self, int(state["epoch"]))
        iterator.set_state(state)
        return iterator

    def _dataset(self, epoch: int) -> grain.IterDataset:
        """Element ``b``: this process's slice of global batch ``b`` of ``epoch``, read ahead in threads."""
        order = grain.MapDataset.range(self.num_records)
        if self.shuffle:
            order = order.shuffle(seed=epoch_seed(self.seed, epoch))
        steps = grain.MapDataset.range(self.steps_per_epoch).map(functools.partial(self._read, epoch, order))
        return steps.to_iter_dataset(self._read_options)

    def _read(self, epoch: int, order: grain.MapDataset, step: int) -> dict[str, np.ndarray]:
        """Reads and stacks one batch: {name: [L, ...]} and "weight" [L] (0 for padding rows)."""
        start = step * self.global_batch_size + self.process_index * self.local_batch_size
        positions = np.arange(start, start + self.local_batch_size)  # [L] positions in the epoch's order
        unique, rows = np.unique(np.minimum(positions, self.num_records - 1), return_inverse=True)
        records = [self.source[int(order[int(i)])] for i in unique]  # padding reads the last record once
        if self.augment is not None:
            records = [self.augment(r, np.random.default_rng([self.seed, epoch, int(i)])) for r, i in zip(records, unique)]
        if "weight" in records[0]:
            raise ValueError('records may not carry "weight": the pipeline sets it (1 real row, 0 padding)')
        batch = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *records)  # [n_unique, ...] leaves
        if len(unique) < len(positions):
            batch = jax.tree_util.tree_map(lambda v: v[rows], batch)  # [L, ...]
        batch["weight"] = (positions < self.num_records).astype(np.float32)  # [L]
        return batch


class BatchIterator(grain.DatasetIterator):
    """One process's batches of one epoch, each {name: [L, ...], "weight": [L]}, prefetched by Grain.

    A Grain ``DatasetIterator``: ``get_state``/``set_state`` round-trip a JSON dict, so Grain's Orbax
    handler (``grain.PyGrainCheckpointSave(iterator)``) can save it beside the train state. Use it as a
    context manager (or call ``close``) to stop the prefetch thread when leaving an epoch early.
    """

    def __init__(self, pipeline: Pipeline, epoch: int):
        self.pipeline, self.epoch = pipeline, int(epoch)
        super().__init__(iter(pipeline._dataset(self.epoch)))

    def __next__(self) -> dict[str, np.ndarray]:
        self._assert_not_closed()
        return next(self._parent)

    def get_state(self) -> dict[str, Any]:
        """{"epoch", "next_index": global batches of the epoch consumed, and the pipeline's identity}."""
        return {"epoch": self.epoch, **self._parent.get_state(), **self.pipeline.identity()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Moves to a saved position (any process count; the same seed, data and global batch)."""
        saved = {k: state[k] for k in self.pipeline.identity()}
        if saved != self.pipeline.identity():
            raise ValueError(f"state of another pipeline: {saved} vs {self.pipeline.identity()}")
        if int(state["epoch"]) != self.epoch:
            self._parent.close()
            self.epoch = int(state["epoch"])
            self._parents = (iter(self.pipeline._dataset(self.epoch)),)
        self._parent.set_state({"next_index": int(state["next_index"])})

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
