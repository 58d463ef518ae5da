"""Orbital-free DFT: the ground-state density by direct minimisation of E[rho] with ``jax.grad``.

    E[rho] = T[rho] + E_ext[rho] + E_H[rho] + E_xc[rho] + E_nn

on a molecular quadrature grid (``physics`` gives the terms; T is any kinetic energy density functional
(rho [n], grad rho [n, 3]) -> t [n], classical or learned). The density is the square of one real
function in a Gaussian basis, normalised on the grid,

    phi = sum_m c_m chi_m,   rho = N phi^2 / <phi|phi>,   <phi|phi> = sum_i w_i phi(r_i)^2,

so rho >= 0 and sum_i w_i rho_i = N for every c: the electron-count constraint holds by construction and
E(c) is invariant to the scale of c. (For two electrons phi is the occupied orbital up to a factor, and
T = T_vW makes this exactly Kohn-Sham in the same basis.)

The optimiser is an (init, update) pair over :class:`OFDFTState`: preconditioned steepest descent with
step control that only accepts steps lowering the energy (so E decreases monotonically),

    d = -M^-1 g,  M = K + sigma S,  K_mn = (1/2) <grad chi_m | grad chi_n>,  S_mn = <chi_m | chi_n>
    c' = (c + eta d) / |c + eta d|_S;  accept if E(c') <= E(c) (eta *= grow), else reject (eta *= shrink),

converged when an accepted step changes E by less than ``tol_energy`` and sqrt(g^T M^-1 g) is below
``tol_gradient`` (``solve`` gives up when eta falls below ``min_step``). M approximates the Hessian of
the kinetic energy, which sets the condition number.
Everything runs in float64 (``solve`` enables x64).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np

from dft_operators import physics

KineticFunctional = Callable[[jax.Array, jax.Array], jax.Array]  # (rho [n], grad_rho [n, 3]) -> t [n] Ha/Bohr^3


@dataclasses.dataclass(frozen=True)
class OFDFTConfig:
    """Settings of the density optimiser."""

    max_iterations: int = 400  # energy + gradient evaluations at most
    step: float = 1.0  # initial step eta along the preconditioned direction
    grow: float = 1.2  # eta is multiplied by this after an accepted step
    shrink: float = 0.5  # and by this after a rejected one
    shift: float = 1.0  # sigma in the preconditioner M = K + sigma S, Hartree
    tol_energy: float = 1e-9  # convergence: |dE| of an accepted step, Hartree
    tol_gradient: float = 1e-5  # convergence: sqrt(g^T M^-1 g), Hartree^(1/2)
    min_step: float = 1e-12  # give up (not converged) when eta falls below this: no step lowers E any more

    @staticmethod
    def tiny() -> "OFDFTConfig":
        """A few dozen iterations, for smoke tests."""
        return OFDFTConfig(max_iterations=40, tol_energy=1e-7, tol_gradient=1e-3)


@flax.struct.dataclass
class Problem:
    """The fixed arrays of one orbital-free calculation (from ``reference.ofdft_integrals``).

    Attributes:
      weights: quadrature weights [n] Bohr^3.
      basis_values: chi_m(r_i) [n, n_basis]; basis_gradients: grad chi_m(r_i) [n, n_basis, 3].
      v_ext: external potential [n] Hartree.
      aux_potentials: V_P(r_i) [n, n_aux] Hartree; metric_cholesky: L with L L^T = J [n_aux, n_aux].
      n_electrons: N; nuclear_repulsion: E_nn in Hartree.
    """

    weights: jax.Array
    basis_values: jax.Array
    basis_gradients: jax.Array
    v_ext: jax.Array
    aux_potentials: jax.Array
    metric_cholesky: jax.Array
    n_electrons: jax.Array
    nuclear_repulsion: jax.Array

    @staticmethod
    def from_integrals(integrals: dict) -> "Problem":
        """From ``reference.ofdft_integrals``' dict (kept as float64 NumPy arrays)."""
        f64 = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
        with jax.enable_x64(True):
            nuclear = f64(physics.nuclear_repulsion(f64(integrals["nuclear_charges"]), f64(integrals["positions"])))
        return Problem(
            weights=f64(integrals["weights"]), basis_values=f64(integrals["basis_values"]),
            basis_gradients=f64(integrals["basis_gradients"]), v_ext=f64(integrals["v_ext"]),
            aux_potentials=f64(integrals["aux_potentials"]),
            metric_cholesky=np.linalg.cholesky(f64(integrals["coulomb_metric"])),
            n_electrons=f64(integrals["n_electrons"]), nuclear_repulsion=nuclear)


@flax.struct.dataclass
class OFDFTState:
    """The optimiser's state: S-normalised coefficients [n_basis], their energy and gradient, the step."""

    coefficients: jax.Array
    energy: jax.Array
    gradient: jax.Array
    step: jax.Array
    iteration: jax.Array
    energy_change: jax.Array  # of the last accepted step (inf before the first)
    gradient_norm: jax.Array  # sqrt(g^T M^-1 g)
    converged: jax.Array


def classical_kinetic(name: str) -> KineticFunctional:
    """A classical kinetic functional by name: 'tf', 'vw' or 'tfvw' (TF + vW/9), as a pytree callable."""
    if name not in physics.CLASSICAL:
        raise ValueError(f"unknown classical kinetic functional {name!r}; choose from {', '.join(physics.CLASSICAL)}")
    tf, vw = physics.CLASSICAL[name]
    return jax.tree_util.Partial(physics.tf_vw, tf=tf, vw=vw)


def _orbital(problem: Problem, c):
    """phi [n] and grad phi [n, 3] of coefficients c [n_basis]."""
    return problem.basis_values @ c, jnp.einsum("pmx,m->px", problem.basis_gradients, c)


def density(problem: Problem, c):
    """rho [n] (electrons/Bohr^3) and grad rho [n, 3] of coefficients c [n_basis], integrating to N."""
    phi, grad_phi = _orbital(problem, c)
    scale = problem.n_electrons / jnp.sum(problem.weights * phi**2)
    return scale * phi**2, 2.0 * scale * phi[:, None] * grad_phi


def energy_terms(problem: Problem, kinetic: KineticFunctional, c) -> dict[str, jax.Array]:
    """The energy terms of coefficients c (Hartree): kinetic, external, hartree, xc, nuclear."""
    rho, grad_rho = density(problem, c)
    w = problem.weights
    return {
        "kinetic": jnp.sum(w * kinetic(rho, grad_rho)),
        "external": physics.external_energy(rho, w, problem.v_ext),
        "hartree": physics.hartree_energy(rho, w, problem.aux_potentials, problem.metric_cholesky),
        "xc": jnp.sum(w * physics.lda_xc(rho)),
        "nuclear": problem.nuclear_repulsion,
    }


def energy(problem: Problem, kinetic: KineticFunctional, c):
    """Total energy E(c) in Hartree (the sum of ``energy_terms``)."""
    return sum(energy_terms(problem, kinetic, c).values())


def initial_coefficients(problem: Problem, rho0):
    """Coefficients of sqrt(rho0) fitted in the basis by weighted least squares, [n_basis].

    Args:
      rho0: a guess density [n] (e.g. ``reference.ofdft_integrals``' superposition of atoms).
    """
    x, w = problem.basis_values, problem.weights
    overlap = x.T @ (w[:, None] * x)
    return jnp.linalg.solve(overlap, x.T @ (w * jnp.sqrt(jnp.maximum(rho0, 0.0))))


def _normalised(problem: Problem, c):
    return c / jnp.sqrt(jnp.sum(problem.weights * (problem.basis_values @ c) ** 2))


def _preconditioner(problem: Problem, shift: float):
    """Cholesky factor of M = K + shift S (quadrature), [n_basis, n_basis]."""
    x, g, w = problem.basis_values, problem.basis_gradients, problem.weights
    kinetic = 0.5 * jnp.einsum("p,pmx,pnx->mn", w, g, g)
    overlap = x.T @ (w[:, None] * x)
    return jax.scipy.linalg.cho_factor(kinetic + shift * overlap, lower=True)


def init(problem: Problem, kinetic: KineticFunctional, c0, config: OFDFTConfig = OFDFTConfig()) -> OFDFTState:
    """The optimiser's first state at coefficients c0 [n_basis] (any scale)."""
    c = _normalised(problem, c0)
    e, g = jax.value_and_grad(energy, argnums=2)(problem, kinetic, c)
    z = jax.scipy.linalg.cho_solve(_preconditioner(problem, config.shift), g)
    return OFDFTState(c, e, g, jnp.asarray(config.step, c.dtype), jnp.zeros((), jnp.int32),
                      jnp.asarray(jnp.inf, c.dtype), jnp.sqrt(jnp.abs(g @ z)), jnp.zeros((), bool))


def update(problem: Problem, kinetic: KineticFunctional, state: OFDFTState,
           config: OFDFTConfig = OFDFTConfig()) -> OFDFTState:
    """One trial step (module docstring): accepted if it lowers the energy, else the step shrinks."""
    factor = _preconditioner(problem, config.shift)
    direction = -jax.scipy.linalg.cho_solve(factor, state.gradient)
    trial = _normalised(problem, state.coefficients + state.step * direction)
    e, g = jax.value_and_grad(energy, argnums=2)(problem, kinetic, trial)
    accept = e <= state.energy
    gradient_norm = jnp.sqrt(jnp.abs(g @ jax.scipy.linalg.cho_solve(factor, g)))
    change = state.energy - e
    pick = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
    return OFDFTState(
        coefficients=pick(trial, state.coefficients), energy=pick(e, state.energy),
        gradient=pick(g, state.gradient),
        step=state.step * jnp.where(accept, config.grow, config.shrink),
        iteration=state.iteration + 1,
        energy_change=pick(change, state.energy_change),
        gradient_norm=pick(gradient_norm, state.gradient_norm),
        converged=accept & (change < config.tol_energy) & (gradient_norm < config.tol_gradient))


_init = jax.jit(init, static_argnames="config")
_update = jax.jit(update, static_argnames="config")


def solve(problem: Problem, kinetic: KineticFunctional, rho0, config: OFDFTConfig = OFDFTConfig()) -> dict:
    """Minimises the energy from the guess density rho0 [n] (float64 throughout).

    Args:
      problem: the fixed arrays; kinetic: (rho, grad_rho) -> t, a ``jax.tree_util.Partial`` (so that new
        parameters of a learned functional do not recompile the step); rho0: the guess [n].
    Returns:
      {"energy" Hartree, "terms" {name: Hartree}, "iterations", "converged", "seconds", "rho" [n],
       "coefficients" [n_basis] (S-normalised), "energies" [iterations + 1] (the accepted energy after
       each step; non-increasing), "gradient_norm"}.
    """
    start = time.perf_counter()
    with jax.enable_x64(True):
        state = _init(problem, kinetic, initial_coefficients(problem, jnp.asarray(rho0)), config=config)
        energies = [float(state.energy)]
        while (int(state.iteration) < config.max_iterations and not bool(state.converged)
               and float(state.step) > config.min_step):
            state = _update(problem, kinetic, state, config=config)
            energies.append(float(state.energy))
        terms = {k: float(v) for k, v in jax.jit(energy_terms)(problem, kinetic, state.coefficients).items()}
        rho = np.asarray(density(problem, state.coefficients)[0])
    return {"energy": float(state.energy), "terms": terms, "iterations": int(state.iteration),
            "converged": bool(state.converged), "seconds": time.perf_counter() - start, "rho": rho,
            "coefficients": np.asarray(state.coefficients), "energies": np.asarray(energies),
            "gradient_norm": float(state.gradient_norm)}
