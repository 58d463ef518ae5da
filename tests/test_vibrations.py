"""Geometry optimisation and harmonic IR spectra: forces vanish, frequencies match finite differences of the
forces, intensities follow from dipole derivatives (with symmetry and a dipole-free negative control)."""

import numpy as np
import pytest
from scipy import constants

from dft_operators import units
from dft_operators.molecule import builtin
from dft_operators.reference import Level, SCFError, harmonic_ir, optimize_geometry, run_ks

SMALL = Level(xc="lda,pw", basis="6-31g", pseudo=None)  # all-electron, seconds per Hessian


pytestmark = pytest.mark.usefixtures("one_pyscf_thread")


@pytest.fixture(scope="module")
def water():
    """(start ground state, optimised molecule, its ground state, its harmonic IR) of water at SMALL."""
    start = builtin("water")
    molecule, state = optimize_geometry(start, SMALL)
    return run_ks(start, SMALL), molecule, state, harmonic_ir(molecule, SMALL)


@pytest.fixture(scope="module", params=["hydrogen-fluoride", "h2"])
def diatomic(request):
    """(optimised molecule, harmonic IR) of a diatomic at SMALL."""
    molecule, _ = optimize_geometry(builtin(request.param), SMALL)
    return molecule, harmonic_ir(molecule, SMALL)


def test_ir_constant_from_si():
    # A = N_A / (12 eps0 c^2) |dmu/dQ|^2 in SI (= N_A pi / (3 c^2) |dmu/dQ|^2 in Gaussian units);
    # for |dmu/dQ| = 1 e / sqrt(u): N_A e^2 / (12 eps0 c^2 u) = 974.88 km/mol.
    si = constants.N_A * constants.e ** 2 / (12 * constants.epsilon_0 * constants.c ** 2 * constants.atomic_mass)
    assert units.IR_INTENSITY_KM_PER_MOL == pytest.approx(si / 1e3, rel=1e-6)
    assert units.IR_INTENSITY_KM_PER_MOL == pytest.approx(974.88, abs=0.01)


def test_optimised_water_is_a_minimum(water):
    start, molecule, state, ir = water
    free = state.forces - state.forces.mean(axis=0)
    assert np.abs(free).max() < 3e-5
    assert np.linalg.norm(state.forces.sum(axis=0)) < 1e-4  # the net force PySCF's grid leaves is small
    assert state.energy < start.energy - 1e-5
    assert np.allclose(molecule.positions.mean(axis=0), builtin("water").positions.mean(axis=0), atol=1e-8)
    assert ir["n_imaginary"] == 0 and np.all(ir["frequencies_cm1"] > 0)


def test_optimiser_raises_when_out_of_steps():
    with pytest.raises(SCFError, match="did not converge in"):
        optimize_geometry(builtin("water"), SMALL, max_steps=2)


def test_water_modes_and_symmetry(water):
    _, molecule, _, ir = water
    nu, intensity = ir["frequencies_cm1"], ir["intensities_km_mol"]
    assert nu.shape == intensity.shape == (3,) and ir["modes"].shape == (3, 3, 3)
    assert np.allclose(np.linalg.norm(ir["modes"].reshape(3, -1), axis=1), 1.0)
    assert np.all((ir["reduced_masses_amu"] > 1.0) & (ir["reduced_masses_amu"] < 1.2))  # hydrogens move
    assert 1300 < nu[0] < 1800 and 3300 < nu[1] < nu[2] < 4200  # bend < symmetric < antisymmetric stretch
    assert np.all(intensity > 0) and intensity[0] > intensity[1]
    # C2v: the bend and the symmetric stretch (A1) move the dipole along the C2 axis, the antisymmetric
    # stretch (B2) perpendicular to it.
    o, h1, h2 = molecule.positions
    axis = (h1 - o) + (h2 - o)
    axis /= np.linalg.norm(axis)
    cosines = np.abs(ir["dipole_derivatives"] @ axis) / np.linalg.norm(ir["dipole_derivatives"], axis=1)
    assert cosines[0] > 0.999 and cosines[1] > 0.99 and cosines[2] < 0.01
    # in every mode the two hydrogens move as mirror images, by equal amounts
    amplitudes = np.linalg.norm(ir["modes"][:, 1:], axis=2)
    assert np.allclose(amplitudes[:, 0], amplitudes[:, 1], rtol=1e-3)


def test_water_intensities_match_cartesian_dipole_derivatives(water):
    # dmu/dQ_k = sum_ai (dmu/dx_ai) x_k,ai with x_k = e_k / sqrt(mu_k) the Cartesian displacement per unit
    # mass-weighted normal coordinate; dmu/dx from central differences along each Cartesian.
    _, molecule, state, ir = water
    h, apt = 0.005, np.zeros((3, molecule.n_atoms * 3))
    for i in range(molecule.n_atoms * 3):
        step = np.zeros(molecule.n_atoms * 3)
        step[i] = h
        plus, minus = (run_ks(molecule.with_positions(molecule.positions + s * step.reshape(-1, 3)), SMALL,
                              dm0=state.density.dm, conv_tol=1e-12).dipole for s in (1, -1))
        apt[:, i] = (plus - minus) / (2 * h)
    x = ir["modes"].reshape(3, -1) / np.sqrt(ir["reduced_masses_amu"])[:, None]
    intensities = units.IR_INTENSITY_KM_PER_MOL * np.sum((x @ apt.T) ** 2, axis=1)
    assert np.allclose(ir["intensities_km_mol"], intensities, rtol=1e-3, atol=1e-3)


def test_diatomic_frequency_and_intensity_from_the_bond_coordinate(diatomic):
    # E(r) along the bond: k = d2E/dr2 = -dF_B/dr (F_B: force on atom B along the bond, B moved by dr),
    # omega = sqrt(k / mu) in atomic units (Hartree, with mu in electron masses); Q = sqrt(mu) r, so
    # A = 974.88 km/mol (dmu/dr [e])^2 / mu [u] (the dipole of a neutral molecule is origin-independent).
    molecule, ir = diatomic
    assert ir["frequencies_cm1"].shape == (1,) and ir["modes"].shape == (1, 2, 3)
    bond = molecule.positions[1] - molecule.positions[0]
    bond /= np.linalg.norm(bond)
    h, forces, dipoles = 0.005, [], []
    for sign in (1, -1):
        positions = molecule.positions.copy()
        positions[1] += sign * h * bond
        state = run_ks(molecule.with_positions(positions), SMALL, forces=True, conv_tol=1e-12)
        forces.append(state.forces[1] @ bond)
        dipoles.append(state.dipole)
    k = -(forces[0] - forces[1]) / (2 * h)  # Hartree/Bohr^2
    m1, m2 = molecule.masses
    omega = np.sqrt(k / (m1 * m2 / (m1 + m2)))  # Hartree
    assert ir["frequencies_cm1"][0] == pytest.approx(omega * units.HARTREE_TO_CM1, rel=1e-3)  # agree to 3e-5
    # Q = sqrt(mu_k) s for a step s along the unit mode e_k (mu_k in PySCF's, i.e. Gaussian's, convention:
    # 1.008 u for H2) and Q = sqrt(mu) r along the bond: mu_k = mu (dr/ds)^2.
    mu_amu = m1 * m2 / (m1 + m2) / units.AMU_TO_ME
    dr_ds = (ir["modes"][0, 1] - ir["modes"][0, 0]) @ bond
    assert ir["reduced_masses_amu"][0] == pytest.approx(mu_amu * dr_ds ** 2, rel=1e-6)
    expected = units.IR_INTENSITY_KM_PER_MOL * np.sum(((dipoles[0] - dipoles[1]) / (2 * h)) ** 2) / mu_amu
    if molecule.name == "h2":  # negative control: a homonuclear stretch has no dipole to change
        assert ir["intensities_km_mol"][0] < 1e-6 and expected < 1e-6
    else:
        assert ir["intensities_km_mol"][0] > 10  # 19.5 at 6-31g (98 at def2-svp, 113 at aug-cc-pvtz)
        assert ir["intensities_km_mol"][0] == pytest.approx(expected, rel=1e-3)
