"""Molecular dynamics on a DenSNet surface and its IR spectrum, against PySCF's harmonic IR.

NVE (velocity Verlet) from the LDA/def2-svp minimum of ``harmonic_ir.py --molecule M`` (its JSON in
experiments/results), Maxwell-Boltzmann velocities at twice the target temperature (equipartition then
brings the run to about the target), in float64 with the model's dipole along the way; the IR spectrum from
the dipole autocorrelation (``spectra.ir_spectrum``: correlation to 2 ps under a Hann window, ~17 cm^-1
resolution; line heights compare with harmonic intensities). Each strong harmonic band (>= 10 % of the
strongest) is matched to the nearest MD peak (peaks of at least 2 % of the maximum), and so is the model's
own harmonic frequency of that mode (what the temperature alone moves on the same surface). --runs N
averages the spectra of N runs from other initial velocities (one run does not share the energy among the
modes in 10 ps, least at low temperature). Finished trajectories are reused.
Classical MD at 300 K shows the anharmonic shifts of the soft modes (O-H torsion, C-C-O bend); at low
temperature (--temperature 50) its peaks approach the harmonic frequencies of the surface, the like-for-like
comparison with PySCF's harmonic IR.
Run: python experiments/densnet_md_ir.py [--molecule ethanol] [--model densnet-<molecule>]
     [--name densnet_<molecule>] [--ps 10] [--dt 0.5] [--temperature 300] [--runs 1]
Writes experiments/results/<name>_md_ir_<T>K[_<N>runs].json and <name>_ir_<T>K[_<N>runs].png.
"""

import argparse
import json
import os

import numpy as np

from dft_operators import api, molecule, units
from dft_operators.md.trajectory import load_trajectory

HERE = os.path.dirname(os.path.abspath(__file__))


def match_bands(strong: list[dict], peaks: list[dict]) -> list[dict]:
    """For each strong harmonic band, the nearest MD peak and the distance in cm^-1."""
    out = []
    for band in strong:
        nearest = min(peaks, key=lambda p: abs(p["cm1"] - band["frequency_cm1"]))
        out.append({"harmonic_cm1": band["frequency_cm1"], "intensity_km_mol": band["intensity_km_mol"],
                    "md_cm1": nearest["cm1"], "difference_cm1": nearest["cm1"] - band["frequency_cm1"]})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="ethanol", help="a built-in molecule with a harmonic_ir.py result")
    parser.add_argument("--model", help="a shipped model's name or a model directory (default densnet-<molecule>)")
    parser.add_argument("--name", help="prefix of the result files (default densnet_<molecule>)")
    parser.add_argument("--ps", type=float, default=10.0, help="length of the NVE run in ps")
    parser.add_argument("--dt", type=float, default=0.5, help="time step in fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="target temperature in K")
    parser.add_argument("--runs", type=int, default=1,
                        help="independent NVE runs (initial-velocity seeds 0..runs-1) whose spectra are averaged")
    parser.add_argument("--max-lag", type=float, default=2000.0, help="longest dipole-correlation lag, fs")
    parser.add_argument("--workdir", default="runs/densnet_md")
    args = parser.parse_args()
    args.model = args.model or f"densnet-{args.molecule}"
    args.name = args.name or f"densnet_{args.molecule}"
    reference_path = os.path.join(HERE, "results", f"{args.molecule}_harmonic_ir.json")
    if not os.path.exists(reference_path):
        raise SystemExit(f"error: no {reference_path}; "
                         f"run python experiments/harmonic_ir.py --molecule {args.molecule}")
    with open(reference_path) as f:
        harmonic = json.load(f)
    start = molecule.from_xyz(harmonic["geometry_xyz_angstrom"], name=args.molecule)
    os.makedirs(args.workdir, exist_ok=True)
    tag = f"{args.temperature:g}K"  # every temperature has its own trajectories and results
    steps = int(round(args.ps * 1000 / args.dt))
    suffix = tag if args.runs == 1 else f"{tag}_{args.runs}runs"
    results_path = os.path.join(HERE, "results", f"{args.name}_md_ir_{suffix}.json")
    previous = {}
    if os.path.exists(results_path):  # the MD time of the runs that made the trajectories
        with open(results_path) as f:
            previous = json.load(f)
    traj_paths, drifts, fluctuations, temperatures, seconds = [], [], [], [], []
    for seed in range(args.runs):  # run 0 keeps the single-run file name; resume: finished runs are reused
        traj_path = os.path.join(args.workdir, f"{args.molecule}_nve_{tag}" + (f"_seed{seed}" if seed else "")
                                 + ".npz")
        if os.path.exists(traj_path):
            traj = load_trajectory(traj_path)
        else:
            md = api.md(start, args.model, steps=steps, dt_fs=args.dt, out=traj_path, seed=seed,
                        temperature_k=2 * args.temperature, record_every=2)
            traj = md.pop("trajectory")
            seconds.append(md["seconds"])
        traj_paths.append(traj_path)
        drifts.append(traj.energy_drift)
        fluctuations.append(float(traj.total.std()))
        temperatures.append(float(traj.temperature.mean()))
    md = {"energy_drift": max(drifts), "energy_fluctuation": max(fluctuations),
          "mean_temperature_k": float(np.mean(temperatures)),
          # MD time of all runs; when some were reused, that of the results that made them
          "seconds": sum(seconds) if len(seconds) == args.runs else previous.get("md_seconds")}
    strongest = max(b["intensity_km_mol"] for b in harmonic["strong_bands"])
    sticks = [(f, i / max(harmonic["intensities_km_mol"])) for f, i in
              zip(harmonic["frequencies_cm1"], harmonic["intensities_km_mol"])]
    ir = api.ir(traj_paths, os.path.join(HERE, "results", f"{args.name}_ir_{suffix}.png"), min_relative=0.02,
                reference_peaks=sticks, max_lag_fs=args.max_lag, min_cm1=100.0)
    bands = match_bands(harmonic["strong_bands"], ir["peaks"])
    # The model's own harmonic frequencies at PySCF's minimum separate surface errors from anharmonicity.
    model_ir = api.harmonic_ir(start, args.model)
    model_harmonic = model_ir["frequencies_cm1"]
    harmonic_error = model_harmonic - np.asarray(harmonic["frequencies_cm1"])
    # The same matching against the model's own harmonic frequencies: what the temperature alone moves.
    own = match_bands([{**b, "frequency_cm1": model_harmonic[b["mode"]]} for b in harmonic["strong_bands"]],
                      ir["peaks"])
    result = {"model": args.model, "runs": args.runs, "steps": steps, "dt_fs": args.dt,
              "duration_ps": float(traj.times_fs[-1]) / 1000,
              "energy_drift_hartree": md["energy_drift"],
              "energy_drift_kcal_mol": md["energy_drift"] * units.HARTREE_TO_KCAL_PER_MOL,
              "energy_fluctuation_kcal_mol": md["energy_fluctuation"] * units.HARTREE_TO_KCAL_PER_MOL,
              "mean_temperature_k": md["mean_temperature_k"], "md_seconds": md["seconds"],
              "peaks": ir["peaks"], "strong_bands": bands, "strongest_km_mol": strongest,
              "bands_within_30_cm1": int(sum(abs(b["difference_cm1"]) <= 30 for b in bands)),
              "bands_within_30_cm1_of_model_harmonic": int(sum(abs(b["difference_cm1"]) <= 30 for b in own)),
              "model_harmonic_cm1": model_harmonic.tolist(),
              "model_harmonic_error_cm1": harmonic_error.tolist(),
              "model_harmonic_intensities_km_mol": model_ir["intensities_km_mol"].tolist(),
              "model_harmonic_mae_cm1": float(np.abs(harmonic_error).mean()),
              "model_harmonic_strong_mae_cm1": float(np.mean([abs(harmonic_error[b["mode"]])
                                                              for b in harmonic["strong_bands"]])),
              "mean_abs_difference_cm1": float(np.mean([abs(b["difference_cm1"]) for b in bands]))}
    with open(results_path, "w") as f:
        json.dump(result, f, indent=1)
    print("harmonic, PySCF vs DenSNet (cm^-1):", " ".join(f"{a:.0f}/{b:.0f}" for a, b in
                                                          zip(harmonic["frequencies_cm1"], model_harmonic)))
    print("harmonic intensities, PySCF vs DenSNet (km/mol):", " ".join(
        f"{a:.0f}/{b:.0f}" for a, b in zip(harmonic["intensities_km_mol"], model_ir["intensities_km_mol"])))
    for b in bands:
        print(f"{b['harmonic_cm1']:8.1f} {b['intensity_km_mol']:7.1f} km/mol -> MD {b['md_cm1']:8.1f} "
              f"({b['difference_cm1']:+.1f})")
    print(json.dumps({k: v for k, v in result.items() if k not in ("peaks", "strong_bands")}))


if __name__ == "__main__":
    main()
