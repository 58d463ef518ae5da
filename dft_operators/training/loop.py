"""The one training loop: AdamW + warm-up/cosine + clipping, jitted sharded steps, orbax resume.

A model plugs in through an :class:`Objective`: ``init(key, batch) -> params`` and
``per_sample(params, batch) -> {"loss": [batch], metric: [batch], ...}``.  Batches are dicts of arrays
with a leading batch axis; the loop pads every batch to one shape (padding rows have ``weight`` 0, so
jit compiles once) and averages losses and metrics with those weights. An objective may name pretraining
:class:`Stage` s (another loss on the same weights, e.g. DenSNet's density first): each is trained to the end,
by this same loop in its own subdirectory, before the objective itself starts from its best weights.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from dft_operators.io import checkpoint
from dft_operators.training import metrics, sharding
from dft_operators.training.config import TrainConfig

Batch = dict[str, Any]


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a directory holding another model)."""


class Objective(NamedTuple):
    """What the loop needs from a model."""

    init: Callable[[jax.Array, Batch], Any]  # (key, batch) -> params
    per_sample: Callable[[Any, Batch], dict[str, jax.Array]]  # (params, batch) -> {"loss": [batch], ...}
    pretraining: tuple[Stage, ...] = ()  # trained first, in order, each starting from the previous one's weights


class Stage(NamedTuple):
    """A pretraining stage: ``objective`` (on the same weights) for ``epochs``, saved in ``out_dir/name``,
    at peak ``learning_rate`` (None: the training config's)."""

    name: str
    objective: Objective
    epochs: int
    learning_rate: float | None = None


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    epoch: jax.Array
    params: Any
    opt_state: Any


def make_optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """Clipped AdamW with a linear warm-up and cosine decay over ``total_steps``."""
    warmup = max(1, int(config.warmup_fraction * total_steps))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, max(total_steps, warmup + 1), config.learning_rate * config.final_lr_fraction)
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm),
                       optax.adamw(schedule, weight_decay=config.weight_decay))


def _weighted_sums(per_sample: dict[str, jax.Array], weight: jax.Array) -> dict[str, jax.Array]:
    sums = {k: (v * weight).sum() for k, v in per_sample.items()}
    sums["count"] = weight.sum()
    return sums


def make_steps(objective: Objective, optimizer: optax.GradientTransformation):
    """Jitted ``train_step(state, batch) -> (state, sums)`` and ``eval_step(params, batch) -> sums``."""

    def loss_fn(params, batch):
        per_sample = objective.per_sample(params, batch)
        w = batch["weight"]
        return (per_sample["loss"] * w).sum() / jnp.maximum(w.sum(), 1.0), per_sample

    def train_step(state: TrainState, batch: Batch):
        grads, per_sample = jax.grad(loss_fn, has_aux=True)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        sums = _weighted_sums(per_sample, batch["weight"])
        sums["grad_norm"] = optax.tree.norm(grads) * sums["count"]
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), sums

    def eval_step(params, batch: Batch):
        return _weighted_sums(objective.per_sample(params, batch), batch["weight"])

    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)


def iterate_batches(data: dict[str, np.ndarray], batch_size: int, order: np.ndarray | None = None):
    """Host batches of ``batch_size`` rows (the last one short) in ``order``."""
    n = len(next(iter(data.values())))
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield {k: v[idx] for k, v in data.items()}


def _accumulate(total: dict, sums: dict) -> dict:
    return sums if total is None else jax.tree_util.tree_map(jnp.add, total, sums)


def _means(total: dict, prefix: str) -> dict[str, float]:
    host = jax.device_get(total)
    count = max(float(host.pop("count")), 1.0)
    return {f"{prefix}_{k}": float(v) / count for k, v in host.items()}


def evaluate_objective(objective: Objective, params, data: dict[str, np.ndarray], batch_size: int,
                       eval_step=None) -> dict[str, float]:
    """Weighted means of the objective's per-sample metrics over a dataset (sharded like training)."""
    mesh = sharding.data_mesh()
    global_batch = math.ceil(batch_size / mesh.devices.size) * mesh.devices.size
    eval_step = eval_step or make_steps(objective, optax.identity())[1]
    params = jax.device_put(params, sharding.replicated(mesh))
    total = None
    for batch in iterate_batches(data, global_batch):
        total = _accumulate(total, eval_step(params, sharding.shard_batch(batch, mesh, global_batch)))
    return {k[len("x_"):]: v for k, v in _means(total, "x").items()}


def _check_directory(out_dir: str, card: dict) -> None:
    """Refuses to resume into a directory that holds a model of another kind or configuration."""
    if not os.path.exists(os.path.join(out_dir, "card.json")):
        return
    old = checkpoint.load_card(out_dir)
    for key in ("kind", "model_config", "task", "train_config", "data_fingerprint", "init_from"):
        if old.get(key) != checkpoint.as_json(card.get(key)):
            raise TrainingError(f"{out_dir} holds a model with another {key} ({old.get(key)} vs {card.get(key)}); "
                                "train into a new directory")


def fit(objective: Objective, train_data: dict[str, np.ndarray], val_data: dict[str, np.ndarray] | None,
        config: TrainConfig, out_dir: str, card: dict, until_epoch: int | None = None,
        progress: bool = True) -> dict:
    """Trains, or resumes training, and keeps the best weights in ``out_dir``.

    Args:
      objective: the model's init and per-sample loss/metrics.
      train_data, val_data: arrays with a shared leading axis (records); ``val_data`` may be None.
      config: the training hyperparameters.
      out_dir: the model directory (see :mod:`dft_operators.io.checkpoint`); a resumable state is
        saved there every ``config.checkpoint_every`` epochs and picked up by the next call.
      card: what the model card records besides metrics (kind, model_config, level, normalisation,
        data_fingerprint); ``train_config`` is added here.
      until_epoch: stop after this epoch (for time-sliced jobs); training continues on the next call.
        It counts the objective's own epochs: pretraining stages always run to their end first.
    Returns:
      {"epochs": epochs done, "best_epoch", "train": {...}, "val": {...}, "checkpoint": out_dir}.
    Raises:
      TrainingError: on a non-finite loss (the last good checkpoint is kept) or a foreign directory.
    """
    card = {**card, "train_config": dataclasses.asdict(config)}
    _check_directory(out_dir, card)
    os.makedirs(out_dir, exist_ok=True)
    mesh = sharding.data_mesh()
    n_devices = mesh.devices.size
    global_batch = math.ceil(config.batch_size / n_devices) * n_devices
    n_train = len(next(iter(train_data.values())))
    steps_per_epoch = math.ceil(n_train / global_batch)
    optimizer = make_optimizer(config, config.epochs * steps_per_epoch)
    train_step, eval_step = make_steps(objective, optimizer)

    example = sharding.pad_batch(next(iterate_batches(train_data, global_batch)), global_batch)
    params = objective.init(jax.random.PRNGKey(config.seed), example)
    state = TrainState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), params, optimizer.init(params))
    manager = checkpoint.state_manager(out_dir)
    restored = checkpoint.restore_state(manager, state)
    if restored is None and objective.pretraining:
        params = _pretrain(objective.pretraining, params, train_data, val_data, config, out_dir, card, progress)
        state = TrainState(state.step, state.epoch, params, optimizer.init(params))
    state = restored if restored is not None else state
    log = metrics.JsonLog(os.path.join(out_dir, "log.jsonl"))
    history = [e for e in log.read() if e["epoch"] <= int(state.epoch)]
    log.rewrite(history)  # drop epochs logged after the last saved state (a kill in between)
    best = min(history, key=lambda e: e["select"]) if history else None
    if restored is None:
        checkpoint.save_card(out_dir, card)
    state = jax.device_put(state, sharding.replicated(mesh))

    last = config.epochs if until_epoch is None else min(until_epoch, config.epochs)
    bar = tqdm(range(int(state.epoch), last), desc="epochs", unit="ep", disable=not progress,
               initial=int(state.epoch), total=config.epochs)
    for epoch in bar:
        start, total = time.perf_counter(), None
        order = np.random.default_rng([config.seed, epoch]).permutation(n_train)
        for batch in iterate_batches(train_data, global_batch, order):
            state, sums = train_step(state, sharding.shard_batch(batch, mesh, global_batch))
            total = _accumulate(total, sums)
        entry = {"epoch": epoch + 1, "step": int(state.step), **_means(total, "train")}
        if not math.isfinite(entry["train_loss"]):
            raise TrainingError(
                f"the training loss became {entry['train_loss']} in epoch {epoch + 1}; stopped, the last good "
                f"checkpoint in {out_dir} (epoch {int(manager.latest_step() or 0)}) is kept: lower the learning "
                "rate or check the data")
        if val_data is not None:
            entry.update({f"val_{k}": v for k, v in
                          evaluate_objective(objective, state.params, val_data, config.batch_size, eval_step).items()})
        entry["select"] = entry.get("val_loss", entry["train_loss"])
        entry["seconds"] = time.perf_counter() - start
        state = state.replace(epoch=state.epoch + 1)
        if best is None or entry["select"] <= best["select"]:
            best = entry
            checkpoint.save_params(out_dir, state.params)
            checkpoint.save_card(out_dir, {**card, "best_epoch": best["epoch"], "metrics": best})
        log.write(**entry)
        history.append(entry)
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == last:
            manager.save(epoch + 1, args=checkpoint.ocp.args.StandardSave(state))
            manager.wait_until_finished()
        bar.set_postfix({k: f"{v:.3g}" for k, v in entry.items() if k in ("train_loss", "val_loss")})
    bar.close()
    if history:
        metrics.plot_learning_curve(history, os.path.join(out_dir, "learning_curve.png"))
    final = history[-1] if history else {}
    return {"epochs": int(state.epoch), "best_epoch": best["epoch"] if best else None,
            "train": {k[6:]: v for k, v in final.items() if k.startswith("train_")},
            "val": {k[4:]: v for k, v in final.items() if k.startswith("val_")},
            "checkpoint": out_dir}


def _pretrain(stages: tuple[Stage, ...], params, train_data, val_data, config: TrainConfig, out_dir: str, card: dict,
              progress: bool):
    """Trains (or resumes) each stage from the previous one's best weights; returns the last best weights."""
    for stage in stages:
        stage_dir = os.path.join(out_dir, stage.name)
        start = stage.objective._replace(init=lambda key, batch, p=params: p)
        stage_config = config.replace(epochs=stage.epochs, learning_rate=stage.learning_rate or config.learning_rate)
        fit(start, train_data, val_data, stage_config, stage_dir, {**card, "stage": stage.name}, progress=progress)
        params = checkpoint.load_params(stage_dir, like=params)
    return params
