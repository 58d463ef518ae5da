"""The atomic-guess density and potential from radial tables, against PySCF's density matrix and integrals."""

import numpy as np
import pytest
from pyscf import dft

from dft_operators import molecule, reference
from dft_operators.grids import UniformGrid
from dft_operators.reference import guess
from dft_operators.reference.level import build_mole

LEVELS = {"valence": reference.Level(), "all-electron": reference.ALL_ELECTRON}


@pytest.mark.parametrize("name", ["water", "h3+"])
@pytest.mark.parametrize("level", LEVELS.values(), ids=LEVELS.keys())
def test_the_tables_reproduce_the_atomic_guess_and_its_coulomb_energy(name, level):
    mol = molecule.builtin(name)  # h3+: an ion, whose atoms are scaled to its two electrons
    atoms = reference.atomic_guess(mol, level)
    grid = UniformGrid.around(mol.positions, 0.3, 4.0)
    exact = reference.density_on_box(atoms, grid)
    tables = reference.atomic_density_on_box(mol, level, grid)
    assert np.abs(tables - exact).sum() / exact.sum() < 2e-6
    fields = reference.AtomicFields(mol, level)
    mf = dft.RKS(build_mole(mol, level))
    quadrature = dft.gen_grid.Grids(mf.mol)
    quadrature.level = 4
    quadrature.build()
    at = fields.at(quadrature.coords)
    coulomb = np.sum(quadrature.weights * at["rho"] * at["v"])  # int rho_atoms v_atoms = Tr[D J[D]]
    assert coulomb == pytest.approx(np.sum(atoms.dm * mf.get_j(dm=atoms.dm)), rel=2e-6)


@pytest.mark.parametrize("xc", ["lda,pw", "pbe"])
def test_the_fock_matrix_of_the_atomic_density_on_a_box_is_pyscfs(xc):
    # With rho = rho_atoms on the box, delta vanishes and the box Fock matrix must be PySCF's own
    # h + J[D_atoms] + V_xc[D_atoms]: the tables, the one-pass quadrature and the GGA terms at once.
    level = reference.Level(xc=xc)
    mol = molecule.builtin("water")
    grid = UniformGrid.around(mol.positions, 0.4, 4.0)
    mf, fock, _ = guess._box_fock(mol, level, grid, reference.atomic_density_on_box(mol, level, grid), 3)
    dm = reference.atomic_guess(mol, level).dm
    mf.grids.level = 3
    expected = mf.get_fock(dm=dm)
    assert np.abs(fock - expected).max() < 1e-5 * np.abs(expected).max()  # measured 5e-7
