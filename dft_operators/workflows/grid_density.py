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

from dft_operators import reference
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
        object.__setattr__(self, "inputs", tuple(self.inputs))
        bad = set(self.inputs) - set(INPUT_FIELDS)
        if bad or not self.inputs:
            raise ValueError(f"unknown input field(s) {sorted(bad)}; choose from {INPUT_FIELDS}")

    @property
    def in_channels(self) -> int:
        return len(self.inputs)


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


def prepare(ds: Dataset, train_ids: list[str], val_ids: list[str], task: GridTask, module):
    """(objective, train arrays, validation arrays or None, card entries) for the training loop."""
    train = load_arrays(ds, train_ids, task)
    normaliser = Normaliser.fit(train["x"])
    train["x"] = normaliser(train["x"])
    val = None
    if val_ids:
        val = load_arrays(ds, val_ids, task)
        val["x"] = normaliser(val["x"])
    settings = ds.metadata["settings"]
    card = {"grid": {"spacing": settings["spacing"], "box_shape": settings["box_shape"]},
            "normalisation": dataclasses.asdict(normaliser)}
    return objective(module, settings["spacing"] ** 3), train, val, card


def evaluation_data(card: dict, ds: Dataset, ids: list[str], module):
    """(objective, arrays) to evaluate a trained model on dataset records."""
    if ds.metadata["settings"]["spacing"] != card["grid"]["spacing"]:
        raise ValueError(f"{ds.path} has spacing {ds.metadata['settings']['spacing']} Bohr, the model was trained "
                         f"on {card['grid']['spacing']}: generate with the model's grid")
    arrays = load_arrays(ds, ids, GridTask(**card["task"]))
    arrays["x"] = Normaliser(**card["normalisation"])(arrays["x"])
    return objective(module, card["grid"]["spacing"] ** 3), arrays


def box_for(positions: np.ndarray, card: dict, refine: int = 1) -> UniformGrid:
    """The model's box (spacing and shape of its training data) centred on a geometry [n_atoms, 3] (Bohr)."""
    grid = UniformGrid.centered(np.asarray(positions).mean(0), card["grid"]["spacing"], card["grid"]["box_shape"])
    return grid.refined(refine) if refine > 1 else grid


def input_fields(card: dict, molecule, level: reference.Level, grid: UniformGrid) -> np.ndarray:
    """The standardised input fields of a molecule on a box, [1, nx, ny, nz, c]."""
    fields = []
    for name in card["task"]["inputs"]:
        if name == "v_ext":
            fields.append(reference.screened_ionic_potential(molecule, level, grid))
        else:
            fields.append(reference.density_on_box(reference.atomic_guess(molecule, level), grid))
    return Normaliser(**card["normalisation"])(np.stack(fields, axis=-1)[None].astype(np.float32))


def predict(card: dict, module, params, molecule, level: reference.Level, refine: int = 1) -> dict:
    """Density of a molecule on the model's box (``refine`` times finer): {"grid", "density" [nx, ny, nz]}.

    The inputs are evaluated directly on the (possibly finer) grid; the weights are the same.
    """
    grid = box_for(molecule.positions, card, refine)
    x = input_fields(card, molecule, level, grid)
    n_electrons = np.array([reference.level_electrons(molecule, level)], np.float32)
    density = _jitted_predict(module)(params, x, n_electrons, grid.voxel_volume)
    return {"grid": grid, "density": np.asarray(density)[0]}


_JIT_CACHE: dict = {}


def _jitted_predict(module):
    """``predict_density`` jitted once per module (modules are hashable dataclasses)."""
    if module not in _JIT_CACHE:
        _JIT_CACHE[module] = jax.jit(lambda p, x, n, dv: predict_density(module, p, x, n, dv))
    return _JIT_CACHE[module]
