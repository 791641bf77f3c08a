"""Measure the pipeline on this machine: tracking overhead, epoch times, DVC start-up, the full
pipeline (--full only), input loading and CPU settings.

    python -m pipeline.bench [--json PATH] [--full] [--repeats N] [--sections tracking,input,...]

Prints one aligned plain-text table per section on stdout (progress goes to stderr) and, with
--json, writes the same figures as JSON. Each figure is the median of several runs. Each comparison
is a ratio of two sides measured in the same invocation, run in alternating order (a, b, b, a, ...)
so that a slow drift of the machine cancels out; the ratio is the median of the per-repeat ratios.
The bench only reports: params.yaml is never changed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from pipeline import data, io, paths
from pipeline.config import ModelSpec, Params, flatten, load_params
from pipeline.errors import DataError, PipelineError

if TYPE_CHECKING:  # TensorFlow, Keras and MLflow are imported only by the sections that use them
    import keras

    from pipeline.runner import Runtime
    from pipeline.tracking import TrackedRun

log = logging.getLogger("pipeline.bench")

SECTIONS = ("tracking", "epochs", "dvc", "full", "input", "cpu")  # in the order they run
DEFAULT_SECTIONS = ("tracking", "epochs", "dvc", "input", "cpu")  # "full" needs --full
TENSORFLOW_SECTIONS = {"tracking", "epochs", "cpu"}
TITLES = {
    "tracking": "1. Tracking overhead",
    "epochs": "2. Epoch time per architecture",
    "dvc": "3. DVC start-up (no-op dvc repro)",
    "full": "4. Full dvc repro",
    "input": "5. Input pipeline",
    "cpu": "6. CPU settings",
}
# Wall-clock budget per section on 2 idle cores; the default sections must stay under 10 minutes.
BUDGET_SECONDS = {
    "tracking": 120,
    "epochs": 80,
    "dvc": 240,
    "full": 3600,
    "input": 30,
    "cpu": 120,
}

PREFERRED_MODEL = "cnn_a_32_64"  # the small CNN of sections 1 and 6; else the smallest CNN
REPEATS = 3  # medians of sections 2 and 6

TRACKING_REPEATS = 5
TRACKING_TRAIN_IMAGES = 12_000
TRACKING_VAL_IMAGES = 3_000
TRACKING_EPOCHS = 2
TRACKING_GOAL_RATIO = 1.03
FIXED_COST_REPEATS = 3

EPOCH_IMAGES_MAX = 10_240
EPOCH_IMAGES_MIN = 2_560
WARMUP_BATCHES = 5
PROBE_BATCHES = 10

DVC_REPEATS = 5
DVC_GOAL_SECONDS = 1.5
TINY_TRAIN_LIMIT = 600
TINY_EPOCHS = 1
TINY_MODELS = {
    "mlp": {
        "tiny_mlp": {
            "source": "E",
            "reported_accuracy": 0.975,
            "target_accuracy": 0.5,
            "hidden": [32],
            "dropout": 0.0,
        }
    },
    "cnn": {
        "tiny_cnn": {
            "source": "A",
            "reported_accuracy": 0.9875,
            "target_accuracy": 0.5,
            "dropout": 0.25,
            "layers": [{"conv": 8, "kernel": 3}, {"pool": 2}, "flatten", "dropout"],
        }
    },
}

MEMORY_GOAL_BYTES = 4 * 2**30
SAMPLE_SECONDS = 0.5

INPUT_REPEATS = 5
INPUT_GOAL_SECONDS = 2.0

CPU_IMAGES = 10_240
CPU_BATCH_SIZES = (64, 128, 256)

# Above this many CPUs' worth of other work during a section, its wall times are noisy.
CONTENTION_WARNING_CPUS = 0.25


class BenchError(PipelineError):
    """A measurement could not be taken: a command failed or a worker process died."""


# ---------------------------------------------------------------------------- pure helpers


def median(values: Sequence[float]) -> float:
    """The median of `values`; a ValueError for none."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def alternating_order(sides: Sequence[str], repeats: int) -> list[str]:
    """Each repeat runs every side once; odd repeats in reverse order: a,b,b,a,a,b,..."""
    order: list[str] = []
    for repeat in range(repeats):
        order.extend(sides if repeat % 2 == 0 else reversed(sides))
    return order


def interleave(
    measures: Mapping[str, Callable[[], dict[str, Any]]], repeats: int
) -> dict[str, list[dict[str, Any]]]:
    """Run each measure `repeats` times in alternating order; runs[side][i] is repeat i."""
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in measures}
    for side in alternating_order(list(measures), repeats):
        log.info("  %s (run %d of %d)", side, len(runs[side]) + 1, repeats)
        runs[side].append(measures[side]())
    return runs


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of the per-repeat ratios numerator_i / denominator_i."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators but {len(denominators)} denominators")
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


def verdict(value: float, goal: float) -> str:
    """PASS if `value` is at most `goal`, else FAIL."""
    return "PASS" if value <= goal else "FAIL"


def summary(runs: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    """The values of `key` over the runs, their median, minimum and maximum."""
    values = [float(run[key]) for run in runs]
    return {"runs": values, "median": median(values), "min": min(values), "max": max(values)}


def subset_size(
    images_per_second: float, target_seconds: float, batch_size: int, low: int, high: int
) -> int:
    """Images for an epoch of about `target_seconds`, clamped to [low, high], whole batches."""
    wanted = min(max(images_per_second * target_seconds, low), high)
    return max(batch_size, int(wanted) // batch_size * batch_size)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned, a rule below."""
    cells = [[str(cell) for cell in headers]]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {list(row)} has {len(row)} cells, expected {len(headers)}")
        cells.append([str(cell) for cell in row])
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        aligned = [row[0].ljust(widths[0])]
        aligned += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(aligned).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def alternation_text(sides: Sequence[str]) -> str:
    """How the sides were ordered, e.g. `a,b,b,a,...`."""
    return ",".join(alternating_order(sides, 2)) + ",..."


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Fill the yielded dict with the block's wall and CPU seconds (all threads of the process)."""
    figures: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield figures
    figures["wall_s"] = time.perf_counter() - wall
    figures["cpu_s"] = time.process_time() - cpu


def busy_cpu_seconds() -> tuple[float, float]:
    """Busy CPU seconds so far of the machine, and of this process and its reaped children."""
    import psutil

    machine = psutil.cpu_times()
    busy = sum(
        getattr(machine, field, 0.0)
        for field in ("user", "nice", "system", "irq", "softirq", "steal")
    )
    own = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )
    return busy, own


def other_cpus(machine_seconds: float, own_seconds: float, wall_seconds: float) -> float:
    """CPUs other processes kept busy on average: (machine - own) CPU seconds per second."""
    return max(0.0, machine_seconds - own_seconds) / wall_seconds if wall_seconds > 0 else 0.0


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block, then restore the old values."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---------------------------------------------------------------------------- models and data


def pick_model(params: Params, preferred: str = PREFERRED_MODEL) -> str:
    """`preferred` if params has it, else the CNN with the fewest parameters."""
    if preferred in params.models:
        return preferred
    from pipeline.models import build_model

    sizes = {
        name: build_model(
            spec, (*params.data.image_shape, 1), params.data.num_classes
        ).count_params()
        for name, spec in params.models.items()
        if spec.kind == "cnn"
    }
    if not sizes:
        raise BenchError(f"no CNN in params.models to benchmark (and no {preferred})")
    return min(sizes, key=sizes.__getitem__)


def subset(
    dataset: Mapping[str, Any], train_images: int, val_images: int, seed: int
) -> dict[str, np.ndarray]:
    """A stratified subset of the training and validation splits (0 keeps a whole split)."""
    train = data.stratified_subset(dataset["y_train"], train_images, seed)
    val = data.stratified_subset(dataset["y_val"], val_images, seed)
    return {
        "x_train": dataset["x_train"][train],
        "y_train": dataset["y_train"][train],
        "x_val": dataset["x_val"][val],
        "y_val": dataset["y_val"][val],
    }


def fresh_model(
    params: Params,
    spec: ModelSpec,
    train_size: int,
    jit_compile: bool,
    batch_size: int | None = None,
    policy: str | None = None,
) -> keras.Model:
    """Seed, build and compile `spec` as the train stage does; `policy` only for this model."""
    import keras

    from pipeline import training
    from pipeline.models import build_model

    train = (
        spec.train
        if batch_size is None
        else dataclasses.replace(spec.train, batch_size=batch_size)
    )
    keras.utils.set_random_seed(params.seed)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy or previous)
    try:
        model = build_model(spec, (*params.data.image_shape, 1), params.data.num_classes)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    training.compile_model(model, train, train_size, jit_compile)
    return model


class EpochTrial:
    """A compiled model on fixed data: warm up once, then time epochs that replay one epoch.

    Before every timed epoch the model's variables (weights, batch-norm statistics, dropout and
    augmentation seeds), the optimizer state and the global seeds are restored, so with op
    determinism each repeat is the same "epoch 1 from the same initial weights": the validation
    accuracy is evaluated once, after the first, and comparable across settings.
    """

    def __init__(
        self,
        model: keras.Model,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        seed: int,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        eval_batch_size: int = 1000,
    ) -> None:
        self.model, self.x, self.y, self.batch_size, self.seed = model, x, y, batch_size, seed
        self.validation, self.eval_batch_size = validation, eval_batch_size
        self.val_accuracy: float | None = None
        model.optimizer.build(model.trainable_variables)
        self._state = [v.numpy() for v in (*model.variables, *model.optimizer.variables)]

    def restore(self) -> None:
        """Back to the state the model was compiled with, global seeds included."""
        import keras

        variables = (*self.model.variables, *self.model.optimizer.variables)
        for variable, value in zip(variables, self._state, strict=True):
            variable.assign(value)
        keras.utils.set_random_seed(self.seed)

    def warm_up(self, batches: int = WARMUP_BATCHES) -> None:
        """Trace (and for XLA compile) the train function on a few batches."""
        count = batches * self.batch_size
        self.model.fit(
            self.x[:count], self.y[:count], batch_size=self.batch_size, epochs=1, verbose=0
        )

    def probe(self, batches: int = PROBE_BATCHES) -> float:
        """Images per second over a few batches (after warm_up); fit overhead makes it low."""
        count = batches * self.batch_size
        with timed() as took:
            self.model.fit(
                self.x[:count], self.y[:count], batch_size=self.batch_size, epochs=1, verbose=0
            )
        return count / took["wall_s"]

    def use(self, images: int) -> None:
        """Time epochs over the first `images` images from now on."""
        self.x, self.y = self.x[:images], self.y[:images]

    def epoch(self) -> dict[str, float]:
        """Wall and CPU seconds and final loss of one epoch; validation accuracy (not timed)."""
        self.restore()
        with timed() as figures:
            history = self.model.fit(
                self.x, self.y, batch_size=self.batch_size, epochs=1, shuffle=True, verbose=0
            )
        figures["train_loss"] = float(history.history["loss"][-1])
        if self.validation is not None:
            if self.val_accuracy is None:  # the repeats replay this epoch
                x_val, y_val = self.validation
                scores = self.model.evaluate(
                    x_val, y_val, batch_size=self.eval_batch_size, verbose=0, return_dict=True
                )
                self.val_accuracy = float(scores["accuracy"])
            figures["val_accuracy"] = self.val_accuracy
        return figures


def clear_keras() -> None:
    """Free the models and graphs of the previous measurement."""
    import keras

    keras.backend.clear_session()


# ---------------------------------------------------------------------------- 1. tracking


def tracking_overhead(
    params: Params,
    runtime: Runtime,
    repeats: int = TRACKING_REPEATS,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Plain model.fit against training.fit with the pipeline's callbacks and MLflow logging."""
    from pipeline import tracking, training

    name = model_name or pick_model(params)
    spec = params.model(name)
    train = dataclasses.replace(spec.train, epochs=TRACKING_EPOCHS)
    dataset = data.load_dataset(paths.DATASET)
    part = subset(dataset, TRACKING_TRAIN_IMAGES, TRACKING_VAL_IMAGES, params.seed)
    del dataset
    train_size = len(part["y_train"])
    tags = {"pipeline.model": name, "pipeline.stage": "bench", **runtime.tags()}

    def model() -> keras.Model:
        return fresh_model(params, spec, train_size, runtime.jit_compile)

    # MLflow keeps the artifacts of a store named by MLFLOW_TRACKING_URI under ./mlruns, so the
    # working directory is the temporary folder too.
    with (
        tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp,
        contextlib.chdir(tmp),
        environment(MLFLOW_TRACKING_URI=f"sqlite:///{Path(tmp) / 'mlflow.db'}"),
    ):
        experiment = tracking.connect(params.tracking)  # creates the store's schema: not timed

        def plain(sample: Mapping[str, np.ndarray] = part) -> dict[str, float]:
            fitted = model()
            with contextlib.redirect_stdout(sys.stderr), timed() as figures:
                fitted.fit(
                    sample["x_train"],
                    sample["y_train"],
                    validation_data=(sample["x_val"], sample["y_val"]),
                    epochs=train.epochs,
                    batch_size=train.batch_size,
                    shuffle=True,
                    verbose=2,
                )
            return figures

        def tracked(sample: Mapping[str, np.ndarray] = part) -> dict[str, float]:
            fitted = model()
            checkpoint = training.Checkpoint(Path(tmp) / "checkpoints", "bench")
            checkpoint.start()
            # The run opens before and ends after the timed block: that is the fixed cost.
            with (
                tracking.start_run(experiment, f"bench {name}", tags) as run,
                contextlib.redirect_stdout(sys.stderr),
                timed() as figures,
            ):
                training.fit(fitted, sample, train, checkpoint, [tracking.EpochLogger(run)])
            checkpoint.clear()
            _check_logged(run)
            return figures

        # The process's first fit pays one-off costs (thread pools, kernels, first writes):
        # a short untimed run of each side keeps them out of the first timed repeat.
        log.info("  warm-up of both sides (not timed)")
        warm = {key: values[: WARMUP_BATCHES * train.batch_size] for key, values in part.items()}
        plain(warm)
        tracked(warm)
        runs = interleave({"plain": plain, "pipeline": tracked}, repeats)
        log.info("  fixed cost of tracking, %d runs", FIXED_COST_REPEATS)
        fixed = [
            _fixed_cost(params, spec, model(), part["x_val"][:5], tags)
            for _ in range(FIXED_COST_REPEATS)
        ]
    clear_keras()

    context = {
        "model": name,
        "train_images": train_size,
        "val_images": len(part["y_val"]),
        "epochs": train.epochs,
        "batch_size": train.batch_size,
    }
    return tracking_result(runs, fixed, context)


def tracking_result(
    runs: Mapping[str, Sequence[Mapping[str, float]]],
    fixed: Sequence[Mapping[str, float]],
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """Medians of both sides, paired ratios b/a against the goal, fixed-cost medians."""
    repeats = len(runs["plain"])
    result: dict[str, Any] = {
        **context,
        "repeats": repeats,
        "order": alternating_order(["plain", "pipeline"], repeats),
        "goal_ratio": TRACKING_GOAL_RATIO,
        "fixed_cost_repeats": len(fixed),
        "fixed_cost_s": {step: summary(fixed, step) for step in fixed[0]},
    }
    for key in ("wall_s", "cpu_s"):
        result[f"plain_{key}"] = summary(runs["plain"], key)
        result[f"pipeline_{key}"] = summary(runs["pipeline"], key)
        ratio = paired_ratio(result[f"pipeline_{key}"]["runs"], result[f"plain_{key}"]["runs"])
        result[f"ratio_{key}"] = ratio
        result[f"verdict_{key}"] = verdict(ratio, TRACKING_GOAL_RATIO)
    return result


def _check_logged(run: TrackedRun) -> None:
    """Measurements of a store that refused writes would be wrong: stop."""
    if run.failures:
        raise BenchError(f"MLflow logging failed during the bench: {'; '.join(run.failures)}")


def _fixed_cost(
    params: Params,
    spec: ModelSpec,
    model: keras.Model,
    sample: np.ndarray,
    tags: Mapping[str, str],
) -> dict[str, float]:
    """Seconds of each tracking call a train stage makes outside its epoch loop."""
    from pipeline import tracking

    steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        steps[name] = time.perf_counter() - start

    stack = contextlib.ExitStack()
    try:
        with step("connect"):
            experiment = tracking.connect(params.tracking)
        with step("start_run"):
            run = stack.enter_context(tracking.start_run(experiment, f"bench {spec.name}", tags))
        with step("log_params"):
            run.log_params(
                {
                    **flatten(spec, "model"),
                    "seed": params.seed,
                    **flatten(params.runner, "runner"),
                    **flatten(params.preprocess, "preprocess"),
                    "model.parameters": model.count_params(),
                }
            )
        with step("log_text summary"):
            run.log_text(tracking.model_summary(model), "model_summary.txt")
        with step("log_keras_model"):
            run.log_keras_model(model, sample)
        with step("end_run"):
            stack.close()
    finally:
        stack.close()
    _check_logged(run)
    steps["total"] = sum(steps.values())
    return steps


# ---------------------------------------------------------------------------- 2. epochs


def epoch_times(
    params: Params,
    runtime: Runtime,
    repeats: int = REPEATS,
    budget_s: float = BUDGET_SECONDS["epochs"],
) -> dict[str, Any]:
    """Seconds per training epoch and images/s of every model, extrapolated from a subset."""
    dataset = data.load_dataset(paths.DATASET)
    full = len(dataset["y_train"])
    keep = data.stratified_subset(dataset["y_train"], EPOCH_IMAGES_MAX, params.seed)
    x_train, y_train = dataset["x_train"][keep], dataset["y_train"][keep]
    del dataset
    # Warm-up, probe and the timed epochs take about repeats + 2 epochs per model.
    target_s = budget_s / (len(params.models) * (repeats + 2))
    models = []
    for name, spec in params.models.items():
        batch = spec.train.batch_size
        log.info("  %s", name)
        model = fresh_model(params, spec, full, runtime.jit_compile)
        trial = EpochTrial(model, x_train, y_train, batch, params.seed)
        trial.warm_up()
        images = subset_size(trial.probe(), target_s, batch, EPOCH_IMAGES_MIN, len(y_train))
        trial.use(images)
        runs = [trial.epoch() for _ in range(repeats)]
        models.append(epoch_row(spec, int(model.count_params()), images, full, runs))
        clear_keras()
    return {
        "full_train_images": full,
        "repeats": repeats,
        "target_epoch_s": target_s,
        "models": models,
    }


def epoch_row(
    spec: ModelSpec, parameters: int, images: int, full: int, runs: Sequence[Mapping[str, float]]
) -> dict[str, Any]:
    """One model's figures: median seconds over `images`, extrapolated to `full` images."""
    seconds = summary(runs, "wall_s")
    return {
        "name": spec.name,
        "kind": spec.kind,
        "batch_size": spec.train.batch_size,
        "parameters": parameters,
        "subset_images": images,
        "epoch_s_subset": seconds,
        "epoch_s_full": seconds["median"] * full / images,
        "images_per_s": images / seconds["median"],
    }


# ---------------------------------------------------------------------------- 3 and 4. dvc


def mnist_mirror() -> Path:
    """$MNIST_MIRROR, else ../shared/data/mnist beside the repository; a DataError if neither."""
    candidates = [
        os.environ.get("MNIST_MIRROR", "").strip(),
        paths.ROOT.parent / "shared/data/mnist",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train-images-idx3-ubyte.gz").is_file():
            return Path(candidate).resolve()
    raise DataError(
        "no local MNIST copy: set MNIST_MIRROR to a folder with the four MNIST .gz files "
        f"(or put them in {paths.ROOT.parent / 'shared/data/mnist'})"
    )


def command_env(mirror: Path | None = None) -> dict[str, str]:
    """What a dvc command gets: this venv first on PATH, no outer DVC/MLflow, the local mirror."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env.setdefault(key, "bench")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env.setdefault(key, "bench@localhost")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if mirror is not None:
        env["MNIST_MIRROR"] = str(mirror)
    return env


def run_command(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Run a command; its wall seconds and output, or a BenchError naming its last error line."""
    start = time.perf_counter()
    done = subprocess.run(list(args), cwd=cwd, env=dict(env), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise BenchError(f"`{' '.join(args)}` in {cwd} exited {done.returncode}: {lines[-1]}")
    return {"wall_s": seconds, "stdout": done.stdout}


def stages_run(output: str) -> list[str]:
    """The stages a `dvc repro` output says it ran."""
    prefix = "Running stage '"
    return [line.split("'")[1] for line in output.splitlines() if line.startswith(prefix)]


def copy_repository(destination: Path, source: Path | None = None) -> Path:
    """Copy the repo's tracked and new (not ignored) files, minus pipeline outputs, into a fresh
    git repository with one commit."""
    source = source or paths.ROOT
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        # dvc.lock and reports/ record the source's own runs; the copy makes its own.
        if name.startswith(("reports/", "dvc.lock")) or not (source / name).is_file():
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target)
    env = command_env()
    for args in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "copy of the repository for pipeline.bench"],
    ):
        run_command(args, destination, env)
    return destination


def shrink_params(path: Path, models: Mapping[str, Any] | None = TINY_MODELS) -> None:
    """A quick pipeline: a small training subset and one epoch, for `models` (one tiny MLP and
    one tiny CNN by default) or, with `models=None`, for every model of the file."""
    params = yaml.safe_load(path.read_text())
    params["preprocess"]["train_limit"] = TINY_TRAIN_LIMIT
    params["train"]["epochs"] = TINY_EPOCHS
    if models is not None:
        params["models"] = models
    for spec in (spec for kind in params["models"].values() for spec in kind.values()):
        if "epochs" in spec.get("train", {}):
            spec["train"]["epochs"] = TINY_EPOCHS
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def dvc_startup(repeats: int = DVC_REPEATS) -> dict[str, Any]:
    """No-op `dvc repro` against `dvc status` and `dvc --version` in a copy of the repo.

    The copy keeps every model, so the no-op checks the real stage graph (all train and
    evaluate instances); only the data and epochs are shrunk to make the first run quick.
    """
    mirror = mnist_mirror()
    env = command_env(mirror)
    dvc = str(Path(sys.executable).parent / "dvc")
    with tempfile.TemporaryDirectory(prefix="bench-dvc-") as tmp:
        repo = copy_repository(Path(tmp) / "repo")
        shrink_params(repo / "params.yaml", models=None)
        run_command(["git", "commit", "-qam", "quick params"], repo, env)
        log.info("  every model on a small subset, first dvc repro (not a no-op)")
        first = run_command([dvc, "repro"], repo, env)

        def command(*args: str) -> Callable[[], dict[str, Any]]:
            def measure() -> dict[str, Any]:
                done = run_command([dvc, *args], repo, env)
                return {"wall_s": done["wall_s"], "stages_run": stages_run(done["stdout"])}

            return measure

        runs = interleave(
            {
                "repro": command("repro"),
                "status": command("status"),
                "version": command("--version"),
            },
            repeats,
        )
    return dvc_result(runs, first["wall_s"], len(stages_run(first["stdout"])))


def dvc_result(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], first_run_s: float, first_run_stages: int
) -> dict[str, Any]:
    """Medians of each command, the goal verdict and the no-op repro / `dvc --version` ratio."""
    repeats = len(runs["repro"])
    result: dict[str, Any] = {
        "params": f"train_limit {TINY_TRAIN_LIMIT}, epochs {TINY_EPOCHS}, every model",
        "repeats": repeats,
        "order": alternating_order(list(runs), repeats),
        "first_run_s": first_run_s,
        "first_run_stages": first_run_stages,
        "noop_stages_run": sorted({stage for run in runs["repro"] for stage in run["stages_run"]}),
        "goal_s": DVC_GOAL_SECONDS,
    }
    for side in runs:
        result[f"{side}_s"] = summary(runs[side], "wall_s")
    result["verdict"] = verdict(result["repro_s"]["median"], DVC_GOAL_SECONDS)
    result["repro_over_version"] = paired_ratio(
        result["repro_s"]["runs"], result["version_s"]["runs"]
    )
    return result


def full_pipeline(edit_params: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Wall time and peak memory of the whole `dvc repro` from a clean copy, data downloaded.

    `edit_params` may change the copy's params.yaml first (the CLI uses the real params).
    """
    mirror = mnist_mirror()
    env = command_env(mirror)
    dvc = str(Path(sys.executable).parent / "dvc")
    with tempfile.TemporaryDirectory(prefix="bench-full-") as tmp:
        repo = copy_repository(Path(tmp) / "repo")
        if edit_params is not None:
            edit_params(repo / "params.yaml")
            run_command(["git", "commit", "-qam", "bench params"], repo, env)
        log.info("  dvc repro download (not timed)")
        download = run_command([dvc, "repro", "download"], repo, env)
        log.info("  dvc repro (timed; output in %s)", Path(tmp) / "repro.log")
        result = sampled_run([dvc, "repro"], repo, env, Path(tmp) / "repro.log")
        stages = stages_run((Path(tmp) / "repro.log").read_text())
    params_used = "the repository's params.yaml" if edit_params is None else "edited params"
    return full_result(download["wall_s"], len(stages), result, params_used)


def full_result(
    download_s: float, stages: int, sampled: Mapping[str, Any], params_used: str
) -> dict[str, Any]:
    """The timed run's figures and the verdict of its peak memory against the goal."""
    peak = max(sampled["peak_rss_sum_bytes"], sampled["max_rss_process_bytes"])
    return {
        "params": params_used,
        "download_s": download_s,
        "stages_run": stages,
        **sampled,
        "goal_bytes": MEMORY_GOAL_BYTES,
        "verdict": verdict(peak, MEMORY_GOAL_BYTES),
    }


def sampled_run(
    args: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path
) -> dict[str, Any]:
    """Run a command, sampling the summed RSS of its process tree every SAMPLE_SECONDS."""
    import psutil

    peak_sum = peak_one = samples = 0
    start = time.perf_counter()
    with (
        open(log_path, "w") as output,
        subprocess.Popen(
            list(args), cwd=cwd, env=dict(env), stdout=output, stderr=subprocess.STDOUT
        ) as process,
    ):
        while True:
            # wait4 reports the peak RSS of the process and every descendant it waited for.
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            rss = []
            with contextlib.suppress(psutil.Error):  # the tree changes while it is read
                root = psutil.Process(process.pid)
                for member in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        rss.append(member.memory_info().rss)
            samples += 1
            peak_sum, peak_one = max(peak_sum, sum(rss)), max(peak_one, max(rss, default=0))
            time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        lines = log_path.read_text().strip().splitlines() or ["(no output)"]
        raise BenchError(f"`{' '.join(args)}` exited {process.returncode}: {lines[-1]}")
    return {
        "wall_s": seconds,
        "samples": samples,
        "sample_interval_s": SAMPLE_SECONDS,
        "peak_rss_sum_bytes": peak_sum,
        "peak_rss_sampled_process_bytes": peak_one,
        "max_rss_process_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
    }


# ---------------------------------------------------------------------------- 5. input


def input_pipeline(
    params: Params,
    repeats: int = INPUT_REPEATS,
    raw_dir: Path | None = None,
    dataset: Path | None = None,
) -> dict[str, Any]:
    """Seconds to read + normalise the raw IDX files, and to load the processed .npz."""
    raw_dir = raw_dir or paths.RAW_DIR
    dataset = dataset or paths.DATASET
    config = params.data

    def raw() -> dict[str, float]:
        with timed() as figures:
            train_x, _, test_x, _ = data.load_raw(
                raw_dir, config.files, config.image_shape, config.num_classes
            )
            data.normalize(train_x, test_x, method=params.preprocess.normalize)
        return figures

    def processed() -> dict[str, float]:
        with timed() as figures:
            data.load_dataset(dataset)
        return figures

    raw()  # warm the page cache: every timed run then reads from memory
    processed()
    runs = interleave({"raw": raw, "processed": processed}, repeats)
    return input_result(runs, params.preprocess.normalize)


def input_result(
    runs: Mapping[str, Sequence[Mapping[str, float]]], normalize: str
) -> dict[str, Any]:
    """Wall and CPU medians of both loads, each against the goal."""
    repeats = len(runs["raw"])
    result: dict[str, Any] = {
        "repeats": repeats,
        "order": alternating_order(list(runs), repeats),
        "goal_s": INPUT_GOAL_SECONDS,
        "normalize": normalize,
    }
    for side in runs:
        result[f"{side}_wall_s"] = summary(runs[side], "wall_s")
        result[f"{side}_cpu_s"] = summary(runs[side], "cpu_s")
        result[f"{side}_verdict"] = verdict(result[f"{side}_wall_s"]["median"], INPUT_GOAL_SECONDS)
    return result


# ---------------------------------------------------------------------------- 6. cpu settings


def cpu_variants(defaults: Mapping[str, Any], cpus: int) -> list[dict[str, Any]]:
    """The settings to compare: each differs from `defaults` (or its process) in one respect."""
    in_process: list[tuple[str, dict[str, Any]]] = [("default", {})]
    in_process.append(
        (
            f"jit_compile {'off' if defaults['jit_compile'] else 'on'}",
            {"jit_compile": not defaults["jit_compile"]},
        )
    )
    in_process.append(
        (
            "float32" if defaults["mixed_precision"] else "mixed_bfloat16",
            {"mixed_precision": not defaults["mixed_precision"]},
        )
    )
    in_process += [
        (f"batch {size}", {"batch_size": size})
        for size in CPU_BATCH_SIZES
        if size != defaults["batch_size"]
    ]
    threads = sorted({1, cpus})
    in_subprocess: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("default (subprocess)", {}, {}),
        *((f"intra-op threads {n}", {"intra_op_threads": n}, {}) for n in threads),
        ("oneDNN off", {}, {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    ]
    variants = [
        {
            "name": name,
            "where": "in-process",
            "baseline": "default",
            "settings": {**defaults, **change},
            "env": {},
        }
        for name, change in in_process
    ]
    variants += [
        {
            "name": name,
            "where": "subprocess",
            "baseline": "default (subprocess)",
            "settings": {**defaults, **change},
            "env": env,
        }
        for name, change, env in in_subprocess
    ]
    return variants


def variant_trial(params: Params, settings: Mapping[str, Any]) -> EpochTrial:
    """The warmed-up trial of one CPU-settings variant (same model, data and seed for all)."""
    dataset = data.load_dataset(paths.DATASET)
    spec = params.model(settings["model"])
    train = data.stratified_subset(dataset["y_train"], settings["images"], params.seed)
    policy = "mixed_bfloat16" if settings["mixed_precision"] else "float32"
    model = fresh_model(
        params, spec, len(train), settings["jit_compile"], settings["batch_size"], policy
    )
    trial = EpochTrial(
        model,
        dataset["x_train"][train],
        dataset["y_train"][train],
        settings["batch_size"],
        params.seed,
        (dataset["x_val"], dataset["y_val"]),
        params.evaluate.batch_size,
    )
    trial.warm_up()
    return trial


class VariantWorker:
    """A `python -m pipeline.bench --variant` process: one JSON line per `epoch` request."""

    def __init__(
        self, settings: Mapping[str, Any], env: Mapping[str, str], log_path: Path
    ) -> None:
        self.log_path = log_path
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.bench", "--variant", json.dumps(dict(settings))],
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def _reply(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            lines = self.log_path.read_text().strip().splitlines() or ["(no output)"]
            raise BenchError(f"a --variant worker died (log {self.log_path}): {lines[-1]}")
        return json.loads(line)

    def wait_ready(self) -> None:
        """Block until the worker has loaded the data and warmed up."""
        self._reply()

    def epoch(self) -> dict[str, Any]:
        """Ask for one timed epoch."""
        self.process.stdin.write("epoch\n")
        self.process.stdin.flush()
        return self._reply()

    def stop(self) -> None:
        """Ask the worker to exit (EOF on its stdin)."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()

    def wait(self, timeout: float = 30) -> None:
        """Wait for the worker to exit, killing it if it does not."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def stop_workers(workers: Sequence[VariantWorker]) -> None:
    """Stop every worker at once, then wait for each."""
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.wait()


def serve_variant(params: Params, settings: Mapping[str, Any]) -> None:
    """The --variant entry point: configure TF with `settings`, then answer epoch requests."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not break the protocol
    import tensorflow as tf

    from pipeline import runner

    if settings.get("intra_op_threads"):  # only possible before the runtime starts
        tf.config.threading.set_intra_op_parallelism_threads(settings["intra_op_threads"])
    runner.configure(params.runner, params.seed)
    trial = variant_trial(params, settings)
    print(json.dumps({"ready": True}), file=protocol)
    for line in sys.stdin:
        if line.strip() == "epoch":
            print(json.dumps(trial.epoch()), file=protocol)
    protocol.close()
    # Nothing is left to clean up, and TensorFlow's interpreter teardown can stall for a minute.
    os._exit(0)


def cpu_settings(
    params: Params, runtime: Runtime, repeats: int = REPEATS, model_name: str | None = None
) -> dict[str, Any]:
    """One small CNN's epoch time and validation accuracy under each CPU setting."""
    name = model_name or pick_model(params)
    batch = params.model(name).train.batch_size
    step = math.lcm(*CPU_BATCH_SIZES, batch)
    defaults = {
        "model": name,
        "images": max(step, CPU_IMAGES // step * step),
        "batch_size": batch,
        "jit_compile": runtime.jit_compile,
        "mixed_precision": params.runner.mixed_precision,
    }
    variants = cpu_variants(defaults, os.cpu_count() or 1)
    measures: dict[str, Callable[[], dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp, contextlib.ExitStack() as stack:
        # The workers start (import TF, load, warm up) while this process warms up its own.
        workers = {
            variant["name"]: VariantWorker(
                variant["settings"], variant["env"], Path(tmp) / f"variant-{index}.log"
            )
            for index, variant in enumerate(variants)
            if variant["where"] == "subprocess"
        }
        stack.callback(stop_workers, list(workers.values()))
        val_images = 0
        for variant in variants:
            if variant["where"] == "in-process":
                log.info("  warming up %s", variant["name"])
                trial = variant_trial(params, variant["settings"])
                measures[variant["name"]] = trial.epoch
                val_images = len(trial.validation[1])
        for variant_name, worker in workers.items():
            log.info("  waiting for worker %s", variant_name)
            worker.wait_ready()
            measures[variant_name] = worker.epoch
        measures = {variant["name"]: measures[variant["name"]] for variant in variants}
        runs = interleave(measures, repeats)
    clear_keras()
    return cpu_result(variants, runs, defaults, repeats, val_images)


def cpu_result(
    variants: list[dict[str, Any]],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    defaults: Mapping[str, Any],
    repeats: int,
    val_images: int,
) -> dict[str, Any]:
    """Summaries, ratios to each group's baseline and accuracy deltas of the variants."""
    for variant in variants:
        own = runs[variant["name"]]
        variant["epoch_s"] = summary(own, "wall_s")
        variant["cpu_s"] = summary(own, "cpu_s")
        variant["val_accuracy"] = own[0]["val_accuracy"]
        variant["replay_exact"] = len({run["train_loss"] for run in own}) == 1
    by_name = {variant["name"]: variant for variant in variants}
    for variant in variants:
        base = by_name[variant["baseline"]]
        variant["ratio"] = paired_ratio(variant["epoch_s"]["runs"], base["epoch_s"]["runs"])
        variant["accuracy_delta"] = variant["val_accuracy"] - base["val_accuracy"]
    # Two standard errors of the default's accuracy estimate on the validation split.
    accuracy = by_name["default"]["val_accuracy"]
    tolerance = 2 * math.sqrt(accuracy * (1 - accuracy) / val_images)
    for variant in variants:
        variant["same_accuracy"] = abs(variant["accuracy_delta"]) <= tolerance
    same = [variant for variant in variants if variant["same_accuracy"]]
    # Groups run in different processes: rank by the ratio to the group's own default.
    fastest = min(same, key=lambda variant: variant["ratio"])
    return {
        "model": defaults["model"],
        "train_images": defaults["images"],
        "val_images": val_images,
        "repeats": repeats,
        "order": alternating_order([v["name"] for v in variants], repeats),
        "defaults": dict(defaults),
        "variants": variants,
        "accuracy_tolerance": tolerance,
        "fastest_same_accuracy": fastest["name"],
    }


# ---------------------------------------------------------------------------- formatting


def _s(value: float) -> str:
    return f"{value:.2f}"


def _gib(value: float) -> str:
    return f"{value / 2**30:.2f} GiB"


def format_tracking(result: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            "a  plain model.fit",
            _s(result["plain_wall_s"]["median"]),
            _s(result["plain_cpu_s"]["median"]),
        ],
        [
            "b  training.fit + callbacks + MLflow EpochLogger",
            _s(result["pipeline_wall_s"]["median"]),
            _s(result["pipeline_cpu_s"]["median"]),
        ],
        [
            "ratio b/a (median of the per-repeat ratios)",
            f"{result['ratio_wall_s']:.3f}",
            f"{result['ratio_cpu_s']:.3f}",
        ],
        [f"goal b/a <= {result['goal_ratio']}", result["verdict_wall_s"], result["verdict_cpu_s"]],
    ]
    fixed = [[step, _s(figures["median"])] for step, figures in result["fixed_cost_s"].items()]
    return [
        f"{result['model']}, stratified subset of {result['train_images']:,} training and "
        f"{result['val_images']:,} validation images, {result['epochs']} epochs, batch "
        f"{result['batch_size']}; median of {result['repeats']} repeats in order "
        f"{alternation_text(['a', 'b'])}",
        format_table(["side", "wall s", "CPU s"], rows),
        "",
        f"Fixed cost of tracking per run, outside the epoch loop (median of "
        f"{result['fixed_cost_repeats']}; store schema created beforehand)",
        format_table(["step", "seconds"], fixed),
    ]


def format_epochs(result: Mapping[str, Any]) -> list[str]:
    full = result["full_train_images"]
    rows = [
        [
            m["name"],
            m["kind"],
            m["batch_size"],
            f"{m['parameters']:,}",
            f"{m['subset_images']:,}",
            _s(m["epoch_s_subset"]["median"]),
            _s(m["epoch_s_full"]),
            f"{m['images_per_s']:,.0f}",
        ]
        for m in result["models"]
    ]
    return [
        f"Training pass only (no validation), each model's own batch size; median of "
        f"{result['repeats']} epochs after warm-up. Seconds per {full:,}-image epoch are "
        "EXTRAPOLATED from the subset timed (sized to the section's time budget).",
        format_table(
            [
                "model",
                "kind",
                "batch",
                "parameters",
                "subset",
                "s/epoch subset",
                f"s/epoch {full:,} (extrap.)",
                "images/s",
            ],
            rows,
        ),
    ]


def format_dvc(result: Mapping[str, Any]) -> list[str]:
    first = f"first dvc repro, {result['first_run_stages']} stages (once)"
    rows = [[first, _s(result["first_run_s"]), "", ""]]
    for side, label in (
        ("repro", "dvc repro (no-op)"),
        ("status", "dvc status"),
        ("version", "dvc --version (start-up floor)"),
    ):
        figures = result[f"{side}_s"]
        rows.append([label, _s(figures["median"]), _s(figures["min"]), _s(figures["max"])])
    rows.append(
        [
            "no-op repro / dvc --version (median of ratios)",
            f"{result['repro_over_version']:.2f}",
            "",
            "",
        ]
    )
    rows.append([f"goal no-op repro <= {result['goal_s']} s", result["verdict"], "", ""])
    lines = [
        f"In a temporary copy of the repo ({result['params']}); median of {result['repeats']} "
        f"runs in order {alternation_text(['repro', 'status', 'version'])}",
        format_table(["command", "median s", "min s", "max s"], rows),
    ]
    if result["noop_stages_run"]:
        lines.append(f"WARNING: not a no-op, stages ran: {', '.join(result['noop_stages_run'])}")
    return lines


def format_full(result: Mapping[str, Any]) -> list[str]:
    rows = [
        ["dvc repro download (not timed)", _s(result["download_s"])],
        [f"dvc repro, {result['stages_run']} stages (one run)", _s(result["wall_s"])],
        ["peak summed RSS of the process tree (sampled)", _gib(result["peak_rss_sum_bytes"])],
        ["largest single process (getrusage max RSS)", _gib(result["max_rss_process_bytes"])],
        [f"goal peak < {_gib(result['goal_bytes'])}", result["verdict"]],
    ]
    return [
        f"With {result['params']}, in a clean temporary copy with the data downloaded; RSS "
        "sampled every "
        f"{result['sample_interval_s']} s ({result['samples']} samples)",
        format_table(["figure", "value"], rows),
    ]


def format_input(result: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            label,
            _s(result[f"{side}_wall_s"]["median"]),
            _s(result[f"{side}_cpu_s"]["median"]),
            result[f"{side}_verdict"],
        ]
        for side, label in (
            ("raw", f"data.load_raw + data.normalize ({result['normalize']}) from data/raw"),
            ("processed", "data.load_dataset(data/processed/dataset.npz)"),
        )
    ]
    return [
        f"Whole data set, warm page cache; median of {result['repeats']} runs in order "
        f"{alternation_text(['raw', 'processed'])}",
        format_table(["load", "wall s", "CPU s", f"goal < {result['goal_s']} s"], rows),
    ]


def format_cpu(result: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            v["name"],
            v["where"],
            v["settings"]["batch_size"],
            _s(v["epoch_s"]["median"]),
            f"{v['ratio']:.2f}",
            f"{v['val_accuracy']:.4f}",
            f"{v['accuracy_delta']:+.4f}",
            "yes" if v["same_accuracy"] else "no",
            "yes" if v["replay_exact"] else "no",
        ]
        for v in result["variants"]
    ]
    headers = [
        "variant",
        "where",
        "batch",
        "s/epoch",
        "ratio",
        "val acc",
        "delta acc",
        "same acc",
        "exact replay",
    ]
    return [
        f"{result['model']}, one epoch over a stratified subset of {result['train_images']:,} "
        f"training images, median of {result['repeats']} repeats (all variants interleaved, "
        "order reversed on alternate repeats). Every repeat replays the same epoch from the "
        f"same weights and seeds; accuracy on the {result['val_images']:,} validation images "
        "after it. Ratio and delta are against the default of the same group (in-process or "
        "subprocess).",
        format_table(headers, rows),
        f"same acc: |delta| <= {result['accuracy_tolerance']:.4f} (two standard errors of the "
        "default's accuracy). After ONE epoch a larger batch means fewer steps, so its accuracy "
        "says little about the accuracy after full training.",
        f"Lowest ratio with the same accuracy: {result['fastest_same_accuracy']} "
        "(the bench only reports; params.yaml is unchanged)",
    ]


FORMATTERS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "tracking": format_tracking,
    "epochs": format_epochs,
    "dvc": format_dvc,
    "full": format_full,
    "input": format_input,
    "cpu": format_cpu,
}


def format_report(report: Mapping[str, Any]) -> str:
    """The whole report as plain text: a header, then one titled block per section."""
    machine = report["machine"]
    cpus = machine["cpus"]
    lines = [
        f"pipeline.bench on {cpus} CPUs ({machine['processor']}); took {report['seconds']:.0f} s; "
        f"load average {machine['load_start'][0]:.2f} at start; other processes kept "
        f"{report['other_cpus']:.2f} of the {cpus} CPUs busy on average",
    ]
    if report.get("runtime"):
        lines.append("runtime: " + ", ".join(f"{k} {v}" for k, v in report["runtime"].items()))
    for name, result in report["sections"].items():
        lines += [
            "",
            f"{TITLES[name]} (took {result['seconds']:.0f} s, budget {result['budget_s']} s; "
            f"other processes: {result['other_cpus']:.2f} CPUs)",
            *FORMATTERS[name](result),
        ]
        if result["other_cpus"] > CONTENTION_WARNING_CPUS:
            lines.append(
                f"WARNING: other processes kept {result['other_cpus']:.2f} of {cpus} CPUs busy "
                "during this section: its wall times are noisy (CPU times much less so); "
                "rerun on an idle machine before judging a goal on them."
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--full",
        action="store_true",
        help="also time the full dvc repro and its peak memory (~30 min)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=TRACKING_REPEATS,
        help="repeats of the tracking-overhead comparison (default %(default)s)",
    )
    parser.add_argument("--sections", help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: a section-6 worker
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    chosen = args.sections.split(",") if args.sections else list(DEFAULT_SECTIONS)
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r} (known: {', '.join(SECTIONS)})")
    if "full" in chosen and not args.full:
        parser.error("the full section runs only with --full")
    if args.full:
        chosen.append("full")
    args.sections = [name for name in SECTIONS if name in chosen]
    return args


def check_inputs(sections: Sequence[str]) -> None:
    """Fail before any measurement if a section's input is missing."""
    needs = {
        "tracking": [paths.DATASET],
        "epochs": [paths.DATASET],
        "cpu": [paths.DATASET],
        "input": [paths.RAW_DIR, paths.DATASET],
    }
    for name in sections:
        for path in needs.get(name, []):
            if not path.exists():
                raise DataError(f"{path}: missing (section {name}); run `dvc repro preprocess`")
        if name in ("dvc", "full"):
            mnist_mirror()


def processor_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what the platform module says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_bench(params: Params, sections: Sequence[str], repeats: int) -> dict[str, Any]:
    """Run the chosen sections in order; the report of their figures."""
    started = time.perf_counter()
    machine_start, own_start = busy_cpu_seconds()
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": processor_name(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_start": list(os.getloadavg()),
        },
        "sections": {},
    }
    runtime = None
    if TENSORFLOW_SECTIONS & set(sections):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from pipeline import runner

        runtime = runner.configure(params.runner, params.seed)  # once, before any TF op
        tags = runtime.tags()
        report["runtime"] = {
            "device": runtime.device,
            "precision": runtime.precision_policy,
            "jit_compile": runtime.jit_compile,
            "deterministic": params.runner.deterministic,
            "tensorflow": tags["tensorflow.version"],
            "keras": tags["keras.version"],
        }
    measures: dict[str, Callable[[], dict[str, Any]]] = {
        "tracking": lambda: tracking_overhead(params, runtime, repeats),
        "epochs": lambda: epoch_times(params, runtime),
        "dvc": dvc_startup,
        "full": full_pipeline,
        "input": lambda: input_pipeline(params),
        "cpu": lambda: cpu_settings(params, runtime),
    }
    for name in sections:
        log.info("%s (budget %d s)", TITLES[name], BUDGET_SECONDS[name])
        start = time.perf_counter()
        machine, own = busy_cpu_seconds()
        result = measures[name]()
        result["seconds"] = time.perf_counter() - start
        result["budget_s"] = BUDGET_SECONDS[name]
        machine_end, own_end = busy_cpu_seconds()
        result["other_cpus"] = other_cpus(machine_end - machine, own_end - own, result["seconds"])
        if result["seconds"] > BUDGET_SECONDS[name]:
            log.warning(
                "%s took %.0f s, over its budget of %d s",
                TITLES[name],
                result["seconds"],
                BUDGET_SECONDS[name],
            )
        report["sections"][name] = result
    report["machine"]["load_end"] = list(os.getloadavg())
    report["seconds"] = time.perf_counter() - started
    machine_end, own_end = busy_cpu_seconds()
    report["other_cpus"] = other_cpus(
        machine_end - machine_start, own_end - own_start, report["seconds"]
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; print the tables, write the JSON; 1 with one line on an expected fault."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        params = load_params()
        if args.variant:
            serve_variant(params, json.loads(args.variant))
            return 0
        check_inputs(args.sections)
        report = run_bench(params, args.sections, args.repeats)
        print(format_report(report))
        if args.json:
            io.write_json(args.json, report)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
