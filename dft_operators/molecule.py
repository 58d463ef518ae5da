"""Molecules: atomic numbers, positions in Bohr, charge and spin, with validation.

Readers: XYZ (file or text, Angstrom), SMILES (RDKit, hydrogens added, seeded 3D embedding) and the
built-in sets shipped in ``dft_operators/data/builtin.xyz``.  Everything downstream works in Bohr.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from importlib import resources

import numpy as np

from dft_operators import units

SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr"
).split()
# Standard atomic weights (IUPAC 2013 conventional values), in unified atomic mass units.
MASSES_AMU = (
    0.0, 1.008, 4.0026, 6.94, 9.0122, 10.81, 12.011, 14.007, 15.999, 18.998, 20.180, 22.990, 24.305,
    26.982, 28.085, 30.974, 32.06, 35.45, 39.948, 39.098, 40.078, 44.956, 47.867, 50.942, 51.996,
    54.938, 55.845, 58.933, 58.693, 63.546, 65.38, 69.723, 72.630, 74.922, 78.971, 79.904, 83.798,
)
MIN_DISTANCE_ANGSTROM = 0.3
# An atom this far from every other is no part of a molecule: most likely the coordinates are not Angstrom.
MAX_NEIGHBOUR_ANGSTROM = 100.0


class MoleculeError(ValueError):
    """A molecule that cannot exist or cannot be read; the message names the problem."""


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol (case-insensitive) or of a numeric string."""
    text = symbol.strip()
    if text.isdigit() and 0 < int(text) < len(SYMBOLS):
        return int(text)
    for z, s in enumerate(SYMBOLS[1:], start=1):
        if s.lower() == text.lower():
            return z
    raise MoleculeError(f"unknown element {symbol!r} (supported: H to Kr)")


@dataclasses.dataclass(frozen=True, eq=False)
class Molecule:
    """A molecule in atomic units.

    Attributes:
      numbers: atomic numbers, int [n_atoms].
      positions: nuclear positions in Bohr, float64 [n_atoms, 3].
      charge: total charge in units of e.
      spin: 2S, the number of unpaired electrons (PySCF's convention).
      name: a label used in datasets and reports.
      smiles: RDKit canonical SMILES of the molecule ("" when unknown); splits and model cards use it.
      source: where it came from, e.g. "qm9:000123", "smiles", "builtin:water" ("" when unknown).
    """

    numbers: np.ndarray
    positions: np.ndarray
    charge: int = 0
    spin: int = 0
    name: str = "molecule"
    smiles: str = ""
    source: str = ""

    def __post_init__(self):
        numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        positions = np.asarray(self.positions, dtype=np.float64)
        object.__setattr__(self, "numbers", numbers)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "charge", int(self.charge))
        object.__setattr__(self, "spin", int(self.spin))
        self._validate()

    def _validate(self):
        if self.numbers.size == 0:
            raise MoleculeError(f"{self.name}: a molecule needs at least one atom")
        if self.positions.shape != (self.numbers.size, 3):
            raise MoleculeError(
                f"{self.name}: positions must have shape [{self.numbers.size}, 3], got {self.positions.shape}")
        if not np.all(np.isfinite(self.positions)):
            raise MoleculeError(f"{self.name}: positions contain NaN or Inf")
        bad = [int(z) for z in self.numbers if not 0 < z < len(SYMBOLS)]
        if bad:
            raise MoleculeError(f"{self.name}: unknown atomic number(s) {bad} (supported: 1 to {len(SYMBOLS) - 1})")
        n = self.n_electrons
        if n <= 0:
            raise MoleculeError(f"{self.name}: charge {self.charge:+d} leaves {n} electrons")
        if self.spin < 0 or self.spin > n or (n - self.spin) % 2:
            raise MoleculeError(
                f"{self.name}: {n} electrons cannot have spin 2S={self.spin} "
                f"(2S must be between 0 and {n} with the parity of the electron count)")
        if self.numbers.size > 1:
            d = np.linalg.norm(self.positions[:, None] - self.positions[None], axis=-1)
            d[np.diag_indices_from(d)] = np.inf
            i, j = np.unravel_index(np.argmin(d), d.shape)
            if d[i, j] * units.ANGSTROM_PER_BOHR < MIN_DISTANCE_ANGSTROM:
                raise MoleculeError(
                    f"{self.name}: atoms {i} ({self.symbols[i]}) and {j} ({self.symbols[j]}) are "
                    f"{d[i, j] * units.ANGSTROM_PER_BOHR:.3f} Angstrom apart (minimum {MIN_DISTANCE_ANGSTROM})")
            nearest = d.min(axis=1) * units.ANGSTROM_PER_BOHR
            if nearest.max() > MAX_NEIGHBOUR_ANGSTROM:
                k = int(np.argmax(nearest))
                raise MoleculeError(
                    f"{self.name}: atom {k} ({self.symbols[k]}) is {nearest[k]:.4g} Angstrom from its nearest "
                    f"neighbour (at most {MAX_NEIGHBOUR_ANGSTROM:g}); are the coordinates in Angstrom?")

    @property
    def symbols(self) -> list[str]:
        return [SYMBOLS[z] for z in self.numbers]

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.size)

    @property
    def heavy_atoms(self) -> int:
        """Atoms other than hydrogen."""
        return int((self.numbers > 1).sum())

    @property
    def n_electrons(self) -> int:
        """All-electron count, sum(Z) - charge."""
        return int(self.numbers.sum()) - self.charge

    @property
    def masses(self) -> np.ndarray:
        """Nuclear masses in electron masses (atomic units), float64 [n_atoms]."""
        return np.array([MASSES_AMU[z] for z in self.numbers]) * units.AMU_TO_ME

    @classmethod
    def from_record(cls, record: dict) -> "Molecule":
        """The molecule of a dataset record (``io.dataset.Dataset.record``: numbers, positions in Bohr, and the
        charge, spin and name attributes)."""
        return cls(np.asarray(record["numbers"]), np.asarray(record["positions"]), int(record["charge"]),
                   int(record["spin"]), str(record["name"]), str(record.get("smiles", "")),
                   str(record.get("source", "")))

    def with_positions(self, positions: np.ndarray, name: str | None = None) -> "Molecule":
        """The same molecule at new positions (Bohr, [n_atoms, 3])."""
        return dataclasses.replace(self, positions=np.asarray(positions, float), name=name or self.name)

    def to_xyz(self, comment: str | None = None) -> str:
        """XYZ text in Angstrom."""
        lines = [str(self.n_atoms), comment if comment is not None else
                 f"{self.name} charge={self.charge} spin={self.spin}"]
        for s, r in zip(self.symbols, self.positions * units.ANGSTROM_PER_BOHR):
            lines.append(f"{s:<2s} {r[0]:14.8f} {r[1]:14.8f} {r[2]:14.8f}")
        return "\n".join(lines) + "\n"


def _parse_xyz_block(lines: list[str], name: str, charge: int, spin: int) -> Molecule:
    try:
        n = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise MoleculeError(f"{name}: malformed XYZ, first line must be the atom count, got {lines[0]!r}") from None
    body = lines[2:2 + n]
    extra = [line for line in lines[2 + n:] if line.strip()]
    if n <= 0 or len(body) < n or extra:
        raise MoleculeError(f"{name}: malformed XYZ, its first line says {n} atoms but {len(body) + len(extra)} "
                            "atom lines follow; fix the count")
    numbers, positions = [], []
    for k, line in enumerate(body):
        parts = line.split()
        if len(parts) < 4:
            raise MoleculeError(f"{name}: malformed XYZ atom line {k + 3}: {line!r}")
        numbers.append(atomic_number(parts[0]))
        try:
            positions.append([float(x) for x in parts[1:4]])
        except ValueError:
            raise MoleculeError(f"{name}: malformed coordinates on XYZ line {k + 3}: {line!r}") from None
    return Molecule(numbers, np.array(positions) * units.BOHR_PER_ANGSTROM, charge, spin, name)


def from_xyz(source: str | os.PathLike, charge: int = 0, spin: int = 0, name: str | None = None) -> Molecule:
    """Reads an XYZ file, or XYZ text if ``source`` contains a newline (coordinates in Angstrom)."""
    text = str(source)
    if "\n" not in text:
        if not os.path.exists(text):
            raise MoleculeError(f"no such XYZ file: {text}")
        name = name or os.path.splitext(os.path.basename(text))[0]
        with open(text) as f:
            text = f.read()
    name = name or "molecule"
    lines = [ln for ln in text.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise MoleculeError(f"{name}: empty XYZ input")
    return _parse_xyz_block(lines, name, charge, spin)


def from_smiles(smiles: str, charge: int | None = None, spin: int = 0, seed: int = 0,
                name: str | None = None) -> Molecule:
    """3D molecule from SMILES: RDKit adds hydrogens, embeds with ETKDG (seeded) and relaxes with MMFF.

    The charge defaults to the formal charge of the SMILES.
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    rd = Chem.MolFromSmiles(smiles)
    if rd is None:
        raise MoleculeError(f"RDKit cannot parse SMILES {smiles!r}")
    rd = Chem.AddHs(rd)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(rd, params) != 0:
        raise MoleculeError(f"RDKit could not embed SMILES {smiles!r} in 3D")
    if AllChem.MMFFHasAllMoleculeParams(rd):
        AllChem.MMFFOptimizeMolecule(rd, maxIters=2000)
    positions = rd.GetConformer().GetPositions() * units.BOHR_PER_ANGSTROM
    numbers = [a.GetAtomicNum() for a in rd.GetAtoms()]
    formal = Chem.GetFormalCharge(rd)
    return Molecule(numbers, positions, formal if charge is None else charge, spin, name or smiles)


@functools.lru_cache(maxsize=1)
def _builtin_table() -> dict[str, tuple[str, int, int]]:
    """name -> (xyz text, charge, spin) from the shipped multi-frame XYZ file."""
    text = resources.files("dft_operators.data").joinpath("builtin.xyz").read_text()
    lines, table, i = text.splitlines(), {}, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        n = int(lines[i])
        fields = dict(kv.split("=", 1) for kv in lines[i + 1].split()[1:])
        table[lines[i + 1].split()[0]] = ("\n".join(lines[i:i + 2 + n]), int(fields["charge"]), int(fields["spin"]))
        i += 2 + n
    return table


SMALL_ORGANIC_ELEMENTS = {"H", "C", "N", "O", "F"}  # the grid models' elements; ethanethiol (S) is not in the set
BUILTIN_SETS = {
    "two-electron": ("h2", "heh+", "h3+"),
    "tiny": ("h2", "heh+", "water"),
}


def builtin_names() -> list[str]:
    """Names of all built-in molecules."""
    return list(_builtin_table())


def free_atom(number: int) -> Molecule:
    """One neutral atom at the origin, with the spin of its odd or even electron count (2S = 0 or 1)."""
    return Molecule(np.array([number]), np.zeros((1, 3)), 0, number % 2, name=f"atom-{number}")


def builtin(name: str) -> Molecule:
    """A built-in molecule by name (``dft-operators`` lists them in errors), positions in Bohr."""
    table = _builtin_table()
    if name not in table:
        raise MoleculeError(f"no built-in molecule {name!r}; choose from: {', '.join(table)}")
    text, charge, spin = table[name]
    return from_xyz(text, charge, spin, name)


def builtin_set(name: str) -> list[Molecule]:
    """A built-in set: 'small-organic' (the neutral H/C/N/O/F molecules), 'two-electron', 'tiny', 'all'."""
    if name == "all":
        return [builtin(n) for n in builtin_names()]
    if name == "small-organic":
        organic = [builtin(n) for n in builtin_names() if n not in BUILTIN_SETS["two-electron"]]
        return [m for m in organic if set(m.symbols) <= SMALL_ORGANIC_ELEMENTS]
    if name not in BUILTIN_SETS:
        raise MoleculeError(f"no built-in set {name!r}; choose from: all, small-organic, {', '.join(BUILTIN_SETS)}")
    return [builtin(n) for n in BUILTIN_SETS[name]]


def parse_molecule(spec: str, charge: int = 0, spin: int = 0) -> Molecule:
    """A molecule from the command line: a .xyz path, ``smiles:<SMILES>`` or ``builtin:<name>``."""
    if spec.startswith("smiles:"):
        return from_smiles(spec[len("smiles:"):], charge=charge, spin=spin)
    if spec.startswith("builtin:"):
        mol = builtin(spec[len("builtin:"):])
        if charge or spin:
            mol = dataclasses.replace(mol, charge=charge, spin=spin)
        return mol
    if spec.endswith(".xyz") or os.path.exists(spec):
        return from_xyz(spec, charge=charge, spin=spin)
    raise MoleculeError(f"cannot read molecule {spec!r}: give a .xyz file, smiles:<SMILES> or builtin:<name>")
