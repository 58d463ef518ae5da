"""Dataset generation: conformers -> PySCF ground states -> fields -> one HDF5 file, resumable.

Each record is computed by :func:`compute_record` (a pure, picklable task that any
``concurrent.futures.Executor`` can run: local processes by default, a Dask or Ray executor on a
cluster).  Finished records are stored one file each as soon as they arrive, so a killed run loses
nothing and a rerun repeats nothing; see :mod:`dft_operators.io.dataset`.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import os
import time
from importlib import metadata

import numpy as np
from tqdm.auto import tqdm

from dft_operators import reference
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
    grid_level: int = 2  # PySCF quadrature grid level (quadrature kind)
    n_conformers: int = 4  # conformers per molecule
    displacement: float = 0.1  # std of the random atomic displacements in Bohr (0 keeps the geometry)
    rotate: bool = True  # randomly rotate each conformer about its centroid
    strain: float = 0.0  # std of the entries of a random symmetric strain applied about the centroid (0 = none)
    random_potential: float = 0.0  # amplitude (Hartree) of a random Gaussian external potential; 0 = none
    forces: bool = False  # also compute nuclear forces
    seed: int = 0  # seeds conformers and random potentials

    def __post_init__(self):
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"unknown field kind(s) {sorted(unknown)}; choose from {', '.join(KINDS)}")

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["level"] = self.level.as_dict()
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
    inside = np.all(np.abs(mol.positions - grid.center) < 0.5 * grid.lengths - 2.0, axis=1)
    if not inside.all():
        raise ValueError(f"the molecule does not fit in the {settings.box_shape}^3 box of spacing "
                         f"{settings.spacing} Bohr (atoms need 2 Bohr from the edge); enlarge the box")
    return {
        "grid/rho": reference.density_on_box(state.density, grid).astype(np.float32),
        "grid/rho0": reference.density_on_box(reference.atomic_guess(mol, level), grid).astype(np.float32),
        "grid/v_ext": reference.screened_ionic_potential(mol, level, grid).astype(np.float32),
        "grid/origin": np.asarray(grid.origin),
    }


def _coefficient_fields(state: reference.GroundState, settings: GenerationSettings) -> dict[str, np.ndarray]:
    fit = reference.fit_coefficients(state.density)
    fit0 = reference.fit_coefficients(reference.atomic_guess(state.density.molecule, settings.level))
    return {"coefficients/c": fit["coefficients"], "coefficients/c0": fit0["coefficients"],
            "coefficients/aux_labels": fit["aux_labels"], "coefficients/aux_integrals": fit["aux_integrals"],
            "coefficients/coulomb_error": np.float64(fit["coulomb_error"])}


def compute_record(task: Task) -> dataset.Record:
    """Runs the SCF of one conformer and evaluates the requested fields; failures become a reason."""
    s, mol = task.settings, task.molecule
    attrs = {"name": mol.name, "charge": mol.charge, "spin": mol.spin}
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
            q = reference.quadrature_fields(state, s.grid_level)
            arrays.update({f"quadrature/{k}": np.asarray(v) for k, v in q.items()})
        if "coefficients" in s.kinds:
            arrays.update(_coefficient_fields(state, s))
    except (reference.SCFError, MoleculeError, RuntimeError, ValueError, np.linalg.LinAlgError) as err:
        return {"id": task.record_id, "arrays": {}, "attrs": {**attrs, "reason": f"{type(err).__name__}: {err}"}}
    attrs.update(energy=state.energy, converged=state.converged, cycles=state.cycles,
                 n_electrons=state.density.n_electrons, homo=state.homo,
                 scf_seconds=scf_seconds, seconds=time.perf_counter() - start)
    return {"id": task.record_id, "arrays": arrays, "attrs": attrs}


def make_tasks(molecules: list[Molecule], settings: GenerationSettings) -> list[Task]:
    """One task per (molecule, conformer), ids ``<molecule index>-<name>-<conformer>``, seeded."""
    tasks = []
    for i, mol in enumerate(molecules):
        for j in range(settings.n_conformers):
            rng = np.random.default_rng([settings.seed, i, j])
            rid = f"{i:04d}-{mol.name.replace('/', '_')}-{j:03d}"
            conformer = (sample_conformer(mol, rng, settings.displacement, settings.rotate, name=mol.name,
                                          strain=settings.strain)
                         if settings.displacement > 0 or settings.rotate or settings.strain > 0 else mol)
            tasks.append(Task(rid, conformer, settings, int(rng.integers(2**31))))
    return tasks


def _metadata(settings: GenerationSettings, molecules: list[Molecule]) -> dict:
    return {"level": settings.level.as_dict(), "kinds": list(settings.kinds), "settings": settings.as_dict(),
            "seed": settings.seed, "molecules": [m.name for m in molecules],
            "versions": {name: metadata.version(name) for name in ("dft_operators", "pyscf", "numpy", "h5py")}}


def _check_compatible(out: str, meta: dict) -> None:
    if not os.path.exists(out):
        return
    old = dataset.Dataset(out).metadata
    # Settings added since a file was made take their default values in it.
    old["settings"] = {**json.loads(json.dumps(GenerationSettings().as_dict())), **old.get("settings", {})}
    for key in ("level", "settings"):
        if old.get(key) != json.loads(json.dumps(meta[key])):
            raise dataset.DatasetError(
                f"{out} was made with other {key} ({old.get(key)}); write to a new file or use the same options")


def _default_executor(workers: int) -> cf.Executor:
    # One OpenMP thread per worker process; spawn (not fork) because the parent may hold JAX threads.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def generate(molecules: list[Molecule], out: str, settings: GenerationSettings = GenerationSettings(),
             executor: cf.Executor | None = None, workers: int = 1, progress: bool = True) -> dict:
    """Generates (or resumes) a dataset.

    Args:
      molecules: the molecules; each gives ``settings.n_conformers`` records.
      out: the HDF5 file to write; finished records from an earlier, killed run are kept.
      settings: fields, level of theory, grids, conformer sampling, seed.
      executor: any ``concurrent.futures.Executor``; by default ``workers`` local processes
        (``workers=1`` computes in this process).
      progress: show a progress bar.
    Returns:
      {"records": good records in the file, "failed": failed records, "computed": records computed
       by this call, "resumed": records kept from before, "seconds": wall time}.
    """
    start = time.perf_counter()
    meta = _metadata(settings, molecules)
    _check_compatible(out, meta)
    done = set(dataset.finished_parts(out))
    if os.path.exists(out):
        old = dataset.Dataset(out)
        done |= set(old.ids) | set(old.failed)
    tasks = [t for t in make_tasks(molecules, settings) if t.record_id not in done]
    bar = tqdm(total=len(tasks), desc="records", unit="rec", disable=not progress)
    own = executor is None and workers > 1
    pool = _default_executor(workers) if own else executor
    try:
        if pool is None:
            results = map(compute_record, tasks)
        else:  # save each record the moment it is done, whatever the order
            results = (f.result() for f in cf.as_completed([pool.submit(compute_record, t) for t in tasks]))
        for record in results:
            dataset.save_part(out, record)
            bar.update()
            if "reason" in record["attrs"]:
                bar.write(f"failed {record['id']}: {record['attrs']['reason']}")
    finally:
        bar.close()
        if own:
            pool.shutdown(cancel_futures=True)
    dataset.assemble(out, meta)
    ds = dataset.Dataset(out)
    return {"records": len(ds), "failed": len(ds.failed), "computed": len(tasks), "resumed": len(done),
            "seconds": time.perf_counter() - start}
