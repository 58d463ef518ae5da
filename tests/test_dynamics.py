"""Molecular dynamics and IR spectra on analytic potentials (float64 throughout, STYLE 12)."""

import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dft_operators import ase_calculator, spectra, units
from dft_operators.md import integrators, trajectory

# A CO-like pair (12 u and 16 u) on a vector spring V = k/2 |r1 - r2 - d0|^2. In the relative coordinate
# u = r1 - r2 - d0 this is mu u'' = -k u in each Cartesian direction, mu = m1 m2 / (m1 + m2): an exact
# 3D harmonic oscillator of angular frequency omega = sqrt(k / mu) with no rotation-vibration coupling,
# so a dipole q (r1 - r2) oscillates at omega alone and its IR line sits at omega / (2 pi c), which in
# atomic units (hbar = 1) is omega * HARTREE_TO_CM1 cm^-1. k is chosen for 2000 cm^-1.
MASSES = np.array([12.0, 16.0]) * units.AMU_TO_ME
MU = MASSES.prod() / MASSES.sum()
WAVENUMBER = 2000.0
OMEGA = WAVENUMBER / units.HARTREE_TO_CM1  # 1 / a.u. time
SPRING = MU * OMEGA**2  # Hartree / Bohr^2
D0 = jnp.array([2.13, 0.0, 0.0])
START = np.array([[0.0, 0.0, 0.0], [-2.13, 0.0, 0.0]])


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def diatomic(positions, spring=SPRING, charge=0.3):
    """Energy (Hartree) and dipole q (r1 - r2) (e Bohr) of the vector-spring diatomic."""
    u = positions[0] - positions[1] - D0
    return 0.5 * spring * jnp.sum(u**2), charge * (positions[0] - positions[1])


def constant_dipole(positions):
    return diatomic(positions)[0], jnp.array([0.3, -0.1, 0.2])


def tethers(positions, omegas, masses):
    """Independent isotropic oscillators V = sum_i m_i omega_i^2 |r_i|^2 / 2 (not translation invariant)."""
    return 0.5 * jnp.sum(masses * omegas**2 * jnp.sum(positions**2, axis=1)), jnp.zeros(3)


def morse_pairs(positions, depth=0.1, alpha=1.1, r_e=1.7):
    """Pairwise Morse energy D (1 - exp(-a (r - r_e)))^2 (Hartree), dipole of fixed charges +-0.2."""
    i, j = np.triu_indices(positions.shape[0], 1)
    r = jnp.linalg.norm(positions[i] - positions[j], axis=-1)
    charges = 0.2 * (-1.0) ** jnp.arange(positions.shape[0])
    return jnp.sum(depth * (1.0 - jnp.exp(-alpha * (r - r_e))) ** 2), charges @ positions


def run_diatomic(potential, key, steps, dt_fs, **kwargs):
    return integrators.run_md(potential, [6, 8], START, MASSES, steps=steps, dt_fs=dt_fs, temperature_k=300.0,
                              key=key, progress=False, **kwargs)


def test_nve_energy_error_is_second_order_and_momentum_conserved(key):
    # Velocity Verlet is symplectic. On a harmonic oscillator it conserves exactly the shadow energy
    # K + V (1 - (omega dt)^2 / 4) (Hairer, Lubich & Wanner, Geometric Numerical Integration, I.5), so the
    # true total K + V fluctuates as (omega dt)^2 / 4 times V, without drift: halving dt over the same
    # 300 fs quarters the fluctuation.
    runs = [run_diatomic(diatomic, key, steps=n, dt_fs=300.0 / n) for n in (600, 1200)]
    assert runs[0].temperature[0] == pytest.approx(300.0, rel=1e-12)  # scaled exactly, 3N - 3 = 3 dof
    spread = [np.std(t.total) for t in runs]
    assert 3.9 < spread[0] / spread[1] < 4.1, spread  # measured 4.03
    for t in runs:
        wdt2 = (OMEGA * t.frame_dt_fs / units.AU_TIME_FS) ** 2
        assert np.std(t.kinetic + (1.0 - wdt2 / 4.0) * t.potential) < 1e-12 * np.mean(t.total)
        assert np.std(t.total) == pytest.approx(wdt2 / 4.0 * np.std(t.potential), rel=1e-6)
        assert t.energy_drift < 0.02 * np.std(t.total)  # measured 2.9e-8 and 3.1e-9 Hartree (0.6%, 0.3%)
        momentum = np.einsum("i,fia->fa", t.masses, t.velocities)  # [n_frames, 3]
        scale = np.sqrt(t.masses.sum() * units.BOLTZMANN_HARTREE_PER_K * 300.0)
        assert np.abs(momentum).max() < 1e-10 * scale


def test_ir_peak_of_harmonic_diatomic_at_analytic_wavenumber(key, tmp_path):
    traj = run_diatomic(diatomic, key, steps=4000, dt_fs=0.5, record_every=2)  # 2 ps, frames 1 fs apart
    nu, intensity = spectra.ir_spectrum(traj.dipoles, traj.frame_dt_fs)
    assert nu[0] == 0.0 and nu[-1] <= 4000.0 and intensity.max() == pytest.approx(1.0)
    peaks = spectra.ir_peaks(nu, intensity)
    resolution = 1e-2 / (units.SPEED_OF_LIGHT_M_S * (traj.times_fs[-1] * 1e-15))  # 1 / (c T) in cm^-1
    assert len(peaks) == 1, peaks
    assert abs(peaks[0]["cm1"] - WAVENUMBER) < resolution, (peaks, resolution)  # measured 2003.3
    # Sharper: Verlet's own frequency (2 / dt) arcsin(omega dt / 2) = 2002.95 cm^-1, to the 4 cm^-1 grid.
    dt = 0.5 / units.AU_TIME_FS
    verlet_cm1 = 2.0 / dt * np.arcsin(OMEGA * dt / 2.0) * units.HARTREE_TO_CM1
    assert abs(peaks[0]["cm1"] - verlet_cm1) < nu[1], (peaks, verlet_cm1)
    spectra.plot_ir(tmp_path / "ir.png", nu, intensity, peaks, reference=[(WAVENUMBER, 1.0)])
    assert (tmp_path / "ir.png").read_bytes()[:4] == b"\x89PNG"


def test_ir_ensemble_averages_the_correlation_of_its_runs(key, tmp_path):
    # Two runs of oscillators at 2000 and 1500 cm^-1 (spring k scaled by (1500/2000)^2): the ensemble
    # spectrum is the mean of the runs' un-normalised spectra, so both lines appear, each at its wavenumber;
    # an ensemble of copies of one run is that run's spectrum.
    from dft_operators import api

    soft = jax.tree_util.Partial(diatomic, spring=SPRING * (1500.0 / 2000.0) ** 2)
    runs = [run_diatomic(diatomic, key, steps=4000, dt_fs=0.5, record_every=2),
            run_diatomic(soft, jax.random.split(key)[0], steps=4000, dt_fs=0.5, record_every=2)]
    nu, single = spectra.ir_spectrum(runs[0].dipoles, runs[0].frame_dt_fs)
    _, copies = spectra.ir_spectrum(np.stack([runs[0].dipoles] * 3), runs[0].frame_dt_fs)
    np.testing.assert_allclose(copies, single, atol=1e-12)
    paths = [str(tmp_path / f"run{i}.npz") for i in range(2)]
    for run, path in zip(runs, paths):
        run.save(path)
    ensemble = api.ir(paths, max_cm1=3000.0)
    peaks = ensemble["peaks_cm1"]
    assert len(peaks) == 2 and abs(peaks[0] - 1500.0) < 20.0 and abs(peaks[1] - 2000.0) < 20.0, peaks
    # The ensemble spectrum is a positive combination of the runs' own (normalised) spectra, nothing else.
    own = np.stack([spectra.ir_spectrum(r.dipoles, r.frame_dt_fs, 3000.0, max_lag_fs=2000.0)[1] for r in runs],
                   axis=1)
    weights, residual, *_ = np.linalg.lstsq(own, ensemble["intensity"], rcond=None)
    assert np.all(weights > 0.1) and residual[0] < 1e-20, (weights, residual)
    short = run_diatomic(diatomic, key, steps=2000, dt_fs=0.5, record_every=2)
    short.save(str(tmp_path / "short.npz"))
    with pytest.raises(ValueError, match="not a run like"):
        api.ir([paths[0], str(tmp_path / "short.npz")])


def test_ir_line_areas_follow_harmonic_intensities(key):
    # Two tethered atoms (same mass) at 500 and 2000 cm^-1 carrying charges 0.3 and 0.2: the dipole's time
    # derivative is q1 v1 + q2 v2, so each line's area is q_i^2 <|v_i|^2> (Parseval), the classical k_B T
    # (dmu/dQ)^2 of harmonic IR, with no weight of its frequency (a quantum-correction factor applied on top
    # would tilt the ratio by Q(2000) / Q(500) = 3.7 at 300 K). Central differences scale a line by
    # sinc^2(omega dt), included.
    masses = np.full(2, 12.0 * units.AMU_TO_ME)
    omegas = jnp.array([500.0, 2000.0]) / units.HARTREE_TO_CM1
    charges = jnp.array([0.3, 0.2])

    def charged_tethers(positions):
        return tethers(positions, omegas, jnp.asarray(masses))[0], charges @ positions

    traj = integrators.run_md(jax.tree_util.Partial(charged_tethers), [6, 6], np.zeros((2, 3)), masses,
                              steps=8000, dt_fs=0.5, temperature_k=300.0, key=key, progress=False)
    nu, intensity = spectra.ir_spectrum(traj.dipoles, traj.frame_dt_fs, 3000.0)
    areas = [intensity[np.abs(nu - w) < 150.0].sum() for w in (500.0, 2000.0)]
    velocity_sq = np.mean(np.sum(traj.velocities**2, axis=2), axis=0)  # [2] <|v_i|^2>
    omega_dt = np.asarray(omegas) * traj.frame_dt_fs / units.AU_TIME_FS
    expected = np.asarray(charges) ** 2 * velocity_sq * (np.sin(omega_dt) / omega_dt) ** 2
    assert areas[0] / areas[1] == pytest.approx(expected[0] / expected[1], rel=0.02), (areas, expected)


def test_harmonic_ir_of_diatomic_is_analytic():
    """A rotation-invariant bond k/2 (|r1 - r2| - d0)^2 with dipole q (r1 - r2): one mode at omega, intensity
    974.88 km/mol * q^2 / mu[u] (dmu/dQ = q / sqrt(mu)); rotations and translations dropped."""
    def bond(positions):
        r = positions[0] - positions[1]
        return 0.5 * SPRING * (jnp.linalg.norm(r) - 2.13) ** 2, 0.3 * r

    wavenumbers, intensities = spectra.harmonic_ir(bond, START, MASSES)
    np.testing.assert_allclose(wavenumbers, [WAVENUMBER], rtol=1e-9)
    np.testing.assert_allclose(intensities, [units.IR_INTENSITY_KM_PER_MOL * 0.3**2 / (MU / units.AMU_TO_ME)],
                               rtol=1e-9)


def test_constant_dipole_has_no_ir_peak(key):
    # Negative control: the atoms vibrate as above but the dipole does not change.
    traj = run_diatomic(constant_dipole, key, steps=1000, dt_fs=0.5)
    nu, intensity = spectra.ir_spectrum(traj.dipoles, traj.frame_dt_fs)
    assert np.all(intensity == 0.0) and spectra.ir_peaks(nu, intensity) == []


def test_langevin_equipartition(key):
    # 16 tethered atoms: under Langevin (3N dof) <K> = <V> = 3N k_B T / 2. After 1 ps of equilibration,
    # 19 ps at gamma = 10/ps give ~190 independent samples of a temperature whose relative spread is
    # sqrt(2 / 48) = 0.2, so the mean is good to ~1.5%; BAOAB's O((omega dt)^2) bias is < 0.5% here.
    n = 16
    masses = np.full(n, 4.0 * units.AMU_TO_ME)
    omegas = jnp.linspace(500.0, 1500.0, n) / units.HARTREE_TO_CM1
    potential = jax.tree_util.Partial(tethers, omegas=omegas, masses=jnp.asarray(masses))
    traj = integrators.run_md(potential, np.full(n, 2), np.zeros((n, 3)), masses, steps=40000, dt_fs=0.5,
                              temperature_k=300.0, thermostat="langevin", friction_per_ps=10.0, key=key,
                              record_every=10, progress=False)
    equilibrated = traj.times_fs >= 1000.0
    assert np.mean(traj.temperature[equilibrated]) == pytest.approx(300.0, rel=0.06)
    kt = units.BOLTZMANN_HARTREE_PER_K * 300.0
    assert np.mean(traj.potential[equilibrated]) == pytest.approx(1.5 * n * kt, rel=0.06)


def test_forces_are_minus_gradient(key):
    positions = jnp.array([[0.0, 0.0, 0.0], [1.9, 0.2, -0.1], [-0.4, 1.6, 0.3]])
    init, _ = integrators.velocity_verlet(morse_pairs, jnp.ones(3), 1.0)
    state = init(positions, jnp.zeros_like(positions), key)
    h = 1e-5
    numeric = np.zeros((3, 3))
    for i, a in np.ndindex(3, 3):
        step = jnp.zeros((3, 3)).at[i, a].set(h)
        numeric[i, a] = -(morse_pairs(positions + step)[0] - morse_pairs(positions - step)[0]) / (2 * h)
    np.testing.assert_allclose(state.forces, numeric, atol=1e-9)
    np.testing.assert_allclose(state.forces.sum(axis=0), 0.0, atol=1e-12)  # translation invariance
    assert state.energy == morse_pairs(positions)[0]


def test_second_run_does_not_recompile(key):
    # The potential travels as a Partial: new parameter arrays reuse the compiled chunk (STYLE 8).
    run_diatomic(jax.tree_util.Partial(diatomic, spring=SPRING), key, steps=20, dt_fs=0.5)
    size = integrators._run_chunk._cache_size()
    run_diatomic(jax.tree_util.Partial(diatomic, spring=2.0 * SPRING), key, steps=20, dt_fs=0.5)
    assert integrators._run_chunk._cache_size() == size


@pytest.mark.parametrize("change, message", [
    (dict(steps=0), "steps"), (dict(dt_fs=-0.5), "dt_fs"), (dict(thermostat="nose-hoover"), "thermostat"),
    (dict(positions=np.zeros((3, 3))), "shape"), (dict(record_every=3), "record_every"),
    (dict(thermostat="langevin", friction_per_ps=0.0), "friction"),
])
def test_bad_arguments(key, change, message):
    args = dict(numbers=[6, 8], positions=START, masses=MASSES, steps=10, dt_fs=0.5, key=key, progress=False)
    with pytest.raises(ValueError, match=message):
        integrators.run_md(diatomic, **{**args, **change})


def test_trajectory_roundtrip_and_corrupt_files(key, tmp_path):
    traj = run_diatomic(diatomic, key, steps=20, dt_fs=0.5, record_every=5)
    assert traj.positions.shape == (5, 2, 3) and traj.frame_dt_fs == 2.5
    traj.save(tmp_path / "md.npz")
    back = trajectory.load_trajectory(tmp_path / "md.npz")
    for name in ("numbers", "masses", "positions", "velocities", "potential", "kinetic", "dipoles"):
        np.testing.assert_array_equal(getattr(back, name), getattr(traj, name))
    assert (back.frame_dt_fs, back.thermostat, back.temperature_k) == (2.5, "nve", 300.0)

    garbage, partial, single = tmp_path / "garbage.npz", tmp_path / "partial.npz", tmp_path / "array.npy"
    garbage.write_bytes(b"PK\x03\x04 not really a zip archive" * 10)
    np.savez(partial, positions=traj.positions, numbers=traj.numbers)
    np.save(single, traj.positions)
    for path in (garbage, partial, single):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            trajectory.load_trajectory(path)
    with pytest.raises(FileNotFoundError):
        trajectory.load_trajectory(tmp_path / "missing.npz")


def test_xyz_reads_back_in_ase(key, tmp_path):
    import ase.io
    traj = run_diatomic(diatomic, key, steps=20, dt_fs=0.5, record_every=10)
    traj.write_xyz(tmp_path / "md.xyz")
    frames = ase.io.read(tmp_path / "md.xyz", index=":")
    assert len(frames) == 3 and frames[0].get_chemical_symbols() == ["C", "O"]
    np.testing.assert_allclose(frames[2].positions, traj.positions[2] * units.ANGSTROM_PER_BOHR, atol=1e-9)
    assert frames[2].get_potential_energy() == pytest.approx(traj.potential[2] * units.HARTREE_TO_EV)


def test_ase_calculator_units_and_forces():
    from ase import Atoms
    try:
        from ase.calculators.fd import calculate_numerical_forces
    except ImportError:  # ASE < 3.23
        from ase.calculators.test import numeric_forces as calculate_numerical_forces
    calc = ase_calculator.AseCalculator(lambda numbers, positions: morse_pairs(positions))
    atoms = Atoms("HFH", positions=[[0.0, 0.0, 0.0], [0.95, 0.1, 0.0], [-0.2, 0.9, 0.1]], calculator=calc)
    r = atoms.positions * units.BOHR_PER_ANGSTROM  # Bohr
    assert atoms.get_potential_energy() == pytest.approx(float(morse_pairs(r)[0]) * units.HARTREE_TO_EV)
    np.testing.assert_allclose(atoms.get_forces(), calculate_numerical_forces(atoms, 1e-4), atol=1e-6)
    np.testing.assert_allclose(atoms.get_dipole_moment(), morse_pairs(r)[1] * units.ANGSTROM_PER_BOHR)
    Atoms("HH", positions=[[0, 0, 0], [0.74, 0, 0]], calculator=calc).get_potential_energy()
    assert len(calc._compiled) == 2  # one jitted function per atomic-numbers tuple


def test_import_does_not_need_ase():
    code = ("import sys, dft_operators.md.integrators, dft_operators.md.trajectory, dft_operators.spectra, "
            "dft_operators.ase_calculator; assert 'ase' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
