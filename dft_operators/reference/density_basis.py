"""Atom-centred Gaussian density bases (DenSNet): one-atom tables, angular conventions, densities on points.

A density expanded in an auxiliary basis, rho(r) = sum_P c_P chi_P(r), with chi_P = R_P(|r - R_a|) A_lm(r - R_a)
centred on atom a. What a model needs from PySCF is per element and independent of the geometry: the
shells (angular momenta), the integrals int chi_P dr (only s functions are nonzero) and first moments
int (r - R_a) chi_P dr (only p functions), and the coefficients of the free, spherically averaged atom
fitted onto its own functions (the superposition of atomic densities, the baseline of Delta learning).
Training also needs, per geometry, the overlap or Coulomb metric of all the molecule's functions
(``aux_metric``). Generation stores all of it in each record (``data.generate``), so that training reads it
and never calls this module. Arrays here are in PySCF's order: shells as the basis lists them, p functions
as (px, py, pz), l >= 2 as m = -l .. l.
"""

from __future__ import annotations

import functools

import numpy as np
from pyscf import dft, gto

from dft_operators.molecule import Molecule, free_atom
from dft_operators.reference.fields import aux_integrals, fit_coefficients
from dft_operators.reference.level import Level, build_mole, level_electrons
from dft_operators.reference.scf import atomic_guess

# PySCF atom-centred quadrature level for the one-atom moments (converged to ~1e-10 for these Gaussians).
_MOMENT_GRID_LEVEL = 7


@functools.lru_cache(maxsize=128)
def free_atom_coefficients(number: int, level: Level) -> np.ndarray:
    """The free, spherically averaged atom's density (PySCF's atomic guess) fitted onto its own auxiliary
    functions in the Coulomb metric and scaled to integrate to its electron count (all electrons, or the
    valence with a pseudopotential), [n_f] in PySCF's order; read-only (cached per element and level)."""
    atom = free_atom(number)
    fit = fit_coefficients(atomic_guess(atom, level), level.aux_basis, with_error=False)
    # The Coulomb-metric fit misses the count by up to 1 % (H); scale it to exactly the atom's electrons.
    count = fit["aux_integrals"] @ fit["coefficients"]
    coefficients = fit["coefficients"] * (level_electrons(atom, level) / count)
    coefficients.setflags(write=False)
    return coefficients


def element_basis(number: int, level: Level) -> dict[str, np.ndarray]:
    """The auxiliary-basis table of one element (module docstring), PySCF's order: the PySCF reference of what
    DenSNet's training derives from stored records (``workflows.density_records.record_elements``; tests
    compare them).

    Args:
      number: atomic number; level: its ``aux_basis`` names the basis, basis and pseudo the free atom.
    Returns:
      "ls" [n_shells] angular momentum per shell (contractions expanded); "integrals" [n_f] int chi dr
      (Bohr^3 times the function's unit); "moments" [n_f, 3] int (r - R) chi dr;
      "atomic_coefficients" [n_f] the free atom's Coulomb-metric fit, scaled to integrate to its electron
      count (all electrons, or the valence with a pseudopotential).
    """
    atom = free_atom(number)
    auxmol = build_mole(atom, level, basis=level.aux_basis)
    ls = np.array([auxmol.bas_angular(s) for s in range(auxmol.nbas) for _ in range(auxmol.bas_nctr(s))])
    grid = dft.gen_grid.Grids(auxmol)
    grid.level, grid.prune = _MOMENT_GRID_LEVEL, None
    grid.build()
    values = dft.numint.eval_ao(auxmol, grid.coords)  # [n_points, n_f]
    weighted = grid.weights[:, None] * values
    return {"ls": ls, "integrals": aux_integrals(auxmol), "moments": weighted.T @ grid.coords,
            "atomic_coefficients": np.array(free_atom_coefficients(number, level))}


def angular_functions(l: int, directions: np.ndarray) -> np.ndarray:
    """PySCF's real angular functions of one shell of angular momentum l at unit vectors, [n, 2l + 1].

    They are the values of a normalised Gaussian shell on the unit sphere, so they carry PySCF's exact
    order, signs and relative normalisation (what the coefficients multiply).
    """
    mol = gto.M(atom=[["H", (0.0, 0.0, 0.0)]], basis={"H": [[l, [1.0, 1.0]]]}, spin=1, verbose=0)
    return dft.numint.eval_ao(mol, np.asarray(directions, dtype=np.float64))


def aux_density(molecule: Molecule, level: Level, coefficients: np.ndarray, points: np.ndarray) -> np.ndarray:
    """rho(r) = sum_P c_P chi_P(r) at points [n, 3] (Bohr), [n] electrons/Bohr^3; c in PySCF's order."""
    auxmol = build_mole(molecule, level, basis=level.aux_basis)
    points = np.asarray(points, dtype=np.float64)
    step = max(1, 2**22 // auxmol.nao)
    return np.concatenate([dft.numint.eval_ao(auxmol, points[i:i + step]) @ coefficients
                           for i in range(0, len(points), step)])


METRICS = {"overlap": "int1e_ovlp", "coulomb": "int2c2e"}


def aux_metric(molecule: Molecule, level: Level, metric: str = "overlap") -> np.ndarray:
    """The metric of a density expanded in a molecule's auxiliary functions, [n_aux, n_aux] in PySCF's order:
    "overlap" int chi_P chi_Q dr (the squared L2 norm, e^2/Bohr^3 per unit coefficients) or "coulomb"
    (P|1/r12|Q) (twice the Hartree energy, Hartree)."""
    if metric not in METRICS:
        raise ValueError(f"unknown density metric {metric!r}; use one of {sorted(METRICS)}")
    return build_mole(molecule, level, basis=level.aux_basis).intor(METRICS[metric], hermi=1)
