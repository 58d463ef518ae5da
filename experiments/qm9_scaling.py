"""Scaling study: held-out density NMAE of V2Rho-FNO and DeepSCF against the number of QM9 training molecules.

On the QM9 grid dataset (``experiments/qm9_grid_dataset.py``: one rotated conformer per molecule, LDA/GTH
valence densities on a 56^3 box of 0.4 Bohr), one seeded order of the molecules fixes a test set (``--test``
molecules, C/H/N/O only, the same for every run and in no training set), a validation set (``--val``, which
picks each run's best epoch) and the pool the training sets are drawn from; the training sets are nested
(the first N of one seeded order of the pool: ``train.max_train_molecules``). Each run sees about the same
number of samples (``--samples``: epochs = samples / N), so small sets get more epochs; one curve is one
(variant, sample budget), and a larger budget is another curve: where the curves of two budgets differ more
than the points along one, the model is limited by compute, not data. Every run is a normal
``dft-operators train`` into ``<workdir>/<variant>-n<N>-s<samples>`` (validated about 20 times) and resumes
after a kill; evaluation is ``api.evaluate`` on the test records; each finished run is merged into the
report, so separate invocations (other sizes, budgets, variants) add curves. Variants (``VARIANTS``): the
paper's potential-to-density FNO (``fno``), the FNO Delta-learning on top of rho0 (``fno_delta``), the
same with a local differential-kernel path in each Fourier layer (``fno_delta_local``), the same with
DeepSCF's atomic fingerprints as inputs (``fno_delta_fp``: analytic on every grid, so they keep the
resolution transfer), DeepSCF (``deepscf``) and a wider, deeper DeepSCF (``deepscf_wide``: width 32, two
blocks a level). The level of theory is LDA with GTH pseudopotentials (valence densities), where the
field's QM9 numbers (SCDP 0.178 %, ChargE3Net 0.196 % NMAE) are all-electron PBE on VASP/DeepDFT grids:
compare trends, not digits.

Run: python experiments/qm9_scaling.py --data ~/dft_data/qm9_grid --workdir ~/dft_runs/qm9_scaling
       [--sizes 30 100 300 1000] [--variants deepscf fno_delta_fp fno] [--samples 3000]
  -> experiments/results/qm9_scaling.json and qm9_scaling.png (log-log NMAE against N, fitted exponents,
     the N extrapolated for 1 %; the shipped models of ``train_shipped_qm9.py`` as stars once they exist).
     ``--sizes`` given no values only redraws the report and the plot from the JSON. On a GPU the same
     command trains there (JAX picks the device).
"""

import argparse
import dataclasses
import json
import math
import os

import numpy as np

from dft_operators import api
from dft_operators.training.setup import read_config
from dft_operators.io.dataset import Dataset
from dft_operators.training import metrics

HERE = os.path.dirname(os.path.abspath(__file__))
# variant -> (model kind, config): the paper's potential-to-density FNO, the FNO Delta-learning on top of
# rho0 (potential and rho0 in, the "delta" head), DeepSCF
VARIANTS = {"fno": ("fno", "fno_qm9.json"), "fno_delta": ("fno", "fno_delta_qm9.json"),
            "fno_delta_local": ("fno", "fno_delta_local_qm9.json"), "fno_delta_fp": ("fno", "fno_delta_fp_qm9.json"),
            "deepscf": ("deepscf", "deepscf_qm9.json"),
            "deepscf_wide": ("deepscf", "deepscf_wide_qm9.json")}
SHIPPED = ("deepscf-qm9", "v2rho-fno-qm9")  # models of train_shipped_qm9.py, on the same test molecules
TEST_ELEMENTS = {1, 6, 7, 8}
VALIDATIONS = 20  # validations a run (the best of them is kept)


def fixed_sets(ds: Dataset, n_test: int, n_val: int, seed: int) -> tuple[list[str], list[str]]:
    """(test, validation) molecules (canonical SMILES) of one seeded order; test molecules are C/H/N/O only."""
    keys = ds.molecule_keys()
    elements = {}
    for rid, key in zip(ds.ids, keys):
        elements.setdefault(key, set()).update(int(z) for z in ds.read(rid, ["numbers"])["numbers"])
    order = np.random.default_rng(seed).permutation(sorted(elements)).tolist()
    test = [k for k in order if elements[k] <= TEST_ELEMENTS][:n_test]
    val = [k for k in order if k not in test][:n_val]
    return test, val


def run_config(variant: str, size: int, test: list[str], val: list[str], samples: int) -> dict:
    """The training config of one run: the variant's QM9 config with the split and the epoch budget."""
    config = read_config(os.path.join(HERE, "configs", VARIANTS[variant][1]))
    epochs = max(1, math.ceil(samples / size))
    # about VALIDATIONS checks a run: validating 40 whole boxes after each of the 100 epochs of N = 30 would
    # cost more than the training itself
    config["train"].update(epochs=epochs, validate_every=max(1, epochs // VALIDATIONS))
    return {**config, "held_out": val, "exclude": test, "max_train_molecules": size}


def record_ids(ds: Dataset, molecules: list[str]) -> list[str]:
    """The dataset's records of these molecules (canonical SMILES), in dataset order."""
    wanted = set(molecules)
    return [rid for rid, key in zip(ds.ids, ds.molecule_keys()) if key in wanted]


def training_seconds(model_dir: str) -> float:
    """Wall time of every logged epoch of a training run, also those of earlier (killed) calls."""
    with open(os.path.join(model_dir, "log.jsonl")) as f:
        return sum(json.loads(line)["seconds"] for line in f)


def rho0_nmae(ds: Dataset, ids: list[str]) -> float:
    """Mean NMAE (percent) of the atomic-density guess rho0 on the test records: the no-learning baseline."""
    values = []
    for rid in ids:
        r = ds.read(rid, ["grid/rho", "grid/rho0"])
        values.append(float(metrics.nmae_percent(r["grid/rho0"][None], r["grid/rho"][None], 1.0)[0]))
    return float(np.mean(values))


def power_law(sizes, nmae) -> dict:
    """NMAE = a N^b fitted in log-log; the N where it reaches 1 %."""
    b, log_a = np.polyfit(np.log(sizes), np.log(nmae), 1)
    log_n = -log_a / b if b < 0 else math.inf  # ln N at 1 %
    return {"exponent": float(b), "prefactor": float(np.exp(log_a)),
            "molecules_for_1_percent": float(np.exp(log_n)) if log_n < 700 else None}


def shipped_points(test: list[str]) -> list[dict]:
    """The shipped models' test results (``train_shipped_qm9.py``'s JSON) on these test molecules, if made."""
    points = []
    for name in SHIPPED:
        path = os.path.join(HERE, "results", f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                result = json.load(f)
            if result["test_molecules"] == test:
                points.append({"name": name, "train_molecules": result["training"]["n_train"],
                               "epochs": result["training"]["epochs"], "train_wall_seconds": result["train_wall_seconds"],
                               "test_nmae_percent": result["test"]["nmae_percent"]})
    return points


def plot(path: str, results: dict, baseline: float, shipped: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for curve, runs in results.items():
        sizes = [r["train_molecules"] for r in runs]
        nmae = [r["test_nmae_percent"] for r in runs]
        line, = ax.loglog(sizes, nmae, "o-", label=curve)
        if len(runs) >= 2:
            fit = power_law(sizes, nmae)
            grid = np.geomspace(min(sizes), max(sizes), 50)
            ax.loglog(grid, fit["prefactor"] * grid ** fit["exponent"], "--", color=line.get_color(),
                      label=f"fit: N^{fit['exponent']:.2f}")
    for point in shipped:
        ax.loglog(point["train_molecules"], point["test_nmae_percent"], "*", ms=14,
                  label=f"shipped {point['name']}: {point['test_nmae_percent']:.2f} %")
    ax.axhline(baseline, color="gray", lw=1, label=f"rho0 (atomic guess) {baseline:.1f} %")
    ax.set_xlabel("QM9 training molecules")
    ax.set_ylabel("held-out density NMAE (%)")
    sizes = sorted({r["train_molecules"] for runs in results.values() for r in runs})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xticks([], minor=True)
    ticks = [t for t in (1, 2, 3, 4, 6, 8, 10, 16) if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    ax.set_yticks(ticks, [f"{t} %" for t in ticks])
    ax.set_yticks([], minor=True)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.expanduser("~/dft_data/qm9_grid"))
    parser.add_argument("--workdir", default=os.path.expanduser("~/dft_runs/qm9_scaling"))
    parser.add_argument("--sizes", type=int, nargs="*", default=[30, 100, 300, 1000],
                        help="training molecules per run; none: only redraw the report")
    parser.add_argument("--variants", nargs="+", default=["deepscf", "fno_delta_fp", "fno"], choices=sorted(VARIANTS))
    parser.add_argument("--test", type=int, default=100, help="test molecules (C/H/N/O, in no training set)")
    parser.add_argument("--val", type=int, default=40, help="validation molecules (best epoch)")
    parser.add_argument("--samples", type=int, default=3000, help="training samples per run (epochs = samples / N)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "qm9_scaling.json"))
    args = parser.parse_args()

    ds = Dataset(args.data)
    test, val = fixed_sets(ds, args.test, args.val, args.seed)
    keys = ds.molecule_keys()
    test_ids = record_ids(ds, test)
    baseline = rho0_nmae(ds, test_ids)
    print(f"{len(ds)} records; test {len(test)} molecules ({len(test_ids)} records), validation {len(val)}; "
          f"rho0 on the test records: {baseline:.2f} % NMAE", flush=True)
    qm9_index = dict(zip(keys, ds.attribute("qm9_index")))
    report = {"data": args.data, "records": len(ds), "level": ds.metadata["level"],
              "test_molecules": test, "test_qm9_indices": sorted(int(qm9_index[k]) for k in test),
              "validation_molecules": val, "rho0_test_nmae_percent": baseline,
              "runs": earlier_runs(args.out, test)}  # a report on other test molecules is refused now
    if not args.sizes:
        write_report(args.out, report)
        return
    first = args.variants[0]
    smallest, _ = api.split(ds, api.TrainSetup.resolve(VARIANTS[first][0], run_config(first, min(args.sizes), test,
                                                                                      val, args.samples)))
    seen = set(ds.elements(smallest))
    if not TEST_ELEMENTS <= seen:
        raise SystemExit(f"error: the smallest training set ({min(args.sizes)} molecules) lacks elements "
                         f"{sorted(TEST_ELEMENTS - seen)} of the test set; try another --seed")
    for variant in args.variants:
        curve = curve_name(variant, args.samples)
        for size in sorted(args.sizes):
            run = train_and_test(variant, size, ds, test, val, test_ids, args)
            report["runs"] = earlier_runs(args.out, test)  # with what other invocations wrote meanwhile
            others = [r for r in report["runs"].get(curve, []) if r["train_molecules"] != size]
            report["runs"][curve] = sorted(others + [run], key=lambda r: r["train_molecules"])
            write_report(args.out, report)  # after every run: a killed study keeps what it measured


def curve_name(variant: str, samples: int) -> str:
    """One curve of the study: a variant at one sample budget."""
    return f"{variant}, {samples} samples"


def earlier_runs(path: str, test: list[str]) -> dict:
    """The runs of an earlier report on the same test molecules (curve -> runs), else {}."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        earlier = json.load(f)
    if earlier.get("test_molecules") != test:
        raise SystemExit(f"error: {path} holds a study on other test molecules: pass another --out")
    return earlier.get("runs", {})


def train_and_test(variant: str, size: int, ds: Dataset, test, val, test_ids, args) -> dict:
    """One point of the study: train (or resume) the run, evaluate it on the test records."""
    kind = VARIANTS[variant][0]
    config = run_config(variant, size, test, val, args.samples)
    setup = api.TrainSetup.resolve(kind, config)
    train_ids, _ = api.split(ds, setup)
    out = os.path.join(args.workdir, f"{variant}-n{size}-s{args.samples}")
    summary = api.train(kind, args.data, out, config, progress=False)
    wall = training_seconds(out)
    evaluation = api.evaluate(out, args.data, test_ids)
    run = {"train_molecules": size, "train_records": len(train_ids), "samples": args.samples,
           "epochs": setup.train_config.epochs,
           "best_epoch": summary.get("best_epoch"), "train_wall_seconds": wall,
           "test_nmae_percent": evaluation["nmae_percent"], "test_records": evaluation["records"],
           "model": out, "train_config": dataclasses.asdict(setup.train_config)}
    print(f"{variant} N={size}, {args.samples} samples: {run['epochs']} epochs, {wall / 60:.1f} min training, "
          f"test NMAE "
          f"{run['test_nmae_percent']:.2f} %", flush=True)
    return run


def write_report(path: str, report: dict) -> None:
    """The JSON report with power-law fits of the variants that have two or more points and the shipped models'
    points, and the PNG."""
    report["fits"] = {curve: power_law([r["train_molecules"] for r in runs], [r["test_nmae_percent"] for r in runs])
                      for curve, runs in report["runs"].items() if len(runs) >= 2}
    report["shipped"] = shipped_points(report["test_molecules"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1, default=str)
    plot(os.path.splitext(path)[0] + ".png", report["runs"], report["rho0_test_nmae_percent"], report["shipped"])
    for curve, fit in report["fits"].items():
        print(f"{curve}: NMAE ~ N^{fit['exponent']:.2f}; 1 % at about "
              f"{fit['molecules_for_1_percent'] or float('inf'):.3g} molecules", flush=True)


if __name__ == "__main__":
    main()
