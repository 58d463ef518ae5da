"""Model cards (``card.json``) and the shipped models' catalogue, without JAX, orbax or PySCF.

Reading a card is what ``dft-operators models`` does; it stays fast because nothing here imports a
numerical library but NumPy (see :mod:`dft_operators.io.checkpoint` for the weights).
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources

import numpy as np

CARD_FORMAT = "dft_operators-model"
CARD_VERSION = 1


class CheckpointError(ValueError):
    """A model directory that is missing, corrupt, or not a dft_operators model."""


def save_card(directory: str, card: dict) -> None:
    """Writes ``card.json`` atomically, adding the format tag."""
    os.makedirs(directory, exist_ok=True)
    card = {"format": CARD_FORMAT, "version": CARD_VERSION, "saved": time.strftime("%Y-%m-%dT%H:%M:%S"), **card}
    tmp = os.path.join(directory, "card.json.tmp")
    with open(tmp, "w") as f:
        json.dump(card, f, indent=1, default=_json_default)
    os.replace(tmp, os.path.join(directory, "card.json"))


def as_json(value):
    """``value`` as it reads back from a card (tuples become lists, NumPy scalars Python numbers)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_card(directory: str) -> dict:
    """Reads and checks ``card.json``; raises :class:`CheckpointError` with the reason."""
    path = os.path.join(directory, "card.json")
    if not os.path.isdir(directory):
        raise CheckpointError(f"no model directory {directory}")
    try:
        with open(path) as f:
            card = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{directory} is not a dft_operators model directory (no card.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CheckpointError(f"{path} is not a dft_operators model card (format "
                              f"{card.get('format') if isinstance(card, dict) else None!r})")
    if card.get("version", 0) > CARD_VERSION:
        raise CheckpointError(f"{path} has card version {card['version']}; upgrade dft_operators to read it")
    return card


# What every card needs to load and use its model: entry -> (JSON type, what it says).
REQUIRED = {"kind": (str, "the model kind"), "model_config": (dict, "the model's config"),
            "level": (dict, "the level of theory {xc, basis, pseudo, aux_basis}"),
            "elements": (list, "the element symbols of its training data")}


def check_model_card(card: dict, directory: str) -> None:
    """Raises :class:`CheckpointError` naming the first entry of :data:`REQUIRED` that ``card`` lacks."""
    path = os.path.join(directory, "card.json")
    for key, (kind, meaning) in REQUIRED.items():
        if not isinstance(card.get(key), kind):
            problem = "lacks" if key not in card else f"has a malformed (not a {kind.__name__})"
            raise CheckpointError(f"{path} {problem} {key!r} ({meaning}); retrain or re-export the model")
    missing = sorted({"xc", "basis", "pseudo"} - set(card["level"]))
    if missing:
        raise CheckpointError(f"{path}: its level lacks {missing}; retrain or re-export the model")


def pretrained_dir() -> str:
    """The folder of the shipped models (``dft_operators/pretrained``)."""
    return str(resources.files("dft_operators") / "pretrained")


def shipped_models() -> list[dict]:
    """The shipped models: [{name, kind, path (the model directory), level: {xc, basis, pseudo}, description,
    metrics}], read from their cards alone."""
    root = pretrained_dir()
    out = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if os.path.exists(os.path.join(root, name, "card.json")):
            card = load_card(os.path.join(root, name))
            level = {k: card["level"].get(k) for k in ("xc", "basis", "pseudo")}
            out.append({"name": name, "kind": card["kind"], "path": os.path.join(root, name), "level": level,
                        "description": card.get("description", ""), "metrics": card.get("test_metrics", {})})
    return out
