"""Seeded conformer sampling and augmentation of geometries (Bohr): torsions, displacements, strains, rotations.

Random Cartesian displacements (0.1 Bohr) move a hydrogen of a methyl or hydroxyl group by ~5 degrees
about its bond, while at 300 K these soft torsions swing by 10-20 degrees (a methyl rotor of barrier 3
kcal/mol: sqrt(k_B T / (9 V3 / 2)) = 0.2 rad). ``torsion`` twists every rotatable bond by a random angle
of that size, so that the training geometries sample the torsional wells that molecular dynamics visits.
"""

from __future__ import annotations

import numpy as np

from dft_operators.molecule import Molecule


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed rotation matrix [3, 3] (QR of a Gaussian matrix, sign-fixed, det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_strain(rng: np.random.Generator, std: float) -> np.ndarray:
    """A random symmetric strain tensor eps [3, 3]: its six independent entries are normal with std ``std``.

    Positions strained about a centre c move as r -> c + (1 + eps)(r - c), a pure deformation (no rotation).
    """
    upper = np.triu(rng.normal(scale=std, size=(3, 3)))
    return upper + np.triu(upper, 1).T


def rotatable_bonds(molecule: Molecule) -> list[tuple[int, int, np.ndarray]]:
    """The bonds about which part of the molecule can twist: (i, j, moving [n_atoms] bool), one per bond
    outside rings with other neighbours on both atoms; ``moving`` is the smaller side (j's side when equal).
    Bonds are perceived from the geometry (RDKit ``DetermineConnectivity``, covalent radii)."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    rd = Chem.MolFromXYZBlock(molecule.to_xyz())
    rdDetermineBonds.DetermineConnectivity(rd)
    Chem.FastFindRings(rd)
    neighbours = [[n.GetIdx() for n in atom.GetNeighbors()] for atom in rd.GetAtoms()]
    out = []
    for bond in rd.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if bond.IsInRing() or len(neighbours[i]) < 2 or len(neighbours[j]) < 2:
            continue
        moving, stack = np.zeros(molecule.n_atoms, bool), [j]
        moving[j] = True
        while stack:  # j's side: what j reaches without crossing back to i
            for k in neighbours[stack.pop()]:
                if k != i and not moving[k]:
                    moving[k] = True
                    stack.append(k)
        if moving.sum() > molecule.n_atoms / 2:
            i, j, moving = j, i, ~moving
        out.append((i, j, moving))
    return out


def twist(positions: np.ndarray, bonds: list[tuple[int, int, np.ndarray]], angles: np.ndarray) -> np.ndarray:
    """Positions [n, 3] with each bond's moving side rotated by its angle (radians) about the bond axis,
    bond after bond (Rodrigues' formula); bond lengths and angles are kept."""
    positions = positions.copy()
    for (i, j, moving), angle in zip(bonds, angles):
        axis = positions[j] - positions[i]
        axis /= np.linalg.norm(axis)
        r = positions[moving] - positions[j]
        positions[moving] = positions[j] + (r * np.cos(angle) + np.cross(axis, r) * np.sin(angle)
                                            + np.outer(r @ axis, axis) * (1.0 - np.cos(angle)))
    return positions


def sample_conformer(molecule: Molecule, rng: np.random.Generator, displacement: float = 0.1,
                     rotate: bool = True, name: str | None = None, strain: float = 0.0,
                     torsion: float = 0.0) -> Molecule:
    """A perturbed copy, about the centroid, which stays where it was: each rotatable bond twisted by a
    normal random angle (std ``torsion`` degrees; none when 0), then a Gaussian displacement of each atom
    (std ``displacement`` Bohr), then a random symmetric strain (``random_strain`` with std ``strain``; none
    when 0), then, if ``rotate``, a random rotation. With ``strain`` and ``torsion`` 0 the random stream is
    that of the sampler without them, so earlier datasets regenerate identically."""
    positions = molecule.positions
    if torsion > 0:
        bonds = rotatable_bonds(molecule)
        positions = twist(positions, bonds, np.deg2rad(rng.normal(scale=torsion, size=len(bonds))))
    centre = positions.mean(0)
    positions = positions - centre + rng.normal(scale=displacement, size=positions.shape)
    if strain > 0:
        positions = positions @ (np.eye(3) + random_strain(rng, strain))  # eps is symmetric: no transpose
    if rotate:
        positions = positions @ random_rotation(rng).T
    return molecule.with_positions(positions + centre, name=name)
