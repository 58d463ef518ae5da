"""Molecule SPECs: short strings that name molecules or sets of them, resolved to lists of ``Molecule``.

Accepted forms (one string each):

  builtin:<name>                       a built-in molecule (``molecule.builtin``)
  set:<name>                           a built-in set (``molecule.builtin_set``)
  smiles:<SMILES>                      RDKit-embedded (seed 0), charge from the SMILES
  <path>.xyz                           an XYZ file in Angstrom, charge 0
  file:<path>.smi                      one SMILES and an optional name a line ('#' comments)
  file:<directory>                     every ``*.xyz`` file in it, sorted, charge 0
  qm9:N[,heavy=K|A-B][,seed=S]         N distinct QM9 molecules at their QM9 geometries (``data.qm9``)
  enumerate:N[,heavy=K|A-B][,elements=CNOF][,seed=S]
                                       N distinct enumerated molecules (``data.enumeration``)

``heavy=K`` allows 1 to K heavy (non-hydrogen) atoms, ``heavy=A-B`` A to B. Every molecule gets a unique
file-name-safe ``name``, a canonical ``smiles`` (from the SMILES where there is one, else perceived from
the geometry; "" when RDKit cannot perceive it) and a ``source``. Nothing here runs quantum chemistry.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Sequence

from dft_operators.data import enumeration, qm9
from dft_operators.molecule import Molecule, MoleculeError, builtin, builtin_set, from_smiles, from_xyz, parse_molecule

FORMS = ("builtin:<name>, set:<name>, smiles:<SMILES>, <path>.xyz, file:<path>.smi, file:<directory of .xyz>, "
         "qm9:N[,heavy=K|A-B][,seed=S], enumerate:N[,heavy=K|A-B][,elements=CNOF][,seed=S]")
DEFAULT_HEAVY = (1, 9)  # heavy-atom range of qm9: and enumerate: without heavy=


def canonical_smiles(smiles: str) -> str:
    """RDKit canonical (isomeric) SMILES.

    Raises:
      MoleculeError: RDKit cannot parse ``smiles``.
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise MoleculeError(f"RDKit cannot parse SMILES {smiles!r}")
    return Chem.MolToSmiles(mol)


def smiles_from_geometry(mol: Molecule) -> str:
    """Canonical SMILES perceived from the geometry by ``rdDetermineBonds.DetermineBonds`` (covalent radii,
    then bond orders for the molecule's charge), stereochemistry removed as in QM9's SMILES.

    Returns "" when RDKit cannot assign bond orders (HeH+) or the perceived bonds leave the molecule in
    several pieces (H3+, whose three-centre bond has no SMILES; also clusters of separate molecules).
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdDetermineBonds

    RDLogger.DisableLog("rdApp.*")
    rd = Chem.MolFromXYZBlock(mol.to_xyz())
    try:
        rdDetermineBonds.DetermineBonds(rd, charge=mol.charge)
    except (ValueError, RuntimeError):
        return ""
    if len(Chem.GetMolFrags(rd)) > 1:
        return ""
    Chem.RemoveStereochemistry(rd)
    return Chem.MolToSmiles(Chem.RemoveHs(rd))


def _geometric(mol: Molecule, source: str) -> Molecule:
    return dataclasses.replace(mol, smiles=smiles_from_geometry(mol), source=source)


def _int(text: str, what: str, spec: str, minimum: int) -> int:
    if not re.fullmatch(r"\d+", text) or int(text) < minimum:
        raise MoleculeError(f"{spec!r}: {what} must be an integer >= {minimum}, got {text!r}")
    return int(text)


def _heavy(text: str, spec: str) -> tuple[int, int]:
    """``K`` -> (1, K); ``A-B`` -> (A, B)."""
    low, sep, high = text.partition("-")
    if not sep:
        return 1, _int(text, "heavy", spec, 1)
    bounds = _int(low, "heavy", spec, 1), _int(high, "heavy", spec, 1)
    if bounds[0] > bounds[1]:
        raise MoleculeError(f"{spec!r}: heavy={text} is an empty range")
    return bounds


def _options(spec: str, keys: Sequence[str]) -> tuple[int, dict[str, str]]:
    """N and the key=value options of ``kind:N,key=value,...``."""
    count, *items = spec.split(":", 1)[1].split(",")
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in keys or not value:
            raise MoleculeError(f"{spec!r}: bad option {item!r}; accepted: {', '.join(k + '=...' for k in keys)}")
        if key in options:
            raise MoleculeError(f"{spec!r}: option {key}= given twice")
        options[key] = value
    return _int(count, "the number of molecules N", spec, 1), options


def _smi_lines(path: str) -> list[tuple[int, str, str]]:
    """(line number, SMILES, rest of the line) of each non-blank, non-comment line of a .smi file."""
    if not os.path.isfile(path):
        raise MoleculeError(f"no such SMILES file: {path}")
    with open(path) as f:
        lines = [(k, line.split()) for k, line in enumerate(f, start=1)]
    return [(k, tokens[0], "_".join(tokens[1:])) for k, tokens in lines if tokens and not tokens[0].startswith("#")]


def _from_smi_file(path: str) -> list[Molecule]:
    stem, out = os.path.splitext(os.path.basename(path))[0], []
    for k, smiles, name in _smi_lines(path):
        try:
            mol = from_smiles(smiles, name=name or f"{stem}-{k}")
        except MoleculeError as err:
            raise MoleculeError(f"{path}:{k}: {err}") from None
        out.append(dataclasses.replace(mol, smiles=canonical_smiles(smiles), source=f"file:{path}:{k}"))
    return out


def _from_directory(path: str) -> list[Molecule]:
    files = sorted(glob.glob(os.path.join(path, "*.xyz")))
    if not files:
        raise MoleculeError(f"no .xyz files in directory {path}")
    return [_geometric(from_xyz(f), f"xyz:{f}") for f in files]


def read_exclusions(path: str) -> frozenset[str]:
    """Canonical SMILES of the first token of each line of a .smi file.

    Raises:
      MoleculeError: the file is missing or a line does not parse (the message names file and line).
    """
    out = set()
    for k, smiles, _ in _smi_lines(path):
        try:
            out.add(canonical_smiles(smiles))
        except MoleculeError as err:
            raise MoleculeError(f"{path}:{k}: {err}") from None
    return frozenset(out)


def _resolve_one(spec: str, exclude: frozenset[str]) -> list[Molecule]:
    kind, _, rest = spec.partition(":")
    if kind == "builtin":
        return [_geometric(builtin(rest), f"builtin:{rest}")]
    if kind == "set":
        return [_geometric(mol, f"builtin:{mol.name}") for mol in builtin_set(rest)]
    if kind == "smiles":
        return [dataclasses.replace(from_smiles(rest), smiles=canonical_smiles(rest), source="smiles")]
    if kind == "file":
        if os.path.isdir(rest):
            return _from_directory(rest)
        if rest.endswith(".smi"):
            return _from_smi_file(rest)
        raise MoleculeError(f"{spec!r}: file: takes a .smi file or a directory of .xyz files")
    if kind == "qm9":
        n, opts = _options(spec, ("heavy", "seed"))
        return qm9.draw(n, _heavy(opts["heavy"], spec) if "heavy" in opts else DEFAULT_HEAVY,
                        _int(opts.get("seed", "0"), "seed", spec, 0), exclude)
    if kind == "enumerate":
        n, opts = _options(spec, ("heavy", "elements", "seed"))
        return enumeration.enumerate_molecules(
            n, _heavy(opts["heavy"], spec) if "heavy" in opts else DEFAULT_HEAVY,
            enumeration.parse_elements(opts.get("elements", "CNOF")), _int(opts.get("seed", "0"), "seed", spec, 0),
            exclude)
    if spec.endswith(".xyz"):
        return [_geometric(parse_molecule(spec), f"xyz:{spec}")]
    raise MoleculeError(f"cannot read molecule spec {spec!r}; accepted forms: {FORMS}")


def _safe_name(name: str) -> str:
    """``name`` with every character other than letters, digits and ``_.+-=#()[]@%,`` replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9_.+\-=#()\[\]@%,]", "_", name) or "molecule"


def resolve(specs: Sequence[str], exclude: str | None = None) -> list[Molecule]:
    """The molecules of a list of specs (see the module docstring), in order.

    Molecules whose canonical SMILES is in the ``exclude`` file (qm9: and enumerate: skip those while
    drawing, so they still return N) or repeats an earlier one's are dropped; molecules without a SMILES
    ("") are kept. Names are made file-name safe and unique (``-2``, ``-3``, ... appended to repeats).

    Args:
      specs: spec strings (a single string counts as one spec).
      exclude: path of a .smi file whose first token per line is a SMILES, or None.
    Returns:
      Molecules with positions in Bohr, unique ``name``, canonical ``smiles`` and ``source``.
    Raises:
      MoleculeError: a malformed spec or option, a missing file, or too few molecules to draw.
    """
    excluded = read_exclusions(exclude) if exclude is not None else frozenset()
    seen, names, out = set(excluded), set(), []
    for mol in (m for spec in ([specs] if isinstance(specs, str) else specs) for m in _resolve_one(spec, excluded)):
        if mol.smiles and mol.smiles in seen:
            continue
        seen.add(mol.smiles)
        name = base = _safe_name(mol.name)
        k = 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.add(name)
        out.append(dataclasses.replace(mol, name=name))
    return out


def describe(molecules: Sequence[Molecule]) -> list[dict]:
    """One ``{"name", "smiles", "heavy_atoms"}`` dict a molecule (``dft-operators molecules --json``)."""
    return [{"name": m.name, "smiles": m.smiles, "heavy_atoms": m.heavy_atoms} for m in molecules]
