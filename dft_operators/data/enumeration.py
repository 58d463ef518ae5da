"""Seeded enumeration of small neutral closed-shell molecules by growing molecular graphs.

A candidate is a graph of heavy atoms (hydrogens fill the free valences implicitly) grown from one atom by
random moves under the valence rules C 4, N 3, O 2, F 1, S 2, until a target heavy-atom count drawn
uniformly from the requested range is reached (or no atom has free valence left):

  1. atom addition: a new atom bonded to an atom with free valence by a single, double or triple bond;
  2. ring addition: a chain of new atoms grown from an atom with two free valences and closed back onto
     it (a ring closure), 5- and 6-rings favoured;
  3. then now and then a ring closure between two existing atoms (fused, bridged or larger rings);
  4. bond upgrades: single -> double or double -> triple where both ends have free valence;
  5. now and then a conjugation sweep that makes double the single bonds between atoms with free valence
     and no multiple bond yet, ring bonds first, so that rings of alternating double bonds (benzene,
     pyridine, pyrrole, ...) appear.

Carbon is the most likely element and bonds between two non-carbon atoms are disfavoured (hydrazines and
peroxides occur, but rarely). A candidate is kept if RDKit sanitises it, it has no triple bond or cumulated
double bonds in a ring, zero formal charge and an even electron count, its canonical SMILES is new and not
excluded, and ``molecule.from_smiles`` embeds it in 3D (ETKDG, seeded) with a geometry whose bonds,
perceived from covalent radii, are those of the graph (strained small rings fail that). Every random choice
comes from one ``np.random.default_rng(seed)`` stream consumed the same way whatever ``n`` is, so the output
is the same in every process and ``enumerate_molecules(n)`` is a prefix of ``enumerate_molecules(m)``, m > n.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from dft_operators.molecule import Molecule, MoleculeError, from_smiles

VALENCE = {"C": 4, "N": 3, "O": 2, "F": 1, "S": 2}  # bonds to heavy atoms and hydrogens, in element order
ELEMENT_WEIGHT = {"C": 4.0, "N": 1.0, "O": 1.0, "F": 0.5, "S": 0.5}  # relative odds of each new atom
HETERO_BOND_WEIGHT = 0.1  # odds factor of a bond between two non-carbon atoms
BOND_ORDER_WEIGHT = (0.75, 0.18, 0.07)  # odds of a single, double, triple bond to a new atom
RING_ADDITION = 0.25  # probability that a growth step adds a ring rather than one atom
RING_SIZE_WEIGHT = {3: 0.1, 4: 0.05, 5: 0.35, 6: 0.5}  # odds of the ring sizes of ring additions and closures
LARGE_RING_WEIGHT = 0.02  # odds of a ring closure making a ring larger than 6
RING_CLOSURE = 0.2  # probability of a ring closure between existing atoms per candidate
UPGRADES = (0.55, 0.3, 0.15)  # probabilities of 0, 1, 2 bond upgrades per candidate
CONJUGATION = 0.4  # probability of a conjugation sweep per candidate
ATTEMPTS_PER_MOLECULE, MIN_ATTEMPTS = 100, 2000  # candidates tried before giving up

Graph = tuple[list[str], dict[tuple[int, int], int]]  # heavy-atom symbols; bond orders keyed by (i, j), i < j


def parse_elements(text: str) -> tuple[str, ...]:
    """Element symbols of a string such as "CNOF" in ``VALENCE`` order, duplicates dropped.

    Raises:
      MoleculeError: an unknown or unsupported symbol, or an empty string.
    """
    symbols = re.findall(r"[A-Z][a-z]?", text)
    if not text or "".join(symbols) != text or set(symbols) - set(VALENCE):
        raise MoleculeError(f"elements={text!r}: give element symbols from {' '.join(VALENCE)}, e.g. elements=CNOF")
    return tuple(e for e in VALENCE if e in symbols)


def _pick(rng: np.random.Generator, weights: Sequence[float]) -> int:
    """An index drawn with probability proportional to ``weights``."""
    w = np.asarray(weights, dtype=np.float64)
    return int(rng.choice(len(w), p=w / w.sum()))


def _pair_weight(a: str, b: str) -> float:
    """Odds factor of a bond between elements ``a`` and ``b``."""
    return 1.0 if "C" in (a, b) else HETERO_BOND_WEIGHT


def _free(atoms: list[str], bonds: dict[tuple[int, int], int]) -> list[int]:
    """Free valence (implicit hydrogens) of each atom."""
    free = [VALENCE[e] for e in atoms]
    for (i, j), order in bonds.items():
        free[i] -= order
        free[j] -= order
    return free


def _distances(n: int, bonds) -> np.ndarray:
    """Topological (bond-count) distances between atoms by Floyd-Warshall, float [n, n] (inf: disconnected)."""
    dist = np.full((n, n), np.inf)
    np.fill_diagonal(dist, 0.0)
    for i, j in bonds:
        dist[i, j] = dist[j, i] = 1.0
    for k in range(n):
        dist = np.minimum(dist, dist[:, k, None] + dist[None, k, :])
    return dist


def _add_atom(rng, graph: Graph, elements, weights) -> bool:
    """Bonds a new atom to an atom with free valence; False when no atom has any."""
    atoms, bonds = graph
    free = _free(atoms, bonds)
    hosts = [i for i in range(len(atoms)) if free[i] > 0]
    if not hosts:
        return False
    host = hosts[int(rng.integers(len(hosts)))]
    new = elements[_pick(rng, [w * _pair_weight(atoms[host], e) for e, w in zip(elements, weights)])]
    bonds[(host, len(atoms))] = 1 + _pick(rng, BOND_ORDER_WEIGHT[:min(free[host], VALENCE[new], 3)])
    atoms.append(new)
    return True


def _add_ring(rng, graph: Graph, room: int, elements, weights) -> bool:
    """Grows a ring from an atom with two free valences; False if the drawn ring needs more than ``room`` new
    atoms or no atom or element can be in a ring."""
    atoms, bonds = graph
    free = _free(atoms, bonds)
    hosts = [i for i in range(len(atoms)) if free[i] >= 2]
    ring_elements = [k for k, e in enumerate(elements) if VALENCE[e] >= 2]
    size = list(RING_SIZE_WEIGHT)[_pick(rng, list(RING_SIZE_WEIGHT.values()))]
    if not (hosts and ring_elements) or size - 1 > room:
        return False
    host = hosts[int(rng.integers(len(hosts)))]
    previous = host
    for _ in range(size - 1):
        new = elements[ring_elements[_pick(rng, [weights[k] * _pair_weight(atoms[previous], elements[k])
                                                 for k in ring_elements])]]
        bonds[(previous, len(atoms))] = 1
        atoms.append(new)
        previous = len(atoms) - 1
    bonds[(host, previous)] = 1
    return True


def _close_ring(rng, graph: Graph) -> None:
    """A single bond between two non-bonded atoms with free valence, weighted by the ring it closes."""
    atoms, bonds = graph
    free, dist = _free(atoms, bonds), _distances(len(atoms), bonds)
    pairs = [(i, j) for i in range(len(atoms)) for j in range(i + 1, len(atoms))
             if free[i] > 0 and free[j] > 0 and dist[i, j] >= 2]
    if pairs:
        weights = [RING_SIZE_WEIGHT.get(int(dist[i, j]) + 1, LARGE_RING_WEIGHT) * _pair_weight(atoms[i], atoms[j])
                   for i, j in pairs]
        bonds[pairs[_pick(rng, weights)]] = 1


def _upgrade(rng, graph: Graph) -> None:
    """Raises the order of one bond whose two atoms have free valence."""
    atoms, bonds = graph
    free = _free(atoms, bonds)
    candidates = [b for b, order in bonds.items() if order < 3 and free[b[0]] > 0 and free[b[1]] > 0]
    if candidates:
        bonds[candidates[int(rng.integers(len(candidates)))]] += 1


def _conjugate(rng, graph: Graph) -> None:
    """Makes double each single bond whose atoms have free valence and no multiple bond yet (a matching, so
    double bonds alternate), visiting ring bonds first, each group in random order."""
    atoms, bonds = graph
    keys = list(bonds)
    in_ring = [np.isfinite(_distances(len(atoms), [b for b in keys if b != key])[key]) for key in keys]
    order = rng.permutation(len(keys))
    for k in sorted(range(len(keys)), key=lambda k: (not in_ring[k], order[k])):
        free, (i, j) = _free(atoms, bonds), keys[k]
        unsaturated = {a for b, o in bonds.items() if o > 1 for a in b}
        if bonds[(i, j)] == 1 and free[i] > 0 and free[j] > 0 and not {i, j} & unsaturated:
            bonds[(i, j)] = 2


def _candidate(rng, heavy, elements, weights) -> Graph:
    """One random graph with at most ``heavy[1]`` atoms."""
    target = int(rng.integers(heavy[0], heavy[1] + 1))
    graph = ([elements[_pick(rng, weights)]], {})
    while len(graph[0]) < target:
        ring = rng.random() < RING_ADDITION and _add_ring(rng, graph, target - len(graph[0]), elements, weights)
        if not ring and not _add_atom(rng, graph, elements, weights):
            break
    if rng.random() < RING_CLOSURE:
        _close_ring(rng, graph)
    for _ in range(_pick(rng, UPGRADES)):
        _upgrade(rng, graph)
    if rng.random() < CONJUGATION:
        _conjugate(rng, graph)
    return graph


def _smiles(graph: Graph) -> str | None:
    """Canonical SMILES of a graph, or None when it is not a plausible closed-shell neutral molecule."""
    from rdkit import Chem

    atoms, bonds = graph
    mol = Chem.RWMol()
    for e in atoms:
        mol.AddAtom(Chem.Atom(e))
    for (i, j), order in bonds.items():
        mol.AddBond(i, j, (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE)[order - 1])
    if Chem.SanitizeMol(mol, catchErrors=True) != Chem.SanitizeFlags.SANITIZE_NONE:
        return None
    for bond in mol.GetBonds():
        if bond.IsInRing() and bond.GetBondType() == Chem.BondType.TRIPLE:
            return None
    for atom in mol.GetAtoms():
        doubles = sum(b.GetBondType() == Chem.BondType.DOUBLE for b in atom.GetBonds())
        if atom.IsInRing() and doubles > 1:
            return None
    electrons = sum(a.GetAtomicNum() + a.GetTotalNumHs() for a in mol.GetAtoms())
    if Chem.GetFormalCharge(mol) or electrons % 2 or any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return None
    return Chem.MolToSmiles(mol)


def _faithful(mol: Molecule, smiles: str) -> bool:
    """Whether the bonds perceived from the 3D geometry (covalent radii) are those of the SMILES graph, which
    strained small rings whose cross-ring atoms come too close fail."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    graph = Chem.AddHs(Chem.MolFromSmiles(smiles))  # the atom order of from_smiles
    geometry = Chem.MolFromXYZBlock(mol.to_xyz())
    rdDetermineBonds.DetermineConnectivity(geometry)
    graph_bonds, geometry_bonds = ({tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in m.GetBonds()}
                                   for m in (graph, geometry))
    return graph_bonds == geometry_bonds


def enumerate_molecules(n: int, heavy: tuple[int, int] = (1, 9), elements: Sequence[str] = ("C", "N", "O", "F"),
                        seed: int = 0, exclude: frozenset[str] = frozenset()) -> list[Molecule]:
    """N distinct enumerated molecules embedded in 3D (see the module docstring).

    Args:
      n: number of molecules.
      heavy: inclusive range of heavy-atom counts.
      elements: heavy-atom symbols, from ``VALENCE``.
      seed: seeds the enumeration and the ETKDG embeddings.
      exclude: canonical SMILES never to return.
    Returns:
      Molecules named ``enum-<seed>-<k>`` (k with five digits), positions in Bohr, canonical ``smiles``,
      ``source`` ``enumerate:seed=<seed>``.
    Raises:
      MoleculeError: fewer than ``n`` molecules found within the attempt budget.
    """
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    elements = tuple(e for e in VALENCE if e in elements)
    weights = [ELEMENT_WEIGHT[e] for e in elements]
    rng, seen, out = np.random.default_rng(seed), set(exclude), []
    for _ in range(max(ATTEMPTS_PER_MOLECULE * n, MIN_ATTEMPTS)):
        if len(out) == n:
            break
        graph = _candidate(rng, heavy, elements, weights)
        if len(graph[0]) < heavy[0]:
            continue
        smiles = _smiles(graph)
        if smiles is None or smiles in seen:
            continue
        seen.add(smiles)
        try:
            mol = from_smiles(smiles, seed=seed, name=f"enum-{seed}-{len(out):05d}")
        except MoleculeError:
            continue
        if not _faithful(mol, smiles):
            continue
        out.append(dataclasses.replace(mol, smiles=smiles, source=f"enumerate:seed={seed}"))
    if len(out) < n:
        raise MoleculeError(f"enumeration found only {len(out)} distinct molecules with {heavy[0]}-{heavy[1]} heavy "
                            f"atoms of {''.join(elements)}; {n} requested")
    return out
