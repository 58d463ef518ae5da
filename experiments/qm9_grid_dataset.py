"""The grid dataset at scale: 1000+ distinct QM9 molecules at the grid models' level, resumable.

One conformer per molecule: the QM9 (B3LYP) geometry as given, randomly rotated (the grid models are not
rotation-equivariant), no displacement. Level of the shipped grid models: LDA (lda,pw), GTH-pade
pseudopotentials, gth-dzvp; valence density, atomic guess and screened ionic potential on a 56^3 box of
0.4 Bohr (22 Bohr), every atom at least 3 Bohr from a face whatever the rotation (85 % of QM9 fits; the
others are skipped and counted). Run it again after a kill: it resumes; with more molecules
(``--molecules qm9:2400``) it appends shards. Keep the data outside the repository.

Run: python experiments/qm9_grid_dataset.py --out ~/dft_data/qm9_grid --workers $(nproc)
  -> experiments/results/qm9_grid_dataset.json (one entry per call: records/hour against the bare SCF)
"""

import argparse
import json
import os
import time

import numpy as np

from dft_operators.data import molecule_specs
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io.dataset import Dataset

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = GenerationSettings(kinds=("grid",), spacing=0.4, box_shape=56, margin=3.0, n_conformers=1,
                              displacement=0.0, rotate=True, seed=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.expanduser("~/dft_data/qm9_grid"), help="dataset directory")
    parser.add_argument("--molecules", default="qm9:1400", help="QM9 draw (1400: about 1190 records)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="generation processes")
    parser.add_argument("--executor", default="process", choices=["process", "dask"])
    parser.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    args = parser.parse_args()
    molecules = molecule_specs.resolve([args.molecules])
    start = time.perf_counter()
    summary = generate(molecules, args.out, SETTINGS, executor=args.executor, workers=args.workers,
                       scheduler=args.scheduler, shard_size=128)
    wall = time.perf_counter() - start
    ds = Dataset(args.out)
    scf = ds.attribute("scf_seconds")
    total = ds.attribute("seconds")
    entry = {**summary, "date": time.strftime("%Y-%m-%d"), "spec": args.molecules, "workers": args.workers,
             "cpu_count": os.cpu_count(), "records_per_hour_this_call": 3600 * summary["computed"] / wall,
             "bare_scf_records_per_hour_per_worker": 3600 / float(np.mean(scf)),
             "mean_scf_seconds": float(np.mean(scf)), "mean_record_seconds": float(np.mean(total)),
             "field_overhead": float(np.sum(total) / np.sum(scf)), "molecules_in_dataset": ds.summary()["molecules"]}
    print(json.dumps(entry, indent=1))
    path = os.path.join(HERE, "results", "qm9_grid_dataset.json")
    history = json.load(open(path)) if os.path.exists(path) else []
    with open(path, "w") as f:
        json.dump(history + [entry], f, indent=1)


if __name__ == "__main__":
    main()
