"""Density functionals and electrostatics: analytic references and agreement with PySCF on the same grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, scf

from dft_operators import physics
from dft_operators.molecule import builtin
from dft_operators.physics.kinetic import C_F
from dft_operators.reference import ALL_ELECTRON, ofdft_integrals, quadrature_fields, run_ks
from dft_operators.reference.level import build_mole


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def h2():
    """H2 at LDA/def2-svp with its fields on PySCF's level-1 grid."""
    state = run_ks(builtin("h2"), ALL_ELECTRON)
    return state, quadrature_fields(state, grid_level=1)


def hydrogen_1s(n_radial=80):
    """rho = exp(-2 r) / pi on a radial Gauss-Laguerre grid (spherical symmetry: one direction suffices).

    int_0^inf f(r) 4 pi r^2 dr = sum_k w_k e^(x_k) f(x_k) 4 pi x_k^2 with Gauss-Laguerre nodes x_k.
    Returns rho [n], grad_rho [n, 3], weights [n].
    """
    x, w = np.polynomial.laguerre.laggauss(n_radial)
    rho = np.exp(-2 * x) / np.pi
    grad = -2 * rho[:, None] * np.array([0.0, 0.0, 1.0])  # d rho / dr along r-hat = z
    return rho, grad, w * np.exp(x) * 4 * np.pi * x**2


def test_hydrogen_atom_kinetic_functionals():
    rho, grad, w = hydrogen_1s()
    assert np.sum(w * rho) == pytest.approx(1.0, abs=1e-12)
    # vW is exact for one orbital: |grad rho|^2 / (8 rho) = rho / 2, so T_vW = N / 2 = 0.5 Hartree (= T_s of H).
    assert np.sum(w * physics.von_weizsaecker(rho, grad)) == pytest.approx(0.5, abs=1e-12)
    # T_TF = C_F pi^(-5/3) int exp(-10 r / 3) 4 pi r^2 dr = C_F pi^(-5/3) 4 pi 2 (3/10)^3.
    expected = C_F * np.pi ** (-5 / 3) * 4 * np.pi * 2 * 0.3**3
    assert np.sum(w * physics.thomas_fermi(rho)) == pytest.approx(expected, rel=1e-12)
    assert np.sum(w * physics.tf_vw(rho, grad)) == pytest.approx(expected + 0.5 / 9, rel=1e-12)


def test_lda_matches_pyscf_on_the_same_grid(h2):
    _, q = h2
    rho = q["rho"]
    exc, vxc = dft.libxc.eval_xc("lda,pw", rho, spin=0, deriv=1)[:2]
    e_xc, v_xc = jax.jit(lambda r: (physics.lda_xc(r), physics.lda_xc_potential(r)))(rho)
    np.testing.assert_allclose(e_xc, exc * rho, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(v_xc, vxc[0], rtol=1e-8, atol=1e-10)
    # and PySCF's own v_xc of the ground state, evaluated by the reference layer on that grid
    significant = rho > 1e-8
    np.testing.assert_allclose(v_xc[significant], q["v_xc"][significant], rtol=1e-7)


def test_lda_distinguishes_pw92_variants(h2):
    # Negative control: PW_MOD differs from PW in the 7th digit; the tolerance above must see it.
    rho = h2[1]["rho"]
    exc_mod = dft.libxc.eval_xc("lda,pw_mod", rho, spin=0, deriv=0)[0]
    assert np.max(np.abs(jax.jit(physics.lda_xc)(rho) - exc_mod * rho) / np.abs(exc_mod * rho)) > 1e-7


def test_functionals_are_finite_with_finite_gradients_at_zero_density():
    rho = jnp.array([0.0, 1e-20, 1e-3, 1.0])
    grad = jnp.array([[0.0, 0.0, 0.0], [1e-22, 0.0, 0.0], [1e-3, 0.0, 0.0], [0.5, 0.2, 0.0]])
    for f in (lambda r, g: physics.lda_xc(r), physics.tf_vw):
        value, (d_rho, d_grad) = jax.jit(jax.value_and_grad(lambda r, g: f(r, g).sum(), argnums=(0, 1)))(rho, grad)
        assert np.isfinite(value) and np.all(np.isfinite(d_rho)) and np.all(np.isfinite(d_grad))


def test_electrostatics_match_exact_integrals(h2):
    state, _ = h2
    molecule, dm = state.density.molecule, state.density.dm
    integrals = ofdft_integrals(molecule, ALL_ELECTRON, grid_level=1)
    x, w = integrals["basis_values"], integrals["weights"]
    rho = np.einsum("pm,mn,pn->p", x, dm, x)
    mol = build_mole(molecule, ALL_ELECTRON)
    exact_hartree = 0.5 * np.einsum("mn,nm->", dm, scf.hf.get_jk(mol, dm, with_k=False)[0])
    fitted = jax.jit(physics.hartree_energy)(rho, w, integrals["aux_potentials"],
                                             np.linalg.cholesky(integrals["coulomb_metric"]))
    # Robust Coulomb fitting: a lower bound with an error quadratic in the fitting error (~1e-4 Hartree here).
    assert exact_hartree - 2e-4 < fitted <= exact_hartree + 1e-6
    exact_external = np.einsum("mn,nm->", dm, mol.intor("int1e_nuc"))
    assert physics.external_energy(rho, w, integrals["v_ext"]) == pytest.approx(exact_external, abs=2e-5)
    distance = np.linalg.norm(np.diff(molecule.positions, axis=0))
    assert physics.nuclear_repulsion(integrals["nuclear_charges"], molecule.positions) == pytest.approx(1 / distance)
