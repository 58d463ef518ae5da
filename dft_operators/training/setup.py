"""A training config resolved: model, training and task settings, and the split by molecule it asks for."""

from __future__ import annotations

import dataclasses
import json
import os

from dft_operators import kinds, models
from dft_operators.data.splits import first_molecules, split_by_molecule
from dft_operators.io.dataset import Dataset
from dft_operators.training.config import TrainConfig


def read_config(config: dict | str | None, _chain: tuple[str, ...] = ()) -> dict:
    """A config as a dict: ``None`` -> {}, a dict as given, a path -> its JSON. A file's "base" key names another
    config file (relative to this one's folder) that it overrides key by key: sections (dicts) merge, any other
    value replaces the base's, so a variant lists only what it changes."""
    if config is None:
        return {}
    if isinstance(config, dict):
        return config
    path = os.path.abspath(config)
    if path in _chain:
        raise ValueError(f"config bases form a loop: {' -> '.join(_chain + (path,))}")
    with open(path) as f:
        values = json.load(f)
    base = values.pop("base", None)
    if base is None:
        return values
    return _override(read_config(os.path.join(os.path.dirname(path), base), _chain + (path,)), values)


def _override(base: dict, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        both_sections = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _override(base[key], value) if both_sections else value
    return merged


@dataclasses.dataclass(frozen=True)
class TrainSetup:
    """Everything ``train`` resolves from a config: model, training and task settings, the split."""

    kind: str
    model_config: object
    train_config: TrainConfig
    task: object
    held_out: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    max_train_molecules: int | None = None

    @staticmethod
    def resolve(kind: str, config: dict | str | None) -> "TrainSetup":
        """From a JSON file or dict with optional keys preset ('default'|'tiny'), model, train, task, held_out
        (validation molecules), exclude (molecules neither side may use: a test set) and max_train_molecules
        (train on that many of the training side's molecules, a nested seeded draw); a "data" section (how the
        experiment scripts generate the dataset) is not read here. Files may inherit a "base" (``read_config``)."""
        c = read_config(config)
        unknown = set(c) - {"preset", "model", "train", "task", "held_out", "exclude", "max_train_molecules", "data"}
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}")
        preset = c.get("preset", "default")
        if preset not in ("default", "tiny"):
            raise ValueError(f"unknown preset {preset!r}; choose default or tiny")
        task_type = kinds.kind(kind).task_type()
        task = task_type(**_known_fields(task_type, c.get("task", {}), "task"))
        channels = {"in_channels": task.in_channels} if hasattr(task, "in_channels") else {}
        model_values = {**channels, **c.get("model", {})}
        train_base = TrainConfig.tiny() if preset == "tiny" else TrainConfig()
        return TrainSetup(kind, models.model_config(kind, model_values, preset),
                          dataclasses.replace(train_base, **_known_fields(TrainConfig, c.get("train", {}), "train")),
                          task, tuple(c["held_out"]) if c.get("held_out") else None, tuple(c.get("exclude", ())),
                          c.get("max_train_molecules"))


def _known_fields(cls, values: dict, section: str) -> dict:
    """``values`` if every key is a field of the dataclass ``cls``, else a ValueError naming the strangers."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown {section} config field(s) {unknown}; fields: {sorted(fields)}")
    return values


def split(ds: Dataset, setup: TrainSetup) -> tuple[list[str], list[str]]:
    """(training, validation) record ids of a dataset under a setup's held_out, exclude and
    max_train_molecules (names or canonical SMILES; whole molecules on each side)."""
    names, keys = [str(n) for n in ds.attribute("name")], ds.molecule_keys()

    def matching(wanted):  # names or SMILES -> the molecule keys they name
        return {k for n, k in zip(names, keys) if n in wanted or k in wanted}

    excluded = matching(setup.exclude)
    kept = [k not in excluded for k in keys]
    held_out = None if setup.held_out is None else sorted(matching(setup.held_out))
    train_ids, val_ids = split_by_molecule([i for i, ok in zip(ds.ids, kept) if ok],
                                           [k for k, ok in zip(keys, kept) if ok], setup.train_config.val_fraction,
                                           setup.train_config.seed, held_out)
    if setup.max_train_molecules is not None:
        key_of = dict(zip(ds.ids, keys))
        train_ids = first_molecules(train_ids, [key_of[i] for i in train_ids], setup.max_train_molecules,
                                    setup.train_config.seed)
    return train_ids, val_ids
