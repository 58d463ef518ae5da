import numpy as np
import pytest

from dft_operators import molecule, units
from dft_operators.molecule import Molecule, MoleculeError

WATER_XYZ = """3
water
O 0.000 0.000 0.000
H 0.000 0.757 0.587
H 0.000 -0.757 0.587
"""


def test_xyz_text_is_read_in_angstrom_and_stored_in_bohr():
    mol = molecule.from_xyz(WATER_XYZ)
    assert mol.symbols == ["O", "H", "H"]
    assert mol.n_electrons == 10
    np.testing.assert_allclose(mol.positions[1], np.array([0, 0.757, 0.587]) * units.BOHR_PER_ANGSTROM)


def test_xyz_round_trip(tmp_path):
    mol = molecule.builtin("ethanol")
    path = tmp_path / "ethanol.xyz"
    path.write_text(mol.to_xyz())
    back = molecule.from_xyz(str(path))
    np.testing.assert_array_equal(back.numbers, mol.numbers)
    np.testing.assert_allclose(back.positions, mol.positions, atol=1e-7)


def test_smiles_adds_hydrogens_and_is_seeded():
    a = molecule.from_smiles("CCO", seed=3)
    b = molecule.from_smiles("CCO", seed=3)
    assert sorted(a.symbols) == sorted(["C", "C", "O"] + ["H"] * 6)
    np.testing.assert_allclose(a.positions, b.positions)
    # A C-O bond near 1.43 Angstrom: the embedding is chemically sensible.
    c, o = a.positions[1], a.positions[2]
    assert 1.35 < np.linalg.norm(c - o) * units.ANGSTROM_PER_BOHR < 1.5


def test_builtin_sets():
    small = molecule.builtin_set("small-organic")
    assert len(small) >= 30
    assert all(set(m.symbols) <= {"H", "C", "N", "O", "F"} and m.charge == 0 for m in small)
    two = molecule.builtin_set("two-electron")
    assert [m.name for m in two] == ["h2", "heh+", "h3+"]
    assert all(m.n_electrons == 2 for m in two)


@pytest.mark.parametrize("make, message", [
    (lambda: molecule.from_xyz("1\n\nXx 0 0 0\n"), "unknown element"),
    (lambda: Molecule([1], [[0, 0, 0]], charge=0, spin=0), "cannot have spin"),
    (lambda: Molecule([8], [[0, 0, 0]], charge=9), "leaves -1 electrons"),
    (lambda: Molecule([1, 1], [[0, 0, 0], [0, 0, 0.2 * units.BOHR_PER_ANGSTROM]]), "Angstrom apart"),
    (lambda: molecule.from_xyz("\n\n"), "empty"),
    (lambda: molecule.from_xyz("2\ncomment\nH 0 0 0\n"), "says 2 atoms but 1 atom lines follow"),
    (lambda: molecule.from_xyz("1\nc\nH 0 zero 0\n"), "malformed coordinates"),
    (lambda: molecule.from_xyz("/no/such/file.xyz"), "no such XYZ file"),
    (lambda: molecule.from_smiles("C1CC"), "cannot parse SMILES"),
    (lambda: molecule.builtin("unobtainium"), "no built-in molecule"),
])
def test_bad_input_names_the_problem(make, message):
    with pytest.raises(MoleculeError, match=message):
        make()


def test_parse_molecule_forms(tmp_path):
    path = tmp_path / "w.xyz"
    path.write_text(WATER_XYZ)
    assert molecule.parse_molecule(str(path)).n_atoms == 3
    assert molecule.parse_molecule("smiles:C").n_atoms == 5
    assert molecule.parse_molecule("builtin:heh+").charge == 1
    with pytest.raises(MoleculeError, match="cannot read molecule"):
        molecule.parse_molecule("water")
