"""Dataset generation: contents, resumption after kill -9, failed records, corrupt files."""

import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import REPO, run_cli
from dft_operators import molecule
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io.dataset import Dataset, DatasetError
from dft_operators.reference import ALL_ELECTRON, Level

SMALL = dict(spacing=0.5, box_shape=24, grid_level=1, n_conformers=2)


def test_records_hold_the_requested_fields(tmp_path):
    out = str(tmp_path / "d.h5")
    settings = GenerationSettings(kinds=("grid", "quadrature", "coefficients"),
                                  level=Level(basis="sto-3g", pseudo=None), **SMALL)
    result = generate([molecule.builtin("h2")], out, settings, progress=False)
    assert result == {**result, "records": 2, "failed": 0, "computed": 2}
    ds = Dataset(out)
    rec = ds.record(ds.ids[0])
    assert rec["grid/rho"].shape == (24, 24, 24)
    # The box density and the quadrature density both integrate to 2 electrons.
    assert abs(rec["grid/rho"].sum() * 0.5**3 - 2) < 2e-2
    assert abs((rec["quadrature/rho"] * rec["quadrature/weights"]).sum() - 2) < 1e-5  # grid level 1
    assert ds.metadata["level"]["basis"] == "sto-3g" and ds.metadata["seed"] == 0
    assert set(ds.metadata["versions"]) >= {"pyscf", "numpy", "h5py", "dft_operators"}
    # Conformers differ (seeded displacement and rotation) and are reproducible.
    a, b = ds.stack("positions")
    assert not np.allclose(a, b)
    again = str(tmp_path / "e.h5")
    generate([molecule.builtin("h2")], again, settings, progress=False)
    np.testing.assert_array_equal(Dataset(again).stack("positions"), ds.stack("positions"))


def test_failures_are_recorded_with_their_reason(tmp_path):
    out = str(tmp_path / "d.h5")
    big = molecule.builtin("benzene")
    settings = GenerationSettings(kinds=("grid",), level=Level(basis="sto-3g", pseudo=None),
                                  spacing=0.3, box_shape=16, n_conformers=1)
    result = generate([big], out, settings, progress=False)
    assert result["records"] == 0 and result["failed"] == 1
    assert "does not fit" in Dataset(out).failed["0000-benzene-000"]


def test_generation_resumes_after_kill_9(tmp_path):
    out = tmp_path / "d.h5"
    args = [sys.executable, "-m", "dft_operators.cli", "generate", "--molecules", "builtin:h2", "builtin:water",
            "--out", str(out), "--kind", "quadrature", "--conformers", "4", "--grid-level", "1",
            "--basis", "sto-3g", "--pseudo", "none", "--quiet", "--json"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = tmp_path / "d.h5.parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*.npz")) if parts.exists() else []) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len([p for p in parts.glob("*.npz") if not p.name.endswith(".tmp.npz")])
    assert 2 <= kept < 8 and not out.exists()
    result = json.loads(run_cli(*args[3:]).stdout.strip().splitlines()[-1])
    assert result["records"] == 8 and result["resumed"] == kept and result["computed"] == 8 - kept
    assert not parts.exists()
    # A third run finds everything done and computes nothing.
    result = json.loads(run_cli(*args[3:]).stdout.strip().splitlines()[-1])
    assert result["computed"] == 0 and result["records"] == 8


def test_generate_coefficients_in_an_even_tempered_aux_basis(tmp_path):
    out = str(tmp_path / "d.h5")
    run_cli("generate", "--molecules", "builtin:h2", "--out", out, "--kind", "coefficients", "--conformers", "1",
            "--basis", "def2-svp", "--pseudo", "none", "--aux-basis", "etb:def2-svp", "--quiet", "--json")
    ds = Dataset(out)
    assert ds.metadata["level"]["aux_basis"] == "etb:def2-svp"
    assert len(ds.record(ds.ids[0])["coefficients/c"]) == 2 * 24  # H: 7s 4p 1d even-tempered functions


def test_corrupt_or_foreign_dataset_files_are_refused(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(DatasetError, match="not a readable"):
        Dataset(str(bad))
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs["schema_version"] = 99
        f.create_group("records")
    with pytest.raises(DatasetError, match="schema version 99"):
        Dataset(str(tmp_path / "old.h5"))
    with pytest.raises(DatasetError, match="no dataset file"):
        Dataset(str(tmp_path / "missing.h5"))


def test_mixing_settings_in_one_file_is_refused(tmp_path):
    out = str(tmp_path / "d.h5")
    settings = GenerationSettings(kinds=("coefficients",), level=ALL_ELECTRON, n_conformers=1)
    generate([molecule.builtin("h2")], out, settings, progress=False)
    with pytest.raises(DatasetError, match="other level"):
        generate([molecule.builtin("h2")], out, GenerationSettings(kinds=("coefficients",), n_conformers=1,
                                                                   level=Level(basis="sto-3g", pseudo=None)),
                 progress=False)
