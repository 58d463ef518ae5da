"""Data parallelism: batches split over all devices of all processes with a 1-D mesh, parameters replicated.

The same code runs on one CPU, on forced host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``), on several GPUs and on several processes or
hosts: call :func:`initialize_distributed` first so that ``jax.devices()`` spans them; each process then
gives :func:`global_batch` its own slice of every global batch.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Joins a multi-process job through ``jax.distributed.initialize`` (gloo collectives on CPUs).

    With ``coordinator`` ("HOST:PORT" of process 0), ``num_processes`` and ``process_id`` given, joins that
    job; without them, joins when a cluster environment says so (``JAX_COORDINATOR_ADDRESS``, SLURM with
    several tasks), else does nothing. Must run before anything touches a device.
    """
    if coordinator is None and not (os.environ.get("JAX_COORDINATOR_ADDRESS")
                                    or os.environ.get("SLURM_NTASKS", "1") != "1"):
        return
    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def data_mesh() -> Mesh:
    """A 1-D mesh named ``data`` over every device."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``."""
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local: dict, mesh: Mesh) -> dict:
    """One global batch (a pytree of arrays with a leading row axis) from this process's rows (its slice of the
    batch, ``[rows / n_processes, ...]``), split over the mesh's devices; with one process, the whole batch."""
    sharding = batch_sharding(mesh)
    return jax.tree_util.tree_map(lambda v: jax.make_array_from_process_local_data(sharding, np.asarray(v)), local)
