import numpy as np
import pytest

from dft_operators import molecule
from dft_operators.grids import UniformGrid
from dft_operators.io.cube import CubeError, read_cube, write_cube


def test_cube_round_trip(tmp_path):
    mol = molecule.builtin("water")
    grid = UniformGrid.around(mol.positions, 0.3, 3.0)
    values = np.random.default_rng(0).random(grid.shape) * 1e-3
    path = tmp_path / "w.cube"
    write_cube(path, grid, values, mol)
    grid2, values2, mol2 = read_cube(path)
    assert grid2.shape == grid.shape and np.isclose(grid2.spacing, grid.spacing)
    np.testing.assert_allclose(grid2.origin, grid.origin, atol=1e-8)
    np.testing.assert_allclose(values2, values, rtol=1e-5)  # cube files keep 6 significant digits
    np.testing.assert_array_equal(mol2.numbers, mol.numbers)
    np.testing.assert_allclose(mol2.positions, mol.positions, atol=1e-8)


def test_cube_file_layout_is_the_gaussian_one(tmp_path):
    # z runs fastest and every (x, y) row starts a new line: the value at (0, 0, 1) is the second number.
    mol = molecule.builtin("h2")
    grid = UniformGrid((0.0, 0.0, 0.0), 0.5, (2, 3, 7))
    values = np.arange(42, dtype=float).reshape(2, 3, 7)
    write_cube(tmp_path / "a.cube", grid, values, mol)
    lines = (tmp_path / "a.cube").read_text().splitlines()
    assert lines[3].split()[0] == "2" and lines[5].split()[0] == "7"
    first = [float(x) for x in lines[8].split()]
    assert first == [0, 1, 2, 3, 4, 5] and float(lines[9].split()[0]) == 6


def test_corrupt_cube_is_refused(tmp_path):
    path = tmp_path / "bad.cube"
    path.write_text("x\ny\n1 0 0 0\n")
    with pytest.raises(CubeError, match="cannot read cube"):
        read_cube(path)
    mol = molecule.builtin("h2")
    grid = UniformGrid((0.0, 0.0, 0.0), 0.5, (4, 4, 4))
    with pytest.raises(CubeError, match="does not match"):
        write_cube(tmp_path / "c.cube", grid, np.zeros((3, 4, 4)), mol)
