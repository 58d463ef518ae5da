"""Tests of the PySCF reference layer: invariants, analytic identities and agreement with plain PySCF."""

import dataclasses
import json

import numpy as np
import pytest
from pyscf import dft, gto
from pyscf.gto import pp_int

from dft_operators import gaussians
from dft_operators import level as levels
from dft_operators.grids import UniformGrid
from dft_operators.molecule import SYMBOLS, Molecule, builtin, from_smiles
from dft_operators.reference import (ALL_ELECTRON, Level, RandomPotential, SCFError, atomic_guess, density_on_box,
                                     fit_coefficients, level_electrons, quadrature_fields, run_ks,
                                     screened_ionic_potential)
from dft_operators.reference import density_basis
from dft_operators.reference.level import ETB_BETA, basis_shells, build_mole, ion_charge
from dft_operators.reference.potentials import ionic_potential, potential_matrix

VALENCE = Level()  # LDA, gth-dzvp, gth-pade


pytestmark = pytest.mark.usefixtures("one_pyscf_thread")


@pytest.fixture(scope="module")
def water_valence():
    return run_ks(builtin("water"), VALENCE)


@pytest.fixture(scope="module")
def water_all_electron():
    return run_ks(builtin("water"), ALL_ELECTRON)


@pytest.fixture(scope="module")
def h2():
    return run_ks(builtin("h2"), ALL_ELECTRON)


@pytest.fixture(scope="module")
def h2_fields(h2):
    return quadrature_fields(h2, grid_level=2)


def von_weizsaecker_density(fields):
    """tau_vW = |grad rho|^2 / (8 rho), Hartree/Bohr^3."""
    return np.sum(fields["grad_rho"] ** 2, axis=1) / (8 * fields["rho"])


def weak_euler_residual(state, fields):
    """int rho dT_s/drho - (T_s + N mu - sum_i n_i eps_i).

    In a basis, eps_i = <i|h_s|i> exactly, so sum_i n_i eps_i = T_s + int rho v_s and
    int rho (mu - v_s) = T_s + N mu - sum_i n_i eps_i; for one doubly occupied orbital (mu = eps) it is T_s.
    """
    lhs = fields["weights"] @ (fields["rho"] * fields["dts_drho"])
    return lhs - (fields["t_s"] + state.density.n_electrons * state.homo - np.sum(state.mo_occ * state.mo_energy))


def test_level_is_json_and_counts_valence_electrons():
    assert Level(**json.loads(json.dumps(VALENCE.as_dict()))) == VALENCE
    water = builtin("water")
    assert level_electrons(water, VALENCE) == 8  # O keeps 6 valence electrons, H 1
    assert level_electrons(water, ALL_ELECTRON) == 10
    assert level_electrons(builtin("heh+"), VALENCE) == 2


def test_gth_valence_table_is_pyscfs():
    # The PySCF-free electron count (dft_operators.level) reads a table; it must be what PySCF's files say, for
    # every element the project knows (H to Kr) and every family the table claims.
    for family in levels.GTH_FAMILIES:
        for symbol in SYMBOLS[1:]:
            assert levels.GTH_VALENCE[symbol] == ion_charge(symbol, family), (family, symbol)
    assert levels.valence_charge("O", "GTH-PADE", 8) == 6 and levels.valence_charge("O", None, 8) == 8


@pytest.mark.parametrize("basis", ["def2-svp", "def2-universal-jkfit", "etb:cc-pvdz"])
def test_gaussian_basis_evaluates_as_pyscf(basis):
    """Basis functions and gradients from stored shell arrays (``gaussians``, no PySCF) equal PySCF's eval_ao on
    ethanol, l up to 4 in the auxiliary bases; one-atom integrals and first moments equal PySCF's (Fourier
    transform at G = 0; level-7 quadrature, converged to ~1e-8 for O's tight p functions)."""
    mol = from_smiles("CCO")
    pyscf_mol = build_mole(mol, ALL_ELECTRON, basis)
    shells = basis_shells(mol, ALL_ELECTRON, basis)
    assert shells.n_functions == pyscf_mol.nao and shells.function_ls().max() == (2 if basis == "def2-svp" else 4)
    rng = np.random.default_rng(0)
    points = mol.positions[rng.integers(mol.n_atoms, size=500)] + rng.normal(scale=0.7, size=(500, 3))
    ao = dft.numint.eval_ao(pyscf_mol, points, deriv=1)  # [4, n, nao]
    values, gradients = gaussians.values(shells, mol.positions, points, deriv=1)
    np.testing.assert_allclose(values, ao[0], rtol=0, atol=1e-12 * np.abs(ao[0]).max())
    np.testing.assert_allclose(gradients, np.moveaxis(ao[1:4], 0, -1), rtol=0, atol=1e-12 * np.abs(ao[1:4]).max())
    c = rng.normal(size=(shells.n_functions, 2))  # two expansions at once, without the [n, n_f] values
    np.testing.assert_allclose(gaussians.expand(shells, mol.positions, points, c), ao[0] @ c, rtol=1e-12, atol=1e-12)
    if basis != "def2-svp":
        np.testing.assert_allclose(gaussians.integrals(shells), fit_coefficients(
            atomic_guess(mol, ALL_ELECTRON), basis)["aux_integrals"], rtol=1e-12, atol=1e-14)
    if basis == "def2-universal-jkfit":  # one atom per element against PySCF's quadrature
        atom_of = shells.function_atoms()
        for z in (1, 6, 8):
            table = density_basis.element_basis(z, dataclasses.replace(ALL_ELECTRON, aux_basis=basis))
            mine = atom_of == int(np.flatnonzero(mol.numbers == z)[0])
            np.testing.assert_array_equal(shells.shell_ls(int(np.flatnonzero(mol.numbers == z)[0])), table["ls"])
            np.testing.assert_allclose(gaussians.first_moments(shells)[mine], table["moments"], atol=1e-7)


def test_angular_functions_are_pyscfs():
    u = np.random.default_rng(1).normal(size=(30, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    for l in range(7):
        np.testing.assert_allclose(gaussians.angular_functions(l, u), density_basis.angular_functions(l, u),
                                   atol=1e-14)
    # Control: with the Condon-Shortley phase (one convention away) the l = 1 functions are not PySCF's.
    assert np.abs(-gaussians.angular_functions(1, u)[:, :2] - density_basis.angular_functions(1, u)[:, :2]).max() > 0.1


def test_missing_basis_names_the_element():
    potassium_hydride = Molecule([19, 1], [[0, 0, 0], [0, 0, 4.2]], name="KH")
    with pytest.raises(SCFError, match=r"'gth-dzvp' is not defined for element K\b"):
        run_ks(potassium_hydride, VALENCE)
    with pytest.raises(SCFError, match=r"'no-such-basis' is not defined for element O"):
        fit_coefficients(atomic_guess(builtin("water"), ALL_ELECTRON), "no-such-basis")


def test_run_ks_matches_plain_pyscf(water_valence):
    water = builtin("water")
    mol = dict(atom=[(int(z), tuple(r)) for z, r in zip(water.numbers, water.positions)], unit="Bohr",
               basis="gth-dzvp", pseudo="gth-pade", verbose=0)
    mf = dft.RKS(gto.M(**mol), xc="lda,pw")
    mf.conv_tol = 1e-9
    assert water_valence.converged
    assert water_valence.energy == pytest.approx(mf.kernel(), abs=1e-8)
    assert water_valence.homo == pytest.approx(mf.mo_energy[mf.mo_occ > 0].max(), abs=1e-6)


def test_restart_from_converged_density_is_immediate(water_valence):
    again = run_ks(builtin("water"), VALENCE, dm0=water_valence.density.dm)
    assert again.cycles <= 3
    assert again.energy == pytest.approx(water_valence.energy, abs=1e-8)


def test_box_density_integrates_to_electron_count(water_valence):
    water = builtin("water")
    grid = UniformGrid.around(water.positions, spacing=0.25, margin=5.0)
    for density in (water_valence.density, atomic_guess(water, VALENCE)):
        assert density.n_electrons == 8
        assert grid.integrate(density_on_box(density, grid)) == pytest.approx(8, rel=1e-3)


def test_quadrature_density_integrates_to_electron_count(water_valence):
    fields = quadrature_fields(water_valence, grid_level=2)
    assert fields["weights"] @ fields["rho"] == pytest.approx(8, rel=1e-6)
    assert fields["weights"] @ fields["rho0"] == pytest.approx(8, rel=1e-6)
    # The dipole of the state equals that of the quadrature density plus the ion cores (Z_ion = 6, 1, 1).
    water = builtin("water")
    cores = np.array([6, 1, 1]) @ water.positions
    electrons = -(fields["weights"] * fields["rho"]) @ fields["points"]
    np.testing.assert_allclose(water_valence.dipole, cores + electrons, atol=1e-5)


def test_fit_coefficients(water_all_electron):
    water = builtin("water")
    mol = build_mole(water, ALL_ELECTRON)
    grids = dft.gen_grid.Grids(mol)
    grids.level, grids.prune = 3, None
    grids.build()
    for density in (water_all_electron.density, atomic_guess(water, ALL_ELECTRON)):
        fit = fit_coefficients(density)
        assert fit["aux_basis"] == "def2-universal-jkfit"
        assert 0 <= fit["coulomb_error"] < 1e-3
        # n_electrons_fit is the integral of the fitted density itself ...
        aux = build_mole(water, ALL_ELECTRON, basis=fit["aux_basis"]).eval_gto("GTOval_sph", grids.coords)
        assert fit["n_electrons_fit"] == pytest.approx(grids.weights @ aux @ fit["coefficients"], abs=1e-6)
        # ... which the Coulomb metric does not constrain to N: it comes out close, not exact.
        assert fit["n_electrons_fit"] == pytest.approx(10, rel=1e-3)
        labels = fit["aux_labels"]
        assert labels.shape == (len(fit["coefficients"]), 3)
        assert np.all(fit["aux_integrals"][labels[:, 1] > 0] == 0)
        assert np.all(np.abs(labels[:, 2]) <= labels[:, 1])
        # Without the error (no four-centre build) the fit itself is the same.
        cheap = fit_coefficients(density, with_error=False)
        assert "coulomb_error" not in cheap
        np.testing.assert_array_equal(cheap["coefficients"], fit["coefficients"])
    # A larger auxiliary basis of the same family fits better (verified: def2-universal-jkfit sits between).
    dz = fit_coefficients(water_all_electron.density, "cc-pvdz-jkfit")["coulomb_error"]
    tz = fit_coefficients(water_all_electron.density, "cc-pvtz-jkfit")["coulomb_error"]
    assert tz < dz


def test_even_tempered_aux_basis(water_all_electron):
    water = builtin("water")
    aux = build_mole(water, ALL_ELECTRON, basis="etb:def2-svp")
    # Per element and l, the exponents run in one geometric series of ratio ETB_BETA from the smallest.
    for atom in (0, 1):
        shells = [s for s in range(aux.nbas) if aux.bas_atom(s) == atom]
        for l in {aux.bas_angular(s) for s in shells}:
            exponents = np.sort([aux.bas_exp(s)[0] for s in shells if aux.bas_angular(s) == l])
            np.testing.assert_allclose(exponents[1:] / exponents[:-1], ETB_BETA, rtol=1e-6)
    assert aux.nao == 121 + 2 * 24  # O: 14s 10p 8d 4f 1g, H: 7s 4p 1d (PySCF's aug_etb of def2-svp)
    fit = fit_coefficients(water_all_electron.density, "etb:def2-svp")
    assert fit["aux_basis"] == "etb:def2-svp" and len(fit["coefficients"]) == aux.nao
    assert 0 <= fit["coulomb_error"] < 1e-3 and fit["n_electrons_fit"] == pytest.approx(10, rel=1e-3)
    with pytest.raises(SCFError, match=r"'no-such-basis' is not defined for element H"):
        build_mole(water, ALL_ELECTRON, basis="etb:no-such-basis")


@pytest.mark.parametrize("name", ["h2", "heh+"])
def test_two_electron_kinetic_energy_is_von_weizsaecker(name, h2, h2_fields):
    # One doubly occupied orbital phi = sqrt(rho/2): tau = |grad phi|^2 = |grad rho|^2 / (8 rho) pointwise.
    state = h2 if name == "h2" else run_ks(builtin(name), ALL_ELECTRON)
    fields = h2_fields if name == "h2" else quadrature_fields(state, grid_level=2)
    tau_vw = von_weizsaecker_density(fields)
    np.testing.assert_allclose(fields["tau"], tau_vw, rtol=1e-9, atol=1e-12)
    t_vw = fields["weights"] @ tau_vw
    assert fields["t_s"] == pytest.approx(t_vw, abs=1e-5)
    assert fields["weights"] @ fields["tau"] == pytest.approx(t_vw, abs=1e-5)


def test_water_kinetic_energy_is_not_von_weizsaecker(water_all_electron):
    fields = quadrature_fields(water_all_electron, grid_level=2)
    assert fields["t_s"] - fields["weights"] @ von_weizsaecker_density(fields) > 1.0  # T_s >= T_vW
    assert abs(weak_euler_residual(water_all_electron, fields)) < 1e-4


@pytest.mark.parametrize("xc", ["lda,pw", "pbe"])
def test_kinetic_potential_satisfies_euler_equation_weakly(xc, h2, h2_fields):
    # For GGAs this needs the divergence term of v_xc; without it the residual is 0.06 Hartree.
    state = h2 if xc == "lda,pw" else run_ks(builtin("h2"), dataclasses.replace(ALL_ELECTRON, xc=xc))
    fields = h2_fields if xc == "lda,pw" else quadrature_fields(state, grid_level=2)
    assert abs(weak_euler_residual(state, fields)) < 1e-6
    assert fields["weights"] @ (fields["rho"] * fields["dts_drho"]) == pytest.approx(fields["t_s"], abs=1e-6)


def test_kinetic_potential_tends_to_von_weizsaecker_derivative(h2_fields):
    # Pointwise, mu - v_s = dT_vW/drho = |grad rho|^2/(8 rho^2) - lap rho/(4 rho) only in a complete basis:
    # Gaussian orbitals miss the cusp, so compare the rho-weighted deviation and watch it fall with the basis.
    def deviation(fields):
        rho, w = fields["rho"], fields["weights"]
        vw = np.sum(fields["grad_rho"] ** 2, axis=1) / (8 * rho**2) - fields["lap_rho"] / (4 * rho)
        mask = rho > 1e-3
        return np.sum((w * rho * np.abs(fields["dts_drho"] - vw))[mask]) / np.sum((w * rho * np.abs(vw))[mask])

    larger = dataclasses.replace(ALL_ELECTRON, basis="def2-tzvp")
    svp, tzvp = deviation(h2_fields), deviation(quadrature_fields(run_ks(builtin("h2"), larger)))
    assert tzvp < 0.75 * svp < 0.15


def test_random_potential(h2, h2_fields):
    h2_molecule = builtin("h2")
    potential = RandomPotential.sample(h2_molecule, seed=1)
    again = RandomPotential.sample(h2_molecule, seed=1)
    for key, value in potential.as_arrays().items():
        np.testing.assert_array_equal(value, again.as_arrays()[key])
    perturbed = run_ks(h2_molecule, ALL_ELECTRON, external=potential)
    repeated = run_ks(h2_molecule, ALL_ELECTRON, external=again)
    other = run_ks(h2_molecule, ALL_ELECTRON, external=RandomPotential.sample(h2_molecule, seed=2))
    np.testing.assert_array_equal(perturbed.density.dm, repeated.density.dm)
    assert np.abs(other.density.dm - perturbed.density.dm).max() > 1e-3
    fields = quadrature_fields(perturbed, grid_level=2)
    assert np.abs(fields["rho"] - h2_fields["rho"]).max() > 1e-3
    np.testing.assert_allclose(fields["v_ext"] - h2_fields["v_ext"], potential.values(fields["points"]), atol=1e-12)

    # <m|v|n> from three-centre integrals against a fine quadrature.
    mol = build_mole(h2_molecule, ALL_ELECTRON)
    grids = dft.gen_grid.Grids(mol)
    grids.level = 5
    grids.build()
    ao = mol.eval_gto("GTOval_sph", grids.coords)
    quadrature = ao.T @ (ao * (grids.weights * potential.values(grids.coords))[:, None])
    np.testing.assert_allclose(potential_matrix(potential, mol), quadrature, atol=1e-8)

    # First-order perturbation theory: E(v) - E(0) = int v rho + O(v^2), the remainder negative.
    for amplitude, tolerance in ((0.02, 0.05), (0.002, 0.005)):
        weak = RandomPotential.sample(h2_molecule, seed=3, amplitude=amplitude)
        first = h2_fields["weights"] @ (weak.values(h2_fields["points"]) * h2_fields["rho"])
        remainder = run_ks(h2_molecule, ALL_ELECTRON, external=weak).energy - h2.energy - first
        assert -tolerance * abs(first) < remainder < 0


def test_forces_under_random_potential_match_finite_differences():
    h2_molecule = builtin("h2")
    potential = RandomPotential.sample(h2_molecule, seed=1)
    state = run_ks(h2_molecule, ALL_ELECTRON, external=potential, forces=True, conv_tol=1e-12)
    step = 1e-3
    for atom, axis in ((0, 0), (1, 2)):
        energies = []
        for sign in (1, -1):
            positions = h2_molecule.positions.copy()
            positions[atom, axis] += sign * step
            moved = h2_molecule.with_positions(positions)
            energies.append(run_ks(moved, ALL_ELECTRON, external=potential, conv_tol=1e-12).energy)
        assert state.forces[atom, axis] == pytest.approx(-(energies[0] - energies[1]) / (2 * step), abs=1e-5)
    free = run_ks(h2_molecule, ALL_ELECTRON, forces=True)
    np.testing.assert_allclose(free.forces.sum(axis=0), 0, atol=1e-6)  # no external field: no net force


def test_screened_ionic_potential():
    oxygen = Molecule([8], [[0.0, 0.0, 0.0]], spin=2, name="O")
    grid = UniformGrid.centered([0, 0, 0], spacing=0.5, shape=(41, 41, 41))  # a point at the nucleus
    r = np.linalg.norm(grid.points(), axis=-1)
    for level, z in ((VALENCE, 6), (ALL_ELECTRON, 8)):
        v = screened_ionic_potential(oxygen, level, grid)
        assert v.shape == grid.shape and np.all(np.isfinite(v))
        far = r >= 6.0
        np.testing.assert_allclose(v[far], -z / r[far], rtol=1e-4)
    # At the nucleus: -Z_ion sqrt(2/pi) / r_loc + C1, with O's gth-pade r_loc = 0.24762086, C1 = -16.58031797.
    v = screened_ionic_potential(oxygen, VALENCE, grid)
    assert v[20, 20, 20] == pytest.approx(-6 * np.sqrt(2 / np.pi) / 0.24762086 - 16.58031797, rel=1e-12)

    # The local GTH formula reproduces PySCF's local pseudopotential matrix (projectors removed).
    water = builtin("water")
    mol = build_mole(water, VALENCE)
    local_only = mol.copy()
    local_only._pseudo = {symbol: params[:4] + [0] for symbol, params in mol._pseudo.items()}
    grids = dft.gen_grid.Grids(mol)
    grids.level = 5
    grids.build()
    ao = mol.eval_gto("GTOval_sph", grids.coords)
    quadrature = ao.T @ (ao * (grids.weights * ionic_potential(water, VALENCE, grids.coords))[:, None])
    np.testing.assert_allclose(pp_int.get_gth_pp(local_only), quadrature, atol=1e-6)


def test_open_shell_runs_unrestricted():
    hydrogen = Molecule([1], [[0.0, 0.0, 0.0]], spin=1, name="H")
    state = run_ks(hydrogen, ALL_ELECTRON)
    assert state.mo_energy.shape[0] == 2 and state.converged
    mf = dft.UKS(build_mole(hydrogen, ALL_ELECTRON), xc="lda,pw")  # plain PySCF, unrestricted
    mf.conv_tol = 1e-10
    assert state.energy == pytest.approx(mf.kernel(), abs=1e-7)
    assert np.trace(state.density.dm @ build_mole(hydrogen, ALL_ELECTRON).intor("int1e_ovlp")) == pytest.approx(1)
    fields = quadrature_fields(state, grid_level=1)
    assert np.all(np.isfinite(fields["v_xc"])) and fields["weights"] @ fields["rho"] == pytest.approx(1, abs=1e-5)
