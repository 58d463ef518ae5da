"""The ``dft-operators`` command: argument parsing and one library call per subcommand.

Every subcommand takes ``--json``: its last stdout line is then one JSON object with its results.
Bad input ends with ``error: <what is wrong>`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from dft_operators import cache, errors, units
from dft_operators.kinds import KINDS

COMMANDS = ("reference", "molecules", "generate", "dataset", "train", "models", "predict", "evaluate", "scf",
            "ofdft", "md", "ir", "quickstart")


def _level(args, default):
    from dft_operators import reference

    pseudo = default.pseudo if args.pseudo is None else (None if args.pseudo.lower() == "none" else args.pseudo)
    return reference.Level(xc=args.xc or default.xc, basis=args.basis or default.basis, pseudo=pseudo,
                           aux_basis=args.aux_basis or default.aux_basis)


def _molecule(args):
    from dft_operators.molecule import parse_molecule

    return parse_molecule(args.molecule, charge=args.charge, spin=args.spin)


def _require_converged(result: dict, what: str, count_key: str = "cycles") -> None:
    """Exit 0 is for right answers only: an iteration that did not converge is an error."""
    if not result["converged"]:
        raise ValueError(f"{what} did not converge in {result[count_key]} {count_key.replace('_', ' ')}"
                         + (" (raise --max-cycle)" if count_key == "cycles" else ""))


def cmd_reference(args) -> dict:
    from dft_operators import reference
    from dft_operators.grids import DENSITY_MARGIN, UniformGrid
    from dft_operators.io.cube import write_cube

    mol = _molecule(args)
    level = _level(args, reference.Level())
    reference.check_level(level, mol.symbols)
    state = reference.run_ks(mol, level, max_cycle=args.max_cycle)
    result = {"energy": state.energy, "energy_kcal_mol": state.energy * units.HARTREE_TO_KCAL_PER_MOL,
              "converged": state.converged, "cycles": state.cycles, "n_electrons": state.density.n_electrons,
              "seconds": state.seconds, "dipole_debye": (state.dipole * units.DEBYE_PER_AU).tolist()}
    _require_converged(result, f"the SCF of {mol.name}")
    if args.cube:
        grid = UniformGrid.around(mol.positions, args.spacing, DENSITY_MARGIN if args.margin is None else args.margin)
        density = reference.density_on_box(state.density, grid)
        write_cube(args.cube, grid, density, mol, comment=f"PySCF {state.density.level.xc} density (e/Bohr^3)")
        result.update(cube=args.cube, cube_n_electrons=float(grid.integrate(density)))
    print(f"E = {state.energy:.8f} Ha ({result['energy_kcal_mol']:.2f} kcal/mol), converged={state.converged} "
          f"in {state.cycles} cycles, {state.seconds:.2f} s", file=sys.stderr)
    return result


def _molecule_list(specs: list[str], exclude: str | None = None):
    from dft_operators.data import molecule_specs

    return molecule_specs.resolve(specs, exclude)


def cmd_molecules(args) -> dict:
    from dft_operators.data import molecule_specs

    described = molecule_specs.describe(_molecule_list(args.specs, args.exclude))
    for m in described:
        print(f"{m['name']:24s} {m['heavy_atoms']:3d}  {m['smiles']}", file=sys.stderr)
    print(f"{len(described)} molecules", file=sys.stderr)
    return {"molecules": described, "count": len(described)}


def cmd_generate(args) -> dict:
    from dft_operators import reference
    from dft_operators.data.generate import GenerationSettings, generate

    kinds = tuple(k.strip() for k in args.kind.split(",") if k.strip())
    default = reference.Level() if kinds == ("grid",) else reference.ALL_ELECTRON
    settings = GenerationSettings(
        kinds=kinds, level=_level(args, default), spacing=args.spacing, box_shape=args.box,
        margin=GenerationSettings.margin if args.margin is None else args.margin,
        grid_level=args.grid_level, n_conformers=args.conformers, displacement=args.displacement,
        rotate=not args.no_rotate, strain=args.strain, torsion=args.torsion, random_potential=args.random_potential,
        forces=args.forces, seed=args.seed)
    molecules = _molecule_list(args.molecules, args.exclude)
    reference.check_level(settings.level, {s for m in molecules for s in m.symbols})  # before any work
    return generate(molecules, args.out, settings, executor=args.executor,
                    workers=args.workers, scheduler=args.scheduler, shard_size=args.shard_size,
                    progress=not args.quiet)


def cmd_dataset(args) -> dict:
    from dft_operators.io.dataset import Dataset

    summary = Dataset(args.data).summary()
    print(f"{summary['path']}: {summary['records']} records of {summary['molecules']} molecules in "
          f"{summary['shards']} shards ({summary['failed']} failed); kinds {summary['kinds']}; level "
          f"{summary['level']}", file=sys.stderr)
    for field, shape in summary["shapes"].items():
        print(f"  {field:28s} {shape}", file=sys.stderr)
    return summary


def cmd_train(args) -> dict:
    from dft_operators import api

    return api.train(args.kind, args.data, args.out, args.config, until_epoch=args.until_epoch,
                     progress=not args.quiet, init_from=args.init_from, coordinator=args.coordinator,
                     num_processes=args.num_processes, process_id=args.process_id)


def cmd_models(args) -> dict:
    from dft_operators.io import cards  # card files only: no JAX, no PySCF, so this answers at once

    models = cards.shipped_models()
    for m in models:
        level = " / ".join(str(m["level"][k]) for k in ("xc", "basis", "pseudo"))
        print(f"{m['name']:24s} {m['kind']:10s} {level:34s} {m['description']}", file=sys.stderr)
    return {"models": models}


def _prediction_json(result: dict, name: str) -> dict:
    extras = {k: result[k] for k in ("energy_hartree", "dipole_debye", "converged", "iterations") if k in result}
    if "forces" in result:
        extras["forces_hartree_per_bohr"] = result["forces"].tolist()
    return {"molecule": name, "seconds": result["seconds"], "n_electrons": result["n_electrons"],
            "level": result["level"], "cube": result["cube"], "shape": list(result["grid"].shape),
            "spacing": result["grid"].spacing, **extras}


def cmd_predict(args) -> dict:
    from dft_operators import api
    from dft_operators.molecule import parse_molecule

    start = time.perf_counter()
    molecules = [parse_molecule(m, charge=args.charge, spin=args.spin) for m in args.molecule]
    molecules += _molecule_list(args.molecules) if args.molecules else []
    if not molecules:
        raise ValueError("give a molecule (or several, or --molecules SPEC)")
    if len(molecules) > 1 and not args.cube_dir:
        raise ValueError(f"{len(molecules)} molecules: give --cube-dir DIR (one cube file each), not --cube")
    if len(molecules) == 1 and not (args.cube or args.cube_dir):
        raise ValueError("give --cube FILE (or --cube-dir DIR)")
    model = api.load_model(args.model)
    load_seconds = time.perf_counter() - start
    results = api.predict(model, molecules if args.cube_dir else molecules[0], args.cube, args.cube_dir,
                          refine=args.refine)
    records = [_prediction_json(r, m.name) for r, m in zip(results if args.cube_dir else [results], molecules)]
    for r in records:
        if "converged" in r:  # a prediction that iterates (KineticNet's orbital-free minimisation)
            _require_converged(r, f"the prediction of {r['molecule']}", "iterations")
    for r in records:
        print(f"wrote {r['cube']}: {r['n_electrons']:.4f} electrons on a {r['shape']} box in {r['seconds']:.3f} s",
              file=sys.stderr)
    timings = {"model_load": load_seconds, "predict": sum(r["seconds"] for r in records)}
    if len(records) == 1:
        return {**records[0], "timings": timings}
    return {"results": records, "timings": timings, "seconds": time.perf_counter() - start,
            "level": records[0]["level"]}


def cmd_evaluate(args) -> dict:
    from dft_operators import api

    return api.evaluate(args.model, args.data)


def cmd_scf(args) -> dict:
    start = time.perf_counter()
    from dft_operators import reference, scf_guess

    level = _level(args, reference.Level()) if args.xc or args.basis or args.pseudo else None
    molecule = _molecule(args)
    if level is not None:
        reference.check_level(level, molecule.symbols)
    imports = time.perf_counter() - start  # the libraries (JAX, PySCF) and the molecule
    result = scf_guess.scf_from_guess(molecule, args.guess, level, max_cycle=args.max_cycle, no_scf=args.no_scf)
    result["timings"] = {"import": imports, **result["timings"]}
    if args.no_scf:
        print(f"E_Harris = {result['energy_harris']:.8f} Ha, after one diagonalisation E = "
              f"{result['energy_one_step']:.8f} Ha (no SCF), {result['seconds']:.2f} s", file=sys.stderr)
        return result
    _require_converged(result, f"the SCF of {molecule.name} from the {result['guess']} guess")
    print(f"E = {result['energy']:.8f} Ha, converged={result['converged']} in {result['cycles']} cycles from the "
          f"{result['guess']} guess, {result['seconds']:.2f} s", file=sys.stderr)
    return {**result, "energy_kcal_mol": result["energy"] * units.HARTREE_TO_KCAL_PER_MOL}


def cmd_ofdft(args) -> dict:
    from dft_operators import api

    molecule = _molecule(args)
    result = api.ofdft(molecule, args.model, args.cube, grid_level=args.grid_level)
    _require_converged(result, f"the orbital-free minimisation of {molecule.name}", "iterations")
    print(f"E = {result['energy']:.8f} Ha with {result['kinetic']}, converged={result['converged']} in "
          f"{result['iterations']} iterations, {result['seconds']:.2f} s", file=sys.stderr)
    return {**result, "energy_kcal_mol": result["energy"] * units.HARTREE_TO_KCAL_PER_MOL, "cube": args.cube}


def cmd_md(args) -> dict:
    from dft_operators import api

    result = api.md(_molecule(args), args.model, args.steps, args.dt, args.out, temperature_k=args.temperature,
                    thermostat=args.thermostat, friction_per_ps=args.friction, seed=args.seed,
                    record_every=args.record_every, progress=not args.quiet)
    traj = result.pop("trajectory")
    print(f"{args.steps} steps of {args.dt} fs ({args.thermostat}), total-energy drift "
          f"{result['energy_drift']:.2e} Ha ({result['energy_drift_kcal_mol']:.4f} kcal/mol), mean T "
          f"{result['mean_temperature_k']:.0f} K; wrote {args.out}", file=sys.stderr)
    return {**result, "frames": len(traj.potential), "duration_ps": float(traj.times_fs[-1]) / 1000.0}


def cmd_ir(args) -> dict:
    from dft_operators import api

    result = api.ir(args.trajectory, args.png, max_cm1=args.max_cm1, min_relative=args.min_relative,
                    max_lag_fs=args.max_lag if args.max_lag > 0 else None)
    print("IR peaks (cm^-1, relative intensity): " + ", ".join(
        f"{p['cm1']:.0f} ({p['relative_intensity']:.2f})" for p in result["peaks"]), file=sys.stderr)
    return {"peaks_cm1": result["peaks_cm1"], "peaks": result["peaks"], "png": args.png}


def cmd_quickstart(args) -> dict:
    from dft_operators import quickstart

    return quickstart.run(args.workdir, progress=not args.quiet)


SPEC_HELP = ("molecule specs: xyz files, smiles:<SMILES>, builtin:<name>, set:<built-in set>, "
             "qm9:N[,heavy=K][,seed=S], enumerate:N[,heavy=K][,elements=CNOF][,seed=S], file:PATH.smi, file:DIR")


def _add_molecule(p, nargs=None):
    """The MOLECULE argument (one, or with nargs="*" any number) and its --charge and --spin."""
    p.add_argument("molecule", nargs=nargs, help="a .xyz file (Angstrom), smiles:<SMILES> or builtin:<name>")
    p.add_argument("--charge", type=int, default=0, help="total charge")
    p.add_argument("--spin", type=int, default=0, help="2S, unpaired electrons (PySCF's convention)")


def _add_level(p):
    p.add_argument("--xc", help="exchange-correlation functional (PySCF name); default lda,pw")
    p.add_argument("--basis", help="orbital basis; default gth-dzvp (grid) or def2-svp (all-electron)")
    p.add_argument("--pseudo", help="GTH pseudopotential, or 'none' for all electrons; default gth-pade (grid)")
    p.add_argument("--aux-basis", help="density-fitting basis (PySCF name, or etb:<orbital basis> for PySCF's "
                                       "even-tempered one); default def2-universal-jkfit")


def _add_max_cycle(p):
    p.add_argument("--max-cycle", type=int, default=100,
                   help="most SCF cycles; an SCF that has not converged by then is an error (exit 2)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dft-operators", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the results as one JSON line last")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("reference", parents=[common], help="PySCF Kohn-Sham ground state")
    _add_molecule(p)
    _add_level(p)
    _add_max_cycle(p)
    p.add_argument("--cube", help="write the density to this cube file")
    p.add_argument("--spacing", type=float, default=0.2, help="cube spacing in Bohr")
    p.add_argument("--margin", type=float, help="cube margin around the atoms in Bohr (default 5: "
                   "grids.DENSITY_MARGIN)")

    p = sub.add_parser("molecules", parents=[common], help="list what molecule specs resolve to (no computing)")
    p.add_argument("specs", nargs="+", metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--exclude", help="a .smi file: molecules with these canonical SMILES are left out")

    p = sub.add_parser("generate", parents=[common], help="make or extend a dataset (resumable)")
    p.add_argument("--molecules", nargs="+", required=True, metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--exclude", help="a .smi file: molecules with these canonical SMILES are left out")
    p.add_argument("--out", required=True, help="the dataset directory (shards + manifest)")
    p.add_argument("--kind", default="grid", help="comma list of grid, quadrature, coefficients")
    p.add_argument("--workers", type=int, default=1, help="worker processes (local, or of the LocalCluster)")
    p.add_argument("--executor", choices=["process", "dask"], default="process",
                   help="local processes, or Dask distributed (pip install dft_operators[cluster])")
    p.add_argument("--scheduler", help="a Dask scheduler address (tcp://HOST:PORT); default: a LocalCluster")
    p.add_argument("--shard-size", type=int, default=256, help="records per shard file")
    p.add_argument("--margin", type=float, help="Bohr every atom keeps from the box faces; molecules that "
                   "cannot are skipped (grid kind; default 2: GenerationSettings.margin)")
    p.add_argument("--conformers", type=int, default=4, help="conformers per molecule")
    p.add_argument("--displacement", type=float, default=0.1, help="std of atomic displacements, Bohr")
    p.add_argument("--no-rotate", action="store_true", help="keep the orientation of the input geometry")
    p.add_argument("--spacing", type=float, default=0.4, help="box spacing in Bohr (grid kind)")
    p.add_argument("--box", type=int, default=40, help="points per box axis (grid kind)")
    p.add_argument("--grid-level", type=int, default=2, help="PySCF quadrature grid level")
    p.add_argument("--random-potential", type=float, default=0.0, help="amplitude (Ha) of a random potential")
    p.add_argument("--strain", type=float, default=0.0, help="std of a random symmetric strain of each conformer")
    p.add_argument("--torsion", type=float, default=0.0,
                   help="std in degrees of random twists about each rotatable bond (not with the grid kind)")
    p.add_argument("--forces", action="store_true", help="also compute forces")
    p.add_argument("--seed", type=int, default=0)
    _add_level(p)

    p = sub.add_parser("train", parents=[common], help="train a model (resumes in --out)")
    p.add_argument("kind", choices=list(KINDS), help="model kind")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="model directory")
    p.add_argument("--config", help="JSON config: preset, model, train, task, held_out; \"base\": a config file it overrides")
    p.add_argument("--until-epoch", type=int, help="stop after this epoch (resume later)")
    p.add_argument("--init-from", help="start from this model's weights (same kind and model config)")
    p.add_argument("--coordinator", help="HOST:PORT of process 0 of a multi-process run (jax.distributed)")
    p.add_argument("--num-processes", type=int, help="processes of the multi-process run")
    p.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes - 1")

    p = sub.add_parser("dataset", parents=[common], help="what a dataset holds")
    p.add_argument("data", help="a dataset directory")

    sub.add_parser("models", parents=[common], help="list shipped models")

    p = sub.add_parser("predict", parents=[common], help="predict densities to cube files (one or many molecules)")
    p.add_argument("model", help="a shipped model's name or a model directory")
    _add_molecule(p, nargs="*")
    p.add_argument("--molecules", nargs="+", metavar="SPEC", help="more molecules: " + SPEC_HELP)
    cubes = p.add_mutually_exclusive_group()
    cubes.add_argument("--cube", help="output cube file (one molecule)")
    cubes.add_argument("--cube-dir", help="output folder: <molecule name>.cube for each molecule")
    p.add_argument("--refine", type=int, default=1, help="evaluate on a grid this many times finer")

    p = sub.add_parser("evaluate", parents=[common], help="metrics of a model on a dataset")
    p.add_argument("model")
    p.add_argument("--data", required=True)

    p = sub.add_parser("scf", parents=[common], help="PySCF SCF from a guess (a model's density or PySCF's)")
    _add_molecule(p)
    _add_level(p)
    p.add_argument("--guess", default="minao",
                   help="minao, atom, huckel, or a grid model (name or directory) whose density starts the SCF")
    p.add_argument("--no-scf", action="store_true",
                   help="no SCF: the Harris-Foulkes energy of the model's density and the energy and dipole after "
                        "one diagonalisation")
    _add_max_cycle(p)

    p = sub.add_parser("ofdft", parents=[common], help="orbital-free DFT ground state")
    _add_molecule(p)
    p.add_argument("--model", default="vw",
                   help="kinetic functional: tf, vw, tfvw (TF + vW/9) or a kineticnet model (name or directory)")
    p.add_argument("--cube", help="write the density to this cube file")
    p.add_argument("--grid-level", type=int, default=2, help="PySCF quadrature grid level")

    p = sub.add_parser("md", parents=[common], help="molecular dynamics on a densnet model's energy surface")
    _add_molecule(p)
    p.add_argument("--model", required=True, help="a densnet model (shipped name or directory)")
    p.add_argument("--steps", type=int, required=True, help="integration steps")
    p.add_argument("--dt", type=float, default=0.5, help="time step in fs")
    p.add_argument("--out", required=True, help="trajectory file (.npz)")
    p.add_argument("--temperature", type=float, default=300.0, help="initial (and bath) temperature in K")
    p.add_argument("--thermostat", choices=["nve", "langevin"], default="nve")
    p.add_argument("--friction", type=float, default=1.0, help="Langevin friction in 1/ps")
    p.add_argument("--record-every", type=int, default=1, help="steps between saved frames")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial velocities and the Langevin noise")

    p = sub.add_parser("ir", parents=[common], help="IR spectrum from a trajectory's dipole autocorrelation")
    p.add_argument("trajectory", nargs="+",
                   help="a trajectory written by `md`; several runs (other --seed) are averaged")
    p.add_argument("--png", help="plot the spectrum to this PNG")
    p.add_argument("--max-cm1", type=float, default=4000.0, help="highest wavenumber, cm^-1")
    p.add_argument("--min-relative", type=float, default=0.05, help="smallest peak reported, relative to the max")
    p.add_argument("--max-lag", type=float, default=2000.0,
                   help="longest correlation lag in fs (sets the resolution); 0 uses the whole run")

    p = sub.add_parser("quickstart", parents=[common], help="small end-to-end run against PySCF")
    p.add_argument("--workdir", default="quickstart-run", help="where data and models go")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cache.enable_compilation_cache()
    start = time.perf_counter()
    try:
        result = globals()[f"cmd_{args.command}"](args)
    except Exception as err:
        if not isinstance(err, errors.user_errors()):
            raise
        print(f"error: {err}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(err)}))
        return 2
    result.setdefault("seconds", time.perf_counter() - start)
    if args.json:
        print(json.dumps(result, default=str))
    elif args.command != "models":
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
