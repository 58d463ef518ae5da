"""E(3)-equivariant point convolutions between a quadrature grid and the atoms of a molecule (e3nn-jax).

Three blocks, each a thin ``flax.linen`` module over private pure functions, on a ``graph.MolecularGraph``:

``PointsToAtoms`` (density projection): a scalar field f sampled at the grid points becomes atom-centred
features, one radial filter per channel c and angular momentum l,

    h_a^(c, l m) = sum_i w_i f(r_i) R_cl(|r_i - R_a|) Y_lm(r_i - R_a),

a quadrature of int f(r) R_cl(|r - R_a|) Y_lm(r - R_a) dr: the multipole moments of f about each atom on
a radial basis fine enough to resolve the nuclear cusp (``radial.log_gaussian_basis``).

``AtomInteraction`` (message passing, NequIP-style): m_ab = R(|r_ab|) (h_b (+) h_b (x) Y(r_ab)), summed over
neighbours b within the atom cutoff, then a linear map, an equivariant gate and a residual connection.

``AtomsToPoints`` (readout): invariant features at every grid point from the atoms around it,

    s_i^(p) = sum_a R_p(|r_i - R_a|) [h_a (x) Y(r_i - R_a)]_(0e, p),

one scalar per tensor-product path p that ends in l = 0 (h^l . Y^l for each l and channel).

Filters are MLPs of the radial basis times the smooth envelope, and vectors enter only through spherical
harmonics of relative positions, so every output is invariant (scalars) or equivariant under rotations,
reflections and translations of molecule and grid together. Costs are linear in the number of edges.
"""

from __future__ import annotations

import dataclasses

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

from dft_operators.nn import radial
from dft_operators.nn.graph import MolecularGraph


def irreps_up_to(channels: int, lmax: int) -> e3nn.Irreps:
    """``channels`` copies of each l = 0 .. lmax with the parity of a spherical harmonic: 0e + 1o + 2e + ..."""
    return e3nn.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])


def _edge_geometry(sources, targets, mask):
    """Relative vectors targets - sources [n_edges, 3] and their lengths [n_edges], safe on padding edges.

    Padding edges (mask False) get the unit vector z so that spherical harmonics stay finite there.
    """
    vec = jnp.where(mask[:, None], targets - sources, jnp.array([0.0, 0.0, 1.0], targets.dtype))
    return vec, jnp.linalg.norm(vec, axis=-1)


def _spherical_harmonics(lmax: int, vec) -> e3nn.IrrepsArray:
    """Y_l(vec / |vec|) for l = 0 .. lmax (component normalisation), [n_edges, (lmax + 1)^2]."""
    return e3nn.spherical_harmonics(list(range(lmax + 1)), e3nn.IrrepsArray("1o", vec), normalize=True)


@dataclasses.dataclass(frozen=True)
class RadialSpec:
    """The radial filters of a block: MLP width, basis functions, cutoff (Bohr), narrowest basis width (Bohr)."""

    hidden: int
    n_basis: int
    cutoff: float
    r0: float


class RadialFilter(nn.Module):
    """An MLP of the log-Gaussian radial basis times the envelope: [n_edges] distances -> [n_edges, features]."""

    features: int
    spec: RadialSpec

    @nn.compact
    def __call__(self, r, mask):
        spec = self.spec
        basis = radial.log_gaussian_basis(r, spec.cutoff, spec.n_basis, spec.r0)  # [n_edges, n_basis]
        h = nn.silu(nn.Dense(spec.hidden)(basis))
        scale = radial.envelope(r, spec.cutoff) * mask  # [n_edges]
        return nn.Dense(self.features)(h) * scale[:, None]  # [n_edges, features]


class PointsToAtoms(nn.Module):
    """Density projection onto atom-centred features (module docstring); channels x (0e + 1o + ... + lmax)."""

    channels: int
    lmax: int
    radial: RadialSpec

    @nn.compact
    def __call__(self, graph: MolecularGraph, field) -> e3nn.IrrepsArray:
        """field: values at the grid points times their weights, w_i f(r_i), [n_points]; returns [n_atoms, irreps]."""
        vec, r = _edge_geometry(graph.atom_positions[graph.edge_atom], graph.points[graph.edge_point],
                                graph.edge_mask)
        n_l = self.lmax + 1
        filters = RadialFilter(self.channels * n_l, self.radial)(r, graph.edge_mask)
        filters = filters.reshape(-1, n_l, self.channels) * field[graph.edge_point][:, None, None]  # [n_edges, L, C]
        sh = _spherical_harmonics(self.lmax, vec)  # [n_edges, (lmax+1)^2]
        chunks = [filters[:, l, :, None] * sh.chunks[l][:, 0, None, :] for l in range(n_l)]  # [n_edges, C, 2l+1]
        messages = e3nn.from_chunks(irreps_up_to(self.channels, self.lmax), chunks, (vec.shape[0],))
        return e3nn.scatter_sum(messages, dst=graph.edge_atom, output_size=graph.atom_positions.shape[0])


def _bond_messages(graph, h, lmax_sh: int, irreps_out, with_neighbour: bool, spec: RadialSpec) -> e3nn.IrrepsArray:
    """sum_b R(|r_ab|) m_b over the neighbours b of every atom a, m_b = [h_b (x) Y(r_ab)]_(irreps_out), with
    h_b itself prepended when ``with_neighbour``; one radial weight per irrep of m. Called inside a compact
    module's ``__call__`` (it creates that module's ``RadialFilter``). Returns [n_atoms, irreps of m]."""
    vec, r = _edge_geometry(graph.atom_positions[graph.bond_sender], graph.atom_positions[graph.bond_receiver],
                            graph.bond_mask)
    sh = _spherical_harmonics(lmax_sh, vec)
    neighbour = h[graph.bond_sender]  # [n_bonds, irreps]
    messages = e3nn.tensor_product(neighbour, sh, filter_ir_out=irreps_out)
    messages = (e3nn.concatenate([neighbour, messages]) if with_neighbour else messages).regroup()  # [n_bonds, irreps']
    mix = RadialFilter(messages.irreps.num_irreps, spec)(r, graph.bond_mask)  # [n_bonds, n_irreps]
    return e3nn.scatter_sum(messages * mix, dst=graph.bond_receiver, output_size=h.shape[0])


class AtomInteraction(nn.Module):
    """One residual message-passing layer between atoms (module docstring); keeps the irreps of its input."""

    lmax: int
    radial: RadialSpec

    @nn.compact
    def __call__(self, graph: MolecularGraph, h: e3nn.IrrepsArray) -> e3nn.IrrepsArray:
        summed = _bond_messages(graph, h, self.lmax, h.irreps, True, self.radial)  # [n_atoms, irreps']
        n_gates = sum(mul for mul, ir in h.irreps if ir.l > 0)
        gate_irreps = (e3nn.Irreps(f"{n_gates}x0e") + h.irreps).regroup()
        update = (e3nn.flax.Linear(gate_irreps, force_irreps_out=True, name="self")(h)
                  + e3nn.flax.Linear(gate_irreps, force_irreps_out=True, name="neighbours")(summed))
        return h + e3nn.flax.Linear(h.irreps, name="out")(e3nn.gate(update))


class AtomsToPoints(nn.Module):
    """Invariant features at the grid points from the atom features around them (module docstring)."""

    radial: RadialSpec

    @nn.compact
    def __call__(self, graph: MolecularGraph, h: e3nn.IrrepsArray) -> jax.Array:
        """h: atom features [n_atoms, irreps]; returns [n_points, n_paths] invariants (0 beyond the cutoff)."""
        vec, r = _edge_geometry(graph.atom_positions[graph.edge_atom], graph.points[graph.edge_point],
                                graph.edge_mask)
        lmax = max(ir.l for _, ir in h.irreps)
        sh = _spherical_harmonics(lmax, vec)
        paths = e3nn.tensor_product(h[graph.edge_atom], sh, filter_ir_out=["0e"])  # [n_edges, n_paths x 0e]
        filters = RadialFilter(paths.irreps.num_irreps, self.radial)(r, graph.edge_mask)  # [n_edges, n_paths]
        return jax.ops.segment_sum(paths.array * filters, graph.edge_point, num_segments=graph.points.shape[0])


class NeighbourTensorReadout(nn.Module):
    """Equivariant features of any irreps from the neighbours of each atom,

        o_a = sum_b R(|r_ab|) [W h_b (x) Y(r_ab)]_(irreps_out),

    with W a linear map to ``channels`` copies of each input l (it keeps the tensor product small) and
    spherical harmonics up to the highest l of ``irreps_out``, so outputs of higher l than the atom
    features (e.g. the f and g functions of a density basis) come from the geometry around the atom.
    """

    irreps_out: str
    channels: int
    radial: RadialSpec

    @nn.compact
    def __call__(self, graph, h: e3nn.IrrepsArray) -> e3nn.IrrepsArray:
        """graph: any graph with ``atom_positions`` and ``bond_*`` fields; h [n_atoms, irreps] -> [n_atoms, irreps_out]."""
        irreps_out = e3nn.Irreps(self.irreps_out)
        lmax_in = max(ir.l for _, ir in h.irreps)
        small = e3nn.flax.Linear(irreps_up_to(self.channels, lmax_in), name="compress")(h)  # [n_atoms, irreps_c]
        summed = _bond_messages(graph, small, irreps_out.lmax, irreps_out, False, self.radial)
        return e3nn.flax.Linear(irreps_out, force_irreps_out=True, name="out")(summed)
