"""The one training loop: AdamW + warm-up/cosine + clipping, jitted sharded steps, orbax resume.

A model plugs in through an :class:`Objective`: ``init(key, batch) -> params`` and
``per_sample(params, batch) -> {"loss": [batch], metric: [batch], ...}``.  Data come from a random-access
source (``data.input_pipeline``: a dataset streamed record by record, or in-memory arrays) through the
input pipeline: seeded shuffle, read-ahead, every global batch split over processes and padded to one
shape (padding rows have ``weight`` 0, so jit compiles once); losses and metrics are averaged with those
weights. The resumable state holds the train state and the pipeline's position, so a run killed mid-epoch
resumes on the same batches (``TrainConfig.checkpoint_every_steps``). With several processes
(``sharding.initialize_distributed``) every process runs this loop on its slice of each global batch and
process 0 alone writes the card, the log and the plots. An objective may name pretraining
:class:`Stage` s (another loss on the same weights, e.g. DenSNet's density first): each is trained to the end,
by this same loop in its own subdirectory, before the objective itself starts from its best weights. An
objective may also freeze part of the weights (``Objective.param_labels``): the optimiser leaves them unchanged.
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

from dft_operators.data.input_pipeline import ArraySource, Pipeline, Source
from dft_operators.io import checkpoint
from dft_operators.training import metrics, sharding
from dft_operators.training.config import TrainConfig

Batch = dict[str, Any]
# Labels of ``Objective.param_labels``: weights the optimiser updates, and weights it leaves exactly as they are.
TRAINABLE, FROZEN = "trainable", "frozen"


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a directory holding another model)."""


class Objective(NamedTuple):
    """What the loop needs from a model."""

    init: Callable[[jax.Array, Batch], Any]  # (key, batch) -> params
    per_sample: Callable[[Any, Batch], dict[str, jax.Array]]  # (params, batch) -> {"loss": [batch], ...}
    pretraining: tuple[Stage, ...] = ()  # trained first, in order, each starting from the previous one's weights
    augment: Callable[[dict, np.random.Generator], dict] | None = None  # random transform of each training
    # record as it is read (``input_pipeline.Pipeline``); validation records are not transformed
    param_labels: Callable[[Any, Batch], Any] | None = None  # (params, batch) -> a tree like params of TRAINABLE
    # or FROZEN (no gradient step, no weight decay); None: all trainable


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


def make_optimizer(config: TrainConfig, total_steps: int, param_labels=None) -> optax.GradientTransformation:
    """Clipped AdamW with a linear warm-up and cosine decay over ``total_steps``; with ``param_labels`` (a tree
    like the params of TRAINABLE or FROZEN) for the TRAINABLE weights only, the FROZEN ones never change."""
    warmup = max(1, int(config.warmup_fraction * total_steps))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, max(total_steps, warmup + 1), config.learning_rate * config.final_lr_fraction)
    adamw = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm),
                        optax.adamw(schedule, weight_decay=config.weight_decay))
    if param_labels is None:
        return adamw
    return optax.partition({TRAINABLE: adamw, FROZEN: optax.set_to_zero()}, param_labels)


def _weighted_sums(per_sample: dict[str, jax.Array], weight: jax.Array) -> dict[str, jax.Array]:
    sums = {k: (v * weight).sum() for k, v in per_sample.items()}
    sums["count"] = weight.sum()
    return sums


def make_steps(objective: Objective, optimizer: optax.GradientTransformation, param_labels=None):
    """Jitted ``train_step(state, batch) -> (state, sums)`` and ``eval_step(params, batch) -> sums``; the logged
    gradient norm is that of the TRAINABLE weights of ``param_labels`` (None: all)."""

    def loss_fn(params, batch):
        per_sample = objective.per_sample(params, batch)
        w = batch["weight"]
        return (per_sample["loss"] * w).sum() / jnp.maximum(w.sum(), 1.0), per_sample

    def train_step(state: TrainState, batch: Batch):
        grads, per_sample = jax.grad(loss_fn, has_aux=True)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        sums = _weighted_sums(per_sample, batch["weight"])
        trained = grads if param_labels is None else jax.tree_util.tree_map(  # unused frozen gradients: jit drops them
            lambda label, g: g if label == TRAINABLE else None, param_labels, grads)
        sums["grad_norm"] = optax.tree.norm(trained) * sums["count"]
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), sums

    def eval_step(params, batch: Batch):
        return _weighted_sums(objective.per_sample(params, batch), batch["weight"])

    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)


def as_source(data: Source | dict[str, np.ndarray]) -> Source:
    """A source from in-memory arrays [n_records, ...] (or the source itself)."""
    return ArraySource(data) if isinstance(data, dict) else data


def global_batch_size(batch_size: int, mesh) -> int:
    """``batch_size`` rounded up to a multiple of the device count (every device gets as many rows)."""
    return math.ceil(batch_size / mesh.devices.size) * mesh.devices.size


def _accumulate(total: dict, sums: dict) -> dict:
    return sums if total is None else jax.tree_util.tree_map(jnp.add, total, sums)


def _means(total: dict, prefix: str) -> dict[str, float]:
    host = jax.device_get(total)
    count = max(float(host.pop("count")), 1.0)
    return {f"{prefix}_{k}": float(v) / count for k, v in host.items()}


def evaluate_objective(objective: Objective, params, data: Source | dict[str, np.ndarray], batch_size: int,
                       eval_step=None) -> dict[str, float]:
    """Weighted means of the objective's per-sample metrics over a dataset (sharded like training)."""
    mesh = sharding.data_mesh()
    eval_step = eval_step or make_steps(objective, optax.identity())[1]
    params = jax.device_put(params, sharding.replicated(mesh))
    pipeline = Pipeline(as_source(data), global_batch_size(batch_size, mesh), 0, shuffle=False)
    total = None
    with pipeline.epoch_batches(0) as batches:
        for batch in batches:
            total = _accumulate(total, eval_step(params, sharding.global_batch(batch, mesh)))
    return {k[len("x_"):]: v for k, v in _means(total, "x").items()}


def _check_directory(out_dir: str, card: dict) -> None:
    """Refuses to resume into a directory that holds a model of another kind or configuration."""
    if not os.path.exists(os.path.join(out_dir, "card.json")):
        return
    old = checkpoint.load_card(out_dir)
    for key in ("kind", "model_config", "task", "train_config", "data_fingerprint", "molecules", "init_from"):
        if old.get(key) != checkpoint.as_json(card.get(key)):
            raise TrainingError(f"{out_dir} holds a model with another {key} ({old.get(key)} vs {card.get(key)}); "
                                "train into a new directory")


def fit(objective: Objective, train_data: Source | dict[str, np.ndarray],
        val_data: Source | dict[str, np.ndarray] | None, config: TrainConfig, out_dir: str, card: dict,
        until_epoch: int | None = None, progress: bool = True) -> dict:
    """Trains, or resumes training, and keeps the best weights in ``out_dir``.

    Args:
      objective: the model's init and per-sample loss/metrics.
      train_data, val_data: a record source (``data.input_pipeline.Source``) or arrays with a shared leading
        axis (records); ``val_data`` may be None.
      config: the training hyperparameters.
      out_dir: the model directory (see :mod:`dft_operators.io.checkpoint`); a resumable state (train
        state + pipeline position) is saved there every ``config.checkpoint_every`` epochs and every
        ``config.checkpoint_every_steps`` steps, and picked up by the next call.
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
    writer = jax.process_index() == 0
    os.makedirs(out_dir, exist_ok=True)
    mesh = sharding.data_mesh()
    pipeline = Pipeline(as_source(train_data), global_batch_size(config.batch_size, mesh), config.seed,
                        augment=objective.augment)
    with pipeline.epoch_batches(0) as batches:
        example = next(batches)
    params = objective.init(jax.random.PRNGKey(config.seed), example)
    labels = objective.param_labels(params, example) if objective.param_labels else None
    optimizer = make_optimizer(config, config.epochs * pipeline.steps_per_epoch, labels)
    train_step, eval_step = make_steps(objective, optimizer, labels)
    state = TrainState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), params, optimizer.init(params))
    manager = checkpoint.state_manager(out_dir)
    restored, position = checkpoint.restore_state(manager, state)
    if restored is None and objective.pretraining:
        params = _pretrain(objective.pretraining, params, train_data, val_data, config, out_dir, card, progress)
        state = TrainState(state.step, state.epoch, params, optimizer.init(params))
    state = restored if restored is not None else state
    log = metrics.JsonLog(os.path.join(out_dir, "log.jsonl"))
    history = [e for e in log.read() if e["epoch"] <= int(state.epoch)]
    if writer:
        log.rewrite(history)  # drop epochs logged after the last saved state (a kill in between)
    candidates = [e for e in history if "select" in e]
    best = min(candidates, key=lambda e: e["select"]) if candidates else None
    if restored is None and writer:
        checkpoint.save_card(out_dir, card)
    state = jax.device_put(state, sharding.replicated(mesh))

    def save_state(batches):
        step = int(state.step)
        if manager.latest_step() == step:  # a step checkpoint on the epoch's last batch: the epoch's end replaces it
            manager.delete(step)
        manager.save(step, args=checkpoint.state_args(state, batches.get_state()))
        manager.wait_until_finished()

    last = config.epochs if until_epoch is None else min(until_epoch, config.epochs)
    bar = tqdm(range(int(state.epoch), last), desc="epochs", unit="ep", disable=not progress or not writer,
               initial=int(state.epoch), total=config.epochs)
    for epoch in bar:
        start, total = time.perf_counter(), None
        resume_here = position is not None and position["epoch"] == epoch
        with (pipeline.restore(position) if resume_here else pipeline.epoch_batches(epoch)) as batches:
            for batch in batches:
                state, sums = train_step(state, sharding.global_batch(batch, mesh))
                total = _accumulate(total, sums)
                if config.checkpoint_every_steps and int(state.step) % config.checkpoint_every_steps == 0:
                    save_state(batches)
        # no batches: resumed at the very end of an epoch, from a state saved before its end replaced it
        entry = {"epoch": epoch + 1, "step": int(state.step), **(_means(total, "train") if total else {})}
        if not math.isfinite(entry.get("train_loss", 0.0)):
            raise TrainingError(
                f"the training loss became {entry['train_loss']} in epoch {epoch + 1}; stopped, the last good "
                f"checkpoint in {out_dir} (step {int(manager.latest_step() or 0)}) is kept: lower the learning "
                "rate or check the data")
        if val_data is not None and ((epoch + 1) % config.validate_every == 0 or epoch + 1 == last):
            entry.update({f"val_{k}": v for k, v in
                          evaluate_objective(objective, state.params, val_data, config.batch_size, eval_step).items()})
        if "val_loss" in entry or ("train_loss" in entry and val_data is None):  # a candidate for the best weights
            entry["select"] = entry.get("val_loss", entry.get("train_loss"))
        entry["seconds"] = time.perf_counter() - start
        state = state.replace(epoch=state.epoch + 1)
        if "select" in entry and (best is None or entry["select"] <= best["select"]):
            best = entry
            checkpoint.save_params(out_dir, state.params)
            if writer:
                checkpoint.save_card(out_dir, {**card, "best_epoch": best["epoch"], "metrics": best})
        if writer:
            log.write(**entry)
        history.append(entry)
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == last:
            with pipeline.epoch_batches(epoch + 1) as batches:  # the position: the start of the next epoch
                save_state(batches)
        bar.set_postfix({k: f"{v:.3g}" for k, v in entry.items() if k in ("train_loss", "val_loss")})
    bar.close()
    if history and writer:
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
