"""Dataset generation killed halfway and resumed, and the cost of field evaluation over the bare SCF.

20 conformers of 5 molecules with all three field kinds (grid, quadrature, coefficients; all-electron
def2-svp), `dft-operators generate` killed with SIGKILL after half of the records and run again.
Reports wall time, records, and the overhead ratio: (SCF + fields) / bare SCF summed over records.
Run: python experiments/bench_generation.py   -> experiments/results/bench_generation.json
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from dft_operators.io import dataset
from dft_operators.io.dataset import Dataset

HERE = os.path.dirname(os.path.abspath(__file__))
MOLECULES = ["builtin:water", "builtin:methane", "builtin:ammonia", "builtin:methanol", "builtin:formaldehyde"]


def main():
    work = tempfile.mkdtemp()
    out = os.path.join(work, "data")
    args = [sys.executable, "-m", "dft_operators.cli", "generate", "--molecules", *MOLECULES, "--out", out,
            "--kind", "grid,quadrature,coefficients", "--conformers", "4", "--spacing", "0.3", "--box", "48",
            "--workers", "2", "--quiet", "--json"]
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while proc.poll() is None and (not os.path.isdir(out) or len(dataset.pending_records(out)) < 10):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(dataset.pending_records(out))
    resumed = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    wall = time.perf_counter() - start
    ds = Dataset(out)
    scf, total = ds.attribute("scf_seconds").sum(), ds.attribute("seconds").sum()
    result = {"records": len(ds), "failed": len(ds.failed), "kept_after_kill": kept, "resume": resumed,
              "wall_seconds_including_kill_and_restart": wall, "sum_scf_seconds": float(scf),
              "sum_record_seconds": float(total), "overhead_ratio": float(total / scf),
              "energies_finite": bool(np.all(np.isfinite(ds.attribute("energy"))))}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "bench_generation.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
