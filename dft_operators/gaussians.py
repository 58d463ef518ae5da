"""Atom-centred contracted Gaussian functions in PySCF's (libcint's) convention, evaluated in NumPy.

A basis is a list of shells; shell s of angular momentum l on atom a, with exponents alpha_p and (normalised)
contraction coefficients d_pk, holds n_ctr * (2l + 1) functions

    chi_{k,m}(r) = R_k(|r - R_a|^2) S_lm(r - R_a),   R_k(u) = sum_p d_pk exp(-alpha_p u),

with S_lm(x) = |x|^l Y_lm(x / |x|) the real solid harmonics of the real spherical harmonics Y_lm that are
orthonormal on the unit sphere (no Condon-Shortley phase), in PySCF's order: p as (x, y, z), l >= 2 as
m = -l .. l. The d_pk are PySCF's internal (libcint) coefficients, which include the radial normalisation,
so every function is normalised as PySCF's are. The shells come from the reference layer
(``reference.level.shell_arrays``) and are stored with the data, so that training evaluates densities and
basis functions on stored grids without PySCF; tests check the values and gradients against PySCF's
``eval_ao``.

Host-side NumPy in float64 (data preparation and evaluation), not traced by JAX, and importing neither JAX nor
PySCF, so that the reference layer and training can both use it.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

# Points evaluated at once (bounds the [n_points, n_functions] temporaries of ``values``).
_BLOCK_POINTS = 8192


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianBasis:
    """Contracted spherical Gaussian shells on the atoms of one molecule, as stored in a dataset record.

    Attributes:
      shells: int [n_shells, 4]: atom index, l, n_prim, n_ctr of each shell, in PySCF's shell order.
      exponents: [sum n_prim] alpha_p in 1/Bohr^2, shell after shell.
      contractions: [sum n_prim * n_ctr] d_pk, shell after shell, each [n_prim, n_ctr] row-major.
    """

    shells: np.ndarray
    exponents: np.ndarray
    contractions: np.ndarray

    FIELDS = ("shells", "exponents", "contractions")  # array names in a record, after a prefix

    @staticmethod
    def from_arrays(arrays: dict, prefix: str) -> "GaussianBasis":
        """From the ``{prefix}shells``, ``{prefix}exponents`` and ``{prefix}contractions`` arrays of a record."""
        return GaussianBasis(np.asarray(arrays[f"{prefix}shells"], np.int64).reshape(-1, 4),
                             np.asarray(arrays[f"{prefix}exponents"], np.float64),
                             np.asarray(arrays[f"{prefix}contractions"], np.float64))

    def as_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The three arrays, named ``{prefix}shells`` etc. (``from_arrays`` reads them back)."""
        return {f"{prefix}{name}": getattr(self, name) for name in self.FIELDS}

    def _blocks(self):
        """(atom, l, exponents [n_prim], contractions [n_prim, n_ctr]) per shell."""
        e = c = 0
        for atom, l, n_prim, n_ctr in self.shells:
            yield int(atom), int(l), self.exponents[e:e + n_prim], self.contractions[c:c + n_prim * n_ctr].reshape(
                n_prim, n_ctr)
            e, c = e + n_prim, c + n_prim * n_ctr

    @property
    def n_functions(self) -> int:
        return int(sum(n_ctr * (2 * l + 1) for _, l, _, n_ctr in self.shells))

    def function_atoms(self) -> np.ndarray:
        """Atom index of every function, int [n_functions]."""
        return np.concatenate([np.full(n_ctr * (2 * l + 1), atom) for atom, l, _, n_ctr in self.shells])

    def function_ls(self) -> np.ndarray:
        """Angular momentum of every function, int [n_functions]."""
        return np.concatenate([np.full(n_ctr * (2 * l + 1), l) for _, l, _, n_ctr in self.shells])

    def shell_ls(self, atom: int) -> np.ndarray:
        """l of every shell of one atom, contractions expanded (one entry per n_ctr), int [n]."""
        return np.array([l for a, l, _, n_ctr in self.shells if a == atom for _ in range(n_ctr)], np.int64)


def _polynomial_product(p: dict, q: dict) -> dict:
    out: dict = {}
    for (a, b, c), x in p.items():
        for (d, e, f), y in q.items():
            key = (a + d, b + e, c + f)
            out[key] = out.get(key, 0.0) + x * y
    return out


@functools.lru_cache(maxsize=16)
def solid_harmonics(l: int) -> tuple[np.ndarray, np.ndarray]:
    """The real solid harmonics S_lm of degree l as polynomials, in PySCF's order and normalisation.

    S_lm = sqrt((2l+1)/4pi) sqrt((2 - delta_m0) (l-|m|)!/(l+|m|)!) Pi_l^|m|(z, r) {Re, Im}(x + iy)^|m|
    (Re for m >= 0, Im for m < 0), Pi_l^m = sum_k (-1)^k 2^-l C(l,k) C(2l-2k,l) (l-2k)!/(l-2k-m)! r^2k z^(l-2k-m)
    (the solid form of the associated Legendre function, without the Condon-Shortley phase).

    Returns:
      powers int [n_mono, 3] (exponents of x, y, z; all sum to l) and coefficients [n_mono, 2l + 1], so that
      S(x) = prod(x ** powers, axis=-1) @ coefficients.
    """
    columns = {}
    for m in range(-l, l + 1):
        am = abs(m)
        xy = {}  # Re or Im of (x + iy)^|m|
        for p in range(am + 1):
            power = am - p  # of iy
            if (power % 2 == 0) == (m >= 0):
                sign = (-1) ** (power // 2)
                xy[(p, power, 0)] = xy.get((p, power, 0), 0.0) + math.comb(am, p) * sign
        legendre = {}
        for k in range((l - am) // 2 + 1):
            factor = ((-1) ** k * 2.0**-l * math.comb(l, k) * math.comb(2 * l - 2 * k, l)
                      * math.factorial(l - 2 * k) / math.factorial(l - 2 * k - am))
            r2k = {(0, 0, 0): 1.0}
            for _ in range(k):
                r2k = _polynomial_product(r2k, {(2, 0, 0): 1.0, (0, 2, 0): 1.0, (0, 0, 2): 1.0})
            for key, value in _polynomial_product(r2k, {(0, 0, l - 2 * k - am): 1.0}).items():
                legendre[key] = legendre.get(key, 0.0) + factor * value
        norm = math.sqrt((2 * l + 1) / (4 * math.pi) * (2 - (m == 0)) * math.factorial(l - am)
                         / math.factorial(l + am))
        columns[m] = {key: norm * v for key, v in _polynomial_product(legendre, xy).items()}
    order = (1, -1, 0) if l == 1 else range(-l, l + 1)
    powers = sorted({key for col in columns.values() for key in col}, reverse=True)
    coefficients = np.array([[columns[m].get(key, 0.0) for m in order] for key in powers]).reshape(len(powers), -1)
    powers = np.array(powers, np.int64).reshape(-1, 3)
    powers.setflags(write=False), coefficients.setflags(write=False)  # cached: shared by every caller
    return powers, coefficients


def _monomials(x: np.ndarray, powers: np.ndarray, deriv: int):
    """x^a y^b z^c at displacements x [n, 3] -> [n, n_mono]; with deriv=1 also the gradients [n, n_mono, 3]."""
    lmax = int(powers.max(initial=0))
    pw = np.empty((len(x), lmax + 1, 3))  # [n, lmax + 1, 3]: x_i^k, by products (pow is ~20x slower)
    pw[:, 0] = 1.0
    for k in range(1, lmax + 1):
        pw[:, k] = pw[:, k - 1] * x
    parts = pw[:, powers, np.arange(3)]  # [n, n_mono, 3]: x^a, y^b, z^c
    values = parts.prod(-1)
    if not deriv:
        return values, None
    gradients = np.empty(values.shape + (3,))
    for i in range(3):
        lower = np.maximum(powers[:, i] - 1, 0)
        d = powers[:, i] * pw[:, lower, i]  # d/dx_i x_i^k = k x_i^(k-1)
        others = [j for j in range(3) if j != i]
        gradients[..., i] = d * parts[..., others[0]] * parts[..., others[1]]
    return values, gradients


def _groups(basis: GaussianBasis) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """The shells gathered by (atom, l): (atom, l, exponents [P], block-diagonal contractions [P, C], the columns
    [C (2l + 1)] of their functions, contraction-major as in PySCF), so that ``values`` runs one exponential and
    one set of solid harmonics per group rather than per shell."""
    gathered: dict = {}
    column = 0
    for atom, l, alpha, d in basis._blocks():
        width = d.shape[1] * (2 * l + 1)
        gathered.setdefault((atom, l), []).append((alpha, d, np.arange(column, column + width)))
        column += width
    out = []
    for (atom, l), shells in gathered.items():
        alphas = np.concatenate([a for a, _, _ in shells])
        d = np.zeros((len(alphas), sum(x.shape[1] for _, x, _ in shells)))
        row = col = 0
        for a, x, _ in shells:
            d[row:row + len(a), col:col + x.shape[1]] = x
            row, col = row + len(a), col + x.shape[1]
        out.append((atom, l, alphas, d, np.concatenate([c for _, _, c in shells])))
    return out


def _on_points(basis: GaussianBasis, centres, points: np.ndarray):
    """Yields, block of points by block and (atom, l) group of shells by group: (block slice, x [b, 3] from the
    atom, |x|^2 [b], l, exponents, contraction matrix, the group's function columns)."""
    centres = np.asarray(centres, np.float64)
    groups = _groups(basis)
    for i in range(0, len(points), _BLOCK_POINTS):
        block = slice(i, i + _BLOCK_POINTS)
        displacements = {}
        for atom, l, alpha, d, columns in groups:
            if atom not in displacements:
                x = points[block] - centres[atom]  # [b, 3]
                displacements[atom] = (x, np.einsum("px,px->p", x, x))
            yield (block, *displacements[atom], l, alpha, d, columns)


def values(basis: GaussianBasis, centres: np.ndarray, points: np.ndarray, deriv: int = 0):
    """The basis functions at points (PySCF's ``eval_ao``).

    Args:
      basis: the shells; centres: [n_atoms, 3] Bohr, indexed by the shells' atom; points: [n, 3] Bohr.
      deriv: 0 for values, 1 for values and gradients.
    Returns:
      values [n, n_functions] (Bohr^-3/2 for normalised functions); with deriv=1 also gradients
      [n, n_functions, 3] (Bohr^-5/2).
    """
    points = np.asarray(points, np.float64)
    centres = np.asarray(centres, np.float64)
    out = np.empty((len(points), basis.n_functions))
    grads = np.empty((len(points), basis.n_functions, 3)) if deriv else None
    for block, x, r2, l, alpha, d, columns in _on_points(basis, centres, points):
        gauss = np.exp(-np.multiply.outer(r2, alpha))  # [b, P]
        radial = gauss @ d  # [b, C]
        powers, c2s = solid_harmonics(l)
        mono, mono_grad = _monomials(x, powers, deriv)
        solid = mono @ c2s  # [b, 2l + 1]
        width = len(columns)
        out[block, columns] = (radial[:, :, None] * solid[:, None, :]).reshape(len(x), width)
        if deriv:
            radial_slope = -2.0 * (gauss * alpha) @ d  # dR/dr^2 * 2, [b, C]
            solid_grad = np.einsum("pmx,ms->psx", mono_grad, c2s)  # [b, 2l + 1, 3]
            g = (radial[:, :, None, None] * solid_grad[:, None]
                 + radial_slope[:, :, None, None] * solid[:, None, :, None] * x[:, None, None, :])
            grads[block, columns] = g.reshape(len(x), width, 3)
    return (out, grads) if deriv else out


def expand(basis: GaussianBasis, centres: np.ndarray, points: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """sum_P c_P chi_P(r) at points, without forming the [n, n_functions] values (what a density in the basis
    costs to evaluate: one small matrix product per (atom, l) group of shells).

    Args:
      basis, centres, points: as for ``values``; coefficients: [n_functions] or [n_functions, k] (k expansions).
    Returns:
      [n] or [n, k].
    """
    points = np.asarray(points, np.float64)
    c = np.asarray(coefficients, np.float64)
    k = 1 if c.ndim == 1 else c.shape[1]
    c = c.reshape(basis.n_functions, k)
    out = np.zeros((len(points), k))
    for block, x, r2, l, alpha, d, columns in _on_points(basis, centres, points):
        radial = np.exp(-np.multiply.outer(r2, alpha)) @ d  # [b, C]
        powers, c2s = solid_harmonics(l)
        solid = _monomials(x, powers, 0)[0] @ c2s  # [b, 2l + 1]
        weights = c[columns].reshape(d.shape[1], (2 * l + 1) * k)  # [C, (2l + 1) k], contraction-major
        out[block] += np.einsum("bmk,bm->bk", (radial @ weights).reshape(len(x), 2 * l + 1, k), solid)
    return out[:, 0] if np.ndim(coefficients) == 1 else out


def integrals(basis: GaussianBasis) -> np.ndarray:
    """int chi dr of every function, [n_functions] (Bohr^3 times the function's unit; zero unless l = 0):
    for s, Y_00 = 1/sqrt(4 pi) and int exp(-alpha r^2) dr = (pi/alpha)^(3/2)."""
    out = []
    for _, l, alpha, d in basis._blocks():
        width = d.shape[1] * (2 * l + 1)
        out.append(((np.pi / alpha) ** 1.5 @ d) / np.sqrt(4 * np.pi) if l == 0 else np.zeros(width))
    return np.concatenate(out)


def first_moments(basis: GaussianBasis) -> np.ndarray:
    """int (r - R_atom) chi dr of every function, [n_functions, 3] (zero unless l = 1): for p_x = sqrt(3/4pi) x R,
    int x^2 exp(-alpha r^2) dr = (pi/alpha)^(3/2) / (2 alpha), along x only."""
    out = []
    for _, l, alpha, d in basis._blocks():
        block = np.zeros((d.shape[1] * (2 * l + 1), 3))
        if l == 1:
            moment = np.sqrt(3 / (4 * np.pi)) * ((np.pi / alpha) ** 1.5 / (2 * alpha)) @ d  # [n_ctr]
            block[:] = np.kron(moment[:, None], np.eye(3))
        out.append(block)
    return np.concatenate(out)


def gto_norm(l: int, alpha: float) -> float:
    """PySCF's radial normalisation of a primitive r^l exp(-alpha r^2): 1 / sqrt(int_0^inf r^(2l+2) exp(-2 alpha
    r^2) dr)."""
    n = 2 * l + 2
    return 1.0 / math.sqrt(math.gamma((n + 1) / 2) / (2 * (2 * alpha) ** ((n + 1) / 2)))


def angular_functions(l: int, directions: np.ndarray) -> np.ndarray:
    """PySCF's real angular functions of one shell of angular momentum l at unit vectors, [n, 2l + 1]: the
    values of PySCF's normalised Gaussian of exponent 1 there (``reference.density_basis.angular_functions``
    without PySCF), gto_norm(l, 1) exp(-1) S_lm(u)."""
    powers, c2s = solid_harmonics(l)
    mono, _ = _monomials(np.asarray(directions, np.float64), powers, 0)
    return gto_norm(l, 1.0) * math.exp(-1.0) * (mono @ c2s)
