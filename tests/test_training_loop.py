"""The shared training loop on a small regression problem: learning, exact resume, failures, sharding."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dft_operators.data.input_pipeline import ArraySource, Pipeline
from dft_operators.io import checkpoint
from dft_operators.training import sharding
from dft_operators.training.config import TrainConfig
from dft_operators.training.loop import Objective, Stage, TrainingError, TrainState, fit, make_steps

MODEL = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(1)])


def _objective():
    def init(key, batch):
        return MODEL.init(key, jnp.asarray(batch["x"]))

    def per_sample(params, batch):
        pred = MODEL.apply(params, batch["x"])[:, 0]
        return {"loss": (pred - batch["y"]) ** 2, "mae": jnp.abs(pred - batch["y"])}

    return Objective(init, per_sample)


def _data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return {"x": x, "y": np.sin(x @ np.array([1.0, -0.5, 0.3])).astype(np.float32)}


CONFIG = TrainConfig(epochs=6, batch_size=8, learning_rate=0.03)


def test_training_lowers_the_loss_and_writes_a_model_directory(tmp_path):
    out = str(tmp_path / "m")
    summary = fit(_objective(), _data(), _data(10, 1), CONFIG, out, {"kind": "toy"}, progress=False)
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert summary["epochs"] == 6 and len(log) == 6
    assert log[-1]["train_loss"] < 0.5 * log[0]["train_loss"]
    assert os.path.exists(os.path.join(out, "learning_curve.png"))
    card = checkpoint.load_card(out)
    assert card["kind"] == "toy" and card["train_config"]["epochs"] == 6 and card["best_epoch"] >= 1


def test_validation_every_few_epochs_selects_among_the_validated_ones(tmp_path):
    out = str(tmp_path / "m")
    summary = fit(_objective(), _data(), _data(10, 1), CONFIG.replace(validate_every=4), out, {"kind": "toy"},
                  progress=False)
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert [e["epoch"] for e in log if "val_loss" in e] == [4, 6]  # every 4th and the last
    assert summary["best_epoch"] in (4, 6) and summary["val"]
    best = min((e for e in log if "val_loss" in e), key=lambda e: e["val_loss"])
    assert checkpoint.load_card(out)["best_epoch"] == best["epoch"]
    with pytest.raises(ValueError, match="validate_every must be at least 1"):
        CONFIG.replace(validate_every=0)


def test_resume_after_interruption_gives_identical_parameters(tmp_path):
    straight, resumed = str(tmp_path / "a"), str(tmp_path / "b")
    fit(_objective(), _data(), None, CONFIG, straight, {"kind": "toy"}, progress=False)
    fit(_objective(), _data(), None, CONFIG, resumed, {"kind": "toy"}, until_epoch=2, progress=False)
    assert len(open(os.path.join(resumed, "log.jsonl")).readlines()) == 2
    fit(_objective(), _data(), None, CONFIG, resumed, {"kind": "toy"}, progress=False)
    a, b = checkpoint.load_params(straight), checkpoint.load_params(resumed)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert len(open(os.path.join(resumed, "log.jsonl")).readlines()) == 6


def test_pretraining_stage_runs_first_and_the_objective_starts_from_its_weights(tmp_path):
    out = str(tmp_path / "m")
    plain = _objective()
    first = Objective(plain.init, lambda params, batch: {**plain.per_sample(params, batch), "pre": batch["y"] * 0})
    staged = Objective(plain.init, plain.per_sample, (Stage("warm", first, 4, learning_rate=0.05),))
    fit(staged, _data(), None, CONFIG, out, {"kind": "toy"}, until_epoch=1, progress=False)
    stage_log = [json.loads(line) for line in open(os.path.join(out, "warm", "log.jsonl"))]
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert len(stage_log) == 4 and "train_pre" in stage_log[0] and len(log) == 1
    stage_card = checkpoint.load_card(os.path.join(out, "warm"))
    assert stage_card["stage"] == "warm" and stage_card["train_config"]["learning_rate"] == 0.05
    assert checkpoint.load_card(out)["train_config"]["learning_rate"] == CONFIG.learning_rate
    # the main training continues where the stage left off, not from a fresh start
    assert log[0]["train_loss"] < 0.7 * stage_log[0]["train_loss"]
    fit(staged, _data(), None, CONFIG, out, {"kind": "toy"}, progress=False)  # resumes: the stage is not rerun
    assert len(open(os.path.join(out, "warm", "log.jsonl")).readlines()) == 4
    assert len(open(os.path.join(out, "log.jsonl")).readlines()) == 6


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path):
    out = str(tmp_path / "m")
    data = _data()
    fit(_objective(), data, None, CONFIG, out, {"kind": "toy"}, until_epoch=1, progress=False)
    good = checkpoint.load_params(out)
    data["y"][3] = np.inf
    with jax.debug_nans(False), pytest.raises(TrainingError, match="loss became"):
        fit(_objective(), data, None, CONFIG, str(tmp_path / "bad"), {"kind": "toy"}, progress=False)
    with jax.debug_nans(False), pytest.raises(TrainingError, match="last good"):
        fit(_objective(), data, None, CONFIG, out, {"kind": "toy"}, progress=False)
    jax.tree_util.tree_map(np.testing.assert_array_equal, good, checkpoint.load_params(out))


def test_foreign_or_corrupt_directories_are_refused(tmp_path):
    out = str(tmp_path / "m")
    fit(_objective(), _data(), None, CONFIG, out, {"kind": "toy"}, until_epoch=1, progress=False)
    with pytest.raises(TrainingError, match="another kind"):
        fit(_objective(), _data(), None, CONFIG, out, {"kind": "other"}, progress=False)
    with pytest.raises(TrainingError, match="another task"):  # other loss weights would mix two trainings
        fit(_objective(), _data(), None, CONFIG, out, {"kind": "toy", "task": {"weight": 2.0}}, progress=False)
    with pytest.raises(checkpoint.CheckpointError, match="not a dft_operators model directory"):
        checkpoint.load_card(str(tmp_path))
    with open(os.path.join(out, "card.json"), "w") as f:
        f.write("{broken")
    with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
        checkpoint.load_card(out)
    os.makedirs(tmp_path / "empty" / "params")
    with pytest.raises(checkpoint.CheckpointError, match="cannot restore weights"):
        checkpoint.load_params(str(tmp_path / "empty"))


def test_train_step_compiles_once():
    objective = _objective()
    optimizer = optax.adam(1e-3)
    train_step, _ = make_steps(objective, optimizer)
    mesh = sharding.data_mesh()
    data = _data(16)
    params = objective.init(jax.random.PRNGKey(0), data)
    state = TrainState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), params, optimizer.init(params))
    state = jax.device_put(state, sharding.replicated(mesh))
    pipeline = Pipeline(ArraySource(data), 6, seed=0)  # 16 records: batches of 6, 6 and 4 + 2 padding rows
    with pipeline.epoch_batches(0) as batches:
        for batch in batches:  # the last batch is padded to the same shape: no new trace
            state, _ = train_step(state, sharding.global_batch(batch, mesh))
    assert train_step._cache_size() == 1


SHARDED_SCRIPT = """
import json, sys
import jax, numpy as np
sys.path.insert(0, {tests!r})
from test_training_loop import _objective, _data, CONFIG
from dft_operators.training.loop import fit
from dft_operators.io import checkpoint
fit(_objective(), _data(), None, CONFIG.replace(epochs=2), {out!r}, {{"kind": "toy"}}, progress=False)
params = checkpoint.load_params({out!r})
print(json.dumps({{"devices": len(jax.devices()),
                   "params": [np.asarray(p).tolist() for p in jax.tree_util.tree_leaves(params)]}}))
"""


def test_four_host_devices_give_the_same_update_as_one(tmp_path):
    results = []
    for n in (1, 4):
        script = SHARDED_SCRIPT.format(tests=os.path.dirname(__file__), out=str(tmp_path / f"d{n}"))
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert [r["devices"] for r in results] == [1, 4]
    for a, b in zip(results[0]["params"], results[1]["params"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _CrashAfter:
    """A record source that fails on its ``reads``-th read, as a killed run would stop mid-epoch."""

    def __init__(self, data, reads):
        self.data, self.reads = data, reads

    def __len__(self):
        return len(self.data["x"])

    def __getitem__(self, i):
        self.reads -= 1
        if self.reads < 0:
            raise RuntimeError("simulated kill")
        return {k: v[i] for k, v in self.data.items()}


def test_a_run_stopped_mid_epoch_resumes_on_the_same_batches(tmp_path):
    config = CONFIG.replace(checkpoint_every_steps=1, checkpoint_every=100)
    straight, resumed = str(tmp_path / "a"), str(tmp_path / "b")
    fit(_objective(), _data(), None, config, straight, {"kind": "toy"}, progress=False)
    # 30 records, 4 steps an epoch: the 70th read falls in the third epoch, after its first batch.
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(_objective(), _CrashAfter(_data(), 70), None, config, resumed, {"kind": "toy"}, progress=False)
    assert checkpoint.state_manager(resumed).latest_step() % 4 != 0, "the saved state is mid-epoch"
    fit(_objective(), _data(), None, config, resumed, {"kind": "toy"}, progress=False)
    final = [_last_state(d) for d in (straight, resumed)]  # the end of training (params/ is the best epoch)
    assert final[0]["step"] == final[1]["step"] == 24
    for a, b in zip(*(jax.tree_util.tree_leaves(s) for s in final)):
        np.testing.assert_array_equal(a, b)


def test_calling_fit_again_on_a_finished_run_trains_nothing_and_keeps_its_log(tmp_path):
    """With a step checkpoint on every step, each epoch's last step is saved mid-epoch first; the epoch's end
    must replace it, or a rerun of the finished command resumes into an epoch with no batches left."""
    config = CONFIG.replace(epochs=2, checkpoint_every_steps=1)
    out = str(tmp_path / "m")
    first = fit(_objective(), _data(), _data(10, 1), config, out, {"kind": "toy"}, progress=False)
    params = checkpoint.load_params(out)
    again = fit(_objective(), _data(), _data(10, 1), config, out, {"kind": "toy"}, progress=False)
    assert again["epochs"] == 2 and again["best_epoch"] == first["best_epoch"]
    assert [json.loads(line)["epoch"] for line in open(os.path.join(out, "log.jsonl"))] == [1, 2]
    state = _last_state(out)
    assert int(state["step"]) == 8 and int(state["epoch"]) == 2
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, checkpoint.load_params(out))


def _last_state(directory):
    manager = checkpoint.state_manager(directory)
    args = checkpoint.ocp.args.Composite(state=checkpoint.ocp.args.StandardRestore(),
                                         position=checkpoint.ocp.args.JsonRestore())
    return manager.restore(manager.latest_step(), args=args)["state"]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_the_parameters_of_one(tiny_grid_data, tmp_path):
    from conftest import REPO

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"preset": "tiny", "train": {"epochs": 1, "batch_size": 4}}))
    common = [sys.executable, "-m", "dft_operators.cli", "train", "fno", "--data", tiny_grid_data, "--config",
              str(config), "--quiet", "--json"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    one = subprocess.Popen([*common, "--out", str(tmp_path / "one")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    port = _free_port()
    two = [subprocess.Popen([*common, "--out", str(tmp_path / "two"), "--coordinator", f"127.0.0.1:{port}",
                             "--num-processes", "2", "--process-id", str(i)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    for proc in (one, *two):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    # Only process 0 wrote the log; both runs saw the same global batches.
    assert len(open(tmp_path / "two" / "log.jsonl").readlines()) == 1
    a, b = (checkpoint.load_params(str(tmp_path / d)) for d in ("one", "two"))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
