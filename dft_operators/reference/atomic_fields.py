"""The superposition of atomic densities and its Hartree potential at any points, from radial tables.

PySCF's atomic guess (``scf.atomic_guess``) is a sum of spherical free-atom densities: each atom's block of
the density matrix comes from a spin- and occupation-averaged atomic HF in the level's basis. So
rho_atoms(r) = s sum_a rho_Z(|r - R_a|) and v_atoms(r) = s sum_a v_Z(|r - R_a|), with one radial table per
element and level (``s`` scales an ion's sum to its electron count, as ``atomic_guess`` does). The potential
of a spherical density is a 1-D integral,

  v_Z(r) = q_Z(r) / r + int_r^inf 4 pi r' rho_Z(r') dr',   q_Z(r) = int_0^r 4 pi r'^2 rho_Z(r') dr',

so the Coulomb matrix of the atomic guess becomes a quadrature of v_atoms, without PySCF's four-centre
integrals (seconds on a molecule of 20 atoms), and the density on a box an interpolation, without basis
functions. 
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pyscf
from pyscf import dft

from dft_operators import cache
from dft_operators.molecule import Molecule, free_atom
from dft_operators.reference.level import Level, build_mole, level_electrons
from dft_operators.reference.scf import atomic_guess

# Radii of the tables (Bohr), evenly spaced in ln r: beyond the outermost, rho = 0 and v = N / r. 16000 keep
# the trapezoidal integrals and the linear interpolation to ~1e-7 relative.
_RADII = np.geomspace(1e-6, 40.0, 16000)
_LOG_STEP = np.log(_RADII[1] / _RADII[0])
# Directions averaged over (the atomic HF densities are spherical; the average makes sure).
_DIRECTIONS = np.eye(3)


@functools.lru_cache(maxsize=64)
def _radial_table(number: int, level: Level) -> dict[str, np.ndarray | float]:
    """The free atom of atomic number ``number`` at ``level`` on ``_RADII``: {"rho", "drho" (d rho / dr),
    "v" (its Hartree potential), "electrons" (int rho)}; kept in the user cache (an atomic HF and 48000
    basis-function values: 0.2-0.3 s an element, every cold start)."""
    key = f"{number}-{level.basis}-{level.pseudo}-{pyscf.__version__}-{len(_RADII)}".replace("/", "_")
    path = os.path.join(cache.cache_dir(), "atomic_tables", f"{key}.npz")
    if os.path.exists(path):
        try:
            with np.load(path) as stored:
                return {k: stored[k] if stored[k].ndim else float(stored[k]) for k in stored.files}
        except (OSError, ValueError, KeyError):  # a damaged file: compute again
            pass
    table = _compute_table(number, level)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **table)
        os.replace(tmp, path)
    except OSError:  # a read-only cache costs time, not correctness
        pass
    return table


def _compute_table(number: int, level: Level) -> dict[str, np.ndarray | float]:
    atom = free_atom(number)
    mol = build_mole(atom, level)
    points = (_RADII[:, None, None] * _DIRECTIONS[None]).reshape(-1, 3)
    ao = dft.numint.eval_ao(mol, points)
    rho = dft.numint.eval_rho(mol, ao, atomic_guess(atom, level).dm).reshape(len(_RADII), -1).mean(axis=1)
    inner = _cumulative(4 * np.pi * _RADII**2 * rho)  # q(r)
    outer = _cumulative((4 * np.pi * _RADII * rho)[::-1], _RADII[::-1])[::-1]  # -int_r^inf 4 pi r' rho dr'
    return {"rho": rho, "drho": np.gradient(rho, _RADII), "v": inner / _RADII - outer, "electrons": inner[-1]}


def _cumulative(values: np.ndarray, radii: np.ndarray = _RADII) -> np.ndarray:
    """Trapezoidal running integral of ``values`` over ``radii`` (negative when the radii decrease)."""
    return np.concatenate([[0.0], np.cumsum(0.5 * (values[1:] + values[:-1]) * np.diff(radii))])


class AtomicFields:
    """rho_atoms, its gradient and v_atoms of a molecule at points (Bohr), from per-element radial tables."""

    def __init__(self, molecule: Molecule, level: Level):
        self.positions = molecule.positions
        self.tables = [_radial_table(int(z), level) for z in molecule.numbers]
        self.scale = level_electrons(molecule, level) / sum(t["electrons"] for t in self.tables)

    def at(self, points: np.ndarray, fields=("rho", "v")) -> dict[str, np.ndarray]:
        """Some of {"rho": rho_atoms [n] (electrons/Bohr^3), "v": v_atoms = int rho_atoms(r') / |r - r'| dr' [n]
        (Hartree), "grad": grad rho_atoms [n, 3]} at points [n, 3]: those named in ``fields``."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = {name: np.zeros(points.shape if name == "grad" else len(points)) for name in fields}
        for position, table in zip(self.positions, self.tables):
            offset = points - position
            r = np.maximum(np.linalg.norm(offset, axis=1), _RADII[0])
            u = np.log(r / _RADII[0]) / _LOG_STEP  # fractional index in the table
            inside = u < len(_RADII) - 1
            i = np.minimum(u.astype(np.int64), len(_RADII) - 2)
            f = u - i

            def lookup(values):
                return np.where(inside, values[i] * (1 - f) + values[i + 1] * f, 0.0)

            if "rho" in out:
                out["rho"] += lookup(table["rho"])
            if "v" in out:
                out["v"] += np.where(inside, lookup(table["v"]), table["electrons"] / r)
            if "grad" in out:
                out["grad"] += (lookup(table["drho"]) / r)[:, None] * offset
        return {k: self.scale * v for k, v in out.items()}

    def density(self, points: np.ndarray) -> np.ndarray:
        """rho_atoms at points [n, 3], [n] electrons/Bohr^3."""
        return self.at(points, ("rho",))["rho"]


def atomic_density_on_box(molecule: Molecule, level: Level, grid) -> np.ndarray:
    """rho_atoms (PySCF's atomic guess) on a ``UniformGrid``, [nx, ny, nz] electrons/Bohr^3."""
    return AtomicFields(molecule, level).density(grid.points()).reshape(grid.shape)
