"""DenSNet's auxiliary density basis per element, in the model's layout: the tables its model card stores.

Layout. The model writes each atom's coefficients as one e3nn irreps vector (``DenSNetConfig.basis_irreps``, D
components): shell k of angular momentum l of an element goes to copy k of the irrep l, and its 2l + 1 PySCF
functions map to e3nn's real spherical harmonics by the linear map M_l with A_pyscf(u) = Y_e3nn(u) M_l on unit
vectors u (fitted on random directions, exact to rounding; PySCF's functions are evaluated by ``gaussians``),
so c_e3nn = M_l c_pyscf. The tables (free-atom coefficients, charges, moments: ``models.densnet.DensityBasis``)
are made once from the records' stored arrays (``workflows.densnet.record_elements``) and kept in the model card
with the matrices back to PySCF's order (``DensityTables.to_json``): a model then needs PySCF only to write the
density of a new molecule on a grid or to compare with a fresh Kohn-Sham run.
"""

from __future__ import annotations

import dataclasses

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

from dft_operators import gaussians, models, units
from dft_operators.models import densnet

# Version of the JSON layout written by ``DensityTables.to_json``.
SCHEMA = 1
# Random directions used to fit the map between PySCF's and e3nn's real spherical harmonics.
_N_DIRECTIONS = 64
# A slot's normalising scale never drops below this fraction of the element's largest one.
_SCALE_FLOOR = 1e-2
# Energy-baseline scale floor (Hartree): 1 kcal/mol.
_MIN_ENERGY_SCALE = units.KCAL_PER_MOL_TO_HARTREE


@dataclasses.dataclass(frozen=True)
class ElementTable:
    """One element's auxiliary functions in the model layout: D slots, n_f functions in PySCF's order."""

    atomic: np.ndarray  # [D] coefficients of the free spherical atom (its electrons exactly)
    charges: np.ndarray  # [D] int chi dr of each slot (nonzero for s functions), electrons
    moments: np.ndarray  # [D, 3] int (r - R) chi dr of each slot (nonzero for p functions), Bohr
    mask: np.ndarray  # [D] 1 where the element has a function in that slot, else 0
    to_pyscf: np.ndarray  # [n_f, D] model layout -> PySCF's order
    scale: np.ndarray  # [D] typical size of c - atomic per slot, from the training set (ones before fit_baselines)


@dataclasses.dataclass(frozen=True)
class DensityTables:
    """The per-element tables of a DenSNet model and its per-element energy baseline (module docstring)."""

    aux_basis: str  # PySCF name of the auxiliary (density-fitting) basis
    basis_irreps: str  # the model's coefficient slots, DenSNetConfig.basis_irreps
    elements: dict[int, ElementTable]  # by atomic number
    atom_energies: dict[int, float] = dataclasses.field(default_factory=dict)  # Hartree per atom of each element
    # (least squares on the training set, fit_baselines; zero before)
    energy_scale: float = 1.0  # Hartree: scale of the energy network's per-atom output (fit_baselines)
    schema: int = SCHEMA  # version of the JSON layout

    def to_json(self) -> dict:
        """The model card's entry: plain lists and numbers, atomic numbers as string keys."""
        return {"schema": self.schema, "aux_basis": self.aux_basis, "basis_irreps": self.basis_irreps,
                "elements": {str(z): {f.name: np.asarray(getattr(t, f.name)).tolist()
                                      for f in dataclasses.fields(ElementTable)}
                             for z, t in sorted(self.elements.items())},
                "atom_energies": {str(z): float(e) for z, e in sorted(self.atom_energies.items())},
                "energy_scale": float(self.energy_scale)}

    @classmethod
    def from_json(cls, data: dict) -> DensityTables:
        """The tables of a model card's entry (``to_json``).

        Raises:
          ValueError: the entry has another schema.
        """
        schema = data.get("schema", 1)  # cards written before the field existed (densnet-ethanol) hold schema 1
        if schema != SCHEMA:
            raise ValueError(f"the card's density tables have schema {schema}; this version reads schema {SCHEMA}")
        elements = {int(z): ElementTable(**{k: np.asarray(v, np.float64) for k, v in t.items()})
                    for z, t in data["elements"].items()}
        return cls(data["aux_basis"], data["basis_irreps"], elements,
                   {int(z): float(e) for z, e in data["atom_energies"].items()}, float(data["energy_scale"]), schema)


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


def element_tables(elements: dict[int, dict], aux_basis: str, basis_irreps: str) -> DensityTables:
    """The tables of the elements before the training set's statistics (``fit_baselines`` adds them).

    Args:
      elements: one-atom data per atomic number in PySCF's order (``workflows.densnet.record_elements``);
        aux_basis: its basis's name; basis_irreps: the model's coefficient slots.
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
        from_pyscf = np.zeros((irreps.dim, len(table["integrals"])))  # [D, n_f]
        used, column = {l: 0 for l in slots}, 0
        for l in table["ls"]:
            start = slots[l][used[l]]
            from_pyscf[start:start + 2 * l + 1, column:column + 2 * l + 1] = maps[l]
            used[l], column = used[l] + 1, column + 2 * l + 1
        to_pyscf = np.linalg.pinv(from_pyscf)  # [n_f, D]
        tables[z] = ElementTable(atomic=from_pyscf @ table["atomic_coefficients"],
                                 charges=to_pyscf.T @ table["integrals"], moments=to_pyscf.T @ table["moments"],
                                 mask=(np.abs(from_pyscf).sum(1) > 0).astype(float), to_pyscf=to_pyscf,
                                 scale=np.ones(irreps.dim))
    return DensityTables(aux_basis, basis_irreps, tables)


def fit_baselines(tables: DensityTables, arrays: dict) -> DensityTables:
    """The tables with the training set's statistics: per-slot scales of c - c0 (one per irrep copy, so rotations
    commute with them; unit scales for an element met only in validation), per-element energies (least squares
    on element counts) and their scale.

    Args:
      arrays: ``workflows.densnet.load_arrays`` of the training records ("species", "coefficients", "energy").
    """
    irreps = e3nn.Irreps(tables.basis_irreps)
    species, coefficients = arrays["species"], arrays["coefficients"].astype(np.float64)
    elements = {}
    for z, table in tables.elements.items():
        delta = coefficients[species == z] - table.atomic  # [n_atoms_z, D]
        scale = np.ones(irreps.dim)
        if len(delta):
            rms, start = np.sqrt(np.mean(delta**2, axis=0)), 0
            for mul, ir in irreps:
                for _ in range(mul):
                    scale[start:start + ir.dim] = np.sqrt(np.mean(rms[start:start + ir.dim] ** 2))
                    start += ir.dim
            scale = np.maximum(scale, _SCALE_FLOOR * scale.max())
        elements[z] = dataclasses.replace(table, scale=scale)
    numbers = sorted(tables.elements)
    counts = np.stack([(species == z).sum(1) for z in numbers], axis=1).astype(float)  # [n_records, n_elements]
    energies = arrays["energy"].astype(np.float64)
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    residual = energies - counts @ solution
    return dataclasses.replace(tables, elements=elements,
                               atom_energies={z: float(e) for z, e in zip(numbers, solution)},
                               energy_scale=float(max(residual.std(), _MIN_ENERGY_SCALE)))


def layout_maps(tables: DensityTables) -> dict[int, np.ndarray]:
    """{atomic number: [D, n_f] matrix from PySCF's order to the model layout}, the inverse of ``to_pyscf``."""
    return {z: np.linalg.pinv(t.to_pyscf) for z, t in tables.elements.items()}


def to_model_layout(maps: dict[int, np.ndarray], numbers, labels, coefficients) -> np.ndarray:
    """PySCF-ordered coefficients [n_aux] of a molecule (``aux_labels`` [n_aux, 3]) -> [n_atoms, D], with the
    per-element ``layout_maps``."""
    atom_of = np.asarray(labels)[:, 0]
    return np.stack([maps[int(z)] @ np.asarray(coefficients)[atom_of == a] for a, z in enumerate(numbers)])


def metric_in_layout(tables: DensityTables, numbers, labels, metric, n_atoms: int) -> np.ndarray:
    """A molecule's PySCF-ordered aux metric [n_aux, n_aux] (``aux_labels`` [n_aux, 3]) -> M [n_atoms, n_atoms,
    D, D] with M[a, b] the metric between atom a's and atom b's model slots (padding atoms zero)."""
    atom_of = np.asarray(labels)[:, 0]
    d = e3nn.Irreps(tables.basis_irreps).dim
    blocks = np.zeros((len(atom_of), n_atoms * d))  # PySCF functions <- model slots
    for a, z in enumerate(numbers):
        blocks[atom_of == a, a * d:(a + 1) * d] = tables.elements[int(z)].to_pyscf
    m = blocks.T @ np.asarray(metric) @ blocks
    return m.reshape(n_atoms, d, n_atoms, d).transpose(0, 2, 1, 3)


def to_pyscf_order(tables: DensityTables, numbers, coefficients) -> np.ndarray:
    """Model-layout coefficients [n_atoms, D] -> PySCF's order [n_aux] (atoms in order)."""
    return np.concatenate([tables.elements[int(z)].to_pyscf @ np.asarray(c, np.float64)
                           for z, c in zip(numbers, coefficients)])


def model_arrays(tables: DensityTables, max_atomic_number: int
                 ) -> tuple[densnet.DensityBasis, densnet.EnergyBaseline]:
    """The ``DensityBasis`` and ``EnergyBaseline`` of the tables (float32), rows indexed by atomic number."""
    models.check_atomic_numbers(tables.elements, max_atomic_number)
    d = e3nn.Irreps(tables.basis_irreps).dim
    n = max_atomic_number + 1
    full = {"atomic": np.zeros((n, d)), "charges": np.zeros((n, d)), "moments": np.zeros((n, d, 3)),
            "mask": np.zeros((n, d)), "scale": np.ones((n, d))}
    for z, table in tables.elements.items():
        for key in full:
            full[key][z] = getattr(table, key)
    energies = np.zeros(n)
    for z, e in tables.atom_energies.items():
        energies[z] = e
    as32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return (densnet.DensityBasis(**{k: as32(v) for k, v in full.items()}),
            densnet.EnergyBaseline(as32(energies), as32(tables.energy_scale)))
