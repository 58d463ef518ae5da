"""Molecular dynamics (velocity Verlet, Langevin BAOAB) and IR spectra from the dipole autocorrelation.

Independent of any model: everything takes a :data:`PotentialFn`, a JAX function of the positions that
returns the energy and the dipole. Atomic units inside: positions in Bohr, masses in electron masses,
time in hbar/Eh (``units.AU_TIME_FS`` fs), velocities in Bohr per a.u. time, energies in Hartree,
dipoles in e*Bohr; fs, 1/ps, Kelvin and cm^-1 only at the public boundary.

Integrators are ``(init, step)`` pure-function pairs over :class:`MDState` (JAX-MD's ``simulate``);
:func:`run_md` drives them with ``jax.lax.scan`` in jitted chunks and returns a numpy :class:`Trajectory`.
``AseCalculator`` (ASE is imported on first access) exposes an energy function to ASE.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
import zlib
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dft_operators import units

PotentialFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
"""``potential(positions [n_atoms, 3] Bohr) -> (energy [] Hartree, dipole [3] e*Bohr)``, traceable and
differentiable in the positions; forces are ``-jax.grad`` of the energy."""

THERMOSTATS = ("nve", "langevin")
_FORMAT = "dft_operators.trajectory/1"
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


def degrees_of_freedom(n_atoms: int, thermostat: str) -> int:
    """Kinetic degrees of freedom used for temperatures: 3N - 3 in NVE, where the centre-of-mass momentum
    is removed at the start and conserved; 3N under Langevin, whose friction and noise act on every
    Cartesian component, centre of mass included, so that <K> = 3N k_B T / 2. One atom keeps 3."""
    return 3 * n_atoms - 3 if thermostat == "nve" and n_atoms > 1 else 3 * n_atoms


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


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectory:
    """Recorded MD frames (numpy, float64).

    Attributes:
      numbers: [n_atoms] atomic numbers.
      masses: [n_atoms] electron masses.
      positions: [n_frames, n_atoms, 3] Bohr.
      velocities: [n_frames, n_atoms, 3] Bohr per a.u. time.
      potential: [n_frames] potential energy, Hartree.
      kinetic: [n_frames] kinetic energy, Hartree.
      dipoles: [n_frames, 3] e*Bohr.
      frame_dt_fs: time between frames, fs.
      thermostat: ``"nve"`` or ``"langevin"``.
      temperature_k: the requested temperature, K.
    """

    numbers: np.ndarray
    masses: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    dipoles: np.ndarray
    frame_dt_fs: float
    thermostat: str
    temperature_k: float

    def __post_init__(self):
        n_frames, n_atoms = self.potential.shape[0], self.numbers.shape[0]
        expected = {"numbers": (n_atoms,), "masses": (n_atoms,), "positions": (n_frames, n_atoms, 3),
                    "velocities": (n_frames, n_atoms, 3), "potential": (n_frames,), "kinetic": (n_frames,),
                    "dipoles": (n_frames, 3)}
        for name, shape in expected.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"trajectory {name} has shape {np.shape(getattr(self, name))}, "
                                 f"expected {shape}")
        if self.thermostat not in THERMOSTATS or not self.frame_dt_fs > 0:
            raise ValueError(f"bad trajectory metadata: thermostat={self.thermostat!r}, "
                             f"frame_dt_fs={self.frame_dt_fs}")

    @property
    def times_fs(self) -> np.ndarray:
        """[n_frames] time of each frame, fs."""
        return np.arange(len(self.potential)) * self.frame_dt_fs

    @property
    def total(self) -> np.ndarray:
        """[n_frames] total energy potential + kinetic, Hartree."""
        return self.potential + self.kinetic

    @property
    def temperature(self) -> np.ndarray:
        """[n_frames] instantaneous temperature 2 K / (n_dof k_B), K (see :func:`degrees_of_freedom`)."""
        n_dof = degrees_of_freedom(len(self.numbers), self.thermostat)
        return np.asarray(2.0 * self.kinetic / (n_dof * units.BOLTZMANN_HARTREE_PER_K))

    @property
    def energy_drift(self) -> float:
        """|slope| x duration of the least-squares line through the total energy against time, Hartree."""
        t = self.times_fs
        if len(t) < 2:
            return 0.0
        return float(abs(np.polyfit(t, self.total, 1)[0]) * (t[-1] - t[0]))

    def save(self, path: str | os.PathLike) -> None:
        """Writes an ``.npz`` archive to exactly ``path`` (read back with :func:`load_trajectory`)."""
        fields = {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}
        with open(path, "wb") as f:
            np.savez(f, format=np.asarray(_FORMAT), **fields)

    def write_xyz(self, path: str | os.PathLike) -> None:
        """Writes extended XYZ (Angstrom), one frame per block, readable by ASE and VMD. The comment
        holds ``energy`` (potential, eV, ASE's convention), ``potential_hartree``, ``kinetic_hartree``,
        ``time_fs`` and ``dipole`` (e*Angstrom)."""
        from dft_operators.molecule import SYMBOLS
        symbols = [SYMBOLS[z] if 0 < z < len(SYMBOLS) else "X" for z in self.numbers]
        lines = []
        for i, r in enumerate(self.positions * units.ANGSTROM_PER_BOHR):
            mu = " ".join(f"{x:.10f}" for x in self.dipoles[i] * units.ANGSTROM_PER_BOHR)
            energy_ev = self.potential[i] * units.HARTREE_TO_EV
            lines += [str(len(symbols)), f'Properties=species:S:1:pos:R:3 energy={energy_ev:.10f} '
                      f'potential_hartree={self.potential[i]:.12f} kinetic_hartree={self.kinetic[i]:.12f} '
                      f'time_fs={self.times_fs[i]:.6f} dipole="{mu}" pbc="F F F"']
            lines += [f"{s:<2s} {x:16.10f} {y:16.10f} {z:16.10f}" for s, (x, y, z) in zip(symbols, r)]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")


def load_trajectory(path: str | os.PathLike) -> Trajectory:
    """Reads a :meth:`Trajectory.save` archive; ``ValueError`` naming ``path`` if it is not one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such trajectory file")
    bad = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
    try:
        data = np.load(path, allow_pickle=False)
    except bad as err:
        raise ValueError(f"{path}: not a trajectory file (unreadable as .npz: {err})") from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a trajectory file (a single .npy array, expected an .npz archive)")
    with data:
        names = [f.name for f in dataclasses.fields(Trajectory)]
        missing = [k for k in ["format", *names] if k not in data.files]
        if missing:
            raise ValueError(f"{path}: not a trajectory file (missing keys {missing})")
        try:
            if str(data["format"]) != _FORMAT:
                raise ValueError(f"format {str(data['format'])!r}, expected {_FORMAT!r}")
            fields = {k: data[k] for k in names}
            fields.update(thermostat=str(fields["thermostat"]), frame_dt_fs=float(fields["frame_dt_fs"]),
                          temperature_k=float(fields["temperature_k"]))
            return Trajectory(**fields)
        except (*bad, TypeError) as err:
            raise ValueError(f"{path}: corrupt trajectory file ({err})") from err


def ir_spectrum(dipoles, frame_dt_fs: float, temperature_k: float, max_cm1: float = 4000.0,
                window: str | None = "hann", quantum_correction: bool = True, max_lag_fs: float | None = None):
    r"""IR absorption spectrum from the dipole time series of an (equilibrium) MD run.

    I(omega) ∝ Q(omega) ∫ w(t) C(t) e^{-i omega t} dt,  C(t) = <dmu/dt(0) . dmu/dt(t)>,

    which is Q(omega) omega^2 ∫ <mu(0) . mu(t)> e^{-i omega t} dt convolved with the window's transform
    (= omega^2 |FT mu|^2). Steps: dmu/dt by central differences (``np.gradient``; this scales the
    spectrum by sin^2(omega dt) / (omega dt)^2, 0.95 at 4000 cm^-1 for 0.5 fs frames); its mean off; the
    unbiased autocorrelation C(k dt) = sum_n mudot_n . mudot_{n+k} / (N - k), by a zero-padded FFT;
    the half Hann window w_k = (1 + cos(pi k / (N - 1))) / 2 (1 at k = 0, 0 at the last lag, which
    also suppresses the noisy long lags of the unbiased estimate); the even cosine transform
    dt [w_0 C_0 + 2 sum_{k>0} w_k C_k cos(omega k dt)], zero-padded to >= 4N points (a smooth curve;
    resolution stays ~2 / (N dt) with the Hann window). Q(omega) = beta hbar omega / (1 - exp(-beta
    hbar omega)) is the harmonic quantum correction. Normalised to a maximum of 1 (all zeros when the
    dipole does not change). Windowing the correlation (not the signal) lets a line's Hann side lobes
    dip below zero, by up to 2.7% of its height.

    Args:
      dipoles: [n_frames, 3] e*Bohr, equally spaced in time.
      frame_dt_fs: time between frames, fs.
      temperature_k: temperature of the run (beta = 1 / k_B T), K.
      max_cm1: highest wavenumber returned; must be below the Nyquist limit 1 / (2 c dt).
      window: ``"hann"`` or ``None`` (no window).
      quantum_correction: multiply by Q(omega).
      max_lag_fs: keep C(t) only up to this lag (the window then spans it): a smoother spectrum of
        resolution ~2 / (c max_lag) (17 cm^-1 for 2000 fs) with less noise from the poorly sampled long
        lags; None keeps the whole run.

    Returns:
      ``(wavenumbers [m] cm^-1 from 0 to max_cm1, intensity [m])``.
    """
    mu = np.asarray(dipoles, np.float64)
    if mu.ndim != 2 or mu.shape[1] != 3 or mu.shape[0] < 4:
        raise ValueError(f"dipoles must have shape [n_frames >= 4, 3], got {mu.shape}")
    if not (frame_dt_fs > 0 and temperature_k > 0 and max_cm1 > 0):
        raise ValueError(f"frame_dt_fs={frame_dt_fs}, temperature_k={temperature_k} and max_cm1={max_cm1} "
                         "must be positive")
    if window not in ("hann", None):
        raise ValueError(f"unknown window {window!r}; expected 'hann' or None")
    dt = frame_dt_fs / units.AU_TIME_FS  # a.u. time
    nyquist_cm1 = np.pi / dt * units.HARTREE_TO_CM1  # omega = pi / dt; hbar omega in Hartree -> cm^-1
    if max_cm1 > nyquist_cm1:
        raise ValueError(f"frames {frame_dt_fs} fs apart resolve only up to {nyquist_cm1:.0f} cm^-1 "
                         f"< max_cm1={max_cm1}; record frames more often")
    n = mu.shape[0]
    mudot = np.gradient(mu, dt, axis=0)
    mudot -= mudot.mean(axis=0)
    n_fft = 1 << int(np.ceil(np.log2(2 * n)))
    power = np.sum(np.abs(np.fft.rfft(mudot, n=n_fft, axis=0)) ** 2, axis=1)
    corr = np.fft.irfft(power, n=n_fft)[:n] / (n - np.arange(n))  # [n] unbiased C(k dt)
    if max_lag_fs is not None:
        n = min(n, max(4, int(max_lag_fs / frame_dt_fs) + 1))
        corr = corr[:n]
    if window == "hann":
        corr = corr * 0.5 * (1.0 + np.cos(np.pi * np.arange(n) / (n - 1)))
    n_spec = 1 << int(np.ceil(np.log2(4 * n)))
    spectrum = dt * (2.0 * np.fft.rfft(corr, n=n_spec).real - corr[0])
    wavenumbers = 2.0 * np.pi * np.fft.rfftfreq(n_spec, d=dt) * units.HARTREE_TO_CM1
    keep = wavenumbers <= max_cm1
    wavenumbers, spectrum = wavenumbers[keep], spectrum[keep]
    if quantum_correction:
        x = wavenumbers / units.HARTREE_TO_CM1 / (units.BOLTZMANN_HARTREE_PER_K * temperature_k)
        spectrum = spectrum * np.where(x > 0, x / -np.expm1(-np.maximum(x, 1e-300)), 1.0)
    top = spectrum.max()
    return wavenumbers, (spectrum / top if top > 0 else np.zeros_like(spectrum))


def _as_pytree(potential: PotentialFn) -> jax.tree_util.Partial:
    """The potential as a ``Partial``: a jit argument whose arrays are traced, not baked in as constants."""
    return potential if isinstance(potential, jax.tree_util.Partial) else jax.tree_util.Partial(potential)


@jax.jit
def _second_derivatives(potential: PotentialFn, positions):
    """(d^2E/dR^2 [n, 3, n, 3], dmu/dR [3, n, 3]) of a potential, compiled once per potential and shape."""
    return jax.hessian(lambda r: potential(r)[0])(positions), jax.jacfwd(lambda r: potential(r)[1])(positions)


def harmonic_ir(potential: PotentialFn, positions, masses) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic wavenumbers (cm^-1) and IR intensities (km/mol) of a potential at ``positions`` [n_atoms, 3]
    Bohr, masses [n_atoms] in electron masses.

    The eigenvalues k of the mass-weighted Hessian M^-1/2 (d^2E/dR^2) M^-1/2 (``jax.hessian``) give omega =
    sqrt(k); the six (five if linear) closest to zero - translations and rotations - are dropped, and
    imaginary modes come out negative. The intensity of mode e is A = ``units.IR_INTENSITY_KM_PER_MOL``
    |dmu/dQ|^2 with dmu/dQ = (dmu/dR) M^-1/2 e in e / sqrt(u) (``jax.jacfwd`` of the dipole), as in
    ``reference.vibrations.harmonic_ir``. Returns ([n_modes], [n_modes]), ascending in wavenumber.
    """
    positions, masses = jnp.asarray(positions), jnp.asarray(masses)
    n = positions.shape[0]
    hessian, dipole_jacobian = _second_derivatives(_as_pytree(potential), positions)
    hessian, dipole_jacobian = hessian.reshape(3 * n, 3 * n), np.asarray(dipole_jacobian, np.float64).reshape(3, 3 * n)
    inverse_sqrt = 1.0 / np.sqrt(np.repeat(np.asarray(masses, np.float64), 3))
    weighted = np.asarray(hessian, np.float64) * inverse_sqrt[:, None] * inverse_sqrt[None, :]
    k, modes = np.linalg.eigh(0.5 * (weighted + weighted.T))
    centred = np.asarray(positions, np.float64) - np.asarray(positions, np.float64).mean(0)
    n_rigid = 5 if np.linalg.matrix_rank(centred, tol=1e-6) <= 1 else 6
    keep = np.argsort(np.abs(k))[n_rigid:]
    keep = keep[np.argsort(k[keep])]
    derivatives = dipole_jacobian @ (modes[:, keep] * inverse_sqrt[:, None]) * np.sqrt(units.AMU_TO_ME)
    wavenumbers = np.sign(k[keep]) * np.sqrt(np.abs(k[keep])) * units.HARTREE_TO_CM1
    return wavenumbers, units.IR_INTENSITY_KM_PER_MOL * np.sum(derivatives**2, axis=0)


def ir_peaks(wavenumbers, intensity, min_relative: float = 0.05, min_cm1: float = 400.0) -> list[dict]:
    """Peaks of a spectrum above ``min_cm1`` whose height and prominence are at least ``min_relative``
    of the spectrum's maximum (``scipy.signal.find_peaks``).

    Returns:
      ``[{"cm1": float, "relative_intensity": float}, ...]`` sorted by wavenumber; intensities relative to
      the maximum of ``intensity``.
    """
    from scipy.signal import find_peaks
    wavenumbers, intensity = np.asarray(wavenumbers, float), np.asarray(intensity, float)
    top = intensity.max(initial=0.0)
    if top <= 0:
        return []
    idx, _ = find_peaks(intensity, height=min_relative * top, prominence=min_relative * top)
    return [{"cm1": float(wavenumbers[i]), "relative_intensity": float(intensity[i] / top)}
            for i in idx if wavenumbers[i] >= min_cm1]


def plot_ir(path: str | os.PathLike, wavenumbers, intensity, peaks: list[dict] | None = None,
            reference: list[tuple[float, float]] | None = None) -> None:
    """Saves a PNG of the spectrum (wavenumber axis decreasing, as chemists draw it), with ``peaks``
    (from :func:`ir_peaks`) labelled and ``reference`` sticks ``(cm1, relative intensity)`` (e.g.
    harmonic frequencies) as vertical lines."""
    from matplotlib.figure import Figure  # no pyplot: the Agg canvas, no global state
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(wavenumbers, intensity, color="C0", lw=1.2, label="MD (dipole autocorrelation)")
    if reference:
        cm1, rel = np.asarray(reference, float).reshape(-1, 2).T
        ax.vlines(cm1, 0.0, rel, color="C3", lw=1.5, label="reference")
    for p in peaks or []:
        ax.annotate(f"{p['cm1']:.0f}", (p["cm1"], p["relative_intensity"]), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=8)
    ax.set(xlabel="wavenumber (cm$^{-1}$)", ylabel="relative intensity", xlim=(max(wavenumbers), 0))
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=120)


def _ase_calculator_class():
    from ase.calculators.calculator import Calculator, all_changes

    class AseCalculator(Calculator):
        """ASE calculator from ``energy_fn(numbers np.ndarray[int] [n], positions jax.Array [n, 3] Bohr)
        -> (energy Hartree, dipole [3] e*Bohr)``; jits value_and_grad once per atomic-numbers tuple and
        returns ASE units: energy eV, forces eV/Angstrom, dipole e*Angstrom."""

        implemented_properties = ["energy", "forces", "dipole"]

        def __init__(self, energy_fn, **kwargs):
            super().__init__(**kwargs)
            self.energy_fn, self._compiled = energy_fn, {}

        def _function(self, numbers):
            key = tuple(int(z) for z in numbers)
            if key not in self._compiled:
                potential = functools.partial(self.energy_fn, np.array(key))  # numbers stay concrete
                self._compiled[key] = jax.jit(jax.value_and_grad(potential, has_aux=True))
            return self._compiled[key]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            positions = jnp.asarray(self.atoms.positions * units.BOHR_PER_ANGSTROM, dtype=float)
            (energy, dipole), grad = self._function(self.atoms.numbers)(positions)
            ev_per_angstrom = units.HARTREE_TO_EV * units.BOHR_PER_ANGSTROM  # from Hartree/Bohr
            self.results = {"energy": float(energy) * units.HARTREE_TO_EV,
                            "forces": -np.asarray(grad, np.float64) * ev_per_angstrom,
                            "dipole": np.asarray(dipole, np.float64) * units.ANGSTROM_PER_BOHR}

    return AseCalculator


def __getattr__(name: str):
    # PEP 562: ``AseCalculator`` subclasses ASE's Calculator, so ASE is imported on first access only.
    if name == "AseCalculator":
        globals()[name] = cls = _ase_calculator_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
