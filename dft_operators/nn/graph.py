"""The graph of a molecular quadrature grid: grid points, atoms, point-atom and atom-atom edges within cutoffs.

Point data is ``[n_points, ...]``, atom data ``[n_atoms, ...]``; an edge list names its two ends by index.
Every array is padded to a fixed size so that jit compiles one shape for many molecules (STYLE 5):
padding points sit far away with weight 0, padding atoms have species 0, padding edges have mask False
and point at index 0. The number of point-atom edges is the number of (point, atom) pairs closer than the
cutoff, so a model built on it costs O(n_points x neighbouring atoms), never O(n_points^2).
"""

from __future__ import annotations

import flax
import jax
import numpy as np

from dft_operators.grids import FAR, QuadratureGrid


@flax.struct.dataclass
class MolecularGraph:
    """A quadrature grid around a molecule, with edges.

    Attributes:
      points: [n_points, 3] Bohr; weights: [n_points] Bohr^3 (0 on padding).
      atom_positions: [n_atoms, 3] Bohr; species: [n_atoms] atomic numbers (0 on padding).
      edge_point, edge_atom: [n_edges] indices of each point-atom pair; edge_mask: [n_edges] bool.
      bond_sender, bond_receiver: [n_bonds] atom indices (both directions listed); bond_mask: [n_bonds].
    """

    points: jax.Array
    weights: jax.Array
    atom_positions: jax.Array
    species: jax.Array
    edge_point: jax.Array
    edge_atom: jax.Array
    edge_mask: jax.Array
    bond_sender: jax.Array
    bond_receiver: jax.Array
    bond_mask: jax.Array


def _pad(array: np.ndarray, size: int, value) -> np.ndarray:
    if len(array) > size:
        raise ValueError(f"cannot pad {len(array)} items to {size}")
    pad = np.full((size - len(array),) + array.shape[1:], value, dtype=array.dtype)
    return np.concatenate([array, pad])


def _pairs(a: np.ndarray, b: np.ndarray, cutoff: float, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) with |a_i - b_j| < cutoff, scanning ``a`` in blocks."""
    out_i, out_j = [], []
    for start in range(0, len(a), block):
        d = np.linalg.norm(a[start:start + block, None] - b[None], axis=-1)  # [block, len(b)]
        i, j = np.nonzero(d < cutoff)
        out_i.append(i + start)
        out_j.append(j)
    return np.concatenate(out_i), np.concatenate(out_j)


def graph_sizes(points: np.ndarray, positions: np.ndarray, point_cutoff: float,
                atom_cutoff: float) -> dict[str, int]:
    """Unpadded sizes {"n_points", "n_atoms", "n_edges", "n_bonds"} of a graph (for choosing a padding)."""
    edges = _pairs(points, positions, point_cutoff)[0]
    i, j = _pairs(positions, positions, atom_cutoff)
    return {"n_points": len(points), "n_atoms": len(positions), "n_edges": len(edges), "n_bonds": int((i != j).sum())}


def build_graph(points, weights, numbers, positions, point_cutoff: float, atom_cutoff: float,
                sizes: dict[str, int] | None = None) -> MolecularGraph:
    """The graph of a grid and a molecule, as NumPy arrays (float32 positions), padded to ``sizes``.

    Args:
      points: [n, 3] Bohr; weights: [n] Bohr^3; numbers: atomic numbers [n_atoms]; positions: [n_atoms, 3] Bohr.
      point_cutoff: points and atoms closer than this (Bohr) are joined.
      atom_cutoff: atoms closer than this (Bohr) exchange messages.
      sizes: padded sizes (``graph_sizes`` keys), at least the real ones; default no padding.
    """
    points, positions = np.asarray(points, np.float64), np.asarray(positions, np.float64)
    real = graph_sizes(points, positions, point_cutoff, atom_cutoff)
    sizes = real if sizes is None else sizes
    edge_point, edge_atom = _pairs(points, positions, point_cutoff)
    sender, receiver = _pairs(positions, positions, atom_cutoff)
    keep = sender != receiver
    sender, receiver = sender[keep], receiver[keep]
    far_atoms = -FAR * (1.0 + np.arange(sizes["n_atoms"] - real["n_atoms"]))[:, None] * np.ones(3)
    grid = QuadratureGrid(points, np.asarray(weights, np.float64)).padded(sizes["n_points"])
    return MolecularGraph(
        points=grid.points.astype(np.float32),
        weights=grid.weights.astype(np.float32),
        atom_positions=np.concatenate([positions, far_atoms]).astype(np.float32),
        species=_pad(np.asarray(numbers, np.int32), sizes["n_atoms"], 0),
        edge_point=_pad(edge_point.astype(np.int32), sizes["n_edges"], 0),
        edge_atom=_pad(edge_atom.astype(np.int32), sizes["n_edges"], 0),
        edge_mask=_pad(np.ones(len(edge_point), bool), sizes["n_edges"], False),
        bond_sender=_pad(sender.astype(np.int32), sizes["n_bonds"], 0),
        bond_receiver=_pad(receiver.astype(np.int32), sizes["n_bonds"], 0),
        bond_mask=_pad(np.ones(len(sender), bool), sizes["n_bonds"], False))


@flax.struct.dataclass
class AtomGraph:
    """The atoms of a molecule, every ordered pair of real atoms an edge (the radial envelope of each
    filter makes interactions local); the ``bond_*`` and ``atom_*`` fields mean what they mean in
    ``MolecularGraph``, so atom-to-atom layers accept either graph.

    Attributes:
      atom_positions: [n_atoms, 3] Bohr; species: [n_atoms] atomic numbers (0 on padding).
      bond_sender, bond_receiver: [n_atoms (n_atoms - 1)] atom indices; bond_mask: both ends real.
    """

    atom_positions: jax.Array
    species: jax.Array
    bond_sender: jax.Array
    bond_receiver: jax.Array
    bond_mask: jax.Array


def build_atom_graph(numbers, positions, n_atoms: int | None = None) -> AtomGraph:
    """The ``AtomGraph`` of a molecule padded to ``n_atoms`` (default: no padding); float32 positions.

    Padding atoms sit far apart (beyond any cutoff) with species 0; the edges are the same for every
    molecule with the same padded size, so one compiled function serves all of them (and all steps of a
    molecular-dynamics run).
    """
    numbers, positions = np.asarray(numbers), np.asarray(positions, np.float64)
    n_real = len(numbers)
    n_atoms = n_real if n_atoms is None else n_atoms
    if n_atoms < n_real:
        raise ValueError(f"cannot pad {n_real} atoms to {n_atoms}")
    sender, receiver = np.nonzero(~np.eye(n_atoms, dtype=bool))
    far_atoms = -FAR * (1.0 + np.arange(n_atoms - n_real))[:, None] * np.ones(3)
    return AtomGraph(atom_positions=np.concatenate([positions, far_atoms]).astype(np.float32),
                     species=_pad(numbers.astype(np.int32), n_atoms, 0),
                     bond_sender=sender.astype(np.int32), bond_receiver=receiver.astype(np.int32),
                     bond_mask=(sender < n_real) & (receiver < n_real))
