"""Model configs and ``create_model``: the one place where a config becomes a Flax module."""

from __future__ import annotations

import dataclasses

from dft_operators.kinds import kind as _kind


def model_config(kind: str, values: dict | None = None, preset: str = "default"):
    """The config dataclass of a model kind, from a preset ('default' or 'tiny') updated by ``values``."""
    entry = _kind(kind)
    cls = entry.attribute("models", entry.model, entry.config)
    base = cls.tiny() if preset == "tiny" else cls()
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values or {}) - fields
    if unknown:
        raise ValueError(f"unknown {kind} config field(s) {sorted(unknown)}; fields: {sorted(fields)}")
    return dataclasses.replace(base, **(values or {}))


def create_model(kind: str, config):
    """The Flax module of a model kind for its config."""
    entry = _kind(kind)
    return entry.attribute("models", entry.model, entry.builder)(config)


def check_channels(fields, in_channels: int) -> None:
    """Refuses a grid model's inputs [..., c] whose channel count is not the model's (ValueError naming both)."""
    if fields.shape[-1] != in_channels:
        raise ValueError(f"the model reads {in_channels} input channel(s); got {fields.shape[-1]}")


def check_atomic_numbers(numbers, max_atomic_number: int) -> None:
    """Refuses atomic numbers above a model's species embedding (rows 0 .. ``max_atomic_number``), which a JAX
    lookup would clamp silently into the last row (ValueError naming them and the setting)."""
    too_heavy = sorted({int(z) for z in numbers if z > max_atomic_number})
    if too_heavy:
        raise ValueError(f"the data hold atomic numbers {too_heavy}, above the model's max_atomic_number "
                         f"{max_atomic_number}; set model.max_atomic_number to at least {too_heavy[-1]}")
