"""The public operations behind the ``dft-operators`` command, as plain Python functions.

``train`` / ``load_model`` / ``predict`` / ``evaluate`` / ``list_models`` dispatch on the model kind;
each is one library call of the command line (see ``cli.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
from collections.abc import Sequence

import flax
import jax
import numpy as np

from dft_operators import kinds, models, physics, reference, units
from dft_operators.grids import UniformGrid
from dft_operators.io import cards, checkpoint, cube
from dft_operators.io.dataset import Dataset
from dft_operators.level import level_differences
from dft_operators.molecule import SYMBOLS, Molecule
from dft_operators.training import loop, sharding
from dft_operators.training.setup import TrainSetup, split
from dft_operators.workflows import Workflow
KINDS = tuple(kinds.KINDS)


def workflow(kind: str) -> Workflow:
    """The workflow of a model kind (``kinds.KINDS``), imported when first used."""
    return kinds.kind(kind).workflow_module()


def train(kind: str, data: str, out: str, config: dict | str | None = None, until_epoch: int | None = None,
          progress: bool = True, init_from: str | None = None, coordinator: str | None = None,
          num_processes: int | None = None, process_id: int | None = None) -> dict:
    """Trains (or resumes) a model of ``kind`` on a dataset; returns the loop's summary.

    The validation set holds whole molecules (``held_out`` names or SMILES, or ``train.val_fraction`` of
    them, by canonical SMILES); the card lists both sides' SMILES (``molecules``: {train, val}).
    ``init_from``: a model directory of the same kind and model config whose weights training starts from
    (fine-tuning, or going on with a schedule that has ended), instead of random ones; recorded in the card.
    ``coordinator`` ("HOST:PORT" of process 0), ``num_processes``, ``process_id``: one process of a
    multi-process run (``jax.distributed``; gloo collectives on CPUs): every process runs this call with the
    same arguments but its id, reads its slice of each global batch, and process 0 writes the model.
    """
    sharding.initialize_distributed(coordinator, num_processes, process_id)
    setup = TrainSetup.resolve(kind, config)
    ds = Dataset(data)
    names, keys = [str(n) for n in ds.attribute("name")], ds.molecule_keys()
    train_ids, val_ids = split(ds, setup)
    if not train_ids:
        raise ValueError(f"{data}: no training records left after the split ({len(val_ids)} validation records, "
                         f"{len(setup.exclude)} molecules excluded)")
    module = models.create_model(kind, setup.model_config)
    if hasattr(module, "max_atomic_number"):  # species embeddings (the point-cloud models)
        models.check_atomic_numbers(ds.elements(train_ids + val_ids), module.max_atomic_number)
    objective, train_arrays, val_arrays, card_entries = workflow(kind).prepare(
        ds, train_ids, val_ids, setup.task, module)

    def molecules_of(ids, labels):
        ids = set(ids)
        return sorted({label for i, label in zip(ds.ids, labels) if i in ids})

    card = {"kind": kind, "model_config": dataclasses.asdict(setup.model_config),
            "task": dataclasses.asdict(setup.task), "level": ds.metadata["level"],
            "elements": [SYMBOLS[z] for z in ds.elements(train_ids)],
            "data_fingerprint": ds.fingerprint(), **card_entries,
            "molecules": {"train": molecules_of(train_ids, keys), "val": molecules_of(val_ids, keys)},
            "split": {"train_molecules": molecules_of(train_ids, names), "val_molecules": molecules_of(val_ids, names)}}
    if init_from is not None:
        objective = _starting_from(init_from, objective, card)
        card["init_from"] = os.path.abspath(init_from)
    summary = loop.fit(objective, train_arrays, val_arrays, setup.train_config, out, card, until_epoch, progress)
    return {**summary, "n_train": len(train_ids), "n_val": len(val_ids)}


def _starting_from(directory: str, objective: loop.Objective, card: dict) -> loop.Objective:
    """The objective with its init replaced by the weights of the model in ``directory`` (checked to match)."""
    start = checkpoint.load_card(directory)
    for key in ("kind", "model_config"):
        if start.get(key) != checkpoint.as_json(card[key]):
            raise ValueError(f"cannot start from {directory}: its {key} is {start.get(key)}, this model's {card[key]}")
    return objective._replace(init=lambda key, batch: checkpoint.load_params(directory, like=objective.init(key, batch)))


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A loaded model: its card, Flax module and weights."""

    name: str
    directory: str
    card: dict
    module: object
    params: object

    @property
    def kind(self) -> str:
        return self.card["kind"]

    @property
    def level(self) -> reference.Level:
        return reference.Level(**self.card["level"])

    def check_elements(self, symbols, what: str) -> None:
        """Refuses elements (``symbols`` of a molecule or dataset, named by ``what``) that the model never saw in
        training (ValueError)."""
        unknown = [s for s in dict.fromkeys(symbols) if s not in self.card["elements"]]
        if unknown:
            raise ValueError(f"model {self.name} learned from {', '.join(self.card['elements'])} only; "
                             f"{what} has {', '.join(unknown)}")

    def check_level(self, level: dict, what: str) -> None:
        """Refuses data or settings (``what`` names them) at another level of theory (ValueError)."""
        differ = level_differences(self.card["level"], level)
        if differ:
            raise ValueError(f"{what} is at another level of theory than model {self.name}: "
                             + ", ".join(f"{k} {level.get(k)!r} vs the model's {self.card['level'].get(k)!r}"
                                         for k in differ))

    @contextlib.contextmanager
    def weights_checked(self):
        """Turns Flax's complaint about weights that do not fit the card's model config (found when the module
        first runs) into a CheckpointError naming the model directory."""
        try:
            yield
        except (flax.errors.ScopeParamShapeError, flax.errors.ScopeParamNotFoundError) as err:
            raise checkpoint.CheckpointError(f"{self.directory}: the weights do not fit the card's model_config "
                                             f"({str(err).splitlines()[0]})") from None


pretrained_dir = cards.pretrained_dir
list_models = cards.shipped_models


def load_model(model: str) -> Model:
    """A shipped model by name (``list_models``) or a model directory."""
    directory = model if os.path.isdir(model) else os.path.join(pretrained_dir(), model)
    if not os.path.isdir(directory):
        names = [m["name"] for m in list_models()]
        raise checkpoint.CheckpointError(f"no model {model!r}: not a directory and not a shipped model "
                                         f"(shipped: {', '.join(names) or 'none'})")
    card = checkpoint.load_card(directory)
    cards.check_model_card(card, directory)
    if card["kind"] not in kinds.KINDS:
        raise checkpoint.CheckpointError(f"{directory}: unknown model kind {card['kind']!r}")
    try:
        config = models.model_config(card["kind"], card["model_config"])
    except (TypeError, ValueError) as err:
        raise checkpoint.CheckpointError(f"{directory}: its card's model_config is not a {card['kind']} config: "
                                         f"{err}") from None
    module = models.create_model(card["kind"], config)
    # Device arrays, not NumPy: e3nn's species-indexed weights must be indexable by traced arrays when a
    # jitted function closes over the parameters (ASE calculators, user pipelines).
    params = jax.tree_util.tree_map(jax.numpy.asarray, checkpoint.load_params(directory))
    return Model(os.path.basename(os.path.normpath(directory)), directory, card, module, params)


def _as_model(model: Model | str) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def predict(model: Model | str, molecule: Molecule | list[Molecule], cube_path: str | None = None,
            cube_dir: str | None = None, **options) -> dict | list[dict]:
    """Predicts the density of a molecule, or of each of a list (options such as ``refine=2`` go to the
    workflow), optionally written as cube files: ``cube_path`` for one molecule, ``<cube_dir>/<name>.cube``
    for a list. The model is loaded once and each box shape compiles once (later molecules on the same shape
    only run).

    Returns {"seconds", "n_electrons", "level", "grid": UniformGrid, "density": [nx, ny, nz], "cube"} and the
    workflow's other outputs; a list of those for a list.
    """
    model = _as_model(model)
    if isinstance(molecule, (list, tuple)):
        if cube_dir:
            os.makedirs(cube_dir, exist_ok=True)
        return [predict(model, m, os.path.join(cube_dir, f"{_file_name(m.name)}.cube") if cube_dir else None,
                        **options) for m in molecule]
    model.check_elements(molecule.symbols, molecule.name)
    start = time.perf_counter()
    with model.weights_checked():
        out = workflow(model.kind).predict(model.card, model.module, model.params, molecule, model.level,
                                           **options)
    out["seconds"] = time.perf_counter() - start
    if cube_path:
        cube.write_cube(cube_path, out["grid"], out["density"], molecule,
                        comment=f"{model.kind} {model.name} density (e/Bohr^3)")
    return {**out, "n_electrons": float(out["grid"].integrate(out["density"])), "level": model.card["level"],
            "cube": cube_path}


def _file_name(name: str) -> str:
    """A molecule's name made safe as a file name (a SMILES may hold '/', '\\', '#', ...)."""
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", name)


def evaluate(model: Model | str, data: str, ids: list[str] | None = None) -> dict:
    """Metrics of a model on a dataset's records (all, or ``ids``): nmae_percent for the density models
    (fno, deepscf, densnet; densnet's against the fitted densities it learns), and each kind's own errors."""
    model = _as_model(model)
    ds = Dataset(data)
    model.check_level(ds.metadata["level"], f"dataset {data}")
    ids = ds.ids if ids is None else ids
    model.check_elements([SYMBOLS[z] for z in ds.elements(ids)], f"dataset {data}")
    with model.weights_checked():
        result = workflow(model.kind).metrics(model.card, model.module, model.params, ds, ids)
    return {**result, "records": len(ids)}


def ofdft(molecule: Molecule, model: Model | str = "vw", cube_path: str | None = None, grid_level: int = 2) -> dict:
    """Orbital-free ground state of a molecule from the superposition of atomic densities.

    ``model`` is a classical kinetic functional ('tf', 'vw', 'tfvw' = TF + vW/9; all-electron LDA in
    def2-svp) or a KineticNet model (shipped name or directory; its level of theory).
    Returns {"energy" Hartree, "terms" {name: Hartree}, "iterations", "converged", "seconds", "n_electrons",
    "kinetic", "level"}; with ``cube_path`` the density is written there (0.2 Bohr box, ``grids.DENSITY_MARGIN``).
    """
    start = time.perf_counter()
    if isinstance(model, str) and model in physics.CLASSICAL:
        level, functional, name = reference.ALL_ELECTRON, model, model
    else:
        model = _as_model(model)
        if model.kind != "kineticnet":
            raise ValueError(f"{model.name} is a {model.kind} model; orbital-free DFT needs a kineticnet model")
        model.check_elements(molecule.symbols, molecule.name)
        level, functional, name = model.level, (model.module, model.params), model.name
    from dft_operators.workflows import kinetic

    with model.weights_checked() if isinstance(model, Model) else contextlib.nullcontext():
        result = kinetic.solve_ofdft(molecule, functional, level, grid_level)
    if cube_path:
        grid = UniformGrid.around(molecule.positions, 0.2)
        cube.write_cube(cube_path, grid, kinetic.density_on_box(result, molecule, level, grid), molecule,
                        comment=f"orbital-free density with {name} (e/Bohr^3)")
    return {"energy": result["energy"], "terms": result["terms"], "iterations": result["iterations"],
            "converged": result["converged"], "seconds": time.perf_counter() - start,
            "n_electrons": float(result["integrals"]["weights"] @ result["rho"]), "kinetic": name,
            "level": level.as_dict()}


def _densnet(model: Model | str, molecule: Molecule | None = None) -> Model:
    model = _as_model(model)
    if model.kind != "densnet":
        raise ValueError(f"{model.name} is a {model.kind} model; dynamics needs a densnet model (energies and forces)")
    if molecule is not None:
        model.check_elements(molecule.symbols, molecule.name)
    return model


def _potential(model: Model, molecule: Molecule):
    """The energy function of a DenSNet model on a molecule's elements (``workflows.densnet``)."""
    from dft_operators.workflows import densnet

    return densnet.molecule_potential(model.card, model.module, model.params, molecule)


def _float64(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64) if np.asarray(x).dtype.kind == "f" else x, tree)


def md(molecule: Molecule, model: Model | str, steps: int, dt_fs: float = 0.5, out: str | None = None,
       temperature_k: float = 300.0, thermostat: str = "nve", friction_per_ps: float = 1.0, seed: int = 0,
       record_every: int = 1, progress: bool = True) -> dict:
    """Molecular dynamics on a DenSNet potential-energy surface, with dipoles along the way.

    Runs in float64 (energy conservation is measured to 1e-8 Hartree, below float32's rounding of a total
    energy). Returns {"trajectory": md.trajectory.Trajectory, "energy_drift" Hartree, "energy_drift_kcal_mol",
    "energy_fluctuation" (std of the total energy, Hartree), "mean_temperature_k", "steps", "seconds",
    "out"}; with ``out`` the trajectory is saved there (.npz, see ``md.trajectory.load_trajectory``).
    """
    from dft_operators.md import integrators

    model = _densnet(model, molecule)
    start = time.perf_counter()
    with jax.enable_x64(True):
        potential = _float64(_potential(model, molecule))
        traj = integrators.run_md(potential, molecule.numbers, molecule.positions, molecule.masses, steps=steps,
                                  dt_fs=dt_fs, temperature_k=temperature_k, thermostat=thermostat,
                                  friction_per_ps=friction_per_ps, key=jax.random.PRNGKey(seed),
                                  record_every=record_every, progress=progress)
    if out:
        traj.save(out)
    return {"trajectory": traj, "energy_drift": traj.energy_drift,
            "energy_drift_kcal_mol": traj.energy_drift * units.HARTREE_TO_KCAL_PER_MOL,
            "energy_fluctuation": float(traj.total.std()), "mean_temperature_k": float(traj.temperature.mean()),
            "steps": int(steps), "seconds": time.perf_counter() - start, "out": out}


def ir(trajectory: str | Sequence[str], png: str | None = None, max_cm1: float = 4000.0,
       min_relative: float = 0.05, reference_peaks: list[tuple[float, float]] | None = None,
       max_lag_fs: float | None = 2000.0, min_cm1: float = 400.0) -> dict:
    """IR spectrum of a saved trajectory from its dipole autocorrelation (``spectra.ir_spectrum``), the
    correlation kept to ``max_lag_fs`` (resolution ~17 cm^-1 at 2000 fs; None: the whole run). Several
    trajectories (independent runs of one molecule, equal lengths and frame spacing) give their ensemble
    average.

    Returns {"peaks_cm1" [cm^-1], "peaks" [{"cm1", "relative_intensity"}], "wavenumbers_cm1", "intensity",
    "png"}; with ``png`` the spectrum is plotted there, with ``reference_peaks`` (cm^-1, relative
    intensity) as sticks.
    """
    from dft_operators import spectra
    from dft_operators.md.trajectory import load_trajectory

    paths = [trajectory] if isinstance(trajectory, (str, os.PathLike)) else list(trajectory)
    runs = [load_trajectory(path) for path in paths]
    first = runs[0]
    for path, run in zip(paths[1:], runs[1:]):
        if (run.dipoles.shape, run.frame_dt_fs, run.temperature_k, list(run.numbers)) != (
                first.dipoles.shape, first.frame_dt_fs, first.temperature_k, list(first.numbers)):
            raise ValueError(f"{path} is not a run like {paths[0]} (its molecule, number of frames, frame spacing "
                             "and temperature must match to average their spectra)")
    wavenumbers, intensity = spectra.ir_spectrum(np.stack([run.dipoles for run in runs]), first.frame_dt_fs,
                                                 max_cm1, max_lag_fs=max_lag_fs)
    peaks = spectra.ir_peaks(wavenumbers, intensity, min_relative, min_cm1)
    if png:
        spectra.plot_ir(png, wavenumbers, intensity, peaks, reference_peaks)
    return {"peaks_cm1": [p["cm1"] for p in peaks], "peaks": peaks, "wavenumbers_cm1": wavenumbers,
            "intensity": intensity, "png": png}


def ase_calculator(model: Model | str):
    """An ASE calculator (energy, forces, dipole) on a DenSNet model: ``atoms.calc = ase_calculator(name)``."""
    from dft_operators.ase_calculator import AseCalculator

    model = _densnet(model)

    def energy_fn(numbers, positions):
        model.check_elements([SYMBOLS[z] for z in np.asarray(numbers)], "the ASE atoms")
        # The graph is built once per element list (its positions are replaced by ASE's), so any valid
        # placeholder geometry does: atoms 2 Bohr apart on a line.
        mol = Molecule(np.asarray(numbers), 2.0 * np.arange(len(numbers))[:, None] * np.eye(3)[0], name="ase")
        return _potential(model, mol)(positions)

    return AseCalculator(energy_fn)


def harmonic_ir(molecule: Molecule, model: Model | str) -> dict[str, np.ndarray]:
    """Harmonic IR of a DenSNet surface at the molecule's geometry, from ``jax.hessian`` and the model's dipole
    in float64 (``spectra.harmonic_ir``): {"frequencies_cm1" ascending (imaginary negative),
    "intensities_km_mol"}, the keys of ``reference.harmonic_ir``."""
    from dft_operators import spectra

    model = _densnet(model, molecule)
    with jax.enable_x64(True):
        potential = _float64(_potential(model, molecule))
        frequencies, intensities = spectra.harmonic_ir(potential, molecule.positions, molecule.masses)
    return {"frequencies_cm1": frequencies, "intensities_km_mol": intensities}
