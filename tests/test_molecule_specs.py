"""Molecule specs: QM9 draws from the cached index, seeded enumeration, files, exclusions and errors."""

import ast
import csv
import importlib.util
import os
import re
import sys

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

from dft_operators import units
from dft_operators.data import molecule_specs, qm9
from dft_operators.data.molecule_specs import canonical_smiles, describe, resolve
from dft_operators.molecule import SYMBOLS, MoleculeError, builtin

needs_qm9 = pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None,
                               reason='QM9 tests need the qm9 extra: pip install "dft_operators[qm9]"')


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """One QM9 index cache for the module: the index is built once (about 6 s), then reused."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("DFT_OPERATORS_CACHE", str(path))
        yield path


def smiles_of(molecules):
    return [m.smiles for m in molecules]


def write_smi(path, smiles):
    path.write_text("".join(f"{s}\n" for s in smiles))
    return str(path)


def assert_valid_neutral_closed_shell(molecules):
    for m in molecules:
        rd = Chem.MolFromSmiles(m.smiles)  # sanitises
        assert rd is not None, m.smiles
        assert Chem.GetFormalCharge(rd) == 0 and m.charge == 0 and m.spin == 0
        assert m.n_electrons % 2 == 0
        assert m.n_atoms == Chem.AddHs(rd).GetNumAtoms()  # hydrogens are explicit atoms in 3D
        assert canonical_smiles(m.smiles) == m.smiles


@needs_qm9
def test_qm9_draw_is_distinct_seeded_and_prefix_stable(cache):
    first = resolve(["qm9:20,seed=1"])
    assert len(first) == 20 and len(set(smiles_of(first))) == 20
    assert all(Chem.MolFromSmiles(s) is not None and canonical_smiles(s) == s for s in smiles_of(first))
    assert [m.name for m in resolve(["qm9:20,seed=1"])] == [m.name for m in first]
    assert [m.name for m in resolve(["qm9:20,seed=2"])] != [m.name for m in first]
    assert [m.name for m in resolve(["qm9:10,seed=1"])] == [m.name for m in first[:10]]
    assert all(m.name == f"qm9-{m.source[4:]}" and len(m.source) == len("qm9:000000") for m in first)
    assert os.path.exists(os.path.join(cache, "qm9_index.npz"))


@needs_qm9
def test_qm9_heavy_atom_filter():
    assert all(m.heavy_atoms <= 4 for m in resolve(["qm9:30,heavy=4,seed=3"]))
    assert all(7 <= m.heavy_atoms <= 8 for m in resolve(["qm9:30,heavy=7-8"]))
    with pytest.raises(MoleculeError, match="only 3 distinct"):  # CH4, NH3, H2O
        resolve(["qm9:5,heavy=1"])


def csv_rows(indices):
    """The qm9pack CSV rows of the given QM9 indices, parsed independently of data.qm9 (ast, not json)."""
    folder, _ = qm9.data_dir()
    wanted, rows = set(indices), {}
    for part in qm9.PARTS:
        with open(os.path.join(folder, part), newline="") as f:
            for row in csv.DictReader(f):
                if int(row["Index"]) in wanted:
                    rows[int(row["Index"])] = row
                    if len(rows) == len(wanted):
                        return rows
    return rows


@needs_qm9
def test_qm9_geometries_are_those_of_the_package():
    drawn = resolve(["qm9:5,seed=7"])
    data = qm9.load_index()
    special = [4, 23, 24]  # rows written with bare "0." coordinates, which JSON does not accept
    rows = csv_rows([int(m.source[4:]) for m in drawn] + special)
    for m in drawn:
        row = rows[int(m.source[4:])]
        np.testing.assert_array_equal(m.numbers, [SYMBOLS.index(s) for s in ast.literal_eval(row["Elements"])])
        np.testing.assert_allclose(m.positions, np.array(ast.literal_eval(row["XYZ_Ang"])) * units.BOHR_PER_ANGSTROM,
                                   rtol=0, atol=1e-10)
        assert m.smiles == canonical_smiles(row["SMILES"])
    for index in special:
        k = int(np.flatnonzero(data["index"] == index)[0])
        atoms = slice(data["offsets"][k], data["offsets"][k + 1])
        np.testing.assert_array_equal(data["positions"][atoms], ast.literal_eval(rows[index]["XYZ_Ang"]))


@needs_qm9
def test_qm9_exclusions_are_skipped_while_drawing(tmp_path):
    plain = resolve(["qm9:10,seed=4"])
    excluded = [Chem.MolToSmiles(Chem.MolFromSmiles(s), doRandom=True) for s in smiles_of(plain[:3])]
    drawn = resolve(["qm9:10,seed=4"], exclude=write_smi(tmp_path / "ex.smi", excluded))
    assert len(drawn) == 10
    assert not set(smiles_of(drawn)) & set(smiles_of(plain[:3]))
    assert smiles_of(drawn[:7]) == smiles_of(plain[3:])  # the same permutation, excluded rows skipped


@needs_qm9
def test_qm9_cache_is_reused_and_checked(tmp_path):
    path = qm9.index_path()
    resolve(["qm9:3"])
    stamp = os.stat(path).st_mtime_ns
    resolve(["qm9:3,seed=9"])
    assert os.stat(path).st_mtime_ns == stamp
    version = qm9.data_dir()[1]
    assert qm9._read(path, version) is not None
    assert qm9._read(path, "0.0.0-other") is None  # another qm9pack version: rebuild
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    assert qm9._read(str(tmp_path / "broken.npz"), version) is None


def test_qm9_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "qm9pack", None)  # find_spec now reports it missing
    with pytest.raises(MoleculeError, match=r'pip install "dft_operators\[qm9\]"'):
        resolve(["qm9:1"])


def test_enumeration_gives_valid_distinct_seeded_molecules():
    molecules = resolve(["enumerate:40,seed=0"])
    assert len(set(smiles_of(molecules))) == 40
    assert_valid_neutral_closed_shell(molecules)
    assert {s for m in molecules for s in m.symbols} <= set("HCNOF")
    assert all(1 <= m.heavy_atoms <= 9 for m in molecules)
    assert [m.name for m in molecules[:2]] == ["enum-0-00000", "enum-0-00001"]
    assert {m.source for m in molecules} == {"enumerate:seed=0"}
    again = resolve(["enumerate:40,seed=0"])
    assert smiles_of(again) == smiles_of(molecules)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(again, molecules))
    assert smiles_of(resolve(["enumerate:20,seed=0"])) == smiles_of(molecules[:20])
    assert smiles_of(resolve(["enumerate:40,seed=1"])) != smiles_of(molecules)
    assert any(rdMolDescriptors.CalcNumRings(Chem.MolFromSmiles(s)) for s in smiles_of(molecules))


def test_enumeration_options():
    sulfur = resolve(["enumerate:30,elements=CS,heavy=3-6,seed=2"])
    assert_valid_neutral_closed_shell(sulfur)
    assert {s for m in sulfur for s in m.symbols} <= {"H", "C", "S"}
    assert any("S" in m.symbols for m in sulfur)
    assert all(3 <= m.heavy_atoms <= 6 for m in sulfur)
    assert all(m.heavy_atoms <= 3 for m in resolve(["enumerate:10,heavy=3"]))
    with pytest.raises(MoleculeError, match="only 2 distinct"):  # HF and F2
        resolve(["enumerate:3,elements=F"])


def test_enumeration_exclusions(tmp_path):
    plain = resolve(["enumerate:12,seed=5"])
    drawn = resolve(["enumerate:12,seed=5"], exclude=write_smi(tmp_path / "ex.smi", smiles_of(plain[:4])))
    assert len(drawn) == 12 and not set(smiles_of(drawn)) & set(smiles_of(plain[:4]))


def test_smi_file_round_trip(tmp_path):
    path = tmp_path / "mols.smi"
    path.write_text("# a comment\nOCC ethanol\n\nc1ccncc1\n[NH4+] ammonium\n")
    molecules = resolve([f"file:{path}"])
    assert [m.name for m in molecules] == ["ethanol", "mols-4", "ammonium"]
    assert smiles_of(molecules) == ["CCO", "c1ccncc1", "[NH4+]"]
    assert [m.source for m in molecules] == [f"file:{path}:2", f"file:{path}:4", f"file:{path}:5"]
    assert molecules[2].charge == 1  # the formal charge of the SMILES
    path.write_text("CCO\nC1CC\n")
    with pytest.raises(MoleculeError, match=re.escape(f"{path}:2")):
        resolve([f"file:{path}"])


def test_xyz_directory_round_trip(tmp_path):
    for name in ("water", "methane"):
        (tmp_path / f"{name}.xyz").write_text(builtin(name).to_xyz())
    (tmp_path / "notes.txt").write_text("not a molecule")
    molecules = resolve([f"file:{tmp_path}"])
    assert [m.name for m in molecules] == ["methane", "water"]  # sorted by file name
    assert smiles_of(molecules) == ["C", "O"]
    assert [m.source for m in molecules] == [f"xyz:{tmp_path / 'methane.xyz'}", f"xyz:{tmp_path / 'water.xyz'}"]
    np.testing.assert_allclose(molecules[1].positions, builtin("water").positions, atol=1e-7)
    single = resolve([str(tmp_path / "water.xyz")])[0]
    assert (single.name, single.smiles, single.source) == ("water", "O", f"xyz:{tmp_path / 'water.xyz'}")


def test_builtins_smiles_duplicates_and_names():
    molecules = resolve(["smiles:OCC", "builtin:ethanol", "set:two-electron", "builtin:h3+", "smiles:F/C=C/F"])
    assert [m.source for m in molecules] == ["smiles", "builtin:h2", "builtin:heh+", "builtin:h3+", "builtin:h3+",
                                             "smiles"]  # ethanol repeats OCC; H3+ has no SMILES, so is kept
    assert smiles_of(molecules) == ["CCO", "[H][H]", "", "", "", "F/C=C/F"]
    names = [m.name for m in molecules]
    assert names[3:5] == ["h3+", "h3+-2"] and len(set(names)) == len(names)
    assert all("/" not in n and not any(c.isspace() for c in n) for n in names)
    assert resolve("builtin:water")[0].smiles == "O"  # a single string is one spec


def test_describe():
    assert describe(resolve(["builtin:ethanol", "builtin:h2"])) == [
        {"name": "ethanol", "smiles": "CCO", "heavy_atoms": 3}, {"name": "h2", "smiles": "[H][H]", "heavy_atoms": 0}]


@pytest.mark.parametrize("spec, message", [
    ("qm9:abc", "number of molecules N must be an integer"),
    ("qm9:5,foo=1", "bad option 'foo=1'"),
    ("qm9:5,seed=1,seed=2", "seed= given twice"),
    ("qm9:5,heavy=6-2", "empty range"),
    ("enumerate:0", "number of molecules N must be an integer >= 1, got '0'"),
    ("enumerate:5,elements=CCl", "elements='CCl'"),
    ("enumerate:5,seed=x", "seed must be an integer"),
    ("pdb:1abc", "accepted forms: builtin:<name>"),
    ("file:missing.smi", "no such SMILES file"),
    ("file:molecules.csv", "file: takes a .smi file or a directory"),
    ("builtin:unobtainium", "no built-in molecule 'unobtainium'"),
    ("smiles:C1CC", "cannot parse SMILES"),
])
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(MoleculeError, match=re.escape(message)):
        resolve([spec])


def test_missing_exclusion_file(tmp_path):
    with pytest.raises(MoleculeError, match="no such SMILES file"):
        resolve(["builtin:water"], exclude=str(tmp_path / "absent.smi"))
    assert molecule_specs.read_exclusions(write_smi(tmp_path / "ex.smi", ["OCC", "# c"])) == {"CCO"}
