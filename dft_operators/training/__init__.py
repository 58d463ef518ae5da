"""The one training loop shared by every model: optax, orbax, data-parallel over local devices."""
