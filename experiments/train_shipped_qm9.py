"""Trains a grid model (DeepSCF or V2Rho-FNO) on the QM9 grid dataset and, once finished, ships it.

Data: ``experiments/qm9_grid_dataset.py`` (one rotated conformer of each of about 1180 QM9 molecules; LDA/GTH
valence densities on 56^3 boxes of 0.4 Bohr). The split is the scaling study's (``qm9_scaling.fixed_sets``,
seed 0): its 100 test molecules are excluded, its 40 validation molecules pick the best epoch, and every other
molecule trains. The run is a normal ``dft-operators train`` into ``--workdir``: rerunning the same command
resumes it after a kill (mid-epoch, on the same batches) and, once it has finished, evaluates on the test
molecules and exports the model to the package's pretrained folder as ``--name``, its card listing the test
molecules and the training molecules as canonical SMILES (``test_molecules``; ``molecules``: {train, val}, as
every trained card; its ``split`` names the records) and its test metrics.
The held-out molecules beyond QM9 are ``experiments/heldout_organics.py``'s.

On a machine with a GPU the same command trains there (JAX picks the device; ``--device-check`` prints it).

Run: python experiments/train_shipped_qm9.py --config experiments/configs/deepscf_qm9_shipped.json \\
         --name deepscf-qm9 [--data ~/dft_data/qm9_grid --workdir ~/dft_runs/deepscf-qm9] [--no-export]
  -> experiments/results/<name>.json (config, training summary and wall time, test NMAE and rho0's)
"""

import argparse
import json
import os

import jax
import qm9_scaling

from dft_operators import api
from dft_operators.training.setup import read_config
from dft_operators.io import checkpoint
from dft_operators.io.dataset import Dataset

HERE = os.path.dirname(os.path.abspath(__file__))
DESCRIPTIONS = {"deepscf": "DeepSCF U-Net, valence density as rho0 + delta from rho0 and atomic fingerprints",
                "fno": "V2Rho-FNO, valence density as rho0 + delta from the screened ionic potential, rho0 and "
                       "atomic fingerprints, at any resolution"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a training config with \"kind\" (deepscf or fno)")
    parser.add_argument("--name", required=True, help="the shipped model's name, e.g. deepscf-qm9")
    parser.add_argument("--data", default=os.path.expanduser("~/dft_data/qm9_grid"))
    parser.add_argument("--workdir", help="training folder (default ~/dft_runs/<name>)")
    parser.add_argument("--no-export", action="store_true", help="train and evaluate only")
    args = parser.parse_args()
    workdir = args.workdir or os.path.expanduser(os.path.join("~/dft_runs", args.name))
    config = read_config(args.config)
    kind = config.pop("kind")
    file_config = dict(config)
    print(f"training {kind} on {jax.devices()[0].platform}", flush=True)
    ds = Dataset(args.data)
    test, val = qm9_scaling.fixed_sets(ds, 100, 40, seed=0)
    config.update(held_out=val, exclude=test)
    summary = api.train(kind, args.data, workdir, config)
    wall = qm9_scaling.training_seconds(workdir)
    evaluation = api.evaluate(workdir, args.data, qm9_scaling.record_ids(ds, test))
    result = {"name": args.name, "kind": kind, "config": file_config,
              "data": args.data, "training": summary, "train_wall_seconds": wall,
              "test_molecules": test, "test": evaluation}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"{args.name}.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(f"{args.name}: {summary.get('epochs')} epochs, {wall / 3600:.2f} h training; test NMAE "
          f"{evaluation['nmae_percent']:.2f} % on {evaluation['records']} QM9 molecules (rho0 "
          f"{evaluation['rho0_nmae_percent']:.2f} %)", flush=True)
    if not args.no_export:  # the card lists the training molecules' SMILES already ("molecules": {"train"})
        trained = checkpoint.load_card(workdir)["molecules"]["train"]
        checkpoint.export_model(workdir, os.path.join(api.pretrained_dir(), args.name), test_metrics=evaluation,
                                test_molecules=test,
                                description=f"{DESCRIPTIONS[kind]}, trained on {len(trained)} QM9 molecules "
                                            "(experiments/train_shipped_qm9.py)")


if __name__ == "__main__":
    main()
