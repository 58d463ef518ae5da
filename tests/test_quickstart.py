"""The quickstart compares a model with PySCF only on molecules that model never trained on."""

from dft_operators import molecule
from dft_operators.quickstart import trained_on


def test_a_molecule_counts_as_seen_by_name_or_by_its_smiles():
    acetone = molecule.builtin("acetone")
    assert trained_on({"split": {"train_molecules": ["water", "acetone"]}}, acetone)
    assert trained_on({"molecules": {"train": ["CCO", "CC(C)=O"]}}, acetone)  # a QM9 model's card: canonical SMILES
    assert not trained_on({"split": {"train_molecules": ["qm9-000123"]}, "molecules": {"train": ["CCO"]}}, acetone)
    assert not trained_on({}, acetone)
