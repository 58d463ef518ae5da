"""The inputs of the grid-density models (V2Rho-FNO, DeepSCF): tasks, records as rows, standardised inputs.

A :class:`GridTask` names the box fields a model reads (``INPUT_FIELDS``); :class:`GridSource` reads dataset
records as training rows; :func:`assemble_inputs` builds the network's standardised input on the device,
drawing the atomic fingerprints there (``data.fingerprints``); ``random_crop`` is DeepSCF's training
augmentation.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators.data import fingerprints
from dft_operators.grids import bucket_size
from dft_operators.io.dataset import Dataset, DatasetError

INPUT_FIELDS = ("v_ext", "rho0", "fingerprints")

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


def box_field_names(task: GridTask) -> list[str]:
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
        self.n_atoms = bucket_size(max(z.size for z in numbers))
        if "fingerprints" in task.inputs:
            fingerprints.check_elements(np.concatenate(numbers))
        self._fields = [f"grid/{n}" for n in box_field_names(task)]
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
    raw = jitted_inputs(dataclasses.replace(spec, normaliser=Normaliser.identity(spec.task.in_channels)))(batch)
    return Normaliser.fit(np.asarray(raw), center=spec.task.center_inputs)


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


@functools.lru_cache(maxsize=32)
def jitted_inputs(spec: InputSpec):
    """``assemble_inputs`` jitted once per input spec (a hashable frozen dataclass)."""
    return jax.jit(functools.partial(assemble_inputs, spec=spec))
