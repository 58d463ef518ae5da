"""Density coefficients, energies, forces and dipoles of molecules: the workflow of DenSNet.

Data (read by ``density_records``): the ``coefficients`` kind of an all-electron dataset made with ``forces``
(``coefficients/c`` and ``coefficients/aux_labels`` in PySCF's order, ``forces``, ``dipole`` and the ``energy``
attribute), with what generation stores so that training and evaluation never call PySCF
(``data.generate._density_basis_fields``): the auxiliary basis as arrays (``coefficients/aux_*``, evaluated by
``gaussians``), each atom's free-atom coefficients (``coefficients/c_atoms``), both density metrics at the
geometry (``coefficients/metric_*``) and an evaluation quadrature with the Kohn-Sham density on it
(``coefficients/points``, ``weights``, ``rho``).

Layout: each atom's coefficients are one e3nn irreps vector (``DenSNetConfig.basis_irreps``), mapped to and
from PySCF's order by the per-element tables the model card keeps (``density_tables``), made once from the
records' stored arrays: a model then needs PySCF only to write the density of a new molecule on a grid
(``density_at``, ``predict``) or to compare with a fresh Kohn-Sham run (``density_nmae``).

Loss, per record, with Delta = c - c_ref per atom and M_ab the metric between the functions of atoms a and b
at that geometry (in the model layout; ``DensityTask.density_metric``):

    w_rho sum_ab Delta_a^T M_ab Delta_b / (N density_scale^2)  +  w_E ((E - E_ref) / energy_scale)^2
        + w_F mean_(atoms, xyz) ((F - F_ref) / force_scale)^2  +  w_mu mean_xyz ((mu - mu_ref) / dipole_scale)^2,

the first term a squared norm of the real-space density error per electron: with M = S, S_ab = int chi_a chi_b
dr, the L2 norm; with M = J, J_ab = (a|1/r12|b), the Coulomb norm (twice the Hartree energy of the error).
The Coulomb norm weighs smooth, extended errors more and the cusps less (it is the metric of density fitting
itself), but leaves short-wavelength errors nearly free: on ethanol it gave 2.07 % density NMAE against the L2
norm's 1.81 % (both trained jointly, README results), so "overlap" is the default. The cross-atom blocks
matter: the fitted targets carry large coefficient components along near-null directions of the metric
(functions of neighbouring atoms that nearly cancel, smallest overlap eigenvalue ~5e-6 for ethanol in
def2-universal-jkfit) that no smooth model reproduces and no density shows; a one-centre metric charges them
as error and stalls there. The dipole mu is analytic in the coefficients (``models.densnet.dipole``), so its
term trains the density too.

Order. With ``task.density_epochs`` = 0 both networks train jointly on all terms. With ``density_epochs`` > 0,
density first, as the method is built: the density network is trained alone on the density and dipole terms
(a pretraining ``training.loop.Stage`` at peak ``density_learning_rate``: no energy network and no forces, so
an epoch costs ~2.4x less), then, for ``train.epochs``, either frozen (``freeze_density``: the optimiser
leaves its weights exactly as they are, ``Objective.param_labels``) while the energy network trains on all
terms, or trained on jointly with it. Joint fine-tuning at the
full learning rate from a fresh energy network undoes the density (ethanol: density L2 error 0.024 -> 0.043 in
five epochs); frozen, the density is good (1.35 % NMAE, joint from scratch 1.81 %) and the energy surface
worse (strong-band harmonic frequencies 69 cm^-1 off, joint 19): the energy network no longer shapes the
features it reads. What works: density first, continued from its weights with fresh cosine cycles at lower
learning rates (``api.train(init_from=...)``), then joint fine-tuning at a low learning rate from an energy
network that is already trained (density L2 +7 % at 3e-4); the README's results table has the measurements.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators import gaussians, reference, units
from dft_operators.grids import UniformGrid
from dft_operators.io.dataset import Dataset
from dft_operators.level import Level, level_electrons
from dft_operators.models import densnet
from dft_operators.molecule import Molecule
from dft_operators.nn.graph import AtomGraph, build_atom_graph
from dft_operators.training.loop import FROZEN, TRAINABLE, Objective, Stage
from dft_operators.workflows import evaluate_records
from dft_operators.workflows.density_records import (AUX_FIELDS, EVALUATION_FIELDS, graph_of, load_arrays,
                                                     record_elements, record_molecule, require_fields)
from dft_operators.workflows.density_tables import (DensityTables, element_tables, fit_baselines, model_arrays,
                                                    to_pyscf_order)

# Metric key of the density error's norm: "density_l2" or "density_coulomb".
_NORMS = {"overlap": "l2", "coulomb": "coulomb"}


@dataclasses.dataclass(frozen=True)
class DensityTask:
    """Weights and scales of the loss terms (module docstring)."""

    density_weight: float = 1.0  # weight of the density (coefficient) term
    energy_weight: float = 1.0  # weight of the energy term
    force_weight: float = 1.0  # weight of the force term (0: train without forces)
    density_scale: float = 3e-3  # an error norm per sqrt(electron) of this costs 1 (e/Bohr^1.5 L2, sqrt(Ha) Coulomb)
    density_metric: str = "overlap"  # norm of the density error: "overlap" (L2) or "coulomb" (module docstring)
    energy_scale: float = units.KCAL_PER_MOL_TO_HARTREE  # Hartree: an energy error of this costs 1
    force_scale: float = units.KCAL_PER_MOL_TO_HARTREE * units.ANGSTROM_PER_BOHR  # Hartree/Bohr (1 kcal/mol/A)
    dipole_weight: float = 1.0  # weight of the dipole term (the dipole is analytic in the coefficients)
    dipole_scale: float = 0.02 / units.DEBYE_PER_AU  # e*Bohr: a dipole error of this (0.02 D) per component costs 1
    density_epochs: int = 0  # epochs of the density network alone first (module docstring); 0: joint from the start
    density_learning_rate: float | None = None  # peak learning rate of those epochs (None: train.learning_rate)
    freeze_density: bool = True  # after them, the density network frozen (True) or trained on with the energy one

    def __post_init__(self):
        if self.density_metric not in _NORMS:
            raise ValueError(f"task.density_metric must be one of {sorted(_NORMS)}, not {self.density_metric!r}")
        if self.density_epochs < 0:
            raise ValueError(f"task.density_epochs must be >= 0, not {self.density_epochs}")
        if self.density_learning_rate is not None and not self.density_learning_rate > 0:
            raise ValueError(f"task.density_learning_rate must be > 0, not {self.density_learning_rate}")


def record_metrics(module, params, basis, baseline, row: dict, task: DensityTask, joint: bool = True
                   ) -> dict[str, jax.Array]:
    """Loss (module docstring) and metrics of one record; ``joint=False``: the density and dipole terms only
    (the density network alone: jit drops the energy network and the forces)."""
    graph = graph_of(row)
    if joint:
        out = densnet.predict_all(module, params, graph, basis, baseline, row["n_electrons"])
    else:
        coefficients, _ = module.apply(params, graph, basis, baseline, row["n_electrons"])
        out = {"coefficients": coefficients, "dipole": densnet.dipole(coefficients, graph, basis)}
    delta = out["coefficients"] - row["coefficients"]  # [A, D]
    density_sq = jnp.einsum("ad,abde,be->", delta, row["metric"], delta)
    dipole_error = out["dipole"] - row["dipole"]
    loss = (task.density_weight * density_sq / row["n_electrons"] / task.density_scale**2
            + task.dipole_weight * jnp.sum(dipole_error**2) / 3.0 / task.dipole_scale**2)
    metrics = {f"density_{_NORMS[task.density_metric]}": jnp.sqrt(density_sq),
               "coefficient_nmae_percent": 100.0 * jnp.sum(jnp.abs(delta)) / jnp.sum(jnp.abs(row["coefficients"])),
               "dipole_error_debye": jnp.linalg.norm(dipole_error) * units.DEBYE_PER_AU}
    if joint:
        real = (graph.species > 0).astype(delta.dtype)
        force_error = (out["forces"] - row["forces"]) * real[:, None]
        n_components = 3.0 * real.sum()
        energy_error = out["energy"] - row["energy"]
        loss = (loss + task.energy_weight * (energy_error / task.energy_scale) ** 2
                + task.force_weight * jnp.sum(force_error**2) / n_components / task.force_scale**2)
        metrics.update(energy_error_kcal_mol=jnp.abs(energy_error) * units.HARTREE_TO_KCAL_PER_MOL,
                       force_mae_kcal_mol_a=jnp.sum(jnp.abs(force_error)) / n_components
                       * units.HARTREE_TO_KCAL_PER_MOL / units.ANGSTROM_PER_BOHR)
    return {"loss": loss, **metrics}


def objective(module, tables: DensityTables, task: DensityTask) -> Objective:
    """Density + energy + force + dipole loss of DenSNet over batches of padded records; with
    ``task.density_epochs`` the density network alone first (a pretraining ``Stage``), then frozen or not
    (``task.freeze_density``) while the energy network trains."""
    basis, baseline = model_arrays(tables, module.max_atomic_number)

    def first_row(batch):
        return {k: jnp.asarray(v[0]) for k, v in batch.items()}

    def init(key, batch):  # jitted: one compilation instead of one per operation (~30 s on a loaded CPU)
        row = first_row(batch)
        return jax.jit(module.init)(key, graph_of(row), basis, baseline, row["n_electrons"])

    def per_sample(joint):
        def batch_metrics(params, batch):
            return jax.vmap(lambda row: record_metrics(module, params, basis, baseline, row, task, joint))(batch)
        return batch_metrics

    def density_frozen(params, batch):  # the optimiser's partition: the density network's weights FROZEN
        row = first_row(batch)
        density = densnet.density_parameters(module, params, graph_of(row), basis, baseline, row["n_electrons"])
        return jax.tree_util.tree_map(lambda d: FROZEN if d else TRAINABLE, density)

    if task.density_epochs == 0:
        return Objective(init, per_sample(True))
    density_first = Stage("density_first", Objective(init, per_sample(False)), task.density_epochs,
                          task.density_learning_rate)
    return Objective(init, per_sample(True), (density_first,),
                     param_labels=density_frozen if task.freeze_density else None)


def prepare(ds: Dataset, train_ids: list[str], val_ids: list[str], task: DensityTask, module):
    """(objective, train arrays, validation arrays or None, card entries) for the training loop; reads stored
    arrays only (no PySCF)."""
    level = Level(**ds.metadata["level"])
    numbers = {rid: ds.read(rid, ["numbers"])["numbers"] for rid in train_ids + val_ids}
    tables = element_tables(record_elements(ds, train_ids + val_ids, numbers), level.aux_basis, module.basis_irreps)
    n_atoms = max(len(n) for n in numbers.values())
    train = load_arrays(ds, train_ids, tables, task.density_metric, n_atoms)
    val = load_arrays(ds, val_ids, tables, task.density_metric, n_atoms) if val_ids else None
    tables = fit_baselines(tables, train)
    return objective(module, tables, task), train, val, {"tables": tables.to_json()}


def _tables(card: dict) -> DensityTables:
    """The density tables of a model card."""
    return DensityTables.from_json(card["tables"])


def metrics(card: dict, module, params, ds: Dataset, ids: list[str]) -> dict[str, float]:
    """Mean metrics of a trained model on dataset records (``Workflow.metrics``; ``api.evaluate`` has checked
    the level of theory): the loss's terms and ``nmae_percent`` (``records_nmae``, against the fitted densities)."""
    tables = _tables(card)
    task = DensityTask(**card["task"])
    arrays = load_arrays(ds, ids, tables, task.density_metric)
    result = evaluate_records(objective(module, tables, task), params, arrays)
    return {**result, "nmae_percent": records_nmae(card, module, params, ds, ids)}


def _model_inputs(card: dict, module, molecule: Molecule):
    """(graph, basis, baseline, n_electrons) of one molecule for a trained model."""
    tables = _tables(card)
    unknown = sorted({int(z) for z in molecule.numbers} - set(tables.elements))
    if unknown:
        raise ValueError(f"the model knows elements {sorted(tables.elements)}, not {unknown} of {molecule.name}")
    basis, baseline = model_arrays(tables, module.max_atomic_number)
    graph = jax.tree_util.tree_map(jnp.asarray, build_atom_graph(molecule.numbers, molecule.positions))
    n_electrons = float(level_electrons(molecule, Level(**card["level"])))
    return graph, basis, baseline, n_electrons


def molecule_potential(card: dict, module, params, molecule: Molecule):
    """positions [n_atoms, 3] Bohr -> (energy Hartree, dipole [3] e*Bohr) of a molecule, for ``md.integrators``."""
    return densnet.potential(module, params, *_model_inputs(card, module, molecule))


def properties(card: dict, module, params, molecule: Molecule) -> dict[str, np.ndarray]:
    """Coefficients [n_atoms, D], energy (Hartree), forces [n_atoms, 3] (Hartree/Bohr), dipole [3] (e*Bohr)."""
    out = jax.jit(densnet.predict_all, static_argnums=0)(module, params, *_model_inputs(card, module, molecule))
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), out)


def forward(card: dict, module, params, molecule: Molecule) -> tuple[np.ndarray, float]:
    """(coefficients [n_atoms, D], energy Hartree) of one molecule: one forward pass of both networks, without
    the derivatives ``properties`` adds (half its compile time)."""
    coefficients, energy = jax.jit(module.apply)(params, *_model_inputs(card, module, molecule))
    return np.asarray(coefficients, np.float64), float(energy)


def density_at(card: dict, molecule: Molecule, coefficients, points) -> np.ndarray:
    """The expanded density at points [..., 3] (Bohr), [...] electrons/Bohr^3 (the basis from PySCF)."""
    level = Level(**card["level"])
    c = to_pyscf_order(_tables(card), molecule.numbers, coefficients)
    points = np.asarray(points, np.float64)
    return reference.density_basis.aux_density(molecule, level, c, points.reshape(-1, 3)).reshape(points.shape[:-1])


def predict(card: dict, module, params, molecule: Molecule, level, spacing: float = 0.2, refine: int = 1) -> dict:
    """Density, energy, forces and dipole of a molecule; the density on a box of ``spacing / refine`` Bohr.

    Returns {"grid", "density" [nx, ny, nz], "energy_hartree", "forces" [n_atoms, 3] Hartree/Bohr,
    "dipole_debye" [3], "coefficients" [n_atoms, D]}.
    """
    out = properties(card, module, params, molecule)
    grid = UniformGrid.around(molecule.positions, spacing / refine)
    return {"grid": grid, "density": density_at(card, molecule, out["coefficients"], grid.points()),
            "energy_hartree": float(out["energy"]), "forces": out["forces"],
            "dipole_debye": (out["dipole"] * units.DEBYE_PER_AU).tolist(), "coefficients": out["coefficients"]}


def density_nmae(card: dict, module, params, molecule: Molecule, grid_level: int = 3) -> dict[str, float]:
    """Density NMAE in percent on PySCF's molecular quadrature, against a fresh Kohn-Sham calculation.

    Returns {"model_vs_ks", "model_vs_fit" (the Coulomb-fitted KS density the model learns), "fit_vs_ks"
    (the basis's own error), "atoms_vs_ks" (the free-atom superposition the model starts from)}.
    """
    level = Level(**card["level"])
    points, weights = reference.molecular_quadrature(molecule, level, grid_level)
    state = reference.run_ks(molecule, level)
    ks = reference.density_at_points(state.density, points)
    fitted = reference.fit_coefficients(state.density, with_error=False)["coefficients"]
    fit = reference.density_basis.aux_density(molecule, level, fitted, points)
    predicted = density_at(card, molecule, properties(card, module, params, molecule)["coefficients"], points)
    atoms = np.stack([_tables(card).elements[int(z)].atomic for z in molecule.numbers])
    free_atoms = density_at(card, molecule, atoms, points)
    return {"model_vs_ks": _nmae(predicted, ks, weights), "model_vs_fit": _nmae(predicted, fit, weights),
            "fit_vs_ks": _nmae(fit, ks, weights), "atoms_vs_ks": _nmae(free_atoms, ks, weights)}


def _nmae(rho, reference_rho, weights) -> float:
    """int |rho - rho_ref| / int rho_ref in percent, by quadrature."""
    return float(100.0 * weights @ np.abs(rho - reference_rho) / (weights @ reference_rho))


# Molecules whose coefficients records_nmae predicts in one call (padded to one shape: one compilation).
_PREDICT_BATCH = 8


@functools.partial(jax.jit, static_argnums=0)
def _batched_coefficients(module, params, graphs: AtomGraph, basis, baseline, n_electrons):
    """The density network's coefficients [batch, A, D] of a batch of graphs (leading axis on every field)."""
    return jax.vmap(lambda g, n: module.apply(params, g, basis, baseline, n)[0])(graphs, n_electrons)


def predict_coefficients(card: dict, module, params, molecules: list[Molecule]) -> list[np.ndarray]:
    """The density network's coefficients [n_atoms, D] (model layout) of molecules, in batches of
    ``_PREDICT_BATCH`` molecules with the same atom count (one compiled shape per atom count; the energy network
    is not run). A molecule gets the same numbers alone as among others."""
    for mol in molecules[:1]:
        _model_inputs(card, module, mol)  # checks the elements
    basis, baseline = model_arrays(_tables(card), module.max_atomic_number)
    level = Level(**card["level"])
    out: list = [None] * len(molecules)
    for n_atoms in sorted({m.n_atoms for m in molecules}):
        group = [i for i, m in enumerate(molecules) if m.n_atoms == n_atoms]
        for start in range(0, len(group), _PREDICT_BATCH):
            take = group[start:start + _PREDICT_BATCH]
            padded = take + take[-1:] * (_PREDICT_BATCH - len(take))  # the last batch padded with copies
            graphs = [build_atom_graph(molecules[i].numbers, molecules[i].positions) for i in padded]
            electrons = jnp.asarray([level_electrons(molecules[i], level) for i in padded], jnp.float32)
            batch = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *graphs)
            c = np.asarray(_batched_coefficients(module, params, batch, basis, baseline, electrons), np.float64)
            for k, i in enumerate(take):
                out[i] = c[k]
    return out


def records_nmae(card: dict, module, params, ds: Dataset, ids: list[str], grid_level: int | None = None,
                 against: str = "fit") -> float:
    """Mean density NMAE (percent) of the model over records, on PySCF's molecular quadrature of each geometry:
    ``evaluate``'s nmae_percent.

    Reads the quadrature (level 2, ``data.generate._density_basis_fields``), the Kohn-Sham density on it and
    the auxiliary basis that generation stored, and evaluates the basis with ``gaussians``: no PySCF.

    Args:
      against: "fit", the records' own fitted densities (the targets the model learns), or "ks", the Kohn-Sham
        densities they were fitted to.
      grid_level: None for the stored quadrature; another level builds that quadrature with PySCF.
    """
    if against not in ("fit", "ks"):
        raise ValueError(f"records_nmae compares with 'fit' or 'ks', not {against!r}")
    fields = ["numbers", "positions", "coefficients/c", *AUX_FIELDS, *EVALUATION_FIELDS]
    require_fields(ds, fields)
    tables = _tables(card)
    molecules = [record_molecule(ds, rid, ds.read(rid, ["numbers", "positions"])) for rid in ids]
    predictions = predict_coefficients(card, module, params, molecules)
    errors = []
    for rid, mol, prediction in zip(ids, molecules, predictions):
        r = ds.read(rid, fields)
        points, weights = r["coefficients/points"].astype(np.float64), r["coefficients/weights"].astype(np.float64)
        ks = r["coefficients/rho"].astype(np.float64)
        if grid_level is not None and grid_level != int(r["coefficients/grid_level"]):
            if against == "ks":
                raise ValueError(f"the Kohn-Sham density is stored on the level-{int(r['coefficients/grid_level'])} "
                                 f"grid only, not on level {grid_level}")
            points, weights = reference.molecular_quadrature(mol, Level(**card["level"]), grid_level)
        basis = gaussians.GaussianBasis.from_arrays(r, "coefficients/aux_")
        predicted_c = to_pyscf_order(tables, mol.numbers, prediction)
        target_c = np.asarray(r["coefficients/c"], np.float64)
        predicted, fitted = gaussians.expand(basis, mol.positions, points, np.stack([predicted_c, target_c], 1)).T
        errors.append(_nmae(predicted, ks if against == "ks" else fitted, weights))
    return float(np.mean(errors))
