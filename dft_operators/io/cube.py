"""Gaussian cube files (Bohr, as the format says), readable by VMD, Avogadro and PySCF.

Layout: two comment lines; the atom count and the origin; for each axis the point count and the step
vector; one line per atom (Z, charge, x, y, z); then the values with z fastest, six per line.
"""

from __future__ import annotations

import os

import numpy as np

from dft_operators.grids import UniformGrid
from dft_operators.molecule import Molecule, MoleculeError


class CubeError(ValueError):
    """A cube file that cannot be read or a field that does not match its grid."""


def write_cube(path: str | os.PathLike, grid: UniformGrid, values: np.ndarray, molecule: Molecule,
               comment: str = "density (electrons/Bohr^3)") -> None:
    """Writes ``values`` [nx, ny, nz] on ``grid`` with the molecule's atoms (Bohr)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != grid.shape:
        raise CubeError(f"field of shape {values.shape} does not match the grid {grid.shape}")
    lines = ["dft_operators cube", comment.replace("\n", " "),
             f"{molecule.n_atoms:5d} {grid.origin[0]:14.8f} {grid.origin[1]:14.8f} {grid.origin[2]:14.8f}"]
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = grid.spacing
        lines.append(f"{grid.shape[axis]:5d} {step[0]:14.8f} {step[1]:14.8f} {step[2]:14.8f}")
    for z, r in zip(molecule.numbers, molecule.positions):
        lines.append(f"{z:5d} {float(z):14.8f} {r[0]:14.8f} {r[1]:14.8f} {r[2]:14.8f}")
    flat = values.reshape(-1, values.shape[-1])
    body = []
    for row in flat:  # one (x, y) line of z values, wrapped at six
        for k in range(0, row.size, 6):
            body.append(" ".join(f"{v:13.5E}" for v in row[k:k + 6]))
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines + body) + "\n")
    os.replace(tmp, path)


def read_cube(path: str | os.PathLike) -> tuple[UniformGrid, np.ndarray, Molecule]:
    """Reads a cube file with an axis-aligned cubic voxel: (grid, values [nx, ny, nz], molecule)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
        n_atoms, *origin = lines[2].split()[:4]
        n_atoms = int(n_atoms)
        axes = [lines[3 + k].split() for k in range(3)]
        shape = tuple(int(a[0]) for a in axes)
        steps = np.array([[float(x) for x in a[1:4]] for a in axes])
        atoms = np.array([[float(x) for x in lines[6 + k].split()[:5]] for k in range(abs(n_atoms))])
        values = np.array(" ".join(lines[6 + abs(n_atoms):]).split(), dtype=np.float64)
    except (OSError, IndexError, ValueError) as err:
        raise CubeError(f"cannot read cube file {path}: {err}") from None
    if n_atoms < 0 or min(shape) <= 0:
        raise CubeError(f"{path}: only density cubes in Bohr (positive counts) are supported")
    spacing = steps[0, 0]
    if not np.allclose(steps, np.eye(3) * spacing):
        raise CubeError(f"{path}: only axis-aligned cubic voxels are supported, got steps {steps.tolist()}")
    if values.size != np.prod(shape):
        raise CubeError(f"{path}: expected {int(np.prod(shape))} values, found {values.size}")
    try:
        numbers = atoms[:, 0].astype(int)
        molecule = Molecule(numbers, atoms[:, 2:5], spin=int(numbers.sum()) % 2, name=os.path.basename(str(path)))
    except MoleculeError as err:
        raise CubeError(f"{path}: bad atom block: {err}") from None
    grid = UniformGrid(tuple(float(x) for x in origin), spacing, shape)
    return grid, values.reshape(shape), molecule
