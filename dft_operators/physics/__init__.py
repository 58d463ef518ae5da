"""Density functionals and electrostatics as pure JAX functions (float64 when x64 is enabled, no flax).

Energy densities are per volume (Hartree/Bohr^3) on quadrature points; an energy is ``sum(weights * e)``.
Potentials are ``jax.grad`` of energies.
"""

from dft_operators.physics.electrostatics import external_energy, hartree_energy, nuclear_repulsion
from dft_operators.physics.kinetic import CLASSICAL, thomas_fermi, tf_vw, von_weizsaecker
from dft_operators.physics.xc import lda_xc, lda_xc_potential, pw92_correlation, slater_exchange

__all__ = [
    "CLASSICAL", "external_energy", "hartree_energy", "lda_xc", "lda_xc_potential", "nuclear_repulsion",
    "pw92_correlation", "slater_exchange", "tf_vw", "thomas_fermi", "von_weizsaecker",
]
