"""Density floors shared by the functionals: finite values and finite gradients where rho -> 0."""

import jax.numpy as jnp

# Densities (electrons/Bohr^3) at or below this give zero energy density; libxc's LDA threshold is of this order.
DENSITY_FLOOR = 1e-16


def floored(rho):
    """(mask, safe rho): mask = rho > DENSITY_FLOOR; safe rho is rho there and 1 elsewhere.

    The 'double where': evaluate a singular expression on the safe density and select it with the mask, so
    neither the value nor the gradient of the branch not taken can be NaN or infinite.
    """
    mask = rho > DENSITY_FLOOR
    return mask, jnp.where(mask, rho, 1.0)
