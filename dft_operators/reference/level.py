"""The PySCF molecule a level of theory defines (the level itself is :mod:`dft_operators.level`).

This is the door to PySCF: the rest of ``reference`` builds its ``gto.Mole`` here, and every PySCF
failure to find a basis or pseudopotential becomes an :class:`SCFError` naming the element. ``Level``,
``ALL_ELECTRON``, ``SCFError`` and ``level_electrons`` are re-exported from :mod:`dft_operators.level`.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from pyscf import gto
from pyscf.df import addons as df_addons
from pyscf.lib.exceptions import BasisNotFoundError

from dft_operators.level import ALL_ELECTRON, Level, SCFError, level_electrons  # noqa: F401 (re-exported)
from dft_operators.molecule import Molecule
from dft_operators.gaussians import GaussianBasis


def _quiet(function, *args, **kwargs):
    """Calls a PySCF loader without its advice to install basis-set-exchange."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return function(*args, **kwargs)


@functools.lru_cache(maxsize=256)
def gth_parameters(pseudo: str, symbol: str) -> list:
    """PySCF's parsed GTH pseudopotential of one element.

    Returns:
      ``[[n_s, n_p, ...], r_loc, n_c, [C1, ..., C_nc], n_proj, projectors...]``: valence electrons per
      angular momentum, the local radius in Bohr and the local coefficients in Hartree.
    Raises:
      SCFError: the pseudopotential has no entry for the element.
    """
    try:
        return _quiet(gto.format_pseudo, {symbol: pseudo})[symbol]
    except (BasisNotFoundError, KeyError, RuntimeError) as err:
        raise SCFError(f"pseudopotential {pseudo!r} is not defined for element {symbol}") from err


def ion_charge(symbol: str, pseudo: str | None) -> int:
    """Charge of the ion core the level sees: Z for all-electron, the valence count with a pseudopotential."""
    if pseudo is None:
        return gto.charge(symbol)
    return int(sum(gth_parameters(pseudo, symbol)[0]))


ETB_PREFIX = "etb:"
ETB_BETA = 2.0  # ratio of successive exponents of the even-tempered auxiliary bases


@functools.lru_cache(maxsize=64)
def even_tempered_basis(orbital_basis: str, symbol: str) -> list:
    """PySCF's even-tempered auxiliary basis of one element (``df.addons.aug_etb``, exponents beta^n apart,
    ``ETB_BETA``) spanning the products of the orbital basis's functions, in PySCF's basis format.

    Ethanol's LDA/def2-svp density fits (Coulomb metric) to 0.56 % NMAE in etb:cc-pvdz (504 functions) and
    0.67 % in etb:def2-svp (507), against 0.96 % in def2-universal-jkfit (335), which lacks tight s functions
    at the cusps; for water etb:def2-svp is worse (1.02 % vs 0.82 %): choose per system.
    """
    z = gto.charge(symbol)
    atom = _quiet(gto.M, atom=[(symbol, (0.0, 0.0, 0.0))], basis=orbital_basis, spin=z % 2, verbose=0)
    return df_addons.aug_etb(atom, ETB_BETA)[symbol]


def _resolve(basis: str, symbols) -> str | dict:
    """A basis name as PySCF takes it: "etb:<orbital>" becomes {symbol: even-tempered basis}."""
    if not basis.startswith(ETB_PREFIX):
        return basis
    return {s: even_tempered_basis(basis[len(ETB_PREFIX):], s) for s in sorted(set(symbols))}


def _missing(molecule: Molecule, level: Level, basis: str) -> list[str]:
    """What the basis or pseudopotential tables lack for the molecule's elements, one phrase each."""
    problems = []
    name = basis.removeprefix(ETB_PREFIX)
    for symbol in sorted(set(molecule.symbols)):
        try:
            _quiet(gto.basis.load, name, symbol)
        except (BasisNotFoundError, KeyError, RuntimeError):
            problems.append(f"basis {name!r} is not defined for element {symbol}")
        if level.pseudo is not None:
            try:
                gth_parameters(level.pseudo, symbol)
            except SCFError as err:
                problems.append(str(err))
    return problems


def check_level(level: Level, symbols) -> None:
    """Fails at once, before any work, when the level cannot run these elements.

    Raises:
      SCFError: naming the option at fault: an unknown functional (``--xc``), or an orbital basis, GTH
        pseudopotential or auxiliary basis (``--basis``, ``--pseudo``, ``--aux-basis``) without an element.
    """
    from pyscf.dft import libxc

    try:
        libxc.parse_xc(level.xc)
    except (KeyError, ValueError) as err:
        raise SCFError(f"unknown exchange-correlation functional {level.xc!r} (--xc): give a libxc name such as "
                       f"lda,pw, pbe or b3lyp ({err})") from None
    problems = []
    for option, basis in (("--basis", level.basis), ("--aux-basis", level.aux_basis)):
        name = basis.removeprefix(ETB_PREFIX)
        for symbol in sorted(set(symbols)):
            try:
                _quiet(gto.basis.load, name, symbol)
            except (BasisNotFoundError, KeyError, RuntimeError):
                problems.append(f"{option} {basis!r} is not defined for element {symbol}")
                break
    for symbol in sorted(set(symbols)) if level.pseudo is not None else []:
        try:
            gth_parameters(level.pseudo, symbol)
        except SCFError:
            problems.append(f"--pseudo {level.pseudo!r} is not defined for element {symbol}")
            break
    if problems:
        raise SCFError("; ".join(problems))


def build_mole(molecule: Molecule, level: Level, basis: str | None = None) -> gto.Mole:
    """The PySCF molecule (Bohr, silent) for a molecule at a level of theory.

    Args:
      molecule: the molecule.
      level: the level; its pseudopotential, if any, is attached.
      basis: overrides ``level.basis`` (used for auxiliary bases; "etb:<orbital>" names as in ``Level``).
    Raises:
      SCFError: naming the element a basis or pseudopotential is missing for.
    """
    basis = level.basis if basis is None else basis
    atoms = [(int(z), tuple(float(x) for x in r)) for z, r in zip(molecule.numbers, molecule.positions)]
    try:
        return _quiet(gto.M, atom=atoms, basis=_resolve(basis, molecule.symbols), pseudo=level.pseudo, unit="Bohr",
                      charge=molecule.charge, spin=molecule.spin, verbose=0)
    except (BasisNotFoundError, KeyError, RuntimeError, ValueError) as err:
        problems = _missing(molecule, level, basis) or [str(err)]
        raise SCFError(f"{molecule.name}: cannot build the PySCF molecule: {'; '.join(problems)}") from err


def shell_arrays(mol: gto.Mole) -> GaussianBasis:
    """The shells of a PySCF molecule's basis as arrays (``gaussians.GaussianBasis``: atom, l, n_prim,
    n_ctr per shell; exponents; PySCF's internal, normalised contraction coefficients), so that its functions
    can be evaluated without PySCF, to rounding (spherical functions only)."""
    if mol.cart:
        raise ValueError("shell_arrays describes spherical basis functions; the molecule uses Cartesian ones")
    shells = np.array([[mol.bas_atom(i), mol.bas_angular(i), mol.bas_nprim(i), mol.bas_nctr(i)]
                       for i in range(mol.nbas)], dtype=np.int64).reshape(-1, 4)
    exponents = np.concatenate([mol.bas_exp(i) for i in range(mol.nbas)])
    # bas_ctr_coeff divides PySCF's radial normalisation out; libcint evaluates with it in.
    contractions = np.concatenate([(mol.bas_ctr_coeff(i) * gto.gto_norm(mol.bas_angular(i), mol.bas_exp(i))[:, None]
                                    ).ravel() for i in range(mol.nbas)])
    return GaussianBasis(shells, exponents, contractions)


def basis_shells(molecule: Molecule, level: Level, basis: str | None = None) -> GaussianBasis:
    """The shells of the level's orbital basis (or of ``basis``, e.g. ``level.aux_basis``) on a molecule, as
    arrays (``shell_arrays``)."""
    return shell_arrays(build_mole(molecule, level, basis))
