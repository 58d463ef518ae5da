"""The level of theory (functional, basis, pseudopotential, auxiliary basis) as data, without PySCF.

Models, training and evaluation need the level only as a name and an electron count, so it lives here,
importable without PySCF; ``dft_operators.reference`` re-exports everything (``reference.Level`` is this
``Level``) and turns a level into PySCF objects. Electron counts with GTH pseudopotentials come from a
table of valence charges (checked against PySCF's pseudopotential files by a test); pseudopotentials
outside the table are asked of PySCF, lazily.
"""

from __future__ import annotations

import dataclasses


class SCFError(RuntimeError):
    """A PySCF calculation that cannot be set up or run; the message names the molecule and the cause."""


@dataclasses.dataclass(frozen=True)
class Level:
    """A level of theory, in PySCF's names.

    Attributes:
      xc: exchange-correlation functional (PySCF/libxc string, e.g. "lda,pw", "pbe").
      basis: orbital basis set.
      pseudo: GTH pseudopotential (e.g. "gth-pade"); None for all-electron.
      aux_basis: auxiliary basis for density fitting: a PySCF name, or "etb:<orbital basis>" for the
        even-tempered products of that orbital basis (``reference.level.even_tempered_basis``).
    """

    xc: str = "lda,pw"
    basis: str = "gth-dzvp"
    pseudo: str | None = "gth-pade"
    aux_basis: str = "def2-universal-jkfit"

    def as_dict(self) -> dict:
        """The level as a JSON-able dict."""
        return dataclasses.asdict(self)


def level_differences(a: dict, b: dict) -> list[str]:
    """The fields (xc, basis, pseudo, aux_basis) in which two levels, as dicts, differ; names compare without
    case ("LDA,PW" is "lda,pw")."""
    def norm(value):
        return value.lower() if isinstance(value, str) else value
    return [f.name for f in dataclasses.fields(Level) if norm(a.get(f.name)) != norm(b.get(f.name))]


# All-electron default for quadrature-grid and density-coefficient work (KineticNet, DenSNet).
ALL_ELECTRON = Level(basis="def2-svp", pseudo=None)

# Valence electrons (ion charge) of PySCF's GTH pseudopotentials, H to Kr: the entry PySCF picks for each
# element, the same in every family of ``GTH_FAMILIES`` (semicore for Na, Mg and K to Ga).
GTH_VALENCE = dict(zip(
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr".split(),
    (1, 2, 3, 4, 3, 4, 5, 6, 7, 8, 9, 10, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 11, 12, 13, 4, 5,
     6, 7, 8)))
# Pseudopotential families whose valence charges ``GTH_VALENCE`` holds (names as PySCF takes them, lower case).
GTH_FAMILIES = ("gth-pade", "gth-lda", "gth-pbe", "gth-blyp", "gth-bp")


def valence_charge(symbol: str, pseudo: str | None, number: int) -> int:
    """Charge of the ion core a level sees: Z (``number``) all-electron, the valence count with a pseudopotential
    (from ``GTH_VALENCE``, else from PySCF's files)."""
    if pseudo is None:
        return int(number)
    if pseudo.lower().replace("_", "-") in GTH_FAMILIES and symbol in GTH_VALENCE:
        return GTH_VALENCE[symbol]
    from dft_operators.reference.level import ion_charge  # PySCF: a pseudopotential outside the table

    return ion_charge(symbol, pseudo)


def level_electrons(molecule, level: Level) -> int:
    """Electrons the level treats in a ``Molecule``: all of them, or the valence ones when ``level.pseudo`` is
    set."""
    core = sum(int(z) - valence_charge(s, level.pseudo, z) for z, s in zip(molecule.numbers, molecule.symbols))
    return int(molecule.n_electrons - core)
