"""Model configs and ``create_model``: the one place where a config becomes a Flax module."""

from __future__ import annotations

import dataclasses

from dft_operators.models.deepscf import DeepSCFConfig, create_deepscf
from dft_operators.models.densnet import DenSNetConfig, create_densnet
from dft_operators.models.fno import FNOConfig, create_fno
from dft_operators.models.kineticnet import KineticNetConfig, create_kineticnet

CONFIGS = {"fno": FNOConfig, "deepscf": DeepSCFConfig, "kineticnet": KineticNetConfig,
           "densnet": DenSNetConfig}
_BUILDERS = {"fno": create_fno, "deepscf": create_deepscf, "kineticnet": create_kineticnet,
             "densnet": create_densnet}


def model_config(kind: str, values: dict | None = None, preset: str = "default"):
    """The config dataclass of a model kind, from a preset ('default' or 'tiny') updated by ``values``."""
    if kind not in CONFIGS:
        raise ValueError(f"unknown model kind {kind!r}; available: {', '.join(CONFIGS)}")
    cls = CONFIGS[kind]
    base = cls.tiny() if preset == "tiny" else cls()
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values or {}) - fields
    if unknown:
        raise ValueError(f"unknown {kind} config field(s) {sorted(unknown)}; fields: {sorted(fields)}")
    return dataclasses.replace(base, **(values or {}))


def create_model(kind: str, config):
    """The Flax module of a model kind for its config."""
    return _BUILDERS[kind](config)
