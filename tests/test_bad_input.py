"""Bad input through the command line: one ``error:`` line naming the problem, exit status 2, nothing written.

In-process (``cli.main``) rather than a subprocess each: the same code path, without seconds of imports per case.
"""

import json
import os
import shutil

import pytest

from dft_operators import cli
from dft_operators.io import cards


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each case leaves ``os.environ`` as it found it: in-process ``cli.main`` sets JAX's compilation-cache
    variables (``cache.enable_compilation_cache``), which later subprocess tests in this worker would inherit."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _fails(capsys, *args, message):
    """Runs the command; checks exit 2, one error line holding ``message``, and no traceback."""
    assert cli.main([*map(str, args), "--quiet"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def _edited_model(tmp_path, name, edit):
    """A copy of a shipped model whose card ``edit(card)`` changes."""
    target = tmp_path / f"edited-{name}-{len(os.listdir(tmp_path))}"
    shutil.copytree(os.path.join(cards.pretrained_dir(), name), target)
    card = json.loads((target / "card.json").read_text())
    edit(card)
    (target / "card.json").write_text(json.dumps(card))
    return target


def test_data_or_settings_at_another_level_than_the_model(capsys, tmp_path, tiny_grid_data):
    data = tmp_path / "all-electron"
    shutil.copytree(tiny_grid_data, data)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["level"].update(basis="def2-svp", pseudo=None)  # as if generated all-electron
    (data / "manifest.json").write_text(json.dumps(manifest))
    _fails(capsys, "evaluate", "v2rho-fno-small", "--data", data,
           message="another level of theory than model v2rho-fno-small: basis 'def2-svp' vs the model's 'gth-dzvp'")
    _fails(capsys, "scf", "builtin:water", "--guess", "deepscf-small", "--basis", "def2-svp", "--pseudo", "none",
           message="model deepscf-small was trained at")


@pytest.mark.parametrize("args, message", [
    (("ofdft", "builtin:water", "--model", "kineticnet-small"), "kineticnet-small learned from H, He only; water has O"),
    (("predict", "v2rho-fno-small", "smiles:CS", "--cube", "x.cube"), "learned from H, C, N, O, F only; CS has S"),
    (("scf", "smiles:CCl", "--guess", "deepscf-small"), "learned from H, C, N, O, F only; CCl has Cl"),
])
def test_elements_the_model_never_saw(capsys, args, message):
    _fails(capsys, *args, message=message)


def test_a_card_without_its_config_or_with_weights_of_another_shape(capsys, tmp_path):
    lacking = _edited_model(tmp_path, "v2rho-fno-small", lambda card: card.pop("level"))
    _fails(capsys, "predict", lacking, "builtin:water", "--cube", tmp_path / "x.cube", message="lacks 'level'")
    wider = _edited_model(tmp_path, "v2rho-fno-small", lambda card: card["model_config"].update(width=12))
    _fails(capsys, "predict", wider, "builtin:water", "--cube", tmp_path / "x.cube",
           message="the weights do not fit the card's model_config")
    unknown = _edited_model(tmp_path, "deepscf-small", lambda card: card["model_config"].update(depth=3))
    _fails(capsys, "scf", "builtin:water", "--guess", unknown, message="model_config is not a deepscf config")
    assert not (tmp_path / "x.cube").exists()


def test_an_unconverged_scf_and_coordinates_that_are_not_angstrom(capsys, tmp_path):
    _fails(capsys, "reference", "builtin:water", "--max-cycle", "2", message="did not converge in 2 cycles")
    _fails(capsys, "scf", "builtin:water", "--guess", "atom", "--max-cycle", "2", message="did not converge in 2 cycles")
    far = tmp_path / "far.xyz"
    far.write_text("2\ntwo H atoms 10^6 Angstrom apart\nH 0 0 0\nH 1e6 0 0\n")
    _fails(capsys, "reference", far, message="1e+06 Angstrom from its nearest neighbour")


def test_a_damaged_card_or_shard_is_named(capsys, tmp_path, tiny_grid_data):
    binary = _edited_model(tmp_path, "v2rho-fno-small", lambda card: None)
    (binary / "card.json").write_bytes(b"\xff\xfe not utf-8")
    _fails(capsys, "predict", binary, "builtin:water", "--cube", tmp_path / "x.cube", message="card.json is corrupt")
    data = tmp_path / "damaged"
    shutil.copytree(tiny_grid_data, data)
    shard = sorted(data.glob("shard-*.h5"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 4096] = bytes(4096)  # zeros over the middle: chunks and their index
    shard.write_bytes(bytes(raw))
    _fails(capsys, "evaluate", "v2rho-fno-small", "--data", data, message=shard.name)
