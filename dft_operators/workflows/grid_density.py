"""Density on a uniform box from input fields on the same box: the workflow of V2Rho-FNO and DeepSCF.

Data: the ``grid`` kind of a dataset (``grid/v_ext``, ``grid/rho0``, ``grid/rho``, ``grid/origin``), read
record by record (:class:`GridSource`, streamed by the training loop's input pipeline), plus the atomic
fingerprints of ``data.fingerprints``, computed on the device from each record's atoms and box inside the
jitted step (never stored, never uploaded).  Inputs are standardised per channel with statistics of a
sample of training records, stored in the model card; the same jitted :func:`assemble_inputs` builds the
network's input in training, evaluation and prediction.  The network's output becomes a density here, so that every
prediction integrates to N exactly:

    direct   (V2Rho-FNO): rho = N * out / (sum(out) dV)                   (``out`` >= 0 by the model)
    residual (DeepSCF, the FNO's "delta" head):
                          rho = N * r / (sum(r) dV),  r = max(rho0 + out, 0)   (``out`` is delta rho)

Loss: the NMAE (as a fraction), the metric the field reports.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators import reference
from dft_operators.data import fingerprints
from dft_operators.grids import DENSITY_MARGIN, UniformGrid, bucket_size
from dft_operators.io.dataset import Dataset
from dft_operators.models import fno
from dft_operators.training.metrics import electron_count_error, nmae_percent, rmse
from dft_operators.training.loop import Objective
from dft_operators.workflows import evaluate_records
from dft_operators.workflows.grid_inputs import (GridSource, GridTask, InputSpec, Normaliser,
                                                 assemble_inputs, atoms_row, box_field_names, fit_normaliser,
                                                 jitted_inputs, random_crop)

# Bohr every atom kept from the box faces in datasets (and cards) made before their settings recorded it
UNRECORDED_MARGIN = 2.0


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


def objective(module, spec: InputSpec) -> Objective:
    """NMAE loss and metrics for a grid-density model on rows of :class:`GridSource`.

    Whole boxes (of ``spec.shape``) become densities holding N electrons; random crops (rows with an
    "offset", when ``spec.task.crop`` is set: training only) cannot be normalised, so there the density is
    max(rho0 + delta rho, 0) and the NMAE is that of the cube. Residual models also report
    ``rho0_nmae_percent``, the NMAE of the atomic guess they start from.
    """
    voxel_volume = spec.spacing**3
    crops = 0 < spec.task.crop < spec.shape[0]
    cropped = dataclasses.replace(spec, shape=(spec.task.crop,) * 3)

    def init(key, batch):
        one = {k: jnp.asarray(v[:1]) for k, v in batch.items()}
        return module.init(key, assemble_inputs(one, cropped if "offset" in batch else spec))

    def per_sample(params, batch):
        is_crop = "offset" in batch  # static: crops and boxes are traced apart
        out = module.apply(params, assemble_inputs(batch, cropped if is_crop else spec))  # [batch, nx, ny, nz]
        rho0 = batch["rho0"] if spec.task.residual else None
        if is_crop:
            pred = jnp.maximum(rho0 + out, 0.0)
        else:
            pred = output_density(out, batch["n_electrons"], voxel_volume, rho0)
        nmae = nmae_percent(pred, batch["rho"], voxel_volume)
        result = {"loss": nmae / 100.0, "nmae_percent": nmae, "rmse": rmse(pred, batch["rho"])}
        if not is_crop:
            raw = out if rho0 is None else rho0 + out
            result["raw_count_error"] = jnp.abs(electron_count_error(raw, batch["n_electrons"], voxel_volume))
        if rho0 is not None:
            result["rho0_nmae_percent"] = nmae_percent(rho0, batch["rho"], voxel_volume)
        return result

    augment = functools.partial(random_crop, size=spec.task.crop, spacing=spec.spacing) if crops else None
    return Objective(init, per_sample, augment=augment)


def check_head(task: GridTask, module) -> None:
    """Refuses a model whose output does not fit the task: a residual task needs a signed output (delta rho:
    DeepSCF, the FNO's "delta" head), a direct one a non-negative density (the FNO's "density" head)."""
    if module.signed_output != task.residual:
        raise ValueError(f"the model's output (signed: {module.signed_output}) does not fit a task with "
                         f'residual={task.residual}: for an FNO set model.head to "delta" with task.residual true, '
                         'or "density" with it false')


def prepare(ds: Dataset, train_ids: list[str], val_ids: list[str], task: GridTask, module):
    """(objective, train source, validation source or None, card entries) for the training loop."""
    check_head(task, module)
    train = GridSource(ds, train_ids, task)
    settings = ds.metadata["settings"]
    unit = InputSpec(task, Normaliser.identity(task.in_channels), float(settings["spacing"]),
                     (int(settings["box_shape"]),) * 3)
    spec = dataclasses.replace(unit, normaliser=fit_normaliser(train, unit))
    val = GridSource(ds, val_ids, task) if val_ids else None
    card = {"grid": {"spacing": settings["spacing"], "box_shape": settings["box_shape"],
                     "margin": settings.get("margin", UNRECORDED_MARGIN)},
            "normalisation": dataclasses.asdict(spec.normaliser)}
    if "fingerprints" in task.inputs:
        card["fingerprints"] = fingerprints.channel_names()
    return objective(module, spec), train, val, card


def dataset_spec(card: dict, ds: Dataset) -> InputSpec:
    """A trained model's inputs (its card's task and normalisation) on a dataset's boxes, at the model's spacing."""
    settings = ds.metadata["settings"]
    if settings["spacing"] != card["grid"]["spacing"]:
        raise ValueError(f"{ds.path} has spacing {settings['spacing']} Bohr, the model was trained on "
                         f"{card['grid']['spacing']}: generate with the model's grid")
    return InputSpec(GridTask(**card["task"]), Normaliser(**card["normalisation"]), float(settings["spacing"]),
                     (int(settings["box_shape"]),) * 3)


def metrics(card: dict, module, params, ds: Dataset, ids: list[str]) -> dict[str, float]:
    """Mean metrics of a trained model on dataset records at the model's spacing (``Workflow.metrics``)."""
    spec = dataset_spec(card, ds)
    return evaluate_records(objective(module, spec), params, GridSource(ds, ids, spec.task))


def box_for(positions: np.ndarray, card: dict, refine: int = 1, box_shape: int | None = None) -> UniformGrid:
    """The model's box (its training spacing; its training shape unless ``box_shape`` points per axis are
    given) centred on a geometry [n_atoms, 3] (Bohr), ``refine`` times finer."""
    shape = card["grid"]["box_shape"] if box_shape is None else box_shape
    grid = UniformGrid.centered(np.asarray(positions).mean(0), card["grid"]["spacing"], shape)
    return grid.refined(refine) if refine > 1 else grid


def fitting_box_shape(positions: np.ndarray, card: dict) -> int:
    """Points per axis of the smallest cubic box, not smaller than the training box, centred on the centroid,
    whose faces are at least ``DENSITY_MARGIN`` Bohr from every atom (positions [n_atoms, 3] in Bohr)."""
    positions = np.asarray(positions)
    half_extent = np.abs(positions - positions.mean(0)).max() + DENSITY_MARGIN
    needed = int(np.ceil(2 * half_extent / card["grid"]["spacing"])) + 1
    return max(card["grid"]["box_shape"], needed + needed % 2)


def box_fields(names, molecule, level: reference.Level, grid: UniformGrid) -> dict[str, np.ndarray]:
    """Raw stored-kind fields of a molecule on a box: "v_ext" [nx, ny, nz] Hartree (screened ionic
    potential), "rho0" [nx, ny, nz] electrons/Bohr^3 (atomic guess)."""
    makers = {
        "v_ext": lambda: reference.screened_ionic_potential(molecule, level, grid),
        "rho0": lambda: reference.atomic_density_on_box(molecule, level, grid),
    }
    return {name: makers[name]().astype(np.float32) for name in names}


def molecule_row(molecule, level: reference.Level, grid: UniformGrid, task: GridTask) -> dict[str, np.ndarray]:
    """A batch of one row, as :class:`GridSource` gives, for a new molecule on a box (no reference density)."""
    if "fingerprints" in task.inputs:
        fingerprints.check_elements(molecule.numbers)
    names = box_field_names(task)
    fields = box_fields(set(names) | ({"rho0"} if task.residual else set()), molecule, level, grid)
    row = {**atoms_row(molecule.numbers, molecule.positions, grid.origin, bucket_size(molecule.n_atoms)),
           "n_electrons": np.float32(reference.level_electrons(molecule, level))}
    if names:
        row["fields"] = np.stack([fields[n] for n in names], axis=-1)
    if task.residual:
        row["rho0"] = fields["rho0"]
    return {k: np.asarray(v)[None] for k, v in row.items()}


def _grid_spec(card: dict, grid: UniformGrid) -> InputSpec:
    return InputSpec(GridTask(**card["task"]), Normaliser(**card["normalisation"]), float(grid.spacing), grid.shape)


def input_fields(card: dict, molecule, level: reference.Level, grid: UniformGrid) -> np.ndarray:
    """The standardised input fields of a molecule on a box, [1, nx, ny, nz, c]."""
    spec = _grid_spec(card, grid)
    return np.asarray(jitted_inputs(spec)(molecule_row(molecule, level, grid, spec.task)))


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
    fixed_box = module.resolution_invariant  # the FNO: any resolution, its training box only
    if refine > 1 and not fixed_box:
        raise ValueError(f"a {card['kind']} model predicts on its training spacing only (refine must be 1)")
    if box_shape is not None and fixed_box and box_shape != card["grid"]["box_shape"]:
        raise ValueError(f"the FNO predicts on its training box of {card['grid']['box_shape']} points per axis only")
    if box_shape is None and not fixed_box:
        box_shape = fitting_box_shape(molecule.positions, card)
    grid = box_for(molecule.positions, card, refine, box_shape)
    margin = card["grid"].get("margin", UNRECORDED_MARGIN)
    inside = np.abs(molecule.positions - np.asarray(grid.center)).max() + margin <= 0.5 * (grid.lengths[0] - grid.spacing)
    if fixed_box and not inside:
        raise ValueError(f"{molecule.name} does not fit the FNO's {card['grid']['box_shape']}^3 box of "
                         f"{card['grid']['box_shape'] * card['grid']['spacing']:.1f} Bohr with its {margin} Bohr "
                         "margin, and the FNO predicts on its training box only: use a model with a larger box "
                         "(or a DeepSCF model, which grows its box)")
    spec = _grid_spec(card, grid)
    row = molecule_row(molecule, level, grid, spec.task)
    x = jitted_inputs(spec)(row)
    density = _jitted_predict(module)(params, x, row["n_electrons"], grid.voxel_volume, row.get("rho0"))
    return {"grid": grid, "density": np.asarray(density)[0]}


@functools.lru_cache(maxsize=32)
def _jitted_predict(module):
    """``predict_density`` jitted once per module (modules are hashable dataclasses)."""
    return jax.jit(lambda p, x, n, dv, rho0: predict_density(module, p, x, n, dv, rho0=rho0))
