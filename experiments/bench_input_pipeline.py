"""The streaming input pipeline against dataset size and against the bare jitted step.

Two measurements on grid datasets in the shipped format (shards + manifest; synthetic fields of the real
shapes and atoms, written by ``io.dataset.ShardWriter``, since what is measured is the data path, not the
physics):
  memory: peak RSS of one training epoch of DeepSCF (default size: fingerprints drawn on the device, rho0 in)
    on N and on 10 N records, each in a fresh process; the target is at most 1.25x.
  overhead: records/s of the full loop (``training.loop.fit``: input pipeline reading shards, fingerprints
    on the device, sharding, logging, checkpoints) against the bare jitted train step on the same batches
    already in memory; the target is at most 15 % slower.
Run: python experiments/bench_input_pipeline.py [--records 100] [--box 40]
  -> experiments/results/bench_input_pipeline.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = {"train": {"epochs": 1, "batch_size": 4, "val_fraction": 0.0}}  # the default DeepSCF (shipped size)


def make_dataset(path: str, n_records: int, box: int, seed: int = 0) -> None:
    """``n_records`` grid records of the real layout: water-sized molecules, smooth positive fields."""
    from dft_operators.data.generate import GenerationSettings, _metadata
    from dft_operators.io import dataset

    settings = GenerationSettings(spacing=0.4, box_shape=box)
    writer = dataset.ShardWriter(path, _metadata(settings), shard_size=128)
    rng = np.random.default_rng(seed)
    axis = 0.4 * (np.arange(box) - (box - 1) / 2)
    r2 = axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2
    for i in range(n_records):
        positions = rng.normal(scale=1.0, size=(3, 3))
        rho = (np.exp(-r2 / (2 + rng.random())) * 8 / (2 * np.pi) ** 1.5).astype(np.float32)
        writer.add({"id": f"{i:06d}", "arrays": {
            "numbers": np.array([8, 1, 1]), "positions": positions, "dipole": np.zeros(3),
            "grid/rho": rho, "grid/rho0": (0.9 * rho).astype(np.float32), "grid/v_ext": (-rho).astype(np.float32),
            "grid/origin": np.full(3, axis[0])},
            "attrs": {"name": f"m{i}", "smiles": "", "n_electrons": 8.0, "charge": 0, "spin": 0}})
    writer.flush()


def epoch_peak_rss(data: str, out: str) -> dict:
    """One epoch of DeepSCF in a fresh process: {"peak_rss_mb", "seconds"}."""
    code = ("import json, resource, sys, time; from dft_operators import api; t = time.perf_counter(); "
            f"api.train('deepscf', {data!r}, {out!r}, {CONFIG!r}, progress=False); "
            "print(json.dumps({'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
            "'seconds': time.perf_counter() - t}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def loop_against_bare_step(data: str, out: str, epochs: int = 3) -> dict:
    """Records/s of ``fit`` (epochs 2.. of ``epochs``, after compilation) vs the bare jitted step."""
    import jax

    from dft_operators import api, models
    from dft_operators.data.input_pipeline import Pipeline
    from dft_operators.io.dataset import Dataset
    from dft_operators.training import loop, sharding

    config = {**CONFIG, "train": {**CONFIG["train"], "epochs": epochs}}
    api.train("deepscf", data, out, config, progress=False)
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    n = len(Dataset(data))
    loop_rate = n * (epochs - 1) / sum(e["seconds"] for e in log[1:])

    setup = api.TrainSetup.resolve("deepscf", config)
    module = models.create_model("deepscf", setup.model_config)
    ds = Dataset(data)
    objective, source, _, _ = api.workflow("deepscf").prepare(ds, ds.ids, [], setup.task, module)
    mesh = sharding.data_mesh()
    pipeline = Pipeline(source, loop.global_batch_size(4, mesh), 0, prefetch=0, augment=objective.augment)
    with pipeline.epoch_batches(0) as batches:
        device_batches = [sharding.global_batch(b, mesh) for b in batches]  # all in memory, on the device
    optimizer = loop.make_optimizer(setup.train_config, 100)
    step, _ = loop.make_steps(objective, optimizer)
    params = objective.init(jax.random.PRNGKey(0), jax.device_get(device_batches[0]))
    state = loop.TrainState(jax.numpy.zeros((), "int32"), jax.numpy.zeros((), "int32"), params,
                            optimizer.init(params))
    state = jax.device_put(state, sharding.replicated(mesh))  # as the loop places it
    state, _ = step(state, device_batches[0])  # compile
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(epochs - 1):
        for batch in device_batches:
            state, sums = step(state, batch)
        jax.block_until_ready(sums)
    bare_rate = n * (epochs - 1) / (time.perf_counter() - start)
    return {"loop_records_per_s": loop_rate, "bare_step_records_per_s": bare_rate,
            "loop_slowdown_percent": 100 * (bare_rate / loop_rate - 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100, help="N: the small dataset (the large one: 10 N)")
    parser.add_argument("--box", type=int, default=40, help="points per box axis")
    parser.add_argument("--parts", default="memory,overhead", help="which measurements (comma list)")
    args = parser.parse_args()
    work = tempfile.mkdtemp()
    path = os.path.join(HERE, "results", "bench_input_pipeline.json")
    result = json.load(open(path)) if os.path.exists(path) else {}
    result.update({"date": time.strftime("%Y-%m-%d"), "box": args.box, "cpu_count": os.cpu_count()})
    data = os.path.join(work, f"data{args.records}")
    make_dataset(data, args.records, args.box)
    if "memory" in args.parts:
        for n in (args.records, 10 * args.records):
            if n != args.records:
                make_dataset(os.path.join(work, f"data{n}"), n, args.box)
            result[f"epoch_{n}"] = epoch_peak_rss(os.path.join(work, f"data{n}"), os.path.join(work, f"model{n}"))
            print(n, result[f"epoch_{n}"], flush=True)
        small, large = (result[f"epoch_{n}"]["peak_rss_mb"] for n in (args.records, 10 * args.records))
        result["peak_rss_ratio_10x"] = large / small
    if "overhead" in args.parts:
        result.update(loop_against_bare_step(data, os.path.join(work, "overhead")))
    print(json.dumps(result, indent=1))
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
