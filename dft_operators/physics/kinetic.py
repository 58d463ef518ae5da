"""Semi-local kinetic energy functionals: Thomas-Fermi, von Weizsaecker and their combinations.

    t_TF(rho)          = C_F rho^(5/3),  C_F = (3/10) (3 pi^2)^(2/3)       (uniform electron gas)
    t_vW(rho, grad rho) = |grad rho|^2 / (8 rho)                          (= |grad sqrt(rho)|^2 / 2)
    t(lambda, mu)      = lambda t_TF + mu t_vW

(Hartree/Bohr^3). T_vW is exact for one doubly occupied orbital (two electrons): with rho = 2 phi^2,
T_vW = int |grad phi|^2 = T_s. TF + vW/9 is the second-order gradient expansion of T_s.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dft_operators.physics._safe import floored

C_F = 0.3 * (3.0 * np.pi**2) ** (2.0 / 3.0)
# Named classical functionals as (lambda_TF, mu_vW): the command line's --model tf | vw | tfvw.
CLASSICAL = {"tf": (1.0, 0.0), "vw": (0.0, 1.0), "tfvw": (1.0, 1.0 / 9.0)}


def thomas_fermi(rho):
    """Thomas-Fermi kinetic energy density C_F rho^(5/3), Hartree/Bohr^3, shape of ``rho``."""
    mask, safe = floored(rho)
    return jnp.where(mask, C_F * safe ** (5.0 / 3.0), 0.0)


def von_weizsaecker(rho, grad_rho):
    """von Weizsaecker kinetic energy density |grad rho|^2 / (8 rho), Hartree/Bohr^3.

    Evaluated wherever rho^2 is a normal number of its dtype (rho > ~1e-154 in float64, ~1e-19 in float32)
    and 0 below. No larger floor: at a node of psi (rho = psi^2) rho and grad rho vanish together and the
    limit is |grad psi|^2 / 2, not 0, so cutting there would make the energy non-differentiable in psi.

    Args:
      rho: non-negative density [...], electrons/Bohr^3; grad_rho: its gradient [..., 3], electrons/Bohr^4.
    Returns:
      [...].
    """
    mask = rho > np.sqrt(jnp.finfo(jnp.result_type(rho)).tiny)
    safe = jnp.where(mask, rho, 1.0)
    return jnp.where(mask, jnp.sum(grad_rho**2, axis=-1) / (8.0 * safe), 0.0)


def tf_vw(rho, grad_rho, tf=1.0, vw=1.0 / 9.0):
    """lambda t_TF + mu t_vW (module docstring) with lambda = ``tf``, mu = ``vw``; Hartree/Bohr^3, [...].

    ``tf=1, vw=1/9`` is the gradient expansion, ``tf=0, vw=1`` von Weizsaecker, ``tf=1, vw=0`` Thomas-Fermi.
    """
    return tf * thomas_fermi(rho) + vw * von_weizsaecker(rho, grad_rho)
