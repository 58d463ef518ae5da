"""MD integrators, velocity Verlet (NVE) and Langevin BAOAB (NVT), and their driver :func:`run_md`.

Independent of any model: everything takes a :data:`PotentialFn`, a JAX function of the positions that
returns the energy and the dipole. Atomic units inside: positions in Bohr, masses in electron masses,
time in hbar/Eh (``units.AU_TIME_FS`` fs), velocities in Bohr per a.u. time, energies in Hartree,
dipoles in e*Bohr; fs, 1/ps and Kelvin only at the public boundary.

Integrators are ``(init, step)`` pure-function pairs over :class:`MDState` (JAX-MD's ``simulate``);
:func:`run_md` drives them with ``jax.lax.scan`` in jitted chunks and returns a numpy
:class:`~dft_operators.md.trajectory.Trajectory`.
"""

from __future__ import annotations

from typing import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dft_operators import units
from dft_operators.md.trajectory import THERMOSTATS, Trajectory, degrees_of_freedom

PotentialFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
"""``potential(positions [n_atoms, 3] Bohr) -> (energy [] Hartree, dipole [3] e*Bohr)``, traceable and
differentiable in the positions; forces are ``-jax.grad`` of the energy."""

_CHUNKS = 100  # run_md compiles one chunk shape (plus a remainder) and updates the progress bar per chunk


@flax.struct.dataclass
class MDState:
    """The integrator state (a pytree).

    Attributes:
      positions: [n_atoms, 3] Bohr.
      velocities: [n_atoms, 3] Bohr per a.u. time.
      forces: [n_atoms, 3] Hartree/Bohr, F = -dE/dR at ``positions``.
      energy: [] potential energy at ``positions``, Hartree.
      dipole: [3] e*Bohr at ``positions``.
      key: PRNG key of the thermostat noise (carried unchanged in NVE).
    """

    positions: jax.Array
    velocities: jax.Array
    forces: jax.Array
    energy: jax.Array
    dipole: jax.Array
    key: jax.Array


def kinetic_energy(velocities: jax.Array, masses: jax.Array) -> jax.Array:
    """K = sum_i m_i |v_i|^2 / 2 in Hartree, for velocities [..., n_atoms, 3] and masses [n_atoms]."""
    return 0.5 * jnp.sum(masses[:, None] * velocities**2, axis=(-2, -1))


def maxwell_boltzmann_velocities(key: jax.Array, masses: jax.Array, temperature_k: float,
                                 n_dof: int) -> jax.Array:
    """Maxwell-Boltzmann velocities, v_ia ~ N(0, k_B T / m_i), with the centre-of-mass velocity
    sum_i m_i v_i / sum_i m_i removed (more than one atom), then scaled so that 2 K / (n_dof k_B) is
    exactly ``temperature_k``. Returns [n_atoms, 3] Bohr per a.u. time (zeros at 0 K)."""
    kt = units.BOLTZMANN_HARTREE_PER_K * temperature_k
    v = jax.random.normal(key, (masses.shape[0], 3), masses.dtype) * jnp.sqrt(kt / masses)[:, None]
    if masses.shape[0] > 1:
        v = v - jnp.sum(masses[:, None] * v, axis=0) / jnp.sum(masses)
    kinetic = kinetic_energy(v, masses)
    return v * jnp.sqrt(0.5 * n_dof * kt / jnp.maximum(kinetic, jnp.finfo(v.dtype).tiny))


def _evaluate(potential: PotentialFn, positions: jax.Array):
    (energy, dipole), grad = jax.value_and_grad(potential, has_aux=True)(positions)
    return energy, dipole, -grad


def _init(potential: PotentialFn):
    def init(positions: jax.Array, velocities: jax.Array, key: jax.Array) -> MDState:
        energy, dipole, forces = _evaluate(potential, positions)
        return MDState(positions, velocities, forces, energy, dipole, key)
    return init


def velocity_verlet(potential: PotentialFn, masses: jax.Array, dt: float):
    """NVE velocity Verlet: v += dt F / 2m;  R += dt v;  F = F(R);  v += dt F / 2m.

    Symplectic and time reversible: the energy error stays bounded, with fluctuations O(dt^2).

    Args:
      potential: the :data:`PotentialFn`.
      masses: [n_atoms] electron masses.
      dt: time step in a.u. time (``dt_fs / units.AU_TIME_FS``).

    Returns:
      ``(init, step)``: ``init(positions, velocities, key) -> MDState`` and ``step(MDState) -> MDState``.
    """
    inv_m = 1.0 / masses[:, None]

    def step(state: MDState) -> MDState:
        v = state.velocities + 0.5 * dt * state.forces * inv_m
        r = state.positions + dt * v
        energy, dipole, forces = _evaluate(potential, r)
        v = v + 0.5 * dt * forces * inv_m
        return MDState(r, v, forces, energy, dipole, state.key)
    return _init(potential), step


def langevin_baoab(potential: PotentialFn, masses: jax.Array, dt: float, temperature_k: float,
                   friction: float):
    """Langevin NVT with the BAOAB splitting (Leimkuhler & Matthews, AMRX 2013, 34):

    B: v += dt F / 2m;  A: R += dt v / 2;  O: v = c v + sqrt((1 - c^2) k_B T / m) xi, c = exp(-gamma dt),
    xi ~ N(0, 1);  A: R += dt v / 2;  F = F(R);  B: v += dt F / 2m.

    Args as :func:`velocity_verlet`, and ``temperature_k`` (T, Kelvin) and ``friction`` (gamma in 1 / a.u.
    time, ``friction_per_ps * units.AU_TIME_FS / 1000``). Returns ``(init, step)`` as there; ``step``
    splits ``state.key`` for the noise.
    """
    inv_m = 1.0 / masses[:, None]
    c = jnp.exp(-friction * dt)
    sigma = jnp.sqrt((1.0 - c**2) * units.BOLTZMANN_HARTREE_PER_K * temperature_k * inv_m)  # [n_atoms, 1]

    def step(state: MDState) -> MDState:
        key, noise_key = jax.random.split(state.key)
        v = state.velocities + 0.5 * dt * state.forces * inv_m
        r = state.positions + 0.5 * dt * v
        v = c * v + sigma * jax.random.normal(noise_key, v.shape, v.dtype)
        r = r + 0.5 * dt * v
        energy, dipole, forces = _evaluate(potential, r)
        v = v + 0.5 * dt * forces * inv_m
        return MDState(r, v, forces, energy, dipole, key)
    return _init(potential), step


def _integrator(potential, thermostat, masses, dt, temperature_k, friction):
    if thermostat == "nve":
        return velocity_verlet(potential, masses, dt)
    return langevin_baoab(potential, masses, dt, temperature_k, friction)


def _frame(state: MDState, masses: jax.Array):
    return (state.positions, state.velocities, state.energy, kinetic_energy(state.velocities, masses),
            state.dipole)


@jax.jit(static_argnames=("thermostat", "n_dof"))
def _start(potential, positions, masses, key, dt, temperature_k, friction, *, thermostat, n_dof):
    key, velocity_key = jax.random.split(key)
    velocities = maxwell_boltzmann_velocities(velocity_key, masses, temperature_k, n_dof)
    init, _ = _integrator(potential, thermostat, masses, dt, temperature_k, friction)
    state = init(positions, velocities, key)
    return state, _frame(state, masses)


@jax.jit(static_argnames=("thermostat", "record_every", "n_frames"))
def _run_chunk(potential, state, masses, dt, temperature_k, friction, *, thermostat, record_every,
               n_frames):
    _, step = _integrator(potential, thermostat, masses, dt, temperature_k, friction)

    def record(state, _):
        state = jax.lax.fori_loop(0, record_every, lambda _, s: step(s), state)
        return state, _frame(state, masses)
    return jax.lax.scan(record, state, length=n_frames)


def _check_run(numbers, positions, masses, steps, dt_fs, temperature_k, thermostat, friction_per_ps,
               record_every):
    if positions.ndim != 2 or positions.shape[1] != 3 or positions.shape[0] == 0:
        raise ValueError(f"positions must have shape [n_atoms, 3], got {positions.shape}")
    n = positions.shape[0]
    if numbers.shape != (n,) or masses.shape != (n,):
        raise ValueError(f"numbers {numbers.shape} and masses {masses.shape} must have shape ({n},) to "
                         f"match positions {positions.shape}")
    if not (np.all(np.isfinite(positions)) and np.all(masses > 0)):
        raise ValueError("positions must be finite and masses (electron masses) positive")
    if int(steps) != steps or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if int(record_every) != record_every or record_every <= 0 or steps % record_every:
        raise ValueError(f"record_every must be a positive integer dividing steps={steps}, "
                         f"got {record_every}")
    if not (np.isfinite(dt_fs) and dt_fs > 0):
        raise ValueError(f"dt_fs must be positive, got {dt_fs}")
    if not (np.isfinite(temperature_k) and temperature_k >= 0):
        raise ValueError(f"temperature_k must be non-negative, got {temperature_k}")
    if thermostat not in THERMOSTATS:
        raise ValueError(f"unknown thermostat {thermostat!r}; expected one of {THERMOSTATS}")
    if thermostat == "langevin" and not (np.isfinite(friction_per_ps) and friction_per_ps > 0):
        raise ValueError(f"friction_per_ps must be positive for Langevin, got {friction_per_ps}")


def run_md(potential: PotentialFn, numbers, positions, masses, *, steps: int, dt_fs: float,
           temperature_k: float = 300.0, thermostat: str = "nve", friction_per_ps: float = 1.0,
           key: jax.Array, record_every: int = 1, progress: bool = True) -> "Trajectory":
    """Runs MD from Maxwell-Boltzmann velocities at ``temperature_k`` (also for ``"nve"``).

    The loop is ``jax.lax.scan`` in one jitted function per chunk of steps, with a tqdm bar advanced per
    chunk. ``potential`` goes in as a ``jax.tree_util.Partial`` (wrapped if needed), so a second run with
    the same function, or a ``Partial`` with new parameter arrays, does not recompile. Precision follows
    ``jax_enable_x64``; energy conservation is meant to be checked in float64.

    Args:
      potential: the :data:`PotentialFn`.
      numbers: [n_atoms] atomic numbers (kept for output only).
      positions: [n_atoms, 3] starting positions, Bohr.
      masses: [n_atoms] electron masses (``Molecule.masses``).
      steps: number of integration steps (a multiple of ``record_every``).
      dt_fs: time step in fs.
      temperature_k: initial (and, for Langevin, bath) temperature in K.
      thermostat: ``"nve"`` (velocity Verlet) or ``"langevin"`` (BAOAB).
      friction_per_ps: Langevin friction gamma in 1/ps.
      key: PRNG key for the initial velocities and the Langevin noise.
      record_every: steps between recorded frames; frame 0 is the starting point.
      progress: show a progress bar.

    Returns:
      A :class:`Trajectory` of ``steps // record_every + 1`` frames.
    """
    numbers, masses = np.asarray(numbers), np.asarray(masses, float)
    positions = np.asarray(positions, float)
    _check_run(numbers, positions, masses, steps, dt_fs, temperature_k, thermostat, friction_per_ps,
               record_every)
    steps, record_every = int(steps), int(record_every)
    potential = _as_pytree(potential)
    as_array = lambda x: jnp.asarray(x, dtype=float)  # noqa: E731 - default float precision
    args = (as_array(masses), as_array(dt_fs / units.AU_TIME_FS), as_array(temperature_k),
            as_array(friction_per_ps * units.AU_TIME_FS / 1000.0))
    n_dof = degrees_of_freedom(len(numbers), thermostat)
    state, first = _start(potential, as_array(positions), args[0], key, *args[1:], thermostat=thermostat,
                          n_dof=n_dof)
    frames, n_records = [jax.tree.map(lambda x: np.asarray(x)[None], first)], steps // record_every
    per_chunk = -(-n_records // _CHUNKS)
    with tqdm(total=steps, desc="md", unit="step", disable=not progress) as bar:
        for start in range(0, n_records, per_chunk):
            n_frames = min(per_chunk, n_records - start)
            state, chunk = _run_chunk(potential, state, *args, thermostat=thermostat,
                                      record_every=record_every, n_frames=n_frames)
            frames.append(jax.device_get(chunk))
            bar.update(n_frames * record_every)
    r, v, e_pot, e_kin, mu = (np.concatenate([f[i] for f in frames]).astype(np.float64) for i in range(5))
    return Trajectory(numbers=numbers, masses=masses, positions=r, velocities=v, potential=e_pot,
                      kinetic=e_kin, dipoles=mu, frame_dt_fs=float(dt_fs * record_every),
                      thermostat=thermostat, temperature_k=float(temperature_k))


def _as_pytree(potential: PotentialFn) -> jax.tree_util.Partial:
    """The potential as a ``Partial``: a jit argument whose arrays are traced, not baked in as constants."""
    return potential if isinstance(potential, jax.tree_util.Partial) else jax.tree_util.Partial(potential)
