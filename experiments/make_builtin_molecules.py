"""Writes dft_operators/data/builtin.xyz: the built-in molecules (RDKit ETKDG + MMFF, seed 0).

Run: python experiments/make_builtin_molecules.py
"""
import pathlib

from dft_operators import molecule

SMILES = {
    "water": "O", "methane": "C", "ammonia": "N", "hydrogen-fluoride": "F", "ethane": "CC",
    "ethylene": "C=C", "acetylene": "C#C", "methanol": "CO", "ethanol": "CCO", "formaldehyde": "C=O",
    "formic-acid": "OC=O", "formamide": "NC=O", "acetaldehyde": "CC=O", "acetone": "CC(C)=O",
    "acetonitrile": "CC#N", "hydrogen-cyanide": "C#N", "methylamine": "CN", "dimethyl-ether": "COC",
    "fluoromethane": "CF", "difluoromethane": "FCF", "carbon-dioxide": "O=C=O", "nitrogen": "N#N",
    "hydrazine": "NN", "hydroxylamine": "NO", "hydrogen-peroxide": "OO", "propane": "CCC",
    "propene": "C=CC", "cyclopropane": "C1CC1", "benzene": "c1ccccc1", "pyridine": "c1ccncc1",
    "urea": "NC(N)=O", "acetic-acid": "CC(=O)O", "glycine": "NCC(=O)O", "fluorine": "FF",
    "butane": "CCCC", "pentane": "CCCCC", "hexane": "CCCCCC", "butadiene": "C=CC=C",
    "hexatriene": "C=CC=CC=C", "octatetraene": "C=CC=CC=CC=C", "ethanethiol": "CCS", "resorcinol": "Oc1cccc(O)c1",
}
# Two-electron systems at their approximate equilibrium geometries (Angstrom).
TWO_ELECTRON = {
    "h2": ("2\nh2 charge=0 spin=0\nH 0 0 0\nH 0 0 0.7414\n"),
    "heh+": ("2\nheh+ charge=1 spin=0\nHe 0 0 0\nH 0 0 0.7743\n"),
    "h3+": ("3\nh3+ charge=1 spin=0\nH 0 0 0\nH 0.8737 0 0\nH 0.43685 0.75665 0\n"),
}


def main():
    out = pathlib.Path(__file__).resolve().parents[1] / "dft_operators" / "data" / "builtin.xyz"
    blocks = list(TWO_ELECTRON.values())
    for name, smi in SMILES.items():
        mol = molecule.from_smiles(smi, seed=0, name=name)
        blocks.append(mol.to_xyz(comment=f"{name} charge=0 spin=0 smiles={smi}"))
    out.write_text("".join(blocks))
    print(f"wrote {len(blocks)} molecules to {out}")


if __name__ == "__main__":
    main()
