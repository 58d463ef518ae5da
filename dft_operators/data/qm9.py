"""QM9 molecules at their B3LYP/6-31G(2df,p) geometries, drawn from a cached index of the ``qm9pack`` data.

The optional ``qm9pack`` package (``pip install "dft_operators[qm9]"``) ships the 130,831 QM9 molecules as
three CSV files (225 MB). Parsing them takes seconds, so the first use writes a compact index,

    index [n_mol] int32, smiles [n_mol] bytes, heavy [n_mol] int8, offsets [n_mol + 1] int64,
    numbers [n_atoms] uint8, positions [n_atoms, 3] float64 in Angstrom (as in the CSV),

to ``<cache>/qm9_index.npz`` and later uses read only that. The cache directory is ``$DFT_OPERATORS_CACHE``,
else ``$XDG_CACHE_HOME/dft_operators``, else ``~/.cache/dft_operators``. The file records the qm9pack
version and its own format; it is rebuilt when either differs or when it cannot be read. The package's
module is never imported (it imports pandas and the deprecated pkg_resources): its files are located
with ``importlib.util.find_spec``, which imports nothing.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import zipfile
from importlib import metadata, util

import numpy as np

from dft_operators import units
from dft_operators.cache import cache_dir
from dft_operators.molecule import SYMBOLS, Molecule, MoleculeError

FORMAT = 1  # layout of the cached index; bump when the arrays change
PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_KEYS = ("format", "version", "index", "smiles", "heavy", "offsets", "numbers", "positions")
_Z = {s: z for z, s in enumerate(SYMBOLS)}
_BARE_POINT = re.compile(r"(?<=\d)\.(?=[,\]])")  # "0." is not JSON; a few rows write coordinates so


def index_path() -> str:
    """Path of the cached QM9 index, ``<cache_dir()>/qm9_index.npz``."""
    return os.path.join(cache_dir(), "qm9_index.npz")


def data_dir() -> tuple[str, str]:
    """(directory holding the qm9pack CSV files, qm9pack version), without importing qm9pack.

    Raises:
      MoleculeError: qm9pack is not installed.
    """
    spec = util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise MoleculeError('QM9 molecules need the qm9pack package: pip install "dft_operators[qm9]"')
    return os.path.join(list(spec.submodule_search_locations)[0], "data"), metadata.version("qm9pack")


def _coordinates(text: str) -> list[list[float]]:
    """The XYZ_Ang column, "[[x,y,z],...]" in Angstrom, as nested lists."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(_BARE_POINT.sub(".0", text))


def build_index(path: str) -> None:
    """Parses the qm9pack CSV files and writes the index atomically (temporary file, then ``os.replace``)."""
    data, version = data_dir()
    csv.field_size_limit(1 << 30)
    index, smiles, heavy, counts, numbers, positions = [], [], [], [], [], []
    for part in PARTS:
        with open(os.path.join(data, part), newline="") as f:
            rows = csv.reader(f)
            column = {name: k for k, name in enumerate(next(rows))}
            for row in rows:
                z = [_Z[s] for s in row[column["Elements"]].strip("[]").replace("'", "").split(",")]
                xyz = _coordinates(row[column["XYZ_Ang"]])
                if len(xyz) != len(z):
                    raise MoleculeError(f"{part}: QM9 row {row[column['Index']]} has {len(z)} elements but "
                                        f"{len(xyz)} positions")
                index.append(int(row[column["Index"]]))
                smiles.append(row[column["SMILES"]].encode())
                heavy.append(sum(n > 1 for n in z))
                counts.append(len(z))
                numbers.extend(z)
                positions.extend(xyz)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, format=np.int64(FORMAT), version=np.array(version), index=np.array(index, np.int32),
                     smiles=np.array(smiles, dtype=bytes), heavy=np.array(heavy, np.int8),
                     offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                     numbers=np.array(numbers, np.uint8), positions=np.array(positions, np.float64))
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is plain data
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _read(path: str, version: str) -> dict[str, np.ndarray] | None:
    """The arrays of a cached index, or None when it is missing, unreadable or stale."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in _KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if int(arrays["format"]) != FORMAT or str(arrays["version"]) != version:
        return None
    return arrays


def load_index() -> dict[str, np.ndarray]:
    """The QM9 index (see the module docstring), built and cached on first use."""
    path = index_path()
    version = data_dir()[1]
    arrays = _read(path, version)
    if arrays is None:
        build_index(path)
        arrays = _read(path, version)
    return arrays


def _canonical(smiles: str) -> str | None:
    """RDKit canonical SMILES, None when RDKit cannot parse it."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def draw(n: int, heavy: tuple[int, int] = (1, 9), seed: int = 0, exclude: frozenset[str] = frozenset()
         ) -> list[Molecule]:
    """N distinct QM9 molecules at their QM9 geometries (positions in Bohr).

    The rows with a heavy-atom count in ``heavy`` are visited in the order of a seeded permutation
    (``np.random.default_rng(seed)``); a row is taken unless its canonical SMILES is in ``exclude`` or was
    already taken, or RDKit cannot parse it. Hence the first draws of ``draw(1000)`` are ``draw(500)``.

    Args:
      n: number of molecules.
      heavy: inclusive range of heavy-atom (non-hydrogen) counts.
      seed: seeds the permutation.
      exclude: canonical SMILES never to return.
    Returns:
      Molecules named ``qm9-<index>`` with ``source`` ``qm9:<index>`` (six digits) and canonical ``smiles``.
    Raises:
      MoleculeError: qm9pack is missing, or fewer than ``n`` molecules qualify.
    """
    data = load_index()
    eligible = np.flatnonzero((data["heavy"] >= heavy[0]) & (data["heavy"] <= heavy[1]))
    taken, out = set(exclude), []
    for row in np.random.default_rng(seed).permutation(eligible):
        if len(out) == n:
            break
        smiles = _canonical(data["smiles"][row].decode())
        if smiles is None or smiles in taken:
            continue
        taken.add(smiles)
        atoms = slice(data["offsets"][row], data["offsets"][row + 1])
        label = f"{int(data['index'][row]):06d}"
        out.append(Molecule(data["numbers"][atoms], data["positions"][atoms] * units.BOHR_PER_ANGSTROM,
                            name=f"qm9-{label}", smiles=smiles, source=f"qm9:{label}"))
    if len(out) < n:
        raise MoleculeError(f"QM9 has only {len(out)} distinct molecules with {heavy[0]}-{heavy[1]} heavy atoms "
                            f"outside the exclusions; {n} requested")
    return out
