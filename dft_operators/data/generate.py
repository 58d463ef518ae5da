"""Dataset generation: conformers -> PySCF ground states -> fields -> shards, resumable and appendable.

Each record is computed by :func:`compute_record` (a pure, picklable task that local processes or a Dask
cluster run, a bounded window of them in flight: :mod:`dft_operators.data.executors`).  Finished records
are saved the moment they arrive and gathered into shards, so a killed run loses nothing and a rerun
repeats nothing; see :mod:`dft_operators.io.dataset`.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata

import numpy as np
from tqdm.auto import tqdm

from dft_operators import reference
from dft_operators.data import executors, molecule_specs
from dft_operators.data.conformers import sample_conformer
from dft_operators.grids import UniformGrid
from dft_operators.io import dataset
from dft_operators.molecule import Molecule, MoleculeError

KINDS = ("grid", "quadrature", "coefficients")


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """What each record holds and how it is made."""

    kinds: tuple[str, ...] = ("grid",)  # field kinds: grid, quadrature, coefficients
    level: reference.Level = reference.Level()  # level of theory of every SCF
    spacing: float = 0.4  # box spacing in Bohr (grid kind)
    box_shape: int = 40  # points per axis of the cubic box, centred on each conformer (grid kind)
    margin: float = 2.0  # Bohr every atom keeps from the box faces; molecules that cannot are skipped (grid kind)
    grid_level: int = 2  # PySCF quadrature grid level (quadrature kind)
    n_conformers: int = 4  # conformers per molecule
    displacement: float = 0.1  # std of the random atomic displacements in Bohr (0 keeps the geometry)
    rotate: bool = True  # randomly rotate each conformer about its centroid
    strain: float = 0.0  # std of the entries of a random symmetric strain applied about the centroid (0 = none)
    torsion: float = 0.0  # std in degrees of random twists about every rotatable bond (0 = none; not with grid)
    random_potential: float = 0.0  # amplitude (Hartree) of a random Gaussian external potential; 0 = none
    forces: bool = False  # also compute nuclear forces
    seed: int = 0  # seeds conformers and random potentials

    def __post_init__(self):
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"unknown field kind(s) {sorted(unknown)}; choose from {', '.join(KINDS)}")
        if self.torsion < 0 or (self.torsion > 0 and "grid" in self.kinds):
            raise ValueError(f"torsion={self.torsion}: twists are for the quadrature and coefficient kinds (the "
                             "box check of the grid kind does not cover them); give 0 or a positive std in degrees")

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["level"] = self.level.as_dict()
        if not self.torsion:  # recorded only when used, so that datasets made before it resume and extend
            del d["torsion"]
        return d


@dataclasses.dataclass(frozen=True)
class Task:
    """One record to compute: a conformer of a molecule under the settings."""

    record_id: str
    molecule: Molecule
    settings: GenerationSettings
    potential_seed: int


def _grid_fields(state: reference.GroundState, settings: GenerationSettings) -> dict[str, np.ndarray]:
    mol, level = state.density.molecule, settings.level
    grid = UniformGrid.centered(mol.positions.mean(0), settings.spacing, settings.box_shape)
    return {
        "grid/rho": reference.density_on_box(state.density, grid).astype(np.float32),
        "grid/rho0": reference.atomic_density_on_box(mol, level, grid).astype(np.float32),
        "grid/v_ext": reference.screened_ionic_potential(mol, level, grid).astype(np.float32),
        "grid/origin": np.asarray(grid.origin),
    }


def _coefficient_fields(state: reference.GroundState, settings: GenerationSettings) -> dict[str, np.ndarray]:
    fit = reference.fit_coefficients(state.density)
    fit0 = reference.fit_coefficients(reference.atomic_guess(state.density.molecule, settings.level),
                                     with_error=False)
    return {"coefficients/c": fit["coefficients"], "coefficients/c0": fit0["coefficients"],
            "coefficients/aux_labels": fit["aux_labels"], "coefficients/aux_integrals": fit["aux_integrals"],
            "coefficients/coulomb_error": np.float64(fit["coulomb_error"]),
            **_density_basis_fields(state, settings)}


# PySCF quadrature level (unpruned) of the grid the coefficients kind stores for evaluation (DenSNet's NMAE).
_COEFFICIENT_GRID_LEVEL = 2


def _density_basis_fields(state: reference.GroundState, settings: GenerationSettings) -> dict[str, np.ndarray]:
    """What DenSNet's training and evaluation read besides the coefficients, so that neither needs PySCF.

    "coefficients/aux_shells", "aux_exponents", "aux_contractions": the auxiliary basis on this geometry
    (``gaussians.GaussianBasis``: its functions evaluate anywhere without PySCF, and its one-atom moments and
    angular momenta make the model's per-element tables); "coefficients/c_atoms" [n_aux]: each atom's free,
    spherically averaged density fitted onto its own functions and scaled to its electron count
    (``density_basis.free_atom_coefficients``; cached per element), the superposition Delta learning starts
    from; "coefficients/metric_overlap" and "metric_coulomb" [n_aux, n_aux] (float32, as training uses them):
    int chi_P chi_Q dr and (P|1/r12|Q), the two norms of the density loss; "coefficients/points" [n, 3] Bohr,
    "weights" [n] Bohr^3 (PySCF's unpruned molecular quadrature of ``_COEFFICIENT_GRID_LEVEL``) and "rho" [n]
    (the Kohn-Sham density there; float32), where evaluation measures density errors; "grid_level" that level.
    """
    mol, level = state.density.molecule, settings.level
    density_basis = reference.density_basis
    basis = reference.basis_shells(mol, level, level.aux_basis)
    atom_of = basis.function_atoms()
    c_atoms = np.empty(basis.n_functions)
    for a, z in enumerate(mol.numbers):
        c_atoms[atom_of == a] = density_basis.free_atom_coefficients(int(z), level)
    points, weights = reference.molecular_quadrature(mol, level, _COEFFICIENT_GRID_LEVEL)
    return {**basis.as_arrays("coefficients/aux_"), "coefficients/c_atoms": c_atoms,
            **{f"coefficients/metric_{m}": density_basis.aux_metric(mol, level, m).astype(np.float32)
               for m in density_basis.METRICS},
            "coefficients/points": points.astype(np.float32), "coefficients/weights": weights.astype(np.float32),
            "coefficients/rho": reference.density_at_points(state.density, points).astype(np.float32),
            "coefficients/grid_level": np.int64(_COEFFICIENT_GRID_LEVEL)}


def _quadrature_fields(state: reference.GroundState, settings: GenerationSettings) -> dict[str, np.ndarray]:
    """``reference.quadrature_fields`` on the settings' grid, and the orbital basis as arrays
    ("quadrature/basis_shells", "basis_exponents", "basis_contractions": ``gaussians.GaussianBasis``), from which
    KineticNet's training evaluates its test directions on the stored points without PySCF."""
    q = reference.quadrature_fields(state, settings.grid_level)
    basis = reference.basis_shells(state.density.molecule, settings.level)
    return {**{f"quadrature/{k}": np.asarray(v) for k, v in q.items()}, **basis.as_arrays("quadrature/basis_")}


def compute_record(task: Task) -> dataset.Record:
    """Runs the SCF of one conformer and evaluates the requested fields; failures become a reason."""
    s, mol = task.settings, task.molecule
    attrs = {"name": mol.name, "charge": mol.charge, "spin": mol.spin, "smiles": mol.smiles, "source": mol.source}
    if mol.source.startswith("qm9:"):
        attrs["qm9_index"] = int(mol.source[len("qm9:"):])
    start = time.perf_counter()
    try:
        external = (reference.RandomPotential.sample(mol, task.potential_seed, amplitude=s.random_potential)
                    if s.random_potential > 0 else None)
        state = reference.run_ks(mol, s.level, external=external, forces=s.forces)
        if not state.converged:
            raise RuntimeError(f"SCF did not converge in {state.cycles} cycles")
        scf_seconds = time.perf_counter() - start
        arrays = {"numbers": mol.numbers, "positions": mol.positions, "dipole": state.dipole}
        if state.forces is not None:
            arrays["forces"] = state.forces
        if external is not None:
            arrays.update({f"external/{k}": v for k, v in external.as_arrays().items()})
        if "grid" in s.kinds:
            arrays.update(_grid_fields(state, s))
        if "quadrature" in s.kinds:
            arrays.update(_quadrature_fields(state, s))
        if "coefficients" in s.kinds:
            arrays.update(_coefficient_fields(state, s))
    except (reference.SCFError, MoleculeError, RuntimeError, ValueError, np.linalg.LinAlgError) as err:
        return {"id": task.record_id, "arrays": {}, "attrs": {**attrs, "reason": f"{type(err).__name__}: {err}"}}
    attrs.update(energy=state.energy, converged=state.converged, cycles=state.cycles,
                 n_electrons=state.density.n_electrons, homo=state.homo,
                 scf_seconds=scf_seconds, seconds=time.perf_counter() - start)
    return {"id": task.record_id, "arrays": arrays, "attrs": attrs}


def fits_box(molecule: Molecule, settings: GenerationSettings) -> bool:
    """Whether every atom, after any rotation about the centroid (+ displacements), keeps ``settings.margin``
    Bohr from the faces of the grid kind's box; always True without the grid kind."""
    if "grid" not in settings.kinds:
        return True
    radius = np.linalg.norm(molecule.positions - molecule.positions.mean(0), axis=1).max()
    radius += 3.0 * settings.displacement
    return radius + settings.margin <= 0.5 * settings.spacing * (settings.box_shape - 1)


def make_tasks(molecules: Iterable[Molecule], settings: GenerationSettings, skipped: list | None = None
               ) -> Iterator[Task]:
    """One task per (molecule, conformer), ids ``<molecule index>-<name>-<conformer>``, seeded by
    (seed, molecule index, conformer), made lazily. Molecules that do not fit the box (``fits_box``) make no
    task; their names are appended to ``skipped``."""
    for i, mol in enumerate(molecules):
        if not mol.smiles:  # every record knows its molecule: from the bonds the geometry shows
            mol = dataclasses.replace(mol, smiles=molecule_specs.smiles_from_geometry(mol))
        if not fits_box(mol, settings):
            if skipped is not None:
                skipped.append(mol.name)
            continue
        for j in range(settings.n_conformers):
            rng = np.random.default_rng([settings.seed, i, j])
            rid = f"{i:04d}-{mol.name.replace('/', '_')}-{j:03d}"
            conformer = (sample_conformer(mol, rng, settings.displacement, settings.rotate, name=mol.name,
                                          strain=settings.strain, torsion=settings.torsion)
                         if settings.displacement > 0 or settings.rotate or settings.strain > 0
                         or settings.torsion > 0 else mol)
            yield Task(rid, conformer, settings, int(rng.integers(2**31)))


def _metadata(settings: GenerationSettings) -> dict:
    return {"level": settings.level.as_dict(), "kinds": list(settings.kinds), "settings": settings.as_dict(),
            "seed": settings.seed,
            "versions": {name: metadata.version(name) for name in ("dft_operators", "pyscf", "numpy", "h5py")}}


def generate(molecules: Iterable[Molecule], out: str, settings: GenerationSettings = GenerationSettings(),
             executor: str | cf.Executor = "process", workers: int = 1, scheduler: str | None = None,
             shard_size: int = 256, window: int | None = None, progress: bool = True) -> dict:
    """Generates (or resumes, or extends) a sharded dataset.

    Good records already in ``out`` (in shards, or pending from a killed run) are not recomputed, so a
    rerun resumes, and a rerun with a longer molecule list whose start is the old list (``qm9:2000`` after
    ``qm9:1000``, same seed) appends new shards. A record whose SCF fails is retried once, then listed with
    its reason in the manifest; the next run tries it again.

    Args:
      molecules: the molecules (any iterable; consumed lazily); each gives ``settings.n_conformers`` records.
        Those that do not fit the box with its margin are skipped and counted, never cut.
      out: the dataset directory.
      settings: fields, level of theory, grids, conformer sampling, seed: must equal those of the records
        already in ``out``.
      executor: "process" (``workers`` local processes; 1 computes here), "dask" (Dask distributed: the
        cluster at ``scheduler``, else a LocalCluster of ``workers`` processes), or any
        ``concurrent.futures.Executor``.
      shard_size: records per shard.
      window: most tasks in flight at once (default 4 per worker), so memory stays flat for any number of
        molecules.
      progress: show a progress bar (records/hour and the time left).
    Returns:
      {"records": good records in the dataset, "failed", "computed": by this call, "resumed": kept from
       before, "skipped": molecules outside the box, "retried", "seconds", "path"}.
    Raises:
      DatasetError: ``out`` holds records made with other settings; every record of this call failed.
    """
    start = time.perf_counter()
    computed = failed = retried = 0
    skipped: list[str] = []
    with executors.make(executor, workers, scheduler) as pool:  # first, so that a cluster not found writes nothing
        writer = dataset.ShardWriter(out, _metadata(settings), shard_size)
        done = writer.done_ids()
        tasks = (t for t in make_tasks(molecules, settings, skipped) if t.record_id not in done)
        total = None  # known for a list of molecules: then the bar shows the time left
        if isinstance(molecules, Sequence):
            total = max(sum(fits_box(m, settings) for m in molecules) * settings.n_conformers - len(done), 0)
        bar = tqdm(desc="records", unit="rec", total=total, disable=not progress, smoothing=0.05)
        results = executors.bounded_map(pool, compute_record, tasks, window or 4 * max(workers, 1),
                                        retry=lambda record: "reason" in record["attrs"])
        for record, tries in results:
            retried += tries > 1
            computed += 1
            failed += "reason" in record["attrs"]
            writer.add(record)
            bar.update()
            bar.set_postfix(rec_per_hour=f"{3600 * bar.n / max(bar.format_dict['elapsed'], 1e-9):.0f}")
            if "reason" in record["attrs"]:
                bar.write(f"failed {record['id']}: {record['attrs']['reason']}")
    bar.close()
    writer.flush()
    if computed and failed == computed:
        raise dataset.DatasetError(f"every record failed ({computed}); first reason: "
                                   f"{next(iter(dataset.Dataset(out).failed.values()))}")
    if not writer.manifest["shards"]:
        raise dataset.DatasetError(f"{out}: no record made ({len(skipped)} molecules do not fit the "
                                   f"{settings.box_shape}^3 box of spacing {settings.spacing} Bohr with a "
                                   f"{settings.margin} Bohr margin)")
    ds = dataset.Dataset(out)
    return {"records": len(ds), "failed": len(ds.failed), "computed": computed, "resumed": len(done),
            "skipped": len(skipped), "retried": retried, "seconds": time.perf_counter() - start, "path": out}
