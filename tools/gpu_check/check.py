"""The GPU check in one command: every model of params.yaml trained and evaluated on JAX's GPU.

For a machine with Python 3.12, JAX (CUDA), numpy, pandas, matplotlib, scipy and scikit-learn but
no TensorFlow and no network: installs the project and the carried wheels (wheels.txt, fetched
into tools/gpu_check/wheels/ by fetch_wheels.sh, with a wheel of the project) into a folder
of its own, copies the repository
into OUT/work with `runner.backend=jax runner.device=gpu`, runs the real stage modules in
dvc.yaml's order (DVC's own wheels do not fit the 64 MiB the machine can be sent) into the copy's
embedded MLflow store, and prints one table: model, epochs, train seconds, validation and test
accuracy, device; then the same for `mixed_precision=true` on the slowest model. It leaves
OUT/table.txt and OUT/mlflow/ (the store's database and artifacts). MNIST comes from
$MNIST_MIRROR, as for every download. `--dry-run` lists the wheels and the commands only.

    python -m tools.gpu_check [--dry-run] [--out DIR] [--device gpu|cpu] [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.io import remove_owned

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WHEELS = HERE / "wheels"
# Not copied into the work folder: outputs, stores, caches and the carried wheels themselves.
SKIP = {
    ".git",
    ".venv",
    ".dvc/cache",
    "data",
    "models",
    "checkpoints",
    "mlflow",
    "tools/gpu_check",
}


@dataclass
class Step:
    """One command of the check: its words, folder and extra environment."""

    args: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def show(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        words = " ".join(shlex.quote(a) for a in self.args)
        return f"(cd {self.cwd} && {env + ' ' if env else ''}{words})"


def wheels(folder: Path = WHEELS) -> list[Path]:
    """The carried wheels, by name."""
    return sorted(folder.glob("*.whl"))


PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"]
PLATFORM += [
    f"--platform={tag}"
    for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
]


def install_steps(site: Path, folder: Path = WHEELS) -> list[Step]:
    """Install the carried wheels (the project's own among them) into `site`.

    No index, no dependencies, and the GPU machine's Python and platform named, so the same
    command installs the same files on any machine (the tests run it on a CPU).
    """
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    pip += ["--no-cache-dir", "--no-compile", "--disable-pip-version-check", *PLATFORM]
    return [Step([*pip, "--target", str(site), *map(str, wheels(folder))], REPO)]


def model_order(params: dict) -> list[str]:
    """Every model in dvc.yaml's order: the MLPs' stages, then the CNNs'."""
    return [*params["models"].get("mlp", {}), *params["models"].get("cnn", {})]


def stage(module: str, work: Path, *args: str) -> Step:
    return Step([sys.executable, "-m", f"pipeline.stages.{module}", *args], work)


def pipeline_steps(work: Path, models: list[str]) -> list[Step]:
    """download, preprocess, every train, every evaluate: dvc.yaml's order."""
    return [
        stage("download", work),
        stage("preprocess", work),
        *(stage("train", work, name) for name in models),
        *(stage("evaluate", work, name) for name in models),
    ]


def copy_repository(work: Path) -> None:
    """The repository's files, without outputs, stores and wheels, into `work`."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).resolve().relative_to(REPO)
        return {n for n in names if (relative / n).as_posix().removeprefix("./") in SKIP}

    if work.exists():
        remove_owned(work, work.parent)
    shutil.copytree(REPO, work, ignore=ignore)


def set_params(work: Path, **changes: object) -> dict:
    """Set dotted keys in the copy's params.yaml; return the whole params."""
    path = work / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def run(step: Step, env: dict[str, str]) -> None:
    print(f"$ {step.show()}", flush=True)
    done = subprocess.run(step.args, cwd=step.cwd, env={**env, **step.env})
    if done.returncode != 0:
        sys.exit(f"error: {step.show()} exited {done.returncode}")


def device_name(env: dict[str, str], device: str) -> str:
    code = f"import jax; print(jax.devices({device!r})[0].device_kind)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return done.stdout.strip() or f"unknown ({done.stderr.strip().splitlines()[-1:]})"


def row(work: Path, name: str, device: str) -> dict:
    params = yaml.safe_load((work / "params.yaml").read_text())["models"]
    target = {**params.get("mlp", {}), **params.get("cnn", {})}[name]["target_accuracy"]
    reports = work / "reports" / "models" / name
    trained = json.loads((reports / "train.json").read_text())
    evaluated = json.loads((reports / "metrics.json").read_text())
    return {
        "model": name,
        "epochs": trained["epochs"],
        "train_seconds": trained["train_seconds"],
        "val_accuracy": trained["val_accuracy"],
        "test_accuracy": evaluated["test_accuracy"],
        "target": target,
        "device": device,
    }


def table(rows: list[dict], title: str) -> str:
    header = (
        f"{'model':<16} {'epochs':>6} {'train s':>9} {'val acc':>8} {'test acc':>8} "
        f"{'target':>8}  device"
    )
    lines = [title, header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['model']:<16} {r['epochs']:>6} {r['train_seconds']:>9.1f} "
            f"{r['val_accuracy']:>8.4f} {r['test_accuracy']:>8.4f} "
            f"{r['target']:>7.4f}{'' if r['test_accuracy'] >= r['target'] else '!'}  {r['device']}"
        )
    total = sum(r["train_seconds"] for r in rows)
    lines.append(f"{'total':<16} {'':>6} {total:>9.1f}   (! below its target_accuracy)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="list wheels and commands only")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="results and work folder")
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--models", help="comma-separated subset of params.yaml's models")
    parser.add_argument("--wheels", type=Path, default=WHEELS, help="the carried wheels")
    args = parser.parse_args(argv)

    out, work, site = args.out.resolve(), args.out.resolve() / "work", args.out.resolve() / "site"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    models = args.models.split(",") if args.models else model_order(params)
    carried = wheels(args.wheels)
    size = sum(w.stat().st_size for w in carried)
    steps = install_steps(site, args.wheels) + pipeline_steps(work, models)
    if args.dry_run:
        print(f"wheels in {args.wheels} ({len(carried)}, {size / 2**20:.1f} MiB):")
        print("\n".join(f"  {w.name} ({w.stat().st_size / 2**20:.1f} MiB)" for w in carried))
        print(f"copy {REPO} to {work}; params: runner.backend=jax runner.device={args.device}")
        print("\n".join(step.show() for step in steps))
        print("then, mixed_precision=true, the train and evaluate commands of the slowest model")
        return 0
    if not carried:
        sys.exit(f"error: no wheels in {args.wheels} (run tools/gpu_check/fetch_wheels.sh)")

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        KERAS_BACKEND="jax",
        PYTHONUNBUFFERED="1",
    )
    for step in steps[:1]:
        run(step, env)
    copy_repository(work)
    set_params(work, **{"runner.backend": "jax", "runner.device": args.device})
    device = device_name(env, args.device)
    for step in steps[1:]:
        run(step, env)
    rows = [row(work, name, device) for name in models]
    slowest = max(rows, key=lambda r: r["train_seconds"])["model"]
    set_params(work, **{"runner.mixed_precision": True})
    for step in (stage("train", work, slowest), stage("evaluate", work, slowest)):
        run(step, env)
    mixed = [row(work, slowest, device)]

    text = "\n\n".join(
        [
            table(rows, f"runner.backend=jax runner.device={args.device}, float32"),
            table(mixed, "runner.mixed_precision=true, the slowest model"),
            f"machine time {time.monotonic() - started:.0f} s",
        ]
    )
    print(text)
    (out / "table.txt").write_text(text + "\n")
    if (out / "mlflow").exists():
        remove_owned(out / "mlflow", out)
    shutil.copytree(work / "mlflow", out / "mlflow")
    return 0
