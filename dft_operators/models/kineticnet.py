"""KineticNet: a learned Kohn-Sham kinetic energy functional T[rho] on a molecular quadrature grid.

The kinetic energy density at grid point i mixes the Thomas-Fermi and von Weizsaecker energy densities
(``physics.kinetic``) with coefficients that a network corrects,

    t_i = (lambda + a_i) t_TF(rho_i) + (mu + b_i) t_vW(rho_i, grad rho_i),      T = sum_i w_i t_i,

around a classical baseline (lambda = 1, mu = 1/9: the gradient expansion; lambda = 0, mu = 1: von
Weizsaecker, exact for two electrons). Both energy densities scale like the kinetic energy (as lambda^2
under rho(r) -> lambda^3 rho(lambda r)) and vanish where rho does, so the learned part is extensive and
dimensionally right. The enhancements (a_i, b_i) come from an E(3)-equivariant point network
(``nn.equivariant``):

    1. density projection  rho at the grid points -> atom-centred features up to l = lmax, radial filters on a
                           logarithmic basis that resolves the nuclear cusp;
    2. message passing     between atoms within ``atom_cutoff`` (several bond lengths), species embedded;
    3. readout             atom features -> invariants at every grid point within ``point_cutoff``;
    4. enhancement         (a_i, b_i) = MLP(invariants_i, rho_i^(1/3), s_i^2 / (1 + s_i^2)), s the reduced
                           gradient.

The last layer starts at zero, so an untrained model is its baseline. Only relative positions enter, so T
is invariant under rotations, reflections and translations of molecule and grid together; the cost is
O(grid points x neighbouring atoms). The density enters the projection linearly: an l = 1 input channel
for grad rho would add nothing, since int grad rho . g = -int rho div g moves the derivative onto the
filters; the semi-local gradient enters pointwise through s_i instead.

T is a differentiable function of (rho_i, grad rho_i): its functional derivative and the orbital-free
potential are ``jax.grad`` of it (``workflows.kinetic`` and ``ofdft``).
"""

from __future__ import annotations

import dataclasses

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dft_operators.nn.equivariant import AtomInteraction, AtomsToPoints, PointsToAtoms, RadialSpec, irreps_up_to
from dft_operators.nn.graph import MolecularGraph
from dft_operators.physics import kinetic
from dft_operators.physics._safe import floored

# 4 (3 pi^2)^(2/3): s^2 = |grad rho|^2 / (this * rho^(8/3)).
_S2_SCALE = 4.0 * (3.0 * np.pi**2) ** (2.0 / 3.0)
# Added to |grad rho|^2 (electrons^2/Bohr^8) under the logarithm: keeps it finite where the gradient vanishes.
_TINY = 1e-30


@dataclasses.dataclass(frozen=True)
class KineticNetConfig:
    """Hyperparameters of KineticNet (saved beside its weights)."""

    channels: int = 16  # multiplicity of each irrep l = 0 .. lmax of the atom features
    lmax: int = 2  # highest angular momentum of atom features and filters
    n_interactions: int = 2  # atom-to-atom message-passing layers
    n_radial: int = 16  # radial basis functions per filter
    radial_hidden: int = 32  # hidden width of every radial filter MLP
    readout_hidden: int = 32  # hidden width of the pointwise enhancement MLP (two hidden layers)
    point_cutoff: float = 5.0  # Bohr: grid points and atoms closer than this are joined
    atom_cutoff: float = 8.0  # Bohr: atoms closer than this exchange messages
    cusp_radius: float = 0.05  # Bohr: r0 of the point-atom radial basis (resolution near the nucleus)
    bond_radius: float = 1.0  # Bohr: r0 of the atom-atom radial basis
    max_atomic_number: int = 10  # species embedded (atomic numbers 1 .. this)
    tf_coefficient: float = 1.0  # lambda of the baseline lambda T_TF + mu T_vW
    vw_coefficient: float = 1.0 / 9.0  # mu of the baseline (1/9: gradient expansion; 1 with lambda 0: von Weizsaecker)

    @staticmethod
    def tiny() -> "KineticNetConfig":
        """Seconds on a CPU, for smoke tests."""
        return KineticNetConfig(channels=4, lmax=1, n_interactions=1, n_radial=6, radial_hidden=8, readout_hidden=8)


def local_invariants(rho, grad_rho):
    """Pointwise inputs of the enhancement: rho^(1/3) and s^2 / (1 + s^2), [n_points, 2] (dimensionless-ish).

    s = |grad rho| / (2 (3 pi^2)^(1/3) rho^(4/3)) is the reduced gradient; s^2 / (1 + s^2) maps it to [0, 1)
    (1 in the density tails and on padding points).
    """
    mask, safe = floored(rho)
    # s^2 / (1 + s^2) = sigmoid(ln s^2), in logarithms: rho^(8/3) underflows float32 in the density tails.
    log_s2 = jnp.log(jnp.sum(grad_rho**2, axis=-1) + _TINY) - np.log(_S2_SCALE) - (8.0 / 3.0) * jnp.log(safe)
    bounded = jnp.where(mask, jax.nn.sigmoid(log_s2), 1.0)
    return jnp.stack([jnp.where(mask, safe ** (1.0 / 3.0), 0.0), bounded], axis=-1)


class KineticNet(nn.Module):
    """Kinetic energy density on a grid (module docstring); build it with ``create_kineticnet``."""

    channels: int
    lmax: int
    n_interactions: int
    n_radial: int
    radial_hidden: int
    readout_hidden: int
    point_cutoff: float
    atom_cutoff: float
    cusp_radius: float
    bond_radius: float
    max_atomic_number: int
    tf_coefficient: float
    vw_coefficient: float

    @nn.compact
    def __call__(self, graph: MolecularGraph, rho, grad_rho):
        """t_i in Hartree/Bohr^3, [n_points].

        Args:
          graph: grid points, weights, atoms and edges (``nn.graph.build_graph``).
          rho: density at the points [n_points], electrons/Bohr^3; grad_rho: [n_points, 3].
        """
        irreps = irreps_up_to(self.channels, self.lmax)
        point = RadialSpec(self.radial_hidden, self.n_radial, self.point_cutoff, self.cusp_radius)
        bond = RadialSpec(self.radial_hidden, self.n_radial, self.atom_cutoff, self.bond_radius)
        projected = PointsToAtoms(self.channels, self.lmax, point, name="projection")(graph, graph.weights * rho)
        species = nn.Embed(self.max_atomic_number + 1, self.channels, name="species")(graph.species)
        h = e3nn.flax.Linear(irreps, name="embed")(
            e3nn.concatenate([projected, e3nn.IrrepsArray(f"{self.channels}x0e", species.astype(rho.dtype))]))
        for t in range(self.n_interactions):
            h = AtomInteraction(self.lmax, bond, name=f"interaction_{t}")(graph, h)
        context = AtomsToPoints(point, name="readout")(graph, h)  # [n_points, n_paths]
        x = jnp.concatenate([context, local_invariants(rho, grad_rho).astype(context.dtype)], axis=-1)
        for k in range(2):
            x = nn.silu(nn.Dense(self.readout_hidden, name=f"enhancement_{k}")(x))
        a, b = nn.Dense(2, kernel_init=nn.initializers.zeros, name="enhancement_out")(x).T  # [n_points] each
        return kinetic.tf_vw(rho, grad_rho, self.tf_coefficient + a, self.vw_coefficient + b)


def create_kineticnet(config: KineticNetConfig) -> KineticNet:
    """The KineticNet module for a config (the only place that reads ``KineticNetConfig``)."""
    return KineticNet(**dataclasses.asdict(config))


def kinetic_energy(module: KineticNet, params, graph: MolecularGraph, rho, grad_rho):
    """T = sum_i w_i t_i in Hartree (a pure function of parameters and density; jit, vmap and grad it)."""
    return jnp.sum(graph.weights * module.apply(params, graph, rho, grad_rho))


def functional(module: KineticNet, params, graph: MolecularGraph) -> jax.tree_util.Partial:
    """The learned kinetic energy density as a callable (rho [n], grad_rho [n, 3]) -> t [n] on a fixed grid.

    A ``jax.tree_util.Partial`` carrying the parameters and the graph, for ``ofdft.solve``; the grid of the
    graph must be the one the densities are sampled on (unpadded: ``ofdft`` integrates with its own weights).
    """
    return jax.tree_util.Partial(module.apply, params, graph)
