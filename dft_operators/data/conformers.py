"""Seeded conformer sampling and augmentation of geometries (Bohr): displacements, strains, rotations."""

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


def sample_conformer(molecule: Molecule, rng: np.random.Generator, displacement: float = 0.1,
                     rotate: bool = True, name: str | None = None, strain: float = 0.0) -> Molecule:
    """A perturbed copy, about the centroid, which stays where it was: Gaussian displacement of each atom
    (std ``displacement`` Bohr), then a random symmetric strain (``random_strain`` with std ``strain``; none
    when 0), then, if ``rotate``, a random rotation. With ``strain`` 0 the random stream is that of the
    sampler without strains, so earlier datasets regenerate identically."""
    centre = molecule.positions.mean(0)
    positions = molecule.positions - centre + rng.normal(scale=displacement, size=molecule.positions.shape)
    if strain > 0:
        positions = positions @ (np.eye(3) + random_strain(rng, strain))  # eps is symmetric: no transpose
    if rotate:
        positions = positions @ random_rotation(rng).T
    return molecule.with_positions(positions + centre, name=name)
