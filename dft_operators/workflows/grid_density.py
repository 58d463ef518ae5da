"""Density on a uniform box from input fields on the same box: the workflow of V2Rho-FNO and DeepSCF.

Data: the ``grid`` kind of a dataset (``grid/v_ext``, ``grid/rho0``, ``grid/rho``, ``grid/origin``), plus
the atomic fingerprints of ``data.fingerprints``, computed from each record's geometry and box when it is
read (so datasets need no regeneration for them).  Inputs are standardised per channel with training-set
statistics stored in the model card.  The network's output becomes a density here, so that every
prediction integrates to N exactly:

    direct   (V2Rho-FNO): rho = N * out / (sum(out) dV)                   (``out`` >= 0 by the model)
    residual (DeepSCF):   rho = N * r / (sum(r) dV),  r = max(rho0 + out, 0)   (``out`` is delta rho)

Loss: the NMAE (as a fraction), the metric the field reports.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators import reference
from dft_operators.data import fingerprints
from dft_operators.grids import UniformGrid
from dft_operators.io.dataset import Dataset, DatasetError
from dft_operators.models import fno
from dft_operators.training import metrics
from dft_operators.training.loop import Objective

INPUT_FIELDS = ("v_ext", "rho0", "fingerprints")
# Atoms of a molecule predicted on an enlarged box (translation-equivariant models) keep this far (Bohr)
# from its faces, about where a valence density has fallen below 1e-4 of its peak.
BOX_MARGIN = 5.0


@dataclasses.dataclass(frozen=True)
class GridTask:
    """What the model reads and how its output becomes a density (the V2Rho-FNO defaults)."""

    inputs: tuple[str, ...] = ("v_ext",)  # box fields fed to the network, from INPUT_FIELDS
    residual: bool = False  # the network predicts delta rho = rho - rho0 (else rho itself)
    center_inputs: bool = True  # subtract each channel's training mean (False: only scale, so fields that
    # vanish far from the molecule stay zero there, which zero-padded convolutions rely on)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        bad = set(self.inputs) - set(INPUT_FIELDS)
        if bad or not self.inputs:
            raise ValueError(f"unknown input field(s) {sorted(bad)}; choose from {INPUT_FIELDS}")

    @property
    def in_channels(self) -> int:
        """Input channels: one per field, ``fingerprints.n_channels()`` for the fingerprints."""
        return sum(fingerprints.n_channels() if name == "fingerprints" else 1 for name in self.inputs)


@dataclasses.dataclass(frozen=True)
class DeepSCFTask(GridTask):
    """DeepSCF's defaults: rho0 and the atomic fingerprints in, delta rho out, inputs scaled but not centred."""

    inputs: tuple[str, ...] = ("rho0", "fingerprints")  # the atomic guess and the fingerprint channels
    residual: bool = True  # predict delta rho = rho - rho0
    center_inputs: bool = False  # zero far from the molecule, as the CNN's zero padding assumes


@dataclasses.dataclass(frozen=True)
class Normaliser:
    """Per-channel standardisation of the inputs: x' = (x - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @staticmethod
    def fit(x: np.ndarray, center: bool = True) -> "Normaliser":
        """Statistics of x [n, nx, ny, nz, c] over everything but the channel axis.

        With ``center`` False the mean is 0 and ``std`` is the root mean square, so zero stays zero. A channel
        that is constant (zero, e.g. the fingerprints of an element absent from the training set) keeps scale 1.
        """
        axes = tuple(range(x.ndim - 1))
        if center:
            mean, std = x.mean(axes), x.std(axes)
        else:
            mean = np.zeros(x.shape[-1])
            std = np.sqrt(np.stack([np.mean(np.square(x[..., c], dtype=np.float64)) for c in range(x.shape[-1])]))
        return Normaliser(tuple(np.asarray(mean, float).tolist()), tuple(np.where(std > 1e-12, std, 1.0).tolist()))

    def __call__(self, x):
        return (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)


def stack_inputs(fields: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Channels-last inputs [..., nx, ny, nz, c] from fields [..., nx, ny, nz] (fingerprints [..., c_f])."""
    return np.concatenate([fields[n] if n == "fingerprints" else fields[n][..., None] for n in names], axis=-1)


def _record_fingerprints(ds: Dataset, rid: str) -> np.ndarray:
    """Fingerprints of one record on its box, float32 [nx, ny, nz, c_f]."""
    settings = ds.metadata["settings"]
    grid = UniformGrid(tuple(ds.stack("grid/origin", [rid])[0]), settings["spacing"], (settings["box_shape"],) * 3)
    numbers, positions = ds.stack("numbers", [rid])[0], ds.stack("positions", [rid])[0]
    return fingerprints.atomic_fingerprints(numbers, positions, grid).astype(np.float32)


def load_arrays(ds: Dataset, ids: list[str], task: GridTask) -> dict[str, np.ndarray]:
    """{"x": raw inputs [n, nx, ny, nz, c], "rho": [n, nx, ny, nz], "n_electrons": [n]} as float32, and
    "rho0" [n, nx, ny, nz] for a residual task."""
    if "grid" not in ds.metadata.get("kinds", []):
        raise DatasetError(f"{ds.path} has no grid fields; generate it with --kind grid")
    fields = {name: ds.stack(f"grid/{name}", ids).astype(np.float32)
              for name in set(task.inputs) | ({"rho0"} if task.residual else set()) if name != "fingerprints"}
    if "fingerprints" in task.inputs:
        fields["fingerprints"] = np.stack([_record_fingerprints(ds, rid) for rid in ids])
    out = {"x": stack_inputs(fields, task.inputs), "rho": ds.stack("grid/rho", ids).astype(np.float32),
           "n_electrons": ds.attribute("n_electrons", ids).astype(np.float32)}
    if task.residual:
        out["rho0"] = fields["rho0"]
    return out


def output_density(out, n_electrons, voxel_volume, rho0=None):
    """The density from the network's output (module docstring), [batch, nx, ny, nz] electrons/Bohr^3.

    Args:
      out: network output [batch, nx, ny, nz]: the density up to scale, or delta rho when ``rho0`` is given.
      n_electrons: [batch]; voxel_volume: Bohr^3, a float or [batch].
      rho0: the atomic-guess density [batch, nx, ny, nz] for a residual model, else None.
    """
    if rho0 is not None:
        out = jnp.maximum(rho0 + out, 0.0)
    return fno.normalise(out, n_electrons, voxel_volume)


def predict_density(module, params, x, n_electrons, voxel_volume, out_shape: Sequence[int] | None = None,
                    rho0=None):
    """The model's density, a pure function of (params, inputs) that can be jitted, vmapped, differentiated.

    Args:
      module: the network (``create_model``), params: its weights.
      x: standardised inputs [batch, nx, ny, nz, c].
      n_electrons: [batch]; voxel_volume: Bohr^3 of the OUTPUT grid, float or [batch].
      out_shape: evaluate on a finer grid of the same box (spectral resampling of the inputs; FNO only).
      rho0: the atomic guess [batch, nx, ny, nz] in electrons/Bohr^3 for a residual model.
    Returns:
      density [batch, mx, my, mz] in electrons/Bohr^3, integrating to n_electrons.
    """
    out = module.apply(params, x) if out_shape is None else module.apply(params, x, out_shape=out_shape)
    return output_density(out, n_electrons, voxel_volume, rho0)


def objective(module, voxel_volume: float, residual: bool = False) -> Objective:
    """NMAE loss and metrics for a grid-density model on boxes of one voxel volume (Bohr^3).

    Residual models also report ``rho0_nmae_percent``, the NMAE of the atomic guess they start from.
    """

    def init(key, batch):
        return module.init(key, jnp.asarray(batch["x"][:1]))

    def per_sample(params, batch):
        out = module.apply(params, batch["x"])  # [batch, nx, ny, nz], before it becomes a density
        rho0 = batch["rho0"] if residual else None
        pred = output_density(out, batch["n_electrons"], voxel_volume, rho0)
        nmae = metrics.nmae_percent(pred, batch["rho"], voxel_volume)
        raw = out if rho0 is None else rho0 + out
        raw_count_error = metrics.electron_count_error(raw, batch["n_electrons"], voxel_volume)
        result = {"loss": nmae / 100.0, "nmae_percent": nmae, "rmse": metrics.rmse(pred, batch["rho"]),
                  "raw_count_error": jnp.abs(raw_count_error)}
        if residual:
            result["rho0_nmae_percent"] = metrics.nmae_percent(rho0, batch["rho"], voxel_volume)
        return result

    return Objective(init, per_sample)


def prepare(ds: Dataset, train_ids: list[str], val_ids: list[str], task: GridTask, module):
    """(objective, train arrays, validation arrays or None, card entries) for the training loop."""
    train = load_arrays(ds, train_ids, task)
    normaliser = Normaliser.fit(train["x"], center=task.center_inputs)
    train["x"] = normaliser(train["x"])
    val = None
    if val_ids:
        val = load_arrays(ds, val_ids, task)
        val["x"] = normaliser(val["x"])
    settings = ds.metadata["settings"]
    card = {"grid": {"spacing": settings["spacing"], "box_shape": settings["box_shape"]},
            "normalisation": dataclasses.asdict(normaliser)}
    if "fingerprints" in task.inputs:
        card["fingerprints"] = fingerprints.channel_names()
    return objective(module, settings["spacing"] ** 3, task.residual), train, val, card


def evaluation_data(card: dict, ds: Dataset, ids: list[str], module):
    """(objective, arrays) to evaluate a trained model on dataset records."""
    if ds.metadata["settings"]["spacing"] != card["grid"]["spacing"]:
        raise ValueError(f"{ds.path} has spacing {ds.metadata['settings']['spacing']} Bohr, the model was trained "
                         f"on {card['grid']['spacing']}: generate with the model's grid")
    task = GridTask(**card["task"])
    arrays = load_arrays(ds, ids, task)
    arrays["x"] = Normaliser(**card["normalisation"])(arrays["x"])
    return objective(module, card["grid"]["spacing"] ** 3, task.residual), arrays


def box_for(positions: np.ndarray, card: dict, refine: int = 1, box_shape: int | None = None) -> UniformGrid:
    """The model's box (its training spacing; its training shape unless ``box_shape`` points per axis are
    given) centred on a geometry [n_atoms, 3] (Bohr), ``refine`` times finer."""
    shape = card["grid"]["box_shape"] if box_shape is None else box_shape
    grid = UniformGrid.centered(np.asarray(positions).mean(0), card["grid"]["spacing"], shape)
    return grid.refined(refine) if refine > 1 else grid


def fitting_box_shape(positions: np.ndarray, card: dict) -> int:
    """Points per axis of the smallest cubic box, not smaller than the training box, centred on the centroid,
    whose faces are at least ``BOX_MARGIN`` Bohr from every atom (positions [n_atoms, 3] in Bohr)."""
    positions = np.asarray(positions)
    half_extent = np.abs(positions - positions.mean(0)).max() + BOX_MARGIN
    needed = int(np.ceil(2 * half_extent / card["grid"]["spacing"])) + 1
    return max(card["grid"]["box_shape"], needed + needed % 2)


def box_fields(names, molecule, level: reference.Level, grid: UniformGrid) -> dict[str, np.ndarray]:
    """Raw fields of a molecule on a box: "v_ext" [nx, ny, nz] Hartree (screened ionic potential), "rho0"
    [nx, ny, nz] electrons/Bohr^3 (atomic guess), "fingerprints" [nx, ny, nz, c_f] 1/Bohr^3."""
    makers = {
        "v_ext": lambda: reference.screened_ionic_potential(molecule, level, grid),
        "rho0": lambda: reference.density_on_box(reference.atomic_guess(molecule, level), grid),
        "fingerprints": lambda: fingerprints.atomic_fingerprints(molecule.numbers, molecule.positions, grid),
    }
    return {name: makers[name]().astype(np.float32) for name in names}


def input_fields(card: dict, molecule, level: reference.Level, grid: UniformGrid) -> np.ndarray:
    """The standardised input fields of a molecule on a box, [1, nx, ny, nz, c]."""
    names = card["task"]["inputs"]
    return Normaliser(**card["normalisation"])(stack_inputs(box_fields(names, molecule, level, grid), names)[None])


def predict(card: dict, module, params, molecule, level: reference.Level, refine: int = 1,
            box_shape: int | None = None) -> dict:
    """Density of a molecule on the model's box: {"grid", "density" [nx, ny, nz]}.

    The inputs are evaluated directly on the prediction's grid; the weights are the same.

    Args:
      refine: predict on a grid this many times finer (resolution-invariant models: the FNO).
      box_shape: points per axis of the box. The FNO's Fourier modes are tied to its training box, so it
        only takes that one. A CNN (DeepSCF) is translation-equivariant: by default it gets the training box,
        or the smallest larger one that holds the molecule (``fitting_box_shape``).
    Raises:
      ValueError: an option the model cannot honour.
    """
    task = GridTask(**card["task"])
    is_fno = isinstance(module, fno.FNO)
    if refine > 1 and not is_fno:
        raise ValueError(f"a {card['kind']} model predicts on its training spacing only (refine must be 1)")
    if box_shape is not None and is_fno and box_shape != card["grid"]["box_shape"]:
        raise ValueError(f"the FNO predicts on its training box of {card['grid']['box_shape']} points per axis only")
    if box_shape is None and not is_fno:
        box_shape = fitting_box_shape(molecule.positions, card)
    grid = box_for(molecule.positions, card, refine, box_shape)
    fields = box_fields(set(task.inputs) | ({"rho0"} if task.residual else set()), molecule, level, grid)
    x = Normaliser(**card["normalisation"])(stack_inputs(fields, task.inputs)[None])
    n_electrons = np.array([reference.level_electrons(molecule, level)], np.float32)
    rho0 = fields["rho0"][None] if task.residual else None
    density = _jitted_predict(module)(params, x, n_electrons, grid.voxel_volume, rho0)
    return {"grid": grid, "density": np.asarray(density)[0]}


_JIT_CACHE: dict = {}


def _jitted_predict(module):
    """``predict_density`` jitted once per module (modules are hashable dataclasses)."""
    if module not in _JIT_CACHE:
        _JIT_CACHE[module] = jax.jit(lambda p, x, n, dv, rho0: predict_density(module, p, x, n, dv, rho0=rho0))
    return _JIT_CACHE[module]
