"""Where a grid model's density error sits: the L1 error by distance to the nearest nucleus, on QM9 test records.

The scaling study's test molecules (``qm9_scaling.fixed_sets``); each voxel's |rho_model - rho_PySCF| and
|rho0 - rho_PySCF| summed in shells of distance to the nearest atom and divided by the total electron count
of those records, so the shells add up to the NMAE (percent).

Run: python experiments/density_error_shells.py MODEL_DIR [--data ~/dft_data/qm9_grid] [--records 10]
"""

import argparse
import os

import numpy as np
import qm9_scaling

from dft_operators import api
from dft_operators.io.dataset import Dataset
from dft_operators.workflows import grid_density
from dft_operators.workflows.grid_inputs import GridSource, jitted_inputs

SHELLS = (0.0, 0.3, 0.6, 1.0, 1.5, 2.5, np.inf)  # Bohr from the nearest nucleus


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", default=os.path.expanduser("~/dft_data/qm9_grid"))
    parser.add_argument("--records", type=int, default=10, help="first test records to use")
    args = parser.parse_args()
    ds = Dataset(args.data)
    test, _ = qm9_scaling.fixed_sets(ds, 100, 40, seed=0)
    ids = qm9_scaling.record_ids(ds, test)[:args.records]
    model = api.load_model(args.model)
    spec = grid_density.dataset_spec(model.card, ds)
    source = GridSource(ds, ids, spec.task)
    model_error, rho0_error, electrons = np.zeros(len(SHELLS) - 1), np.zeros(len(SHELLS) - 1), 0.0
    for i in range(len(ids)):
        row = {k: np.asarray(v)[None] for k, v in source[i].items()}
        pred = np.asarray(grid_density.predict_density(model.module, model.params, jitted_inputs(spec)(row),
                                                       row["n_electrons"], spec.spacing**3, rho0=row.get("rho0")))[0]
        rho, rho0 = row["rho"][0], row["rho0"][0]
        points = np.indices(rho.shape).reshape(3, -1).T * spec.spacing  # [n^3, 3] Bohr from the box origin
        atoms = row["positions"][0][row["atom_mask"][0]]
        nearest = np.min(np.linalg.norm(points[:, None] - atoms[None], axis=-1), axis=1)
        shell = np.digitize(nearest, SHELLS) - 1
        model_error += np.bincount(shell, np.abs(pred - rho).ravel(), len(SHELLS) - 1)
        rho0_error += np.bincount(shell, np.abs(rho0 - rho).ravel(), len(SHELLS) - 1)
        electrons += rho.sum()
    print(f"{len(ids)} test records; share of the NMAE (percent) by distance to the nearest nucleus")
    print(f"{'shell (Bohr)':14s} {'model':>7s} {'rho0':>7s}")
    for lo, hi, m, r in zip(SHELLS[:-1], SHELLS[1:], model_error, rho0_error):
        print(f"{lo:4.1f} - {hi:<7.1f} {100 * m / electrons:7.3f} {100 * r / electrons:7.3f}")
    print(f"{'total':14s} {100 * model_error.sum() / electrons:7.3f} {100 * rho0_error.sum() / electrons:7.3f}")


if __name__ == "__main__":
    main()
