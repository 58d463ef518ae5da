"""Kinetic energy functionals on quadrature grids: the workflow of KineticNet, and orbital-free DFT with it.

Data: the ``quadrature`` kind of an all-electron dataset (``quadrature/rho``, ``grad_rho``, ``t_s``,
``dts_drho`` = mu - v_s on PySCF's grid, and the orbital basis as arrays, ``quadrature/basis_*``), ideally
under random external potentials so that the densities vary beyond the ground states of a few geometries.
Records are padded to one point, atom and edge count (padding has weight 0), so the loop compiles one shape.
Training and evaluation read only stored arrays (the basis functions are evaluated by ``gaussians``), never
PySCF; orbital-free DFT on a new molecule (``solve_ofdft``, ``predict``) builds its integrals with PySCF.

Loss, per record, with the model's T[rho] and the KS labels:

    ((T - T_s) / energy_scale)^2 + derivative_weight * (1/N) sum_m (D_m / derivative_scale)^2,
    D_m = int f_m (dT/drho - (mu - v_s)),   f_m = sqrt(rho) q_m,

with {q_m} the orbital basis orthonormalised on the grid. D_m is a directional derivative of T along the
density change f_m (by ``jax.grad`` of T with respect to rho and grad rho at the points, contracted with
f_m and grad f_m), so it needs no pointwise functional derivative. Why these directions: in a Gaussian
basis the Kohn-Sham equation holds only projected on the basis, and for two electrons (rho = 2 phi^2)
int f_m (mu - v_s) = sqrt(2) <q_m| -1/2 nabla^2 |phi> = int f_m dT_s/drho exactly; the pointwise mu - v_s is
wrong near the nuclei, where the basis has no cusp. These are also the directions that orbital-free
DFT in the same basis moves the density along (rho = psi^2, psi in the basis), so a model whose D_m
vanish at the KS density has it as a stationary point. sum_m D_m^2 / N is a density-weighted mean square
of the derivative error in Hartree^2 (exactly so for two electrons).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators import gaussians, ofdft, physics, reference, units
from dft_operators.grids import UniformGrid
from dft_operators.io.dataset import Dataset, DatasetError
from dft_operators.level import ALL_ELECTRON, Level
from dft_operators.models import kineticnet
from dft_operators.molecule import Molecule
from dft_operators.nn.graph import MolecularGraph, build_graph, graph_sizes
from dft_operators.training.loop import Objective
from dft_operators.workflows import evaluate_records

_GRAPH_FIELDS = tuple(f.name for f in dataclasses.fields(MolecularGraph))
# Padded sizes are rounded up to multiples of this, so that similar datasets compile the same shapes.
_PAD_MULTIPLE = 64
# Orbital-free runs pad the edges to a multiple of this: geometries of one molecule then share a compiled step.
_OFDFT_EDGE_MULTIPLE = 4096
# Relative eigenvalue of the grid overlap below which basis directions count as linearly dependent.
_OVERLAP_CUTOFF = 1e-8


@dataclasses.dataclass(frozen=True)
class KineticTask:
    """How kinetic energies and their derivatives are weighed in the loss (module docstring)."""

    energy_scale: float = units.KCAL_PER_MOL_TO_HARTREE  # Hartree: a kinetic-energy error of this costs 1
    derivative_scale: float = 0.01  # Hartree: a density-weighted RMS derivative error of this costs 1
    derivative_weight: float = 1.0  # weight of the derivative term against the energy term


def _test_directions(basis: gaussians.GaussianBasis, positions, points, weights, rho, grad_rho):
    """f_m = sqrt(rho) q_m and grad f_m at the points, [n, n_dir] and [n, n_dir, 3] (module docstring), with
    {q_m} the orbital basis (atoms at ``positions``) orthonormalised on the points."""
    values, gradients = gaussians.values(basis, positions, points, deriv=1)  # [n, n_basis], [n, n_basis, 3]
    overlap = values.T @ (weights[:, None] * values)
    eigenvalues, vectors = np.linalg.eigh(overlap)
    keep = eigenvalues > _OVERLAP_CUTOFF * eigenvalues.max()
    transform = vectors[:, keep] / np.sqrt(eigenvalues[keep])  # q = chi @ transform, orthonormal on the grid
    q, grad_q = values @ transform, np.einsum("pmx,mk->pkx", gradients, transform)
    root = np.sqrt(np.maximum(rho, 0.0))
    grad_root = np.where(root[:, None] > 0, grad_rho / (2.0 * np.where(root > 0, root, 1.0))[:, None], 0.0)
    return root[:, None] * q, grad_root[:, None, :] * q[:, :, None] + root[:, None, None] * grad_q


_FIELDS = ("points", "weights", "rho", "grad_rho", "t_s", "dts_drho")
_BASIS_FIELDS = tuple(f"basis_{name}" for name in gaussians.GaussianBasis.FIELDS)


def _read(ds: Dataset, rid: str) -> dict:
    """The quadrature arrays of a record that training reads, its orbital basis ("basis") and its "molecule"."""
    if "quadrature" not in ds.metadata.get("kinds", []):
        raise DatasetError(f"{ds.path} has no quadrature fields; generate it with --kind quadrature")
    fields = ds.metadata.get("fields", {})
    if fields and f"quadrature/{_BASIS_FIELDS[0]}" not in fields:
        raise DatasetError(f"{ds.path} lacks the orbital basis (quadrature/basis_*) that KineticNet reads since "
                           "training stopped calling PySCF; regenerate it with --kind quadrature")
    r = ds.read(rid, ["numbers", "positions", *(f"quadrature/{k}" for k in _FIELDS + _BASIS_FIELDS)])
    q = {k: r[f"quadrature/{k}"] for k in _FIELDS}
    q["basis"] = gaussians.GaussianBasis.from_arrays(r, "quadrature/basis_")
    attrs = {name: ds.attribute(name, [rid])[0] for name in ("charge", "spin", "name")}
    q["molecule"] = Molecule.from_record({**r, **attrs})
    return q


def _round_up(n: int) -> int:
    return -(-n // _PAD_MULTIPLE) * _PAD_MULTIPLE


def _pad_to(array: np.ndarray, size: int, axis: int = 0) -> np.ndarray:
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, size - array.shape[axis])
    return np.pad(array, widths)


def load_arrays(ds: Dataset, ids: list[str], point_cutoff: float, atom_cutoff: float) -> dict[str, np.ndarray]:
    """Training arrays of records, padded to common sizes (floats as float32).

    Returns:
      the ``MolecularGraph`` fields (``nn.graph``), "rho" [n, P], "grad_rho" [n, P, 3], "t_s" [n] Hartree,
      "n_electrons" [n], "directions" f_m [n, P, M], "direction_gradients" [n, P, M, 3] and
      "derivative_targets" int f_m (mu - v_s) [n, M] Hartree (M directions; padding directions are 0).
    """
    records = [_read(ds, rid) for rid in ids]
    sizes = [graph_sizes(r["points"], r["molecule"].positions, point_cutoff, atom_cutoff) for r in records]
    padded = {k: max(s[k] for s in sizes) for k in sizes[0]}
    padded.update({k: _round_up(padded[k]) for k in ("n_points", "n_edges")})
    n_points = padded["n_points"]
    rows = []
    for r in records:
        mol = r["molecule"]
        graph = build_graph(r["points"], r["weights"], mol.numbers, mol.positions, point_cutoff, atom_cutoff, padded)
        f, grad_f = _test_directions(r["basis"], mol.positions, r["points"], r["weights"], r["rho"], r["grad_rho"])
        rows.append({**{k: np.asarray(getattr(graph, k)) for k in _GRAPH_FIELDS},
                     "rho": _pad_to(r["rho"], n_points), "grad_rho": _pad_to(r["grad_rho"], n_points),
                     "t_s": np.float64(r["t_s"]), "n_electrons": np.float64(mol.n_electrons),
                     "directions": _pad_to(f, n_points), "direction_gradients": _pad_to(grad_f, n_points),
                     "derivative_targets": f.T @ (r["weights"] * r["dts_drho"])})
    n_dir = max(row["directions"].shape[1] for row in rows)
    for row in rows:
        for k in ("directions", "direction_gradients", "derivative_targets"):
            row[k] = _pad_to(row[k], n_dir, axis=1 if k != "derivative_targets" else 0)
    stacked = {k: np.stack([row[k] for row in rows]) for k in rows[0]}
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in stacked.items()}


def graph_of(row: dict) -> MolecularGraph:
    """The ``MolecularGraph`` of one record of ``load_arrays`` (no leading axis)."""
    return MolecularGraph(**{k: row[k] for k in _GRAPH_FIELDS})


def record_metrics(energy_fn, row: dict, task: KineticTask) -> dict[str, jax.Array]:
    """Loss (module docstring) and metrics of one record for a kinetic energy T = energy_fn(graph, rho,
    grad_rho): "energy_error_kcal_mol" |T - T_s| in kcal/mol and "derivative_rmse" sqrt(sum_m D_m^2 / N) in
    Hartree."""
    graph = graph_of(row)
    t, (d_rho, d_grad) = jax.value_and_grad(lambda r, g: energy_fn(graph, r, g), argnums=(0, 1))(
        row["rho"], row["grad_rho"])
    derivative = row["directions"].T @ d_rho + jnp.einsum("pmx,px->m", row["direction_gradients"], d_grad)  # [M]
    mean_square = jnp.sum((derivative - row["derivative_targets"]) ** 2) / row["n_electrons"]
    error = t - row["t_s"]
    loss = (error / task.energy_scale) ** 2 + task.derivative_weight * mean_square / task.derivative_scale**2
    return {"loss": loss, "energy_error_kcal_mol": jnp.abs(error) * units.HARTREE_TO_KCAL_PER_MOL,
            "derivative_rmse": jnp.sqrt(mean_square)}


def objective(module, task: KineticTask) -> Objective:
    """Energy + functional-derivative loss of a KineticNet over batches of padded records."""

    def init(key, batch):  # jitted: one compilation instead of one per operation
        row = {k: jnp.asarray(v[0]) for k, v in batch.items()}
        return jax.jit(module.init)(key, graph_of(row), row["rho"], row["grad_rho"])

    def per_sample(params, batch):
        def energy_fn(graph, rho, grad_rho):
            return kineticnet.kinetic_energy(module, params, graph, rho, grad_rho)

        return jax.vmap(lambda row: record_metrics(energy_fn, row, task))(batch)

    return Objective(init, per_sample)


def classical_objective(name: str, task: KineticTask = KineticTask()) -> Objective:
    """The same loss and metrics for a classical functional ('tf', 'vw', 'tfvw'), which has no parameters."""
    tf, vw = physics.CLASSICAL[name]

    def energy_fn(graph, rho, grad_rho):
        return jnp.sum(graph.weights * physics.tf_vw(rho, grad_rho, tf, vw))

    return Objective(lambda key, batch: {}, lambda params, batch: jax.vmap(
        lambda row: record_metrics(energy_fn, row, task))(batch))


def prepare(ds: Dataset, train_ids: list[str], val_ids: list[str], task: KineticTask, module):
    """(objective, train arrays, validation arrays or None, card entries) for the training loop."""
    if ds.metadata["level"].get("pseudo") is not None:
        raise DatasetError(f"{ds.path} holds pseudopotential (valence) densities; KineticNet needs all-electron "
                           "data: generate with --pseudo none")
    train = load_arrays(ds, train_ids, module.point_cutoff, module.atom_cutoff)
    val = load_arrays(ds, val_ids, module.point_cutoff, module.atom_cutoff) if val_ids else None
    return objective(module, task), train, val, {"grid_level": ds.metadata["settings"]["grid_level"]}


def metrics(card: dict, module, params, ds: Dataset, ids: list[str]) -> dict[str, float]:
    """Mean metrics of a trained model on dataset records (``Workflow.metrics``; ``api.evaluate`` has
    checked the level of theory)."""
    arrays = load_arrays(ds, ids, module.point_cutoff, module.atom_cutoff)
    return evaluate_records(objective(module, KineticTask(**card["task"])), params, arrays)


def kinetic_functional(kinetic, integrals: dict):
    """The kinetic energy density callable for ``ofdft``: a classical name ('tf', 'vw', 'tfvw') or a
    (module, params) pair of KineticNet, on the grid of ``reference.ofdft_integrals``' output."""
    if isinstance(kinetic, str):
        return ofdft.classical_kinetic(kinetic)
    module, params = kinetic
    sizes = graph_sizes(integrals["points"], integrals["positions"], module.point_cutoff, module.atom_cutoff)
    sizes["n_edges"] = -(-sizes["n_edges"] // _OFDFT_EDGE_MULTIPLE) * _OFDFT_EDGE_MULTIPLE
    graph = build_graph(integrals["points"], integrals["weights"], integrals["numbers"], integrals["positions"],
                        module.point_cutoff, module.atom_cutoff, sizes)
    return kineticnet.functional(module, params, graph)


def solve_ofdft(molecule: Molecule, kinetic, level: Level = ALL_ELECTRON, grid_level: int = 2,
                config: ofdft.OFDFTConfig = ofdft.OFDFTConfig()) -> dict:
    """Orbital-free ground state of a molecule from the superposition of atomic densities.

    Args:
      molecule: the molecule (all electrons); kinetic: 'tf', 'vw', 'tfvw' or (KineticNet module, params).
      level: xc must be "lda,pw" (the LDA of ``physics.xc``); the basis carries psi, ``aux_basis`` the
        Hartree fit. grid_level: PySCF quadrature level.
    Returns:
      ``ofdft.solve``'s dict plus "integrals" (``reference.ofdft_integrals``' arrays).
    """
    if level.xc.replace(" ", "").lower() != "lda,pw":
        raise ValueError(f"orbital-free DFT implements the LDA 'lda,pw', not {level.xc!r}")
    integrals = reference.ofdft_integrals(molecule, level, grid_level)
    result = ofdft.solve(ofdft.Problem.from_integrals(integrals), kinetic_functional(kinetic, integrals),
                         integrals["rho0"], config)
    return {**result, "integrals": integrals}


def density_at(result: dict, molecule: Molecule, level: Level, points: np.ndarray) -> np.ndarray:
    """The orbital-free density of ``solve_ofdft``'s result at points [..., 3] (Bohr), [...] electrons/Bohr^3."""
    points = np.asarray(points, dtype=np.float64)
    values, _ = reference.basis_on_points(molecule, level, points.reshape(-1, 3))
    psi = values @ result["coefficients"]  # the coefficients are normalised on the quadrature grid
    return (float(result["integrals"]["n_electrons"]) * psi**2).reshape(points.shape[:-1])


def density_on_box(result: dict, molecule: Molecule, level: Level, grid: UniformGrid) -> np.ndarray:
    """The orbital-free density of ``solve_ofdft``'s result on a box, [nx, ny, nz] electrons/Bohr^3."""
    return density_at(result, molecule, level, grid.points())


def predict(card: dict, module, params, molecule: Molecule, level: Level, refine: int = 1,
            spacing: float = 0.3) -> dict:
    """Orbital-free density of a molecule with the learned functional, on a box of ``spacing / refine`` Bohr.

    Returns {"grid", "density" [nx, ny, nz], "energy_hartree", "iterations", "converged"}.
    """
    result = solve_ofdft(molecule, (module, params), level, max(card.get("grid_level", 2), 2))
    grid = UniformGrid.around(molecule.positions, spacing / refine)
    return {"grid": grid, "density": density_on_box(result, molecule, level, grid), "energy_hartree": result["energy"],
            "iterations": result["iterations"], "converged": result["converged"]}
