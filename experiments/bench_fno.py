"""Forward-pass time of our V2Rho-FNO (JAX) against neuraloperator's FNO (PyTorch), in one run.

Both run on the same host with the same width, kept spectrum, layers, grid and batch; each is timed after
warm-up (jit compilation for ours) as the median of ``repeats`` calls that wait for the result
(``block_until_ready`` / synchronous PyTorch on CPU), the models taking turns call by call so that a
change of the machine's load hits all of them alike. Prints a table with the ratio peer / ours and writes
JSON (versions, hardware, the resolved config) to experiments/results/bench_fno.json.

The peer is not a dependency of the package; build its environment first:
    bash experiments/bench_fno_setup.sh            # /tmp/bench-venv: CPU torch, neuraloperator, this project
    /tmp/bench-venv/bin/python experiments/bench_fno.py [--grid 32 --batch 4 ...]
    /tmp/bench-venv/bin/python experiments/bench_fno.py --tiny   # seconds, a smoke run
Without neuraloperator the script times ours alone and says why the peer is missing.

Matching the peer (neuraloperator 2.x ``neuralop.models.FNO``):
  * kept spectrum: neuraloperator's ``n_modes`` counts all kept modes along an axis (both signs; the last
    axis is halved to n // 2 + 1 by its rfft), ours counts modes per sign. ``n_modes = (2m, 2m, 2m)``
    keeps kx, ky in -m..m-1 and kz in 0..m: our 2m x 2m x m block plus one kz plane (+1/m of the weights
    and contraction). That row is the matched comparison and gives the headline ratio. The row with
    ``n_modes = (m, m, m)`` (the literal reading) keeps m x m x (m/2 + 1) modes, about 6x fewer, and is
    shown for reference.
  * ``use_channel_mlp=False``: neuraloperator's default adds a channel MLP to every Fourier layer,
    which our (the original FNO's) layer does not have.
  * lifting: ``lifting_channel_ratio=0`` makes the peer's lifting one linear layer, as ours; projection
    hidden width ``projection_channel_ratio * width`` = our ``lifting_width``; exact GELU in both.
  * positional embedding: both append 3 coordinate channels (peer: [0, 1], ours: [-1, 1)); same cost.
  * our output goes through softplus and the peer's does not (one pointwise op on one channel).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators.models.fno import FNOConfig, create_fno

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "bench_fno.json"


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What to time."""

    grid: int = 32  # points per axis of the cubic grid
    batch: int = 4  # fields per forward call
    width: int = 32  # channels of the Fourier layers
    modes: int = 8  # our modes per sign (the peer's n_modes is 2 * modes, see the module docstring)
    n_layers: int = 4  # Fourier layers
    lifting_width: int = 64  # hidden width of the projection MLP
    repeats: int = 20  # timed calls; the median is reported
    warmup: int = 3  # untimed calls first (compilation, allocator warm-up)
    threads: int = 0  # CPU threads for both libraries (torch.set_num_threads and XLA's flags); 0: their defaults

    @staticmethod
    def tiny() -> "BenchConfig":
        """A smoke run of a few seconds."""
        return BenchConfig(grid=12, batch=1, width=8, modes=3, n_layers=2, lifting_width=16, repeats=3, warmup=1)


def interleaved_medians(calls: dict, repeats: int, warmup: int) -> dict:
    """Median wall time in seconds of each ``calls[name]()`` (each must wait for its result).

    The calls take turns (A, B, C, A, B, C, ...), so a change in the machine's load during the run
    falls on all of them alike.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def ours(config: BenchConfig, fields: np.ndarray):
    """Our FNO under jit: (a call that waits for the output, a description); ``fields`` [batch, n, n, n, 1]."""
    model = create_fno(FNOConfig(width=config.width, modes=config.modes, n_layers=config.n_layers,
                                 lifting_width=config.lifting_width))
    x = jnp.asarray(fields)
    params = jax.jit(model.init)(jax.random.key(0), x)
    apply = jax.jit(model.apply)
    start = time.perf_counter()
    out = apply(params, x).block_until_ready()  # [batch, n, n, n]
    info = {"name": f"ours (jax {jax.__version__}, jit)", "first_call_seconds": time.perf_counter() - start,
            "parameters": sum(int(p.size) for p in jax.tree.leaves(params)), "output_shape": list(out.shape)}
    return (lambda: apply(params, x).block_until_ready()), info


def peer(config: BenchConfig, fields: np.ndarray, n_modes: int):
    """neuraloperator's FNO with ``n_modes`` per axis (its convention): (call, description)."""
    import neuralop
    import torch
    from neuralop.models import FNO

    torch.manual_seed(0)
    if config.threads:
        torch.set_num_threads(config.threads)
    model = FNO(n_modes=(n_modes,) * 3, in_channels=1, out_channels=1, hidden_channels=config.width,
                n_layers=config.n_layers, lifting_channel_ratio=0,
                projection_channel_ratio=config.lifting_width / config.width, use_channel_mlp=False,
                positional_embedding="grid").eval()
    x = torch.from_numpy(np.moveaxis(fields, -1, 1).copy())  # [batch, 1, n, n, n]

    def call():
        with torch.inference_mode():
            return model(x)  # [batch, 1, n, n, n]; synchronous on a CPU

    info = {"name": f"neuraloperator {neuralop.__version__} (torch {torch.__version__}), n_modes={n_modes}",
            "parameters": int(sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())),
            "output_shape": list(call().shape), "torch_threads": torch.get_num_threads()}
    return call, info


def run(config: BenchConfig) -> dict:
    """Times ours and, when neuraloperator imports, the peer at matched and at literal n_modes."""
    fields = np.random.default_rng(0).standard_normal((config.batch,) + (config.grid,) * 3 + (1,)).astype(np.float32)
    result = {"config": dataclasses.asdict(config), "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
              "processor": platform.processor(), "jax_devices": [str(d) for d in jax.devices()]},
              "date": time.strftime("%Y-%m-%d"), "load_average_before": os.getloadavg(), "peers": []}
    calls, infos = {}, {}
    calls["ours"], infos["ours"] = ours(config, fields)
    try:
        import neuralop  # noqa: F401
    except ImportError as error:
        result["peer_missing"] = f"neuraloperator is not importable ({error}); run experiments/bench_fno_setup.sh"
    else:
        for n_modes, role in [(2 * config.modes, "matched"), (config.modes, "literal")]:
            calls[role], infos[role] = peer(config, fields, n_modes)
            infos[role]["role"] = role
    seconds = interleaved_medians(calls, config.repeats, config.warmup)
    for name, info in infos.items():
        info["seconds"] = seconds[name]
    result["ours"] = infos.pop("ours")
    for info in infos.values():
        info["ratio_peer_over_ours"] = info["seconds"] / result["ours"]["seconds"]
        result["peers"].append(info)
    result["load_average_after"] = os.getloadavg()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny preset (a smoke run)")
    for field in dataclasses.fields(BenchConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=int, default=None)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    config = BenchConfig.tiny() if args.tiny else BenchConfig()
    config = dataclasses.replace(config, **{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchConfig)
                                            if getattr(args, f.name) is not None})
    if config.threads:  # read when JAX starts its CPU backend, which no import above has done yet
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                   f"intra_op_parallelism_threads={config.threads}")
    result = run(config)

    c = config
    print(f"FNO forward, batch {c.batch}, grid {c.grid}^3, width {c.width}, modes {c.modes}/sign, "
          f"{c.n_layers} layers; median of {c.repeats} on {jax.devices()[0].platform} ({result['host']['cpus']} CPUs, "
          f"threads: {c.threads or 'default'}, load average {result['load_average_before'][0]:.1f} before, "
          f"{result['load_average_after'][0]:.1f} after)")
    print(f"{'model':<66} {'ms':>9} {'params':>10} {'peer/ours':>9}")
    ours = result["ours"]
    print(f"{ours['name']:<66} {1e3 * ours['seconds']:9.2f} {ours['parameters']:10d} {'':>9}")
    for peer in result["peers"]:
        print(f"{peer['name'] + ' [' + peer['role'] + ']':<66} {1e3 * peer['seconds']:9.2f} "
              f"{peer['parameters']:10d} {peer['ratio_peer_over_ours']:9.2f}")
    if "peer_missing" in result:
        print(f"PEER NOT RUN: {result['peer_missing']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
