"""The reference layer: PySCF Kohn-Sham ground states and the fields models learn from.

This is the only package of the project that imports PySCF. Atomic units throughout (Bohr, Hartree).
"""

from dft_operators.reference import density_basis
from dft_operators.reference.fields import (density_at_points, density_on_box, fit_coefficients, molecular_quadrature,
                                            quadrature_fields)
from dft_operators.reference.guess import STANDARD_GUESSES, guess_from_box, standard_guess
from dft_operators.reference.level import ALL_ELECTRON, Level, SCFError, level_electrons
from dft_operators.reference.ofdft_integrals import basis_on_points, ofdft_integrals
from dft_operators.reference.potentials import RandomPotential, screened_ionic_potential
from dft_operators.reference.scf import Density, GroundState, atomic_guess, run_ks
from dft_operators.reference.vibrations import harmonic_ir, optimize_geometry

__all__ = [
    "ALL_ELECTRON", "Density", "GroundState", "Level", "RandomPotential", "SCFError", "atomic_guess",
    "basis_on_points", "density_on_box", "fit_coefficients", "level_electrons", "ofdft_integrals",
    "quadrature_fields", "run_ks", "screened_ionic_potential",
    "STANDARD_GUESSES", "guess_from_box", "standard_guess", "harmonic_ir", "optimize_geometry",
    "density_at_points", "density_basis", "molecular_quadrature",
]
