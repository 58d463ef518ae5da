"""What orbital-free DFT and KineticNet need from PySCF: basis functions, potentials and the Coulomb metric
on a molecular quadrature grid.

Orbital-free DFT represents the density as rho = psi^2 with psi = sum_m c_m chi_m in the level's orbital
basis; the energy terms are quadratures over PySCF's grid (``physics``), except the Hartree energy, which
is fitted in the Coulomb metric onto the auxiliary basis {eta_P} (``physics.electrostatics``). This module
evaluates the fixed ingredients once, in NumPy, so everything downstream is plain JAX.
"""

from __future__ import annotations

import numpy as np
from pyscf import dft, gto

from dft_operators.molecule import Molecule
from dft_operators.reference.fields import quadrature_grid
from dft_operators.reference.level import ALL_ELECTRON, Level, SCFError, build_mole, ion_charge, level_electrons
from dft_operators.reference.potentials import RandomPotential, ionic_potential
from dft_operators.reference.scf import atomic_guess

# Values held at once in one block of AO values or integrals (2**22 float64 = 32 MiB).
_BLOCK_VALUES = 2**22


def basis_on_points(molecule: Molecule, level: Level, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The orbital basis chi_m of a level and its gradient at points.

    Args:
      molecule: the molecule; level: its basis (and pseudopotential) is used.
      points: [n, 3] Bohr.
    Returns:
      values [n, n_basis] (Bohr^-3/2) and gradients [n, n_basis, 3] (Bohr^-5/2).
    """
    mol = build_mole(molecule, level)
    ao = dft.numint.eval_ao(mol, np.asarray(points, dtype=np.float64), deriv=1)  # [4, n, n_basis]
    return ao[0], np.moveaxis(ao[1:4], 0, -1)


def _aux_potentials(auxmol: gto.Mole, points: np.ndarray) -> np.ndarray:
    """V_P(r_i) = int eta_P(r) / |r - r_i| dr, [n, n_aux] Hartree, as Coulomb integrals with point charges."""
    step = max(1, _BLOCK_VALUES // auxmol.nao)
    blocks = []
    for i in range(0, len(points), step):
        charges = gto.fakemol_for_charges(points[i:i + step])  # unit point charges (exponent 1e16)
        blocks.append(gto.mole.intor_cross("int2c2e", charges, auxmol))  # [block, n_aux]
    return np.concatenate(blocks)


def ofdft_integrals(molecule: Molecule, level: Level = ALL_ELECTRON, grid_level: int = 2,
                    external: RandomPotential | None = None) -> dict[str, np.ndarray]:
    """The fixed arrays of an orbital-free calculation on PySCF's quadrature grid of ``grid_level``.

    Args:
      molecule: the molecule (all-electron levels only: the non-local part of a pseudopotential has no
        orbital-free form).
      level: orbital basis of psi and auxiliary basis of the Hartree fit (``level.aux_basis``).
      grid_level: PySCF grid level (0-9).
      external: an optional random potential added to v_ext.
    Returns:
      "points" [n, 3] Bohr, "weights" [n] Bohr^3, "basis_values" [n, n_basis], "basis_gradients"
      [n, n_basis, 3], "v_ext" [n] Hartree (nuclei, plus ``external``), "aux_potentials" [n, n_aux]
      Hartree, "coulomb_metric" J [n_aux, n_aux] Hartree, "rho0" [n] electrons/Bohr^3 (the superposition
      of atomic densities, ``atomic_guess``), "numbers" [n_atoms], "positions" [n_atoms, 3] Bohr,
      "nuclear_charges" [n_atoms], "n_electrons" scalar.
    Raises:
      SCFError: a basis is not defined for an element, or the level has a pseudopotential.
    """
    if level.pseudo is not None:
        raise SCFError(f"{molecule.name}: orbital-free DFT needs an all-electron level, not pseudopotential "
                       f"{level.pseudo!r}")
    mol = build_mole(molecule, level)
    auxmol = build_mole(molecule, level, basis=level.aux_basis)
    points, weights = quadrature_grid(mol, grid_level)
    values, gradients = basis_on_points(molecule, level, points)
    v_ext = ionic_potential(molecule, level, points)
    if external is not None:
        v_ext = v_ext + external.values(points)
    dm0 = atomic_guess(molecule, level).dm
    return {
        "points": points, "weights": weights, "basis_values": values, "basis_gradients": gradients,
        "v_ext": v_ext, "aux_potentials": _aux_potentials(auxmol, points),
        "coulomb_metric": auxmol.intor("int2c2e"),
        "rho0": np.einsum("pm,mn,pn->p", values, dm0, values),
        "numbers": molecule.numbers.copy(), "positions": molecule.positions.copy(),
        "nuclear_charges": np.array([ion_charge(s, None) for s in molecule.symbols], dtype=np.float64),
        "n_electrons": np.float64(level_electrons(molecule, level)),
    }
