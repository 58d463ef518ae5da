"""Seeded conformer sampling and rigid-body augmentation of geometries (Bohr)."""

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


def sample_conformer(molecule: Molecule, rng: np.random.Generator, displacement: float = 0.1,
                     rotate: bool = True, name: str | None = None) -> Molecule:
    """A perturbed copy: Gaussian displacement of each atom (std ``displacement`` Bohr) and, if ``rotate``,
    a random rotation about the centroid; the centroid stays where it was."""
    centre = molecule.positions.mean(0)
    positions = molecule.positions - centre + rng.normal(scale=displacement, size=molecule.positions.shape)
    if rotate:
        positions = positions @ random_rotation(rng).T
    return molecule.with_positions(positions + centre, name=name)
