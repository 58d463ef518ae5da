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
    crop: int = 0  # train on random cubes of this many points per axis around an atom (residual, local models;
    # 0, or a box not larger, trains on the whole box); validation and prediction use the whole box

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        bad = set(self.inputs) - set(INPUT_FIELDS)
        if bad or not self.inputs:
            raise ValueError(f"unknown input field(s) {sorted(bad)}; choose from {INPUT_FIELDS}")
        if self.crop and not self.residual:
            raise ValueError("crop needs a residual task: a crop cannot be normalised to the electron count")

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
    crop: int = 24  # the CNN is local: 24^3 crops cost 0.04 s a step against 0.19 s for a 40^3 box


@dataclasses.dataclass(frozen=True)
class Normaliser:
    """Per-channel standardisation of the inputs: x' = (x - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):  # tuples (hashable: the jitted input builder is cached per spec), also from a card
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

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

    @staticmethod
    def identity(channels: int) -> "Normaliser":
        """Mean 0, scale 1: leaves the inputs as they are."""
        return Normaliser((0.0,) * channels, (1.0,) * channels)


def stack_inputs(fields: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Channels-last inputs [..., nx, ny, nz, c] from fields [..., nx, ny, nz] (fingerprints [..., c_f])."""
    return np.concatenate([fields[n] if n == "fingerprints" else fields[n][..., None] for n in names], axis=-1)


def _box_field_names(task: GridTask) -> list[str]:
    """The stored box fields the network reads, in input order (the fingerprints are made on the device)."""
    return [n for n in task.inputs if n != "fingerprints"]


def atoms_row(numbers, positions, origin, n_atoms: int) -> dict[str, np.ndarray]:
    """What the device needs to draw a record's fingerprints: padded "numbers" int32 [n_atoms], "positions"
    float32 [n_atoms, 3] relative to the box "origin" (Bohr), "atom_mask" bool [n_atoms]."""
    numbers, positions, mask = fingerprints.pad_atoms(numbers, np.asarray(positions) - np.asarray(origin), n_atoms)
    return {"numbers": numbers, "positions": positions.astype(np.float32), "atom_mask": mask}


class GridSource:
    """The records of a grid dataset as training rows, read from the shards when asked (random access).

    Row ``i`` (record ``ids[i]``): "fields" [nx, ny, nz, c_box] raw box inputs (no fingerprints), "rho"
    [nx, ny, nz] (e/Bohr^3), "n_electrons" [], "rho0" for a residual task, and the atoms of
    :func:`atoms_row`, all float32 except the atoms' numbers and mask.
    """

    def __init__(self, ds: Dataset, ids: list[str], task: GridTask):
        if "grid" not in ds.metadata.get("kinds", []):
            raise DatasetError(f"{ds.path} has no grid fields; generate it with --kind grid")
        self.ds, self.ids, self.task = ds, list(ids), task
        numbers = [ds.read(rid, ["numbers"])["numbers"] for rid in ids]  # one small read a record
        self.n_atoms = fingerprints.padded_size(max(z.size for z in numbers))
        if "fingerprints" in task.inputs:
            fingerprints.check_elements(np.concatenate(numbers))
        self._fields = [f"grid/{n}" for n in _box_field_names(task)]
        self._read = sorted(set(self._fields) | {"grid/rho", "grid/origin", "numbers", "positions"}
                            | ({"grid/rho0"} if task.residual else set()))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rid = self.ids[index]
        r = self.ds.read(rid, self._read)
        row = {"rho": r["grid/rho"].astype(np.float32),
               "n_electrons": np.float32(self.ds.attribute("n_electrons", [rid])[0]),
               **atoms_row(r["numbers"], r["positions"], r["grid/origin"], self.n_atoms)}
        if self._fields:
            row["fields"] = np.stack([r[f].astype(np.float32) for f in self._fields], axis=-1)
        if self.task.residual:
            row["rho0"] = r["grid/rho0"].astype(np.float32)
        return row


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How the network's input is built from a row: channel statistics and the box (static under jit)."""

    task: GridTask
    normaliser: Normaliser
    spacing: float  # Bohr
    shape: tuple[int, int, int]  # points per axis


def assemble_inputs(batch: dict, spec: InputSpec):
    """Standardised network inputs [batch, nx, ny, nz, c] from rows (``GridSource``), on the device: the
    stored box fields and the fingerprints drawn from the atoms, in ``spec.task.inputs`` order."""
    parts, box = [], 0
    for name in spec.task.inputs:
        if name == "fingerprints":
            draw = functools.partial(fingerprints.box_fingerprints, origin=jnp.zeros(3), spacing=spec.spacing,
                                     shape=spec.shape)
            parts.append(jax.vmap(draw)(batch["numbers"], batch["positions"], batch["atom_mask"]))
        else:
            parts.append(batch["fields"][..., box:box + 1])
            box += 1
    x = jnp.concatenate(parts, axis=-1)  # [batch, nx, ny, nz, c]
    mean, std = (jnp.asarray(v, jnp.float32) for v in (spec.normaliser.mean, spec.normaliser.std))
    return (x - mean) / std


def fit_normaliser(source: GridSource, spec: InputSpec, n_sample: int = 64, seed: int = 0) -> Normaliser:
    """Per-channel statistics of the raw inputs over a seeded sample of ``n_sample`` training rows (the
    whole set when smaller), so that the cost does not grow with the dataset."""
    picks = np.sort(np.random.default_rng(seed).permutation(len(source))[:n_sample])
    rows = [source[int(i)] for i in picks]
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    raw = _jitted_inputs(dataclasses.replace(spec, normaliser=Normaliser.identity(spec.task.in_channels)))(batch)
    return Normaliser.fit(np.asarray(raw), center=spec.task.center_inputs)


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


def random_crop(row: dict[str, np.ndarray], rng: np.random.Generator, size: int, spacing: float) -> dict:
    """A cube of ``size`` points per axis cut from a row of :class:`GridSource`, centred on a random atom
    (jittered by up to a quarter of the cube) and kept inside the box; positions become relative to the
    cube's first point and ``"offset"`` [3] (int, voxels) says where it was cut."""
    n = row["rho"].shape[0]
    atoms = row["positions"][row["atom_mask"]]  # [n_atoms, 3] Bohr from the box origin
    centre = atoms[rng.integers(len(atoms))] / spacing + rng.uniform(-size / 4, size / 4, 3)
    start = np.clip(np.round(centre - size / 2), 0, n - size).astype(np.int32)  # [3]
    cube = tuple(slice(a, a + size) for a in start)
    out = {**row, **{k: row[k][cube] for k in ("rho", "rho0", "fields") if k in row}}
    out["positions"] = (row["positions"] - start * spacing).astype(np.float32)
    out["offset"] = start
    return out


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
        nmae = metrics.nmae_percent(pred, batch["rho"], voxel_volume)
        result = {"loss": nmae / 100.0, "nmae_percent": nmae, "rmse": metrics.rmse(pred, batch["rho"])}
        if not is_crop:
            raw = out if rho0 is None else rho0 + out
            result["raw_count_error"] = jnp.abs(metrics.electron_count_error(raw, batch["n_electrons"], voxel_volume))
        if rho0 is not None:
            result["rho0_nmae_percent"] = metrics.nmae_percent(rho0, batch["rho"], voxel_volume)
        return result

    augment = functools.partial(random_crop, size=spec.task.crop, spacing=spec.spacing) if crops else None
    return Objective(init, per_sample, augment=augment)


def check_head(task: GridTask, module) -> None:
    """Refuses an FNO whose output head does not fit the task: a residual task needs the signed "delta" head
    (``model.head``), a direct one the non-negative "density" head."""
    if isinstance(module, fno.FNO) and (module.head == "delta") != task.residual:
        raise ValueError(f"the FNO's {module.head!r} head does not fit a task with residual={task.residual}: "
                         'set model.head to "delta" with task.residual true, or "density" with it false')


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
                     "margin": settings.get("margin", 2.0)},
            "normalisation": dataclasses.asdict(spec.normaliser)}
    if "fingerprints" in task.inputs:
        card["fingerprints"] = fingerprints.channel_names()
    return objective(module, spec), train, val, card


def evaluation_data(card: dict, ds: Dataset, ids: list[str], module):
    """(objective, source) to evaluate a trained model on dataset records."""
    settings = ds.metadata["settings"]
    if settings["spacing"] != card["grid"]["spacing"]:
        raise ValueError(f"{ds.path} has spacing {settings['spacing']} Bohr, the model was trained on "
                         f"{card['grid']['spacing']}: generate with the model's grid")
    task = GridTask(**card["task"])
    spec = InputSpec(task, Normaliser(**card["normalisation"]), float(settings["spacing"]),
                     (int(settings["box_shape"]),) * 3)
    return objective(module, spec), GridSource(ds, ids, task)


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
    names = _box_field_names(task)
    fields = box_fields(set(names) | ({"rho0"} if task.residual else set()), molecule, level, grid)
    row = {**atoms_row(molecule.numbers, molecule.positions, grid.origin, fingerprints.padded_size(molecule.n_atoms)),
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
    return np.asarray(_jitted_inputs(spec)(molecule_row(molecule, level, grid, spec.task)))


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
    is_fno = isinstance(module, fno.FNO)
    if refine > 1 and not is_fno:
        raise ValueError(f"a {card['kind']} model predicts on its training spacing only (refine must be 1)")
    if box_shape is not None and is_fno and box_shape != card["grid"]["box_shape"]:
        raise ValueError(f"the FNO predicts on its training box of {card['grid']['box_shape']} points per axis only")
    if box_shape is None and not is_fno:
        box_shape = fitting_box_shape(molecule.positions, card)
    grid = box_for(molecule.positions, card, refine, box_shape)
    margin = card["grid"].get("margin", 2.0)  # what the training data kept (the generation default before cards said)
    inside = np.abs(molecule.positions - np.asarray(grid.center)).max() + margin <= 0.5 * (grid.lengths[0] - grid.spacing)
    if is_fno and not inside:
        raise ValueError(f"{molecule.name} does not fit the FNO's {card['grid']['box_shape']}^3 box of "
                         f"{card['grid']['box_shape'] * card['grid']['spacing']:.1f} Bohr with its {margin} Bohr "
                         "margin, and the FNO predicts on its training box only: use a model with a larger box "
                         "(or a DeepSCF model, which grows its box)")
    spec = _grid_spec(card, grid)
    row = molecule_row(molecule, level, grid, spec.task)
    x = _jitted_inputs(spec)(row)
    density = _jitted_predict(module)(params, x, row["n_electrons"], grid.voxel_volume, row.get("rho0"))
    return {"grid": grid, "density": np.asarray(density)[0]}


@functools.lru_cache(maxsize=32)
def _jitted_inputs(spec: InputSpec):
    """``assemble_inputs`` jitted once per input spec (a hashable frozen dataclass)."""
    return jax.jit(functools.partial(assemble_inputs, spec=spec))


@functools.lru_cache(maxsize=32)
def _jitted_predict(module):
    """``predict_density`` jitted once per module (modules are hashable dataclasses)."""
    return jax.jit(lambda p, x, n, dv, rho0: predict_density(module, p, x, n, dv, rho0=rho0))
