"""The ``dft-operators`` command: the contract's JSON keys, PySCF agreement, clear errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from pyscf import dft, gto

from conftest import run_cli
from dft_operators import api, molecule
from dft_operators.io.cube import read_cube
from dft_operators.io.dataset import Dataset


def _json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_reference_reproduces_pyscf_and_its_cube_holds_the_electrons(tmp_path):
    cube = tmp_path / "water.cube"
    result = _json(run_cli("reference", "builtin:water", "--cube", cube, "--spacing", "0.25", "--json"))
    assert {"energy", "converged", "cycles", "n_electrons", "seconds"} <= set(result)
    water = molecule.builtin("water")
    mol = gto.M(atom=[(s, r) for s, r in zip(water.symbols, water.positions)], unit="Bohr",
                basis="gth-dzvp", pseudo="gth-pade", verbose=0)
    mf = dft.RKS(mol)
    mf.xc = "lda,pw"
    mf.conv_tol = 1e-10
    assert abs(result["energy"] - mf.kernel()) < 1e-7
    assert result["converged"] and result["n_electrons"] == 8  # valence electrons with GTH
    grid, values, _ = read_cube(cube)
    assert abs(grid.integrate(values) - 8) < 5e-3


@pytest.mark.parametrize("args, message", [
    (("reference", "smiles:C1CC"), "cannot parse SMILES"),
    (("reference", "builtin:water", "--spin", "1"), "cannot have spin"),
    (("reference", "builtin:water", "--charge", "11"), "leaves -1 electrons"),
    (("reference", "builtin:h2", "--basis", "no-such-basis"), "no-such-basis"),
    (("predict", "no-such-model", "builtin:water", "--cube", "x.cube"), "no model 'no-such-model'"),
    (("evaluate", "no-such-model", "--data", "missing"), "no model"),
    (("train", "fno", "--data", "missing", "--out", "m"), "no dataset missing"),
    (("dataset", "missing"), "no dataset missing"),
    (("predict", "v2rho-fno-small", "smiles:CCCCCCCCCCCCCCCC", "--cube", "x.cube"), "does not fit the FNO's 40^3 box"),
    (("reference", "builtin:h2", "--xc", "notafunctional"), "unknown exchange-correlation functional"),
    (("scf", "builtin:h2", "--xc", "notafunctional"), "(--xc)"),
    (("generate", "--molecules", "builtin:h2", "--out", "never-written", "--kind", "coefficients",
      "--aux-basis", "nope"), "--aux-basis 'nope' is not defined for element H"),
    (("molecules", "qm9:abc"), "qm9"),
    (("generate", "--molecules", "builtin:water", "--out", "d", "--executor", "dask", "--scheduler",
      "tcp://127.0.0.1:1", "--conformers", "1"), "127.0.0.1:1"),
])
def test_bad_input_gives_one_clear_line_and_exit_status_2(args, message):
    proc = run_cli(*args, "--json", check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert message in _json(proc)["error"]


def test_atoms_on_top_of_each_other(tmp_path):
    path = tmp_path / "bad.xyz"
    path.write_text("2\n\nH 0 0 0\nH 0 0 0.1\n")
    proc = run_cli("reference", path, check=False)
    assert proc.returncode == 2 and "0.100 Angstrom apart" in proc.stderr


def test_models_lists_the_shipped_models_with_their_level():
    result = _json(run_cli("models", "--json"))
    assert result["models"], "the package ships at least one model"
    for m in result["models"]:
        assert {"name", "kind", "path", "level"} <= set(m) and {"xc", "basis", "pseudo"} <= set(m["level"])
        assert os.path.exists(os.path.join(m["path"], "card.json"))


def test_train_evaluate_predict_through_the_command_line(tiny_grid_data, tmp_path):
    out = tmp_path / "fno"
    config = tmp_path / "config.json"
    # every molecule trained on (each of the four brings its own heavy element, which a model must have seen)
    config.write_text(json.dumps({"preset": "tiny", "train": {"epochs": 2, "val_fraction": 0.0}}))
    trained = _json(run_cli("train", "fno", "--data", tiny_grid_data, "--out", out, "--config", config,
                            "--json", "--quiet"))
    assert trained["epochs"] == 2 and "nmae_percent" in trained["train"] and trained["checkpoint"] == str(out)
    evaluated = _json(run_cli("evaluate", out, "--data", tiny_grid_data, "--json"))
    # The reported NMAE recomputed here from scratch: each record's molecule predicted on its box (the
    # generator's, centred on the centroid) and compared with the dataset's PySCF density,
    # 100 sum |rho_pred - rho_ref| / sum rho_ref, averaged over the records.
    model = api.load_model(str(out))
    ds = Dataset(tiny_grid_data)
    nmae = []
    for rid in ds.ids:
        record = ds.record(rid)
        pred = api.predict(model, molecule.Molecule.from_record(record))
        np.testing.assert_allclose(pred["grid"].origin, record["grid/origin"], atol=1e-9)
        nmae.append(100 * np.abs(pred["density"] - record["grid/rho"]).sum() / record["grid/rho"].sum())
    assert evaluated["records"] == 8
    assert evaluated["nmae_percent"] == pytest.approx(np.mean(nmae), rel=1e-4)
    cube = tmp_path / "w.cube"
    predicted = _json(run_cli("predict", out, "builtin:water", "--cube", cube, "--json"))
    assert {"seconds", "n_electrons", "level"} <= set(predicted)
    grid, values, _ = read_cube(cube)
    assert np.all(values >= 0) and abs(grid.integrate(values) - 8) < 1e-3
    # the cube holds the model's density of water on its box (6 significant digits)
    direct = api.predict(model, molecule.builtin("water"))
    np.testing.assert_allclose(grid.origin, direct["grid"].origin, atol=1e-6)
    np.testing.assert_allclose(values, direct["density"], rtol=1e-5, atol=1e-6 * direct["density"].max())


def test_models_and_help_import_neither_jax_nor_pyscf():
    code = ("import sys; from dft_operators import cli; cli.main(['models', '--json'])\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('jax', 'pyscf', 'orbax', 'flax') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_a_second_prediction_on_the_same_box_compiles_nothing(tmp_path):
    env = {"DFT_OPERATORS_CACHE": str(tmp_path / "cache")}
    args = ("predict", "v2rho-fno-small", "builtin:water", "--cube", tmp_path / "w.cube", "--json")
    run_cli(*args, env=env)
    compiled = sorted(os.listdir(tmp_path / "cache" / "jax"))
    assert compiled, "the persistent compilation cache is on by default"
    run_cli(*args, env=env)
    assert sorted(os.listdir(tmp_path / "cache" / "jax")) == compiled  # nothing new compiled
    off = run_cli(*args, env={"DFT_OPERATORS_CACHE": str(tmp_path / "off"), "DFT_OPERATORS_COMPILATION_CACHE": "0"})
    assert off.returncode == 0 and not (tmp_path / "off" / "jax").exists()


def test_batched_predict_writes_one_cube_and_one_record_per_molecule(tmp_path):
    result = _json(run_cli("predict", "v2rho-fno-small", "builtin:water", "smiles:C/C=C/C", "--cube-dir",
                           tmp_path / "cubes", "--json"))
    assert [r["molecule"] for r in result["results"]] == ["water", "C/C=C/C"]
    assert {"model_load", "predict"} <= set(result["timings"])
    for record, electrons in zip(result["results"], (8, 24)):  # valence electrons: 6 + 2; 4 C x 4 + 8 H
        grid, values, _ = read_cube(record["cube"])
        assert os.path.dirname(record["cube"]) == str(tmp_path / "cubes")
        assert abs(grid.integrate(values) - electrons) < 1e-3
    proc = run_cli("predict", "v2rho-fno-small", "builtin:water", "builtin:methane", "--cube", tmp_path / "x.cube",
                   check=False)
    assert proc.returncode == 2 and "--cube-dir" in proc.stderr


def test_an_xyz_count_that_disagrees_with_its_lines_and_unknown_config_keys_are_refused(tmp_path, tiny_grid_data):
    path = tmp_path / "three.xyz"
    path.write_text("2\n\nO 0 0 0\nH 0 0 1.8\nH 0 1.8 0\n")
    proc = run_cli("reference", path, check=False)
    assert proc.returncode == 2 and "says 2 atoms but 3 atom lines follow" in proc.stderr
    for config, message in (({"preset": "tny"}, "unknown preset 'tny'"),
                            ({"train": {"epoch": 3}}, "unknown train config field(s) ['epoch']"),
                            ({"task": {"crops": 3}}, "unknown task config field(s) ['crops']")):
        (tmp_path / "c.json").write_text(json.dumps(config))
        proc = run_cli("train", "deepscf", "--data", tiny_grid_data, "--out", tmp_path / "m", "--config",
                       tmp_path / "c.json", check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
