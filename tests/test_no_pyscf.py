"""Training and evaluation read what generation stored and never import PySCF (DESIGN: "whatever training needs
is stored at generation, so training never imports PySCF").

The data are made here, with PySCF; then ``api.train`` and ``api.evaluate`` run in a subprocess in which
``import pyscf`` (and of every ``pyscf.*`` module) fails, and which reports the PySCF modules it ended up
with: none (``train_and_evaluate_without_pyscf``, for any model kind). Control: under the same block, the
reference layer's PySCF side fails. Data made before generation stored what training reads are refused.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from dft_operators import api, molecule, reference
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io import dataset
from dft_operators.models import create_model, model_config
from dft_operators.workflows import densnet, kinetic

# From here on, `import pyscf` and `import pyscf.<anything>` raise ImportError.
_BLOCK = """
import sys
sys.modules["pyscf"] = None
"""
# Runs in the subprocess after the block: argv = kind, data, out, config (JSON).
_CHILD = _BLOCK + """
import json
kind, data, out, config = sys.argv[1:]
from dft_operators import api
summary = api.train(kind, data, out, json.loads(config), progress=False)
metrics = api.evaluate(out, data)
loaded = sorted(m for m, module in sys.modules.items() if m.split(".")[0] == "pyscf" and module is not None)
print(json.dumps({"epochs": summary["epochs"], "train": summary["train"], "evaluate": metrics,
                  "pyscf_modules": loaded}, default=float))
"""


# XLA's CPU backend without its expensive optimisations: compiling, not running, is what these tiny runs spend
# their time on (about a third less here), and what they check does not depend on it.
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def train_and_evaluate_without_pyscf(kind: str, data: str, out: str, config: dict, timeout: float = 300) -> dict:
    """``api.train(kind, data, out, config)`` then ``api.evaluate(out, data)`` in a subprocess where PySCF cannot be
    imported (reusable for every model kind: give it a small dataset of that kind and a tiny config).

    Returns:
      {"epochs", "train" (the loop's train metrics), "evaluate" (``api.evaluate``'s dict), "pyscf_modules" (the
      ``pyscf`` modules loaded in the end: [] unless something got around the block)}.
    Raises:
      AssertionError: the subprocess failed (its stderr's end in the message).
    """
    proc = subprocess.run([sys.executable, "-c", _CHILD, kind, data, out, json.dumps(config)],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, "JAX_PLATFORMS": "cpu",
                               "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()})
    if proc.returncode != 0:
        raise AssertionError(f"{kind} without PySCF failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


TINY = {"preset": "tiny", "train": {"epochs": 1, "val_fraction": 0.0, "batch_size": 2}}


@pytest.fixture(scope="module")
def kinetic_data(two_electron_data):
    """H2 and HeH+ under random potentials on PySCF's level-0 grid (quadrature kind), one record each (conftest)."""
    return two_electron_data


@pytest.fixture(scope="module")
def densnet_data(tmp_path_factory):
    """Two displaced water molecules (one atom count: one compiled shape): coefficients and forces, all-electron."""
    out = str(tmp_path_factory.mktemp("no_pyscf") / "densnet")
    generate([molecule.builtin("water")], out,
             GenerationSettings(kinds=("coefficients",), level=reference.ALL_ELECTRON, n_conformers=2,
                                displacement=0.05, forces=True), progress=False)
    return out


def test_kineticnet_trains_and_evaluates_without_pyscf(kinetic_data, tmp_path):
    result = train_and_evaluate_without_pyscf("kineticnet", kinetic_data, str(tmp_path / "model"), TINY)
    assert result["pyscf_modules"] == [] and result["epochs"] == 1
    assert result["evaluate"]["records"] == 2 and result["evaluate"]["derivative_rmse"] > 0


def test_densnet_trains_and_evaluates_without_pyscf(densnet_data, tmp_path):
    result = train_and_evaluate_without_pyscf("densnet", densnet_data, str(tmp_path / "model"), TINY)
    assert result["pyscf_modules"] == [] and result["epochs"] == 1
    metrics = result["evaluate"]
    assert metrics["records"] == 2 and 0 < metrics["nmae_percent"] < 200 and metrics["density_l2"] > 0


def test_the_block_is_real():
    # Control: under the same block, the reference layer's names still resolve lazily, and its PySCF side fails.
    code = _BLOCK + "from dft_operators import reference\nprint(reference.Level().xc)\nreference.run_ks\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode != 0 and proc.stdout.strip() == "lda,pw"
    assert "ModuleNotFoundError: import of pyscf halted" in proc.stderr


def test_data_without_what_training_reads_is_refused(densnet_data, kinetic_data, tmp_path):
    # A coefficients dataset made before generation stored the basis, free atoms and metrics (what training
    # would otherwise ask PySCF for) is refused with a way out, as is data of the wrong kind.
    source = dataset.Dataset(densnet_data)
    old = str(tmp_path / "old")
    writer = dataset.ShardWriter(old, {k: source.metadata[k] for k in ("level", "kinds", "settings")})
    record = source.record(source.ids[0])
    kept = ("numbers", "positions", "forces", "dipole", "coefficients/c", "coefficients/aux_labels")
    writer.add({"id": source.ids[0], "arrays": {k: record[k] for k in kept},
                "attrs": {k: record[k].item() if hasattr(record[k], "item") else record[k]
                          for k in ("name", "charge", "spin", "energy")}})
    writer.flush()
    module = create_model("densnet", model_config("densnet", preset="tiny"))
    with pytest.raises(dataset.DatasetError, match="regenerate"):
        densnet.prepare(dataset.Dataset(old), [source.ids[0]], [], densnet.DensityTask(), module)
    with pytest.raises(dataset.DatasetError, match="coefficients"):
        densnet.prepare(dataset.Dataset(kinetic_data), dataset.Dataset(kinetic_data).ids, [], densnet.DensityTask(),
                        module)
    with pytest.raises(dataset.DatasetError, match="quadrature"):
        kinetic.load_arrays(source, source.ids, 1.0, 1.0)


@pytest.mark.parametrize("kind", ["fno", "deepscf"])
def test_grid_models_train_and_evaluate_without_pyscf(kind, tiny_grid_data, tmp_path):
    config = {**TINY, "task": {"crop": 12}} if kind == "deepscf" else TINY  # DeepSCF's crops too
    result = train_and_evaluate_without_pyscf(kind, tiny_grid_data, str(tmp_path / "model"), config)
    assert result["pyscf_modules"] == [] and result["epochs"] == 1
    assert result["evaluate"]["records"] == 8
    # The NMAE evaluated without PySCF is that of the model's predictions (made here, with PySCF's input fields,
    # on each record's box) against the dataset's PySCF densities: 100 sum |rho - rho_ref| / sum rho_ref, averaged.
    model = api.load_model(str(tmp_path / "model"))
    ds = dataset.Dataset(tiny_grid_data)
    nmae = []
    for rid in ds.ids:
        record = ds.record(rid)
        pred = api.predict(model, molecule.Molecule.from_record(record), box_shape=record["grid/rho"].shape[0])
        nmae.append(100 * np.abs(pred["density"] - record["grid/rho"]).sum() / record["grid/rho"].sum())
    assert result["evaluate"]["nmae_percent"] == pytest.approx(np.mean(nmae), rel=1e-4)
