"""Electrostatic energies of a density on a quadrature grid: external, Hartree (Coulomb-fitted), nuclear.

Hartree by robust Coulomb-metric density fitting on an auxiliary Gaussian basis {eta_P}:

    b_P = (eta_P | rho) = int V_P(r) rho(r) dr ~ sum_i w_i V_P(r_i) rho_i,   V_P(r) = int eta_P(r') / |r - r'| dr'
    E_H ~ (1/2) b^T J^-1 b,   J_PQ = (eta_P | eta_Q)

which is the Hartree energy of the best fit in the Coulomb norm and a lower bound of the exact one with an
error quadratic in the fitting error. The potentials V_P at the grid points and J come from
``reference.ofdft_integrals``; V_P is smooth, so the quadrature of b is as accurate as that of N.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np


def external_energy(rho, weights, v_ext):
    """E_ext = int rho v_ext ~ sum_i w_i rho_i v_ext(r_i), Hartree.

    Args:
      rho [n_points] electrons/Bohr^3, weights [n_points] Bohr^3, v_ext [n_points] Hartree.
    """
    return jnp.sum(weights * rho * v_ext)


def hartree_energy(rho, weights, aux_potentials, metric_cholesky):
    """Coulomb-fitted Hartree energy (1/2) b^T J^-1 b (module docstring), Hartree.

    Args:
      rho: [n_points] electrons/Bohr^3; weights: [n_points] Bohr^3.
      aux_potentials: V_P(r_i), [n_points, n_aux] Hartree per unit coefficient.
      metric_cholesky: lower Cholesky factor L of J = L L^T, [n_aux, n_aux].
    """
    b = aux_potentials.T @ (weights * rho)  # [n_aux]
    y = jax.scipy.linalg.solve_triangular(metric_cholesky, b, lower=True)
    return 0.5 * jnp.sum(y**2)


@jax.jit
def nuclear_repulsion(charges, positions):
    """sum_{a<b} Z_a Z_b / |R_a - R_b|, Hartree; charges [n_atoms], positions [n_atoms, 3] Bohr."""
    n = charges.shape[0]
    i, j = np.triu_indices(n, k=1)
    return jnp.sum(charges[i] * charges[j] / jnp.linalg.norm(positions[i] - positions[j], axis=-1))
