"""Training hyperparameters as a frozen dataclass (saved beside every checkpoint)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train; every model uses the same loop and the same fields."""

    epochs: int = 100  # passes over the training set
    batch_size: int = 8  # global batch, split over all local devices (padded to a multiple of them)
    learning_rate: float = 1e-3  # peak learning rate of the warm-up + cosine schedule
    warmup_fraction: float = 0.05  # fraction of the steps spent warming up linearly from 0
    final_lr_fraction: float = 0.01  # the cosine decays to this fraction of the peak
    weight_decay: float = 1e-5  # AdamW decoupled weight decay
    grad_clip_norm: float = 1.0  # clip the global gradient norm to this value
    val_fraction: float = 0.1  # fraction of records held out for validation (when no split is given)
    validate_every: int = 1  # validate (and so select the best weights) every this many epochs, and after the last
    checkpoint_every: int = 1  # save a resumable checkpoint every this many epochs
    checkpoint_every_steps: int = 0  # also every this many steps, mid-epoch (0: at epoch ends only)
    seed: int = 0  # seeds initialisation, shuffling and the split

    def __post_init__(self):
        for name in ("epochs", "batch_size", "validate_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")

    @staticmethod
    def tiny() -> "TrainConfig":
        """Seconds on a CPU: for smoke tests."""
        return TrainConfig(epochs=3, batch_size=2, learning_rate=3e-3)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
