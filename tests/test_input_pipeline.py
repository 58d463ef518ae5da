"""The input pipeline: seeded per-epoch order, per-process slices of global batches, exact resume, a
prefetch thread that reads ahead and ends with the consumer, and memory bounded by the batch size."""

import json
import threading
import time
import tracemalloc

import numpy as np
import pytest

from dft_operators.data.input_pipeline import ArraySource, Pipeline


def numbered_source(n: int) -> ArraySource:
    """Record i: "i" = i and a field "x" [2, 3] that must travel with it."""
    return ArraySource({"i": np.arange(n), "x": np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3)})


def epoch(pipeline: Pipeline, e: int) -> list[dict[str, np.ndarray]]:
    with pipeline.epoch_batches(e) as batches:
        return list(batches)


def real_ids(batches) -> np.ndarray:
    return np.concatenate([b["i"][b["weight"] > 0] for b in batches])


class GeneratedSource:
    """Records made when asked, as a file reader would (nothing held): record i is "x" = i, [4096] float64
    (32 KiB). Counts reads, and can sleep in each read to stand for slow storage."""

    def __init__(self, n: int, delay: float = 0.0):
        self.n, self.delay, self.reads = n, delay, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        time.sleep(self.delay)
        self.reads += 1
        return {"x": np.full(4096, float(i))}


def test_every_record_once_per_epoch_in_a_seeded_order():
    source = numbered_source(23)
    first = Pipeline(source, 5, seed=7, process_index=0, process_count=1)
    orders = [real_ids(epoch(first, e)) for e in range(3)]
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(23))
    assert len({tuple(o) for o in orders}) == 3  # a new permutation each epoch
    again = Pipeline(source, 5, seed=7, process_index=0, process_count=1)
    np.testing.assert_array_equal(real_ids(epoch(again, 1)), orders[1])  # same seed, same order
    other = Pipeline(source, 5, seed=8, process_index=0, process_count=1)
    assert not np.array_equal(real_ids(epoch(other, 1)), orders[1])  # other seed, other order
    plain = Pipeline(source, 5, seed=7, shuffle=False, process_index=0, process_count=1)
    np.testing.assert_array_equal(real_ids(epoch(plain, 2)), np.arange(23))
    batch = epoch(first, 0)[0]
    np.testing.assert_array_equal(batch["x"], source[batch["i"]]["x"])  # fields stay with their record


@pytest.mark.parametrize("n_records", [17, 14])  # last global batch 5 rows (3 + 2), or 2 rows (2 + 0)
def test_processes_together_give_the_single_process_global_batches(n_records):
    source = numbered_source(n_records)
    single = epoch(Pipeline(source, 6, seed=1, process_index=0, process_count=1), 0)
    parts = [epoch(Pipeline(source, 6, seed=1, process_index=p, process_count=2), 0) for p in range(2)]
    assert len(single) == len(parts[0]) == len(parts[1]) == 3  # every process takes every step
    for step, whole in enumerate(single):
        assert all(part[step]["i"].shape == (3,) for part in parts)  # fixed shapes: one compilation
        for key in whole:
            np.testing.assert_array_equal(np.concatenate([part[step][key] for part in parts]), whole[key])
    assert single[-1]["weight"].sum() == n_records - 12
    if n_records == 14:
        assert parts[1][-1]["weight"].sum() == 0  # no real row, still a batch: collectives stay in step


def test_resume_from_a_saved_state_yields_exactly_the_rest():
    source = numbered_source(29)
    uninterrupted = epoch(Pipeline(source, 4, seed=3, process_index=0, process_count=1), 2)
    pipeline = Pipeline(source, 4, seed=3, process_index=0, process_count=1)
    with pipeline.epoch_batches(2) as batches:
        head = [next(batches) for _ in range(3)]
        state = json.loads(json.dumps(batches.get_state()))  # as a checkpoint stores it
    assert state["epoch"] == 2 and state["next_index"] == 3
    with Pipeline(source, 4, seed=3, process_index=0, process_count=1).restore(state) as rest:
        resumed = head + list(rest)
    assert len(resumed) == len(uninterrupted)
    for got, want in zip(resumed, uninterrupted):
        np.testing.assert_array_equal(got["i"], want["i"])
    with pipeline.epoch_batches(0) as other_epoch:  # how Grain's checkpoint handler restores: set_state
        other_epoch.set_state(state)
        np.testing.assert_array_equal(np.concatenate([b["i"] for b in other_epoch]),
                                      np.concatenate([b["i"] for b in uninterrupted[3:]]))
    with Pipeline(source, 4, seed=3, process_index=1, process_count=2).restore(state) as rest:  # 2 processes
        np.testing.assert_array_equal(np.concatenate([b["i"] for b in rest]),
                                      np.concatenate([b["i"][2:] for b in uninterrupted[3:]]))
    with pytest.raises(ValueError, match="another pipeline"):
        Pipeline(source, 4, seed=4, process_index=0, process_count=1).restore(state)


def test_prefetch_reads_ahead_in_a_thread_that_ends_when_the_consumer_stops():
    source = GeneratedSource(200, delay=0.002)
    pipeline = Pipeline(source, 4, seed=0, process_index=0, process_count=1, prefetch=2)
    before = set(threading.enumerate())
    with pipeline.epoch_batches(0) as batches:
        next(batches)
        deadline = time.monotonic() + 10  # the caller "computes"; the thread reads the next batches meanwhile
        while source.reads < 4 * (1 + 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert source.reads == 4 * (1 + 2)  # one batch taken, two read ahead, no more
        workers = [t for t in set(threading.enumerate()) - before if t.name.startswith("grain-prefetch")]
        assert workers
    for worker in workers:  # the consumer stopped after 1 of 50 batches
        worker.join(timeout=5)
        assert not worker.is_alive()
    assert source.reads <= 4 * (1 + 2 + 1)  # at most the batch in flight was finished


def test_peak_memory_does_not_grow_with_the_dataset():
    batch_bytes = 8 * 4096 * 8  # a batch of 8 records of 32 KiB
    with Pipeline(GeneratedSource(16), 8, seed=0, process_index=0, process_count=1).epoch_batches(0) as warm_up:
        list(warm_up)  # one-time allocations (Grain's and JAX's caches) before anything is measured
    peaks = []
    for n in (64, 640):
        pipeline = Pipeline(GeneratedSource(n), 8, seed=0, process_index=0, process_count=1, prefetch=2)
        tracemalloc.start()
        with pipeline.epoch_batches(0) as batches:
            total = sum(float(b["x"][:, 0].sum()) for b in batches)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert total == n * (n - 1) / 2  # every record was read
    # Held at once: the batch being stacked (its records and the stack), two read ahead, the one in use.
    # For both sizes a few batches (how many depends on the threads' timing), never the data: the larger
    # dataset alone is 20 MiB, 80 batches.
    assert max(peaks) < 6 * batch_bytes


def test_invalid_setups_are_refused():
    with pytest.raises(ValueError, match="shared leading length"):
        ArraySource({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="multiple of the process count"):
        Pipeline(numbered_source(10), 5, seed=0, process_index=0, process_count=2)
    with pytest.raises(ValueError, match="weight"):
        epoch(Pipeline(ArraySource({"weight": np.ones(3)}), 2, seed=0, process_index=0, process_count=1), 0)


def test_records_may_be_pytrees_stacked_leaf_by_leaf():
    import flax

    @flax.struct.dataclass
    class Graph:
        nodes: np.ndarray
        senders: np.ndarray

    class Graphs:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"graph": Graph(np.full(3, float(i)), np.arange(2) + i), "y": np.float32(i)}

    with Pipeline(Graphs(), 4, seed=0, shuffle=False).epoch_batches(0) as batches:
        first, last = list(batches)
    assert isinstance(first["graph"], Graph) and first["graph"].nodes.shape == (4, 3)
    np.testing.assert_array_equal(first["y"], [0, 1, 2, 3])
    np.testing.assert_array_equal(last["graph"].senders, [[4, 5]] * 4)  # padded with the last record
    np.testing.assert_array_equal(last["weight"], [1, 0, 0, 0])
