"""Local density approximation to exchange-correlation: Slater exchange + Perdew-Wang 1992 correlation.

Spin-unpolarised (closed shells), the functional PySCF calls ``"lda,pw"`` (libxc LDA_X + LDA_C_PW):

    e_x(rho) = -(3/4) (3/pi)^(1/3) rho^(4/3)                              (Hartree/Bohr^3)
    e_c(rho) = rho eps_c(r_s),  r_s = (3 / (4 pi rho))^(1/3)
    eps_c    = -2 A (1 + a1 r_s) ln(1 + 1 / (2 A (b1 r_s^(1/2) + b2 r_s + b3 r_s^(3/2) + b4 r_s^2)))

with PW92's unpolarised parameters (Perdew & Wang, Phys. Rev. B 45, 13244 (1992), Table I, as in libxc).
The potential v_xc = d e_xc / d rho is ``jax.grad`` of the energy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators.physics._safe import floored

# PW92 unpolarised correlation parameters (A, alpha1, beta1..beta4), libxc's LDA_C_PW values.
_PW92 = dict(a=0.031091, alpha1=0.21370, beta1=7.5957, beta2=3.5876, beta3=1.6382, beta4=0.49294)
_SLATER = -0.75 * (3.0 / np.pi) ** (1.0 / 3.0)


def slater_exchange(rho):
    """Slater (LDA) exchange energy density -(3/4)(3/pi)^(1/3) rho^(4/3), Hartree/Bohr^3, shape of ``rho``."""
    mask, safe = floored(rho)
    return jnp.where(mask, _SLATER * safe ** (4.0 / 3.0), 0.0)


def pw92_correlation(rho):
    """PW92 correlation energy density rho eps_c(r_s) (module docstring), Hartree/Bohr^3, shape of ``rho``."""
    mask, safe = floored(rho)
    rs = (3.0 / (4.0 * np.pi * safe)) ** (1.0 / 3.0)
    p = _PW92
    denominator = 2.0 * p["a"] * (p["beta1"] * jnp.sqrt(rs) + p["beta2"] * rs + p["beta3"] * rs**1.5
                                  + p["beta4"] * rs**2)
    eps_c = -2.0 * p["a"] * (1.0 + p["alpha1"] * rs) * jnp.log1p(1.0 / denominator)
    return jnp.where(mask, safe * eps_c, 0.0)


def lda_xc(rho):
    """LDA exchange-correlation energy density e_xc(rho) = e_x + e_c (PySCF ``"lda,pw"``), Hartree/Bohr^3.

    Args:
      rho: density, electrons/Bohr^3, any shape (non-negative).
    Returns:
      the energy density, same shape; E_xc = sum(weights * lda_xc(rho)).
    """
    return slater_exchange(rho) + pw92_correlation(rho)


def lda_xc_potential(rho):
    """v_xc(r) = d e_xc / d rho at each point (Hartree), by ``jax.grad`` of the energy; shape of ``rho``."""
    return jax.grad(lambda r: lda_xc(r).sum())(rho)
