"""Model directories: weights (orbax) plus a JSON model card, enough to load a model alone.

Layout of a model directory::

    card.json     kind, model and training configs, level of theory, normalisation statistics,
                  training-data fingerprint, metrics
    params/       the weights to predict with (best validation epoch), orbax
    state/        resumable training state (params, optimiser, epoch), orbax CheckpointManager
    log.jsonl     one line per epoch; learning_curve.png
"""

from __future__ import annotations

import os
import shutil

import jax
import orbax.checkpoint as ocp

# The card (JSON) side lives in ``io.cards``, which imports neither JAX nor orbax (``dft-operators models``).
from dft_operators.io.cards import CARD_FORMAT, CARD_VERSION, CheckpointError, as_json, load_card, save_card  # noqa: F401


def save_params(directory: str, params) -> None:
    """Saves weights to ``directory/params`` (atomic: orbax writes to a temporary folder first)."""
    path = os.path.abspath(os.path.join(directory, "params"))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, jax.device_get(params), force=True)
    checkpointer.wait_until_finished()


def load_params(directory: str, like=None):
    """Restores the weights of a model directory (as NumPy-backed arrays, or shaped like ``like``)."""
    path = os.path.abspath(os.path.join(directory, "params"))
    if not os.path.isdir(path):
        raise CheckpointError(f"{directory} has no saved weights (params/ missing)")
    checkpointer = ocp.StandardCheckpointer()
    try:
        if like is None:
            return checkpointer.restore(path)
        return checkpointer.restore(path, jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like))
    except Exception as err:  # orbax raises many types for damaged folders
        raise CheckpointError(f"cannot restore weights from {path}: {type(err).__name__}: {err}") from None
    finally:  # a failed restore leaves reads in flight that would call into a closed event loop at exit
        checkpointer.close()


def export_model(directory: str, target: str, **card_entries) -> None:
    """Copies a trained model's weights and card (plus ``card_entries``) to ``target``, without its
    training state and logs: what a shipped model holds."""
    card = {k: v for k, v in load_card(directory).items() if k not in ("format", "version", "saved")}
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    shutil.copytree(os.path.join(directory, "params"), os.path.join(target, "params"))
    save_card(target, {**card, **card_entries})


def state_manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """The manager of resumable training states under ``directory/state``."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(directory, "state")), options=options)


def state_args(state, position: dict) -> ocp.args.Composite:
    """What a resumable checkpoint holds: the train state and the input pipeline's position (a JSON dict)."""
    return ocp.args.Composite(state=ocp.args.StandardSave(state), position=ocp.args.JsonSave(position))


def restore_state(manager: ocp.CheckpointManager, like) -> tuple[object, dict | None]:
    """(the latest training state shaped like ``like``, the pipeline position saved with it), or (None, None)."""
    step = manager.latest_step()
    if step is None:
        return None, None
    try:
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 position=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["position"])
    except Exception as err:
        raise CheckpointError(
            f"cannot resume from {manager.directory} step {step}: {type(err).__name__}: {err}; "
            "delete that folder to start over, or train into a new directory") from None
