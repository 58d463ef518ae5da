"""What the experiment scripts share: the command line of a config-driven run and reading its config."""

import argparse
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))


def config_parser(doc: str, config: str, workdir: str, workers: int = 2) -> argparse.ArgumentParser:
    """--config (default experiments/configs/<config>), --workdir and --workers; the script adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(HERE, "configs", config))
    parser.add_argument("--workdir", default=workdir)
    parser.add_argument("--workers", type=int, default=workers, help="processes generating reference data")
    return parser


def read_config(path: str) -> tuple[dict, dict]:
    """(training config, its "data" section) of a config file, its "base" resolved (``setup.read_config``)."""
    from dft_operators.training.setup import read_config as read_file

    config = read_file(path)
    return config, config.pop("data")


def write_results(config_path: str, model_dir: str, result: dict) -> None:
    """experiments/results/<config name>.json (``result`` plus the model's training logs, pretraining stages
    as "<stage>_log") and <config name>[_<stage>]_learning_curve.png."""
    from dft_operators.training import metrics

    name = os.path.splitext(os.path.basename(config_path))[0]
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    stages = sorted(d for d in os.listdir(model_dir) if os.path.exists(os.path.join(model_dir, d, "log.jsonl")))
    logs = {}
    for stage, directory in [("", model_dir)] + [(s, os.path.join(model_dir, s)) for s in stages]:
        suffix = f"_{stage}" if stage else ""
        shutil.copy(os.path.join(directory, "learning_curve.png"),
                    os.path.join(HERE, "results", f"{name}{suffix}_learning_curve.png"))
        logs[f"{stage}_log" if stage else "log"] = metrics.JsonLog(os.path.join(directory, "log.jsonl")).read()
    with open(os.path.join(HERE, "results", f"{name}.json"), "w") as f:
        json.dump({**result, **logs}, f, indent=1)
