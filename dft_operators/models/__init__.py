"""Model configs and ``create_model``: the one place where a config becomes a Flax module."""

from __future__ import annotations

import dataclasses
import importlib

# kind -> (module under dft_operators.models, its config dataclass, its builder); imported when first used, so
# that a grid model never loads e3nn-jax (seconds of start-up).
_KINDS = {"fno": ("fno", "FNOConfig", "create_fno"), "deepscf": ("deepscf", "DeepSCFConfig", "create_deepscf"),
          "kineticnet": ("kineticnet", "KineticNetConfig", "create_kineticnet"),
          "densnet": ("densnet", "DenSNetConfig", "create_densnet")}


def _lookup(kind: str, what: int):
    if kind not in _KINDS:
        raise ValueError(f"unknown model kind {kind!r}; available: {', '.join(_KINDS)}")
    module = importlib.import_module(f"dft_operators.models.{_KINDS[kind][0]}")
    return getattr(module, _KINDS[kind][what])


def model_config(kind: str, values: dict | None = None, preset: str = "default"):
    """The config dataclass of a model kind, from a preset ('default' or 'tiny') updated by ``values``."""
    cls = _lookup(kind, 1)
    base = cls.tiny() if preset == "tiny" else cls()
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values or {}) - fields
    if unknown:
        raise ValueError(f"unknown {kind} config field(s) {sorted(unknown)}; fields: {sorted(fields)}")
    return dataclasses.replace(base, **(values or {}))


def create_model(kind: str, config):
    """The Flax module of a model kind for its config."""
    return _lookup(kind, 2)(config)
