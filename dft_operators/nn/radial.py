"""Radial bases and cutoff envelopes for filters on distances (Bohr).

Densities near a nucleus vary on the scale 1/(2Z) Bohr (the cusp rho ~ exp(-2 Z r)); between atoms on the
scale of a bond. The basis is therefore evenly spaced in the logarithmic coordinate

    u(r) = ln(1 + r / r0),   phi_k(r) = exp(-((u(r) - u_k) / du)^2),   u_k = k du,  k = 0 .. n-1,
    du = u(r_c) / (n - 1),

whose resolution is ~ r0 du near r = 0 and ~ r du far away, and every filter is multiplied by the smooth
polynomial envelope of e3nn (``poly_envelope(5, 2)``: 1 with five vanishing derivatives at r = 0, 0 with
two vanishing derivatives at r = r_c and zero beyond), so energies and forces are smooth when a point
enters or leaves an atom's cutoff sphere.
"""

from __future__ import annotations

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np

_ENVELOPE = e3nn.poly_envelope(5, 2)


def log_gaussian_basis(r, cutoff: float, n: int, r0: float):
    """The basis phi_k(r) of the module docstring.

    Args:
      r: distances [...] in Bohr.
      cutoff: r_c in Bohr (the last centre); n: number of functions; r0: the inner length scale in Bohr.
    Returns:
      [..., n], values in (0, 1].
    """
    du = np.log1p(cutoff / r0) / (n - 1)
    centres = du * np.arange(n)
    u = jnp.log1p(r / r0)
    return jnp.exp(-(((u[..., None] - centres) / du) ** 2))


def envelope(r, cutoff: float):
    """Smooth cutoff: 1 at r = 0 falling to 0 at r = ``cutoff`` (Bohr) and beyond, [...]."""
    return _ENVELOPE(jnp.minimum(r / cutoff, 1.0))
