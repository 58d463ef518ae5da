"""Density coefficients, energies, forces and dipoles of molecules: the workflow of DenSNet.

Data: the ``coefficients`` kind of an all-electron dataset made with ``forces`` (``coefficients/c`` and
``coefficients/aux_labels`` in PySCF's order, ``forces``, ``dipole`` and the ``energy`` attribute), with what
generation stores so that training and evaluation never call PySCF (``data.generate._density_basis_fields``):
the auxiliary basis as arrays (``coefficients/aux_*``, evaluated by ``gaussians``), each atom's free-atom
coefficients (``coefficients/c_atoms``), both density metrics at the geometry (``coefficients/metric_*``) and
an evaluation quadrature with the Kohn-Sham density on it (``coefficients/points``, ``weights``, ``rho``).

Layout. The model writes each atom's coefficients as one e3nn irreps vector (``DenSNetConfig.basis_irreps``):
shell k of angular momentum l of an element goes to copy k of the irrep l, and its 2l + 1 PySCF functions
map to e3nn's real spherical harmonics by the linear map M_l with A_pyscf(u) = Y_e3nn(u) M_l on unit
vectors u (fitted here on random directions, exact to rounding; PySCF's functions are evaluated by
``gaussians``), so c_e3nn = M_l c_pyscf. The element tables (free-atom coefficients, charges, moments,
``models.densnet.DensityBasis``) are made once from the records' stored arrays and kept in the model card with
the matrices back to PySCF's order: a model then needs PySCF only to write the density of a new molecule on a
grid (``density_at``, ``predict``) or to compare with a fresh Kohn-Sham run (``density_nmae``).

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
an epoch costs ~2.4x less), then, for ``train.epochs``, either frozen (``freeze_density``: its gradients
stopped) while the energy network trains on all terms, or trained on jointly with it. Joint fine-tuning at the
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

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

from dft_operators import gaussians, reference, units
from dft_operators.grids import UniformGrid
from dft_operators.io.dataset import Dataset, DatasetError
from dft_operators.level import Level, level_electrons
from dft_operators.models import densnet
from dft_operators.molecule import Molecule
from dft_operators.nn.graph import AtomGraph, build_atom_graph
from dft_operators.training.loop import Objective, Stage

_GRAPH_FIELDS = tuple(f.name for f in dataclasses.fields(AtomGraph))
# Random directions used to fit the map between PySCF's and e3nn's real spherical harmonics.
_N_DIRECTIONS = 64
# A slot's normalising scale never drops below this fraction of the element's largest one.
_SCALE_FLOOR = 1e-2
# Metric key of the density error's norm: "density_l2" or "density_coulomb".
_NORMS = {"overlap": "l2", "coulomb": "coulomb"}
# Energy-baseline scale floor (Hartree): 1 kcal/mol.
_MIN_ENERGY_SCALE = units.KCAL_PER_MOL_TO_HARTREE


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


def harmonic_maps(lmax: int) -> list[np.ndarray]:
    """M_l [2l + 1, 2l + 1] with PySCF's angular functions = e3nn's spherical harmonics @ M_l (module docstring)."""
    u = np.random.default_rng(0).normal(size=(_N_DIRECTIONS, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    maps = []
    for l in range(lmax + 1):
        with jax.enable_x64(True):
            y = np.asarray(e3nn.spherical_harmonics(l, e3nn.IrrepsArray("1o", jnp.asarray(u)), normalize=True,
                                                    normalization="component").array)
        a = gaussians.angular_functions(l, u)
        m, *_ = np.linalg.lstsq(y, a, rcond=None)
        if not np.allclose(y @ m, a, atol=1e-10):
            raise RuntimeError(f"PySCF's l = {l} functions are not a rotation of e3nn's spherical harmonics")
        maps.append(m)
    return maps


def _slots(irreps: e3nn.Irreps) -> dict[int, list[int]]:
    """Start index of every copy of each l in an irreps vector, {l: [start, ...]}."""
    out, start = {}, 0
    for mul, ir in irreps:
        for _ in range(mul):
            out.setdefault(ir.l, []).append(start)
            start += ir.dim
    return out


# Stored arrays of a record (``data.generate._density_basis_fields``): the auxiliary basis, what the element
# tables are made of, and the evaluation quadrature.
_AUX_FIELDS = tuple(f"coefficients/aux_{name}" for name in gaussians.GaussianBasis.FIELDS)
_ELEMENT_FIELDS = ("coefficients/c_atoms", "coefficients/aux_integrals", *_AUX_FIELDS)
_EVALUATION_FIELDS = ("coefficients/points", "coefficients/weights", "coefficients/rho", "coefficients/grid_level")


def _require(ds: Dataset, fields) -> None:
    """Raises DatasetError naming what the dataset lacks of ``fields`` (from its manifest's field list)."""
    listed = ds.metadata.get("fields") or {}
    missing = [k for k in fields if listed and k not in listed]
    if "coefficients" not in ds.metadata.get("kinds", []) or missing:
        raise DatasetError(f"{ds.path} lacks {missing or ['coefficients/*']}; DenSNet needs `generate --kind "
                           "coefficients` with forces, made by a version that stores what training reads "
                           "(the auxiliary basis, free-atom coefficients, metrics): regenerate it")


def record_elements(ds: Dataset, ids: list[str], numbers: dict[str, np.ndarray] | None = None
                    ) -> dict[int, dict[str, np.ndarray]]:
    """The one-atom data of every element of the records, from the first atom of it met (no PySCF).

    Args:
      ds, ids: the records; numbers: their atomic numbers by id, if already read.
    Returns:
      {Z: {"ls" [n_shells] l per shell (contractions expanded), "integrals" [n_f] int chi dr, "moments" [n_f, 3]
      int (r - R) chi dr, "atomic_coefficients" [n_f] the free atom's fit}}, PySCF's order: the keys of
      ``reference.density_basis.element_basis``, which computes them with PySCF.
    """
    _require(ds, _ELEMENT_FIELDS)
    numbers = numbers or {rid: ds.read(rid, ["numbers"])["numbers"] for rid in ids}
    elements = {}
    for rid in ids:
        new = sorted({int(z) for z in numbers[rid]} - set(elements))
        if not new:
            continue
        r = ds.read(rid, ["numbers", *_ELEMENT_FIELDS])
        basis = gaussians.GaussianBasis.from_arrays(r, "coefficients/aux_")
        atom_of, moments = basis.function_atoms(), gaussians.first_moments(basis)
        for z in new:
            a = int(np.flatnonzero(r["numbers"] == z)[0])
            mine = atom_of == a
            elements[z] = {"ls": basis.shell_ls(a), "integrals": r["coefficients/aux_integrals"][mine],
                           "moments": moments[mine], "atomic_coefficients": r["coefficients/c_atoms"][mine]}
    return elements


def element_tables(elements: dict[int, dict], aux_basis: str, basis_irreps: str) -> dict:
    """The JSON-able per-element tables of the model card (module docstring).

    Args:
      elements: one-atom data per atomic number (``record_elements``); aux_basis: its basis's name.
    Raises:
      ValueError: an element has more shells of some l than ``basis_irreps`` has copies of it.
    """
    irreps = e3nn.Irreps(basis_irreps)
    slots = _slots(irreps)
    maps = harmonic_maps(irreps.lmax)
    tables = {}
    for z in sorted(int(n) for n in elements):
        table = elements[z]
        counts = np.bincount(table["ls"], minlength=irreps.lmax + 1)
        if len(counts) > irreps.lmax + 1 or any(counts[l] > len(slots.get(l, [])) for l in range(len(counts))):
            need = " + ".join(f"{n}x{l}{'eo'[l % 2]}" for l, n in enumerate(counts) if n)
            raise ValueError(f"the {aux_basis} functions of element {z} ({need}) do not fit the model's "
                             f"basis_irreps {basis_irreps!r}; set model.basis_irreps to cover them")
        from_pyscf = np.zeros((irreps.dim, len(table["integrals"])))
        used, column = {l: 0 for l in slots}, 0
        for l in table["ls"]:
            start = slots[l][used[l]]
            from_pyscf[start:start + 2 * l + 1, column:column + 2 * l + 1] = maps[l]
            used[l], column = used[l] + 1, column + 2 * l + 1
        to_pyscf = np.linalg.pinv(from_pyscf)  # [n_f, D]
        tables[str(z)] = {
            "atomic": from_pyscf @ table["atomic_coefficients"], "charges": to_pyscf.T @ table["integrals"],
            "moments": to_pyscf.T @ table["moments"],
            "mask": (np.abs(from_pyscf).sum(1) > 0).astype(float), "to_pyscf": to_pyscf}
    return {"aux_basis": aux_basis, "basis_irreps": basis_irreps,
            "elements": {z: {k: np.asarray(v).tolist() for k, v in t.items()} for z, t in tables.items()}}


def layout_maps(tables: dict) -> dict[int, np.ndarray]:
    """{atomic number: [D, n_f] matrix from PySCF's order to the model layout}, the inverse of "to_pyscf"."""
    return {int(z): np.linalg.pinv(np.asarray(t["to_pyscf"])) for z, t in tables["elements"].items()}


def to_model_layout(maps: dict[int, np.ndarray], numbers, labels, coefficients) -> np.ndarray:
    """PySCF-ordered coefficients [n_aux] of a molecule (``aux_labels`` [n_aux, 3]) -> [n_atoms, D], with the
    per-element ``layout_maps``."""
    atom_of = np.asarray(labels)[:, 0]
    return np.stack([maps[int(z)] @ np.asarray(coefficients)[atom_of == a] for a, z in enumerate(numbers)])


def metric_in_layout(tables: dict, numbers, labels, metric, n_atoms: int) -> np.ndarray:
    """A molecule's PySCF-ordered aux metric [n_aux, n_aux] (``aux_labels`` [n_aux, 3]) -> M [n_atoms, n_atoms,
    D, D] with M[a, b] the metric between atom a's and atom b's model slots (padding atoms zero)."""
    atom_of = np.asarray(labels)[:, 0]
    d = e3nn.Irreps(tables["basis_irreps"]).dim
    blocks = np.zeros((len(atom_of), n_atoms * d))  # PySCF functions <- model slots
    for a, z in enumerate(numbers):
        blocks[atom_of == a, a * d:(a + 1) * d] = np.asarray(tables["elements"][str(int(z))]["to_pyscf"])
    m = blocks.T @ np.asarray(metric) @ blocks
    return m.reshape(n_atoms, d, n_atoms, d).transpose(0, 2, 1, 3)


def to_pyscf_order(tables: dict, numbers, coefficients) -> np.ndarray:
    """Model-layout coefficients [n_atoms, D] -> PySCF's order [n_aux] (atoms in order)."""
    return np.concatenate([np.asarray(tables["elements"][str(int(z))]["to_pyscf"]) @ np.asarray(c, np.float64)
                           for z, c in zip(numbers, coefficients)])


def model_arrays(tables: dict, max_atomic_number: int) -> tuple[densnet.DensityBasis, densnet.EnergyBaseline]:
    """The ``DensityBasis`` and ``EnergyBaseline`` of a card's tables, rows indexed by atomic number."""
    d = e3nn.Irreps(tables["basis_irreps"]).dim
    n = max_atomic_number + 1
    full = {"atomic": np.zeros((n, d)), "charges": np.zeros((n, d)), "moments": np.zeros((n, d, 3)),
            "mask": np.zeros((n, d)), "scale": np.ones((n, d))}
    for z, table in tables["elements"].items():
        for key in full:
            full[key][int(z)] = np.asarray(table[key])
    energies = np.zeros(n)
    for z, e in tables["atom_energies"].items():
        energies[int(z)] = e
    as32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return (densnet.DensityBasis(**{k: as32(v) for k, v in full.items()}),
            densnet.EnergyBaseline(as32(energies), as32(tables["energy_scale"])))


def _molecule(ds: Dataset, rid: str, arrays: dict) -> Molecule:
    """The molecule of a record from its numbers and positions (in ``arrays``) and its attributes."""
    attrs = {name: ds.attribute(name, [rid])[0] for name in ("charge", "spin", "name")}
    return Molecule.from_record({**arrays, **attrs})


def load_arrays(ds: Dataset, ids: list[str], tables: dict, metric: str, n_atoms: int | None = None
                ) -> dict[str, np.ndarray]:
    """Training arrays of records padded to one atom count (floats as float32), from stored arrays only.

    Returns:
      the ``AtomGraph`` fields, "coefficients" [n, A, D], "metric" [n, A, A, D, D] (``metric_in_layout`` of
      the stored ``coefficients/metric_<metric>``, ``reference.density_basis.aux_metric`` at generation),
      "energy" [n] Hartree, "forces" [n, A, 3] Hartree/Bohr, "dipole" [n, 3] e*Bohr, "n_electrons" [n].
    """
    level = Level(**ds.metadata["level"])
    fields = ["numbers", "positions", "forces", "dipole", "coefficients/c", "coefficients/aux_labels",
              f"coefficients/metric_{metric}"]
    _require(ds, fields)
    records = [ds.read(rid, fields) for rid in ids]
    energies = ds.attribute("energy", ids)
    n_atoms = n_atoms or max(len(r["numbers"]) for r in records)
    maps = layout_maps(tables)
    rows = []
    for rid, r, energy in zip(ids, records, energies):
        numbers = np.asarray(r["numbers"])
        mol = _molecule(ds, rid, r)
        graph = build_atom_graph(numbers, r["positions"], n_atoms)
        labels = r["coefficients/aux_labels"]
        c = to_model_layout(maps, numbers, labels, r["coefficients/c"])
        m = metric_in_layout(tables, numbers, labels, r[f"coefficients/metric_{metric}"].astype(np.float64), n_atoms)
        pad = ((0, n_atoms - len(numbers)), (0, 0))
        rows.append({**{k: np.asarray(getattr(graph, k)) for k in _GRAPH_FIELDS},
                     "coefficients": np.pad(c, pad), "metric": m.astype(np.float32),
                     "forces": np.pad(np.asarray(r["forces"]), pad),
                     "energy": np.float64(energy), "dipole": np.asarray(r["dipole"], np.float64),
                     "n_electrons": np.float64(level_electrons(mol, level))})
    stacked = {k: np.stack([row[k] for row in rows]) for k in rows[0]}
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in stacked.items()}


def fit_baselines(tables: dict, arrays: dict) -> dict:
    """Adds the training-set statistics to the tables: per-slot scales of c - c0 (one per irrep copy, so
    rotations commute with them), per-element energies (least squares on element counts) and their scale."""
    irreps = e3nn.Irreps(tables["basis_irreps"])
    species, coefficients = arrays["species"], arrays["coefficients"].astype(np.float64)
    for z, table in tables["elements"].items():
        delta = coefficients[species == int(z)] - np.asarray(table["atomic"])  # [n_atoms_z, D]
        if not len(delta):  # an element met only in validation: unit scales
            table["scale"] = np.ones(irreps.dim).tolist()
            continue
        rms = np.sqrt(np.mean(delta**2, axis=0))
        scale, start = np.ones(irreps.dim), 0
        for mul, ir in irreps:
            for _ in range(mul):
                scale[start:start + ir.dim] = np.sqrt(np.mean(rms[start:start + ir.dim] ** 2))
                start += ir.dim
        scale = np.maximum(scale, _SCALE_FLOOR * scale.max())
        table["scale"] = scale.tolist()
    elements = sorted(tables["elements"], key=int)
    counts = np.stack([(species == int(z)).sum(1) for z in elements], axis=1).astype(float)  # [n, n_el]
    energies = arrays["energy"].astype(np.float64)
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    residual = energies - counts @ solution
    tables["atom_energies"] = {z: float(e) for z, e in zip(elements, solution)}
    tables["energy_scale"] = float(max(residual.std(), _MIN_ENERGY_SCALE))
    return tables


def graph_of(row: dict) -> AtomGraph:
    """The ``AtomGraph`` of one record of ``load_arrays`` (no leading axis)."""
    return AtomGraph(**{k: row[k] for k in _GRAPH_FIELDS})


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


def objective(module, tables: dict, task: DensityTask) -> Objective:
    """Density + energy + force + dipole loss of DenSNet over batches of padded records; with
    ``task.density_epochs`` the density network alone first (a pretraining ``Stage``), then frozen or not
    (``task.freeze_density``) while the energy network trains."""
    basis, baseline = model_arrays(tables, module.max_atomic_number)

    def init(key, batch):  # jitted: one compilation instead of one per operation (~30 s on a loaded CPU)
        row = {k: jnp.asarray(v[0]) for k, v in batch.items()}
        return jax.jit(module.init)(key, graph_of(row), basis, baseline, row["n_electrons"])

    def per_sample(joint, frozen_density):
        def batch_metrics(params, batch):
            params = _stop_density_gradients(params) if frozen_density else params
            return jax.vmap(lambda row: record_metrics(module, params, basis, baseline, row, task, joint))(batch)
        return batch_metrics

    if task.density_epochs == 0:
        return Objective(init, per_sample(True, False))
    density_first = Stage("density_first", Objective(init, per_sample(False, False)), task.density_epochs,
                          task.density_learning_rate)
    return Objective(init, per_sample(True, task.freeze_density), (density_first,))


def _stop_density_gradients(params):
    """The weights, the density network's held constant under jax.grad (the energy network's stay free)."""
    return {**params, "params": {name: jax.lax.stop_gradient(p) if name.startswith(densnet.DENSITY_MODULES) else p
                                 for name, p in params["params"].items()}}


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
    return objective(module, tables, task), train, val, {"tables": tables}


def evaluation_data(card: dict, ds: Dataset, ids: list[str], module):
    """(objective, arrays) to evaluate a trained model on dataset records."""
    if ds.metadata["level"] != card["level"]:
        raise ValueError(f"{ds.path} was made at level {ds.metadata['level']}, the model at {card['level']}")
    tables = card["tables"]
    task = DensityTask(**card["task"])
    return objective(module, tables, task), load_arrays(ds, ids, tables, task.density_metric)


def _model_inputs(card: dict, module, molecule: Molecule):
    """(graph, basis, baseline, n_electrons) of one molecule for a trained model."""
    unknown = sorted({int(z) for z in molecule.numbers} - {int(z) for z in card["tables"]["elements"]})
    if unknown:
        raise ValueError(f"the model knows elements {sorted(int(z) for z in card['tables']['elements'])}, "
                         f"not {unknown} of {molecule.name}")
    basis, baseline = model_arrays(card["tables"], module.max_atomic_number)
    graph = jax.tree_util.tree_map(jnp.asarray, build_atom_graph(molecule.numbers, molecule.positions))
    n_electrons = float(level_electrons(molecule, Level(**card["level"])))
    return graph, basis, baseline, n_electrons


def molecule_potential(card: dict, module, params, molecule: Molecule):
    """positions [n_atoms, 3] Bohr -> (energy Hartree, dipole [3] e*Bohr) of a molecule, for ``dynamics``."""
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
    c = to_pyscf_order(card["tables"], molecule.numbers, coefficients)
    points = np.asarray(points, np.float64)
    return reference.density_basis.aux_density(molecule, level, c, points.reshape(-1, 3)).reshape(points.shape[:-1])


def predict(card: dict, module, params, molecule: Molecule, level, spacing: float = 0.2, refine: int = 1) -> dict:
    """Density, energy, forces and dipole of a molecule; the density on a box of ``spacing / refine`` Bohr.

    Returns {"grid", "density" [nx, ny, nz], "energy_hartree", "forces" [n_atoms, 3] Hartree/Bohr,
    "dipole_debye" [3], "coefficients" [n_atoms, D]}.
    """
    out = properties(card, module, params, molecule)
    grid = UniformGrid.around(molecule.positions, spacing / refine, margin=5.0)
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
    fitted = reference.fit_coefficients(state.density)["coefficients"]
    fit = reference.density_basis.aux_density(molecule, level, fitted, points)
    predicted = density_at(card, molecule, properties(card, module, params, molecule)["coefficients"], points)
    atoms = np.stack([card["tables"]["elements"][str(int(z))]["atomic"] for z in molecule.numbers])
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
    basis, baseline = model_arrays(card["tables"], module.max_atomic_number)
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
    fields = ["numbers", "positions", "coefficients/c", *_AUX_FIELDS, *_EVALUATION_FIELDS]
    _require(ds, fields)
    molecules = [_molecule(ds, rid, ds.read(rid, ["numbers", "positions"])) for rid in ids]
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
        predicted_c = to_pyscf_order(card["tables"], mol.numbers, prediction)
        target_c = np.asarray(r["coefficients/c"], np.float64)
        predicted, fitted = gaussians.expand(basis, mol.positions, points, np.stack([predicted_c, target_c], 1)).T
        errors.append(_nmae(predicted, ks if against == "ks" else fitted, weights))
    return float(np.mean(errors))
