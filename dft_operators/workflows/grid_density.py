"""Density on a uniform box from input fields on the same box: the workflow of V2Rho-FNO.

Data: the ``grid`` kind of a dataset (``grid/v_ext``, ``grid/rho0``, ``grid/rho``).  Inputs are
standardised per channel with training-set statistics stored in the model card; the network output is
made non-negative by the model and scaled to the electron count here, so every prediction integrates
to N exactly.  Loss: the NMAE (as a fraction), the metric the field reports.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators.grids import UniformGrid
from dft_operators.io.dataset import Dataset, DatasetError
from dft_operators.models import fno
from dft_operators.training import metrics
from dft_operators.training.loop import Objective

INPUT_FIELDS = ("v_ext", "rho0")


@dataclasses.dataclass(frozen=True)
class GridTask:
    """What the model reads and how its output becomes a density."""

    inputs: tuple[str, ...] = ("v_ext",)  # box fields fed to the network, from INPUT_FIELDS

    def __post_init__(self):
        bad = set(self.inputs) - set(INPUT_FIELDS)
        if bad or not self.inputs:
            raise ValueError(f"unknown input field(s) {sorted(bad)}; choose from {INPUT_FIELDS}")


@dataclasses.dataclass(frozen=True)
class Normaliser:
    """Per-channel standardisation of the inputs: x' = (x - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @staticmethod
    def fit(x: np.ndarray) -> "Normaliser":
        """Statistics of x [n, nx, ny, nz, c] over everything but the channel axis."""
        axes = tuple(range(x.ndim - 1))
        return Normaliser(tuple(x.mean(axes).tolist()), tuple(np.maximum(x.std(axes), 1e-12).tolist()))

    def __call__(self, x):
        return (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)


def load_arrays(ds: Dataset, ids: list[str], task: GridTask) -> dict[str, np.ndarray]:
    """{"x": raw inputs [n, nx, ny, nz, c], "rho": [n, nx, ny, nz], "n_electrons": [n]} as float32."""
    if "grid" not in ds.metadata.get("kinds", []):
        raise DatasetError(f"{ds.path} has no grid fields; generate it with --kind grid")
    x = np.stack([ds.stack(f"grid/{name}", ids) for name in task.inputs], axis=-1).astype(np.float32)
    return {"x": x, "rho": ds.stack("grid/rho", ids).astype(np.float32),
            "n_electrons": ds.attribute("n_electrons", ids).astype(np.float32)}


def predict_density(module, params, x, n_electrons, voxel_volume, out_shape: Sequence[int] | None = None):
    """The model's density, a pure function of (params, inputs) that can be jitted, vmapped, differentiated.

    Args:
      module: the network (``create_model``), params: its weights.
      x: standardised inputs [batch, nx, ny, nz, c].
      n_electrons: [batch]; voxel_volume: Bohr^3 of the OUTPUT grid, float or [batch].
      out_shape: evaluate on a finer grid of the same box (spectral resampling of the inputs).
    Returns:
      density [batch, mx, my, mz] in electrons/Bohr^3, integrating to n_electrons.
    """
    return fno.normalise(module.apply(params, x, out_shape=out_shape), n_electrons, voxel_volume)


def objective(module, voxel_volume: float) -> Objective:
    """NMAE loss and metrics for a grid-density model on boxes of one voxel volume (Bohr^3)."""

    def init(key, batch):
        return module.init(key, jnp.asarray(batch["x"][:1]))

    def per_sample(params, batch):
        raw = module.apply(params, batch["x"])  # [batch, nx, ny, nz], before scaling to N
        pred = fno.normalise(raw, batch["n_electrons"], voxel_volume)
        nmae = metrics.nmae_percent(pred, batch["rho"], voxel_volume)
        raw_count_error = metrics.electron_count_error(raw, batch["n_electrons"], voxel_volume)
        return {"loss": nmae / 100.0, "nmae_percent": nmae, "rmse": metrics.rmse(pred, batch["rho"]),
                "raw_count_error": jnp.abs(raw_count_error)}

    return Objective(init, per_sample)


def box_for(molecule_positions: np.ndarray, settings: dict, refine: int = 1) -> UniformGrid:
    """The dataset's box (spacing, shape from the generation settings) centred on a geometry."""
    grid = UniformGrid.centered(np.asarray(molecule_positions).mean(0), settings["spacing"], settings["box_shape"])
    return grid.refined(refine) if refine > 1 else grid


def jit_predict(module):
    """``predict(params, x, n_electrons, voxel_volume, out_shape)`` jitted, out_shape static."""
    return jax.jit(lambda p, x, n, dv, out_shape=None: predict_density(module, p, x, n, dv, out_shape),
                   static_argnames="out_shape")
