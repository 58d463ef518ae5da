"""Dataset generation: contents, shards appended and resumed after kill -9, retries and failures, settings
mismatches, the Dask executor, corrupt datasets."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, run_cli
from dft_operators import molecule, reference
from dft_operators.data.generate import GenerationSettings, _metadata, generate
from dft_operators.io import dataset
from dft_operators.io.dataset import Dataset, DatasetError
from dft_operators.reference import ALL_ELECTRON, Level

SMALL = dict(spacing=0.5, box_shape=24, grid_level=1, n_conformers=2)
STO3G = Level(basis="sto-3g", pseudo=None)


def _records(path):
    ds = Dataset(path)
    return {rid: ds.record(rid) for rid in ds.ids}


def _assert_same_records(a, b, atol=1e-10):
    """Same ids, keys, and values (floats to ``atol``: PySCF's threaded sums round differently run to run)."""
    assert a.keys() == b.keys()
    for rid in a:
        assert a[rid].keys() == b[rid].keys()
        for key, value in a[rid].items():
            if key in ("seconds", "scf_seconds"):
                continue
            if np.asarray(value).dtype.kind == "f":
                np.testing.assert_allclose(value, b[rid][key], rtol=0, atol=atol, err_msg=f"{rid} {key}")
            else:
                assert np.all(value == b[rid][key]), (rid, key)


def test_records_hold_the_requested_fields(tmp_path):
    out = str(tmp_path / "d")
    settings = GenerationSettings(kinds=("grid", "quadrature", "coefficients"), level=STO3G, **SMALL)
    h2 = molecule.builtin("h2")
    result = generate([h2], out, settings, progress=False)
    assert result == {**result, "records": 2, "failed": 0, "computed": 2, "skipped": 0}
    ds = Dataset(out)
    rec = ds.record(ds.ids[0])
    assert rec["grid/rho"].shape == (24, 24, 24) and rec["name"] == "h2"
    # The box density and the quadrature density both integrate to 2 electrons.
    assert abs(rec["grid/rho"].sum() * 0.5**3 - 2) < 2e-2
    assert abs((rec["quadrature/rho"] * rec["quadrature/weights"]).sum() - 2) < 1e-5  # grid level 1
    assert ds.metadata["level"]["basis"] == "sto-3g" and ds.metadata["seed"] == 0
    assert ds.metadata["fields"]["grid/rho"]["shape"] == [24, 24, 24]
    assert set(ds.metadata["versions"]) >= {"pyscf", "numpy", "h5py", "dft_operators"}
    # Conformers differ (seeded displacement and rotation) and are reproducible.
    a, b = ds.stack("positions")
    assert not np.allclose(a, b)
    again = str(tmp_path / "e")
    generate([h2], again, settings, progress=False)
    np.testing.assert_array_equal(Dataset(again).stack("positions"), ds.stack("positions"))


def test_records_keep_smiles_source_and_qm9_index(tmp_path):
    out = str(tmp_path / "d")
    water = molecule.builtin("water")
    tagged = dataclasses.replace(water, smiles="O", source="qm9:000003")
    generate([tagged], out, GenerationSettings(level=STO3G, **{**SMALL, "n_conformers": 1}), progress=False)
    ds = Dataset(out)
    rec = ds.record(ds.ids[0])
    assert (rec["smiles"], rec["source"], rec["qm9_index"]) == ("O", "qm9:000003", 3)
    assert ds.metadata["molecules"] == ["O"] and ds.molecule_keys() == ["O"]


def test_molecules_outside_the_box_are_skipped_and_counted(tmp_path):
    settings = GenerationSettings(level=STO3G, spacing=0.3, box_shape=24, n_conformers=1)
    result = generate([molecule.builtin("h2"), molecule.builtin("benzene")], str(tmp_path / "d"), settings,
                      progress=False)
    assert result["skipped"] == 1 and result["records"] == 1 and result["failed"] == 0
    with pytest.raises(DatasetError, match="no record made .1 molecules do not fit the 24"):
        generate([molecule.builtin("benzene")], str(tmp_path / "e"), settings, progress=False)


def test_a_failed_scf_is_retried_once_then_listed_with_its_reason(tmp_path, monkeypatch):
    run_ks, calls = reference.run_ks, []

    def flaky(mol, *args, **kwargs):  # water fails on its first try; "never" always fails
        calls.append(mol.name)
        if mol.name == "never" or (mol.name == "water" and calls.count("water") == 1):
            raise reference.SCFError(f"{mol.name}: simulated failure")
        return run_ks(mol, *args, **kwargs)

    monkeypatch.setattr(reference, "run_ks", flaky)
    settings = GenerationSettings(level=STO3G, **{**SMALL, "n_conformers": 1})
    never = molecule.builtin("h2").with_positions(molecule.builtin("h2").positions, name="never")
    result = generate([molecule.builtin("water"), never], str(tmp_path / "d"), settings, progress=False)
    assert result["records"] == 1 and result["failed"] == 1 and result["retried"] == 2
    assert sorted(calls) == ["never", "never", "water", "water"]
    assert "simulated failure" in Dataset(str(tmp_path / "d")).failed["0001-never-000"]
    with pytest.raises(DatasetError, match="every record failed"):
        generate([never], str(tmp_path / "e"), settings, progress=False)
    # A failure is not remembered as done: the next run tries it again, and it leaves the list when it succeeds.
    monkeypatch.setattr(reference, "run_ks", run_ks)
    result = generate([molecule.builtin("water"), never], str(tmp_path / "d"), settings, progress=False)
    assert result["computed"] == 1 and result["records"] == 2 and result["failed"] == 0


def test_appending_shards_gives_the_records_of_one_run(tmp_path):
    mols = [molecule.builtin(n) for n in ("h2", "water", "heh+", "methane")]
    settings = GenerationSettings(level=STO3G, **SMALL)
    whole, grown = str(tmp_path / "whole"), str(tmp_path / "grown")
    generate(mols, whole, settings, progress=False, shard_size=3)
    generate(mols[:2], grown, settings, progress=False, shard_size=3)
    first = {name: open(os.path.join(grown, name), "rb").read() for name in Dataset(grown).shards}
    result = generate(mols, grown, settings, progress=False, shard_size=3)
    assert result["resumed"] == 4 and result["computed"] == 4
    ds = Dataset(grown)
    assert len(ds.shards) == 4 and all(open(os.path.join(grown, n), "rb").read() == b for n, b in first.items())
    _assert_same_records(_records(whole), _records(grown))
    assert ds.metadata["molecules"] == ["C", "O", "[H][H]", "heh+"]  # canonical SMILES (HeH+ has none: its name)


def test_generation_resumes_after_kill_9(tmp_path):
    out = tmp_path / "d"
    args = [sys.executable, "-m", "dft_operators.cli", "generate", "--molecules", "builtin:h2", "builtin:water",
            "--out", str(out), "--kind", "quadrature", "--conformers", "4", "--grid-level", "1",
            "--basis", "sto-3g", "--pseudo", "none", "--shard-size", "3", "--quiet", "--json"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120

    def made():
        pending = len(dataset.pending_records(str(out))) if out.exists() else 0
        manifest = dataset.read_manifest(str(out)) if (out / "manifest.json").exists() else None
        return pending + (manifest["records"] if manifest else 0)

    while time.time() < deadline and made() < 4:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = made()
    assert 4 <= kept < 8
    result = json.loads(run_cli(*args[3:]).stdout.strip().splitlines()[-1])
    assert result["records"] == 8 and result["resumed"] == kept and result["computed"] == 8 - kept
    assert not dataset.pending_records(str(out))
    # A third run finds everything done and computes nothing.
    result = json.loads(run_cli(*args[3:]).stdout.strip().splitlines()[-1])
    assert result["computed"] == 0 and result["records"] == 8
    summary = json.loads(run_cli("dataset", out, "--json").stdout.strip().splitlines()[-1])
    assert summary["records"] == 8 and summary["molecules"] == 2 and summary["shards"] == 3
    assert summary["level"]["basis"] == "sto-3g" and summary["shapes"]["quadrature/rho"]


def test_the_dask_executor_writes_the_records_of_the_process_executor(tmp_path):
    mols = [molecule.builtin("h2"), molecule.builtin("water")]
    settings = GenerationSettings(level=STO3G, **SMALL)
    generate(mols, str(tmp_path / "process"), settings, workers=2, progress=False)
    generate(mols, str(tmp_path / "dask"), settings, executor="dask", workers=2, progress=False)
    _assert_same_records(_records(str(tmp_path / "process")), _records(str(tmp_path / "dask")))


def test_generate_coefficients_in_an_even_tempered_aux_basis(tmp_path):
    out = str(tmp_path / "d")
    run_cli("generate", "--molecules", "builtin:h2", "--out", out, "--kind", "coefficients", "--conformers", "1",
            "--basis", "def2-svp", "--pseudo", "none", "--aux-basis", "etb:def2-svp", "--quiet", "--json")
    ds = Dataset(out)
    assert ds.metadata["level"]["aux_basis"] == "etb:def2-svp"
    assert len(ds.record(ds.ids[0])["coefficients/c"]) == 2 * 24  # H: 7s 4p 1d even-tempered functions


def test_corrupt_or_foreign_datasets_are_refused(tmp_path):
    (tmp_path / "file").write_bytes(b"not a dataset")
    with pytest.raises(DatasetError, match="is a file, not a dataset directory"):
        Dataset(str(tmp_path / "file"))
    for name, text, message in (("bad", "{not json", "not a readable manifest"),
                                ("old", json.dumps({"schema_version": 99}), "schema version 99")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(text)
        with pytest.raises(DatasetError, match=message):
            Dataset(str(tmp_path / name))
    with pytest.raises(DatasetError, match="no dataset"):
        Dataset(str(tmp_path / "missing"))
    out = str(tmp_path / "d")
    generate([molecule.builtin("h2")], out, GenerationSettings(level=STO3G, **SMALL), progress=False)
    with open(os.path.join(out, Dataset(out).shards[0]), "r+b") as f:
        f.write(b"garbage!")
    with pytest.raises(DatasetError, match="unreadable"):
        Dataset(out)


def test_other_settings_than_the_finished_or_unfinished_records_are_refused(tmp_path):
    settings = GenerationSettings(kinds=("coefficients",), level=ALL_ELECTRON, n_conformers=1)
    other = GenerationSettings(kinds=("coefficients",), level=STO3G, n_conformers=1)
    out = str(tmp_path / "d")
    generate([molecule.builtin("h2")], out, settings, progress=False)
    with pytest.raises(DatasetError, match="finished shards were made with other level"):
        generate([molecule.builtin("h2")], out, other, progress=False)
    # Records of a killed run, still pending (no shard yet), bind the directory just as well.
    killed = str(tmp_path / "killed")
    writer = dataset.ShardWriter(killed, _metadata(settings), shard_size=100)
    writer.add({"id": "0000-h2-000", "arrays": {"numbers": np.array([1, 1])}, "attrs": {"name": "h2"}})
    proc = run_cli("generate", "--molecules", "builtin:h2", "--out", killed, "--kind", "coefficients",
                   "--conformers", "1", "--basis", "sto-3g", "--pseudo", "none", check=False)
    assert proc.returncode == 2 and "unfinished records of an earlier run were made with other" in proc.stderr


def _dihedral(p, a, b, c, d):
    b0, b1, b2 = p[a] - p[b], p[c] - p[b], p[d] - p[c]
    b1 = b1 / np.linalg.norm(b1)
    v, w = b0 - (b0 @ b1) * b1, b2 - (b2 @ b1) * b1
    return np.degrees(np.arctan2(np.cross(b1, v) @ w, v @ w))


def test_torsion_sampling_twists_rotatable_bonds_only():
    # Ethanethiol (CCS) twists about C-C and C-S; resorcinol only about its two C-O bonds (never the ring);
    # water has none. A twist keeps every bond length and angle: distances within each side are unchanged,
    # and the H-C-C-S dihedral about the C-C bond moves by exactly the angle given.
    from dft_operators.data.conformers import rotatable_bonds, sample_conformer, twist

    thiol = molecule.from_smiles("CCS", seed=0)
    bonds = rotatable_bonds(thiol)
    assert sorted(tuple(sorted(thiol.symbols[k] for k in (i, j))) for i, j, _ in bonds) == [("C", "C"), ("C", "S")]
    ring = molecule.from_smiles("Oc1cccc(O)c1", seed=0)
    assert sorted(tuple(sorted(ring.symbols[k] for k in (i, j))) for i, j, _ in rotatable_bonds(ring)) == \
        [("C", "O"), ("C", "O")]
    assert rotatable_bonds(molecule.builtin("water")) == []
    (i, j, moving), = [b for b in bonds if {thiol.symbols[b[0]], thiol.symbols[b[1]]} == {"C"}]
    twisted = twist(thiol.positions, [(i, j, moving)], np.array([np.deg2rad(40.0)]))
    for side in (moving, ~moving):
        inside = np.linalg.norm(thiol.positions[side][:, None] - thiol.positions[side][None], axis=-1)
        np.testing.assert_allclose(np.linalg.norm(twisted[side][:, None] - twisted[side][None], axis=-1), inside,
                                   atol=1e-10)
    assert np.linalg.norm(twisted[i] - twisted[j]) == pytest.approx(np.linalg.norm(thiol.positions[i]
                                                                                   - thiol.positions[j]))
    h = next(k for k in np.flatnonzero(moving) if thiol.symbols[k] == "H")  # an H on the moving carbon j
    s = next(k for k in np.flatnonzero(~moving) if thiol.symbols[k] == "S")
    change = _dihedral(twisted, h, j, i, s) - _dihedral(thiol.positions, h, j, i, s)
    assert (change + 180.0) % 360.0 - 180.0 == pytest.approx(40.0, abs=1e-8)
    # Sampling: torsion 0 keeps the random stream of the plain sampler; a twisted set reaches 15-degree swings.
    plain = sample_conformer(thiol, np.random.default_rng(3), 0.1, True)
    np.testing.assert_array_equal(plain.positions,
                                  sample_conformer(thiol, np.random.default_rng(3), 0.1, True, torsion=0.0).positions)
    swings = [_dihedral(sample_conformer(thiol, np.random.default_rng(k), 0.0, False, torsion=15.0).positions,
                        h, j, i, s) - _dihedral(thiol.positions, h, j, i, s) for k in range(200)]
    assert np.std((np.array(swings) + 180.0) % 360.0 - 180.0) == pytest.approx(15.0, rel=0.15)
    with pytest.raises(ValueError, match="torsion"):
        GenerationSettings(kinds=("grid",), torsion=10.0)
    assert "torsion" not in GenerationSettings().as_dict()  # datasets made before the setting still resume


def _small_dataset(path, settings, positions):
    """A dataset of hand-made H2 records (no SCF), one per row of ``positions`` [n, 2, 3]."""
    writer = dataset.ShardWriter(path, _metadata(settings), shard_size=2)
    for k, r in enumerate(positions):
        writer.add({"id": f"0000-h2-{k:03d}", "arrays": {"numbers": np.array([1, 1]), "positions": r},
                    "attrs": {"name": "h2", "smiles": "[H][H]", "energy": float(k)}})
    writer.flush()
    return Dataset(path)


def test_merged_datasets_hold_every_record_of_each_source(tmp_path):
    rng = np.random.default_rng(0)
    plain = GenerationSettings(kinds=("coefficients",), level=ALL_ELECTRON, n_conformers=3)
    twisted = dataclasses.replace(plain, torsion=15.0)
    a = _small_dataset(str(tmp_path / "a"), plain, rng.normal(size=(3, 2, 3)))
    b = _small_dataset(str(tmp_path / "b"), twisted, rng.normal(size=(3, 2, 3)))
    out = str(tmp_path / "ab")
    merged = dataset.merge([a.path, b.path], out)
    assert len(merged) == 6 and merged.ids == [f"{i}-{rid}" for i in (0, 1) for rid in a.ids]
    for i, source in enumerate((a, b)):  # the same ids would collide: each source's index is a prefix
        for rid in source.ids:
            got, want = merged.record(f"{i}-{rid}"), source.record(rid)
            assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    settings = merged.metadata["settings"]
    assert settings["n_conformers"] == 3 and "torsion" not in settings  # shared kept, differing only per source
    assert [m["settings"].get("torsion") for m in settings["merged"]] == [None, 15.0]
    assert [m["fingerprint"] for m in settings["merged"]] == [a.fingerprint(), b.fingerprint()]
    assert merged.metadata["level"] == a.metadata["level"] and merged.metadata["molecules"] == ["[H][H]"]
    assert dataset.merge([a.path, b.path], out).fingerprint() == merged.fingerprint()  # a rerun reuses it
    with pytest.raises(DatasetError, match="already holds another dataset"):
        dataset.merge([b.path, a.path], out)
    c = _small_dataset(str(tmp_path / "c"), dataclasses.replace(plain, level=STO3G), rng.normal(size=(1, 2, 3)))
    with pytest.raises(DatasetError, match="other level"):
        dataset.merge([a.path, c.path], str(tmp_path / "ac"))
    assert not os.path.exists(tmp_path / "ac")
    dataset.save_pending(a.path, {"id": "0000-h2-009", "arrays": {"numbers": np.array([1, 1])}, "attrs": {}})
    with pytest.raises(DatasetError, match="unfinished records"):
        dataset.merge([a.path, b.path], str(tmp_path / "ab2"))
