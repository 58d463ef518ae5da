"""What DenSNet reads of a dataset's records: the stored fields it needs, each element's one-atom data and
the padded training arrays (``workflows.densnet`` module docstring), from stored arrays only (no PySCF)."""

from __future__ import annotations

import dataclasses

import numpy as np

from dft_operators import gaussians
from dft_operators.io.dataset import Dataset, DatasetError
from dft_operators.level import Level, level_electrons
from dft_operators.molecule import Molecule
from dft_operators.nn.graph import AtomGraph, build_atom_graph
from dft_operators.workflows.density_tables import DensityTables, layout_maps, metric_in_layout, to_model_layout

_GRAPH_FIELDS = tuple(f.name for f in dataclasses.fields(AtomGraph))
# Stored arrays of a record (``data.generate._density_basis_fields``): the auxiliary basis, what the element
# tables are made of, and the evaluation quadrature.
AUX_FIELDS = tuple(f"coefficients/aux_{name}" for name in gaussians.GaussianBasis.FIELDS)
_ELEMENT_FIELDS = ("coefficients/c_atoms", "coefficients/aux_integrals", *AUX_FIELDS)
EVALUATION_FIELDS = ("coefficients/points", "coefficients/weights", "coefficients/rho", "coefficients/grid_level")


def require_fields(ds: Dataset, fields) -> None:
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
    require_fields(ds, _ELEMENT_FIELDS)
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


def record_molecule(ds: Dataset, rid: str, arrays: dict) -> Molecule:
    """The molecule of a record from its numbers and positions (in ``arrays``) and its attributes."""
    attrs = {name: ds.attribute(name, [rid])[0] for name in ("charge", "spin", "name")}
    return Molecule.from_record({**arrays, **attrs})


def load_arrays(ds: Dataset, ids: list[str], tables: DensityTables, metric: str, n_atoms: int | None = None
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
    require_fields(ds, fields)
    records = [ds.read(rid, fields) for rid in ids]
    energies = ds.attribute("energy", ids)
    n_atoms = n_atoms or max(len(r["numbers"]) for r in records)
    maps = layout_maps(tables)
    stacked = {}  # filled row by row: the metrics dominate memory (~10 MB a record), so no list + stack copy
    for i, (rid, r, energy) in enumerate(zip(ids, records, energies)):
        numbers = np.asarray(r["numbers"])
        mol = record_molecule(ds, rid, r)
        graph = build_atom_graph(numbers, r["positions"], n_atoms)
        labels = r["coefficients/aux_labels"]
        c = to_model_layout(maps, numbers, labels, r["coefficients/c"])
        m = metric_in_layout(tables, numbers, labels, r[f"coefficients/metric_{metric}"].astype(np.float64), n_atoms)
        pad = ((0, n_atoms - len(numbers)), (0, 0))
        row = {**{k: np.asarray(getattr(graph, k)) for k in _GRAPH_FIELDS},
               "coefficients": np.pad(c, pad), "metric": m, "forces": np.pad(np.asarray(r["forces"]), pad),
               "energy": np.float64(energy), "dipole": np.asarray(r["dipole"], np.float64),
               "n_electrons": np.float64(level_electrons(mol, level))}
        for k, v in row.items():
            if k not in stacked:
                stacked[k] = np.empty((len(ids), *v.shape), np.float32 if v.dtype.kind == "f" else v.dtype)
            stacked[k][i] = v
    return stacked


def graph_of(row: dict) -> AtomGraph:
    """The ``AtomGraph`` of one record of ``load_arrays`` (no leading axis)."""
    return AtomGraph(**{k: row[k] for k in _GRAPH_FIELDS})
