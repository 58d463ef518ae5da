"""Data parallelism: batches split over all local devices with a 1-D mesh, parameters replicated.

The same code runs on one CPU, on forced host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``) and on several GPUs; on several hosts call
:func:`initialize_distributed` first so that ``jax.devices()`` spans them.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def initialize_distributed() -> None:
    """Joins a multi-host job when the usual coordinator variables are set (no-op otherwise)."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("SLURM_NTASKS", "1") != "1":
        jax.distributed.initialize()


def data_mesh() -> Mesh:
    """A 1-D mesh named ``data`` over every device."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``."""
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def pad_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Pads the leading axis to ``size`` rows by repeating the last; padded rows get ``weight`` 0.

    The returned batch always has a ``weight`` entry [size] (1 for real rows).
    """
    n = len(next(iter(batch.values())))
    weight = batch.get("weight", np.ones(n, np.float32))
    extra = size - n
    out = {k: np.concatenate([v, np.repeat(v[-1:], extra, axis=0)]) if extra else v
           for k, v in batch.items() if k != "weight"}
    out["weight"] = np.concatenate([weight, np.zeros(extra, np.float32)]).astype(np.float32)
    return out


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh, size: int) -> dict[str, jax.Array]:
    """Pads a host batch to ``size`` rows (a multiple of the device count) and splits it over the mesh."""
    batch = pad_batch(batch, size)
    return jax.device_put(batch, batch_sharding(mesh))
