"""Section 6: epoch time and validation accuracy of one small CNN under each CPU setting.

Settings fixed when TensorFlow starts (intra-op threads, oneDNN) run in worker processes,
`python -m tools.bench --variant SETTINGS` (see serve_variant), the others in this one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import data, paths
from pipeline.config import Params
from pipeline.entry import select_backend
from tools.bench.measure import BenchError, alternating_order, interleave, paired_ratio, summary
from tools.bench.trials import REPEATS, EpochTrial, clear_keras, fresh_model, pick_model

if TYPE_CHECKING:  # TensorFlow, Keras and MLflow are imported only where they are used
    from pipeline.runner import Runtime

log = logging.getLogger("tools.bench")

CPU_IMAGES = 4_096
CPU_BATCH_SIZES = (64, 128, 256)
# A variant whose first epoch took this many times its baseline's is not repeated: the verdict
# (slower) is clear, wall time varies at most 2x here, and bfloat16 alone (2-6x) would
# otherwise take a third of the section.
SETTLED_RATIO = 2.5


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
    # TensorFlow's default intra-op pool has one thread per CPU: that is the default variant.
    threads = sorted({1, cpus // 2} - {0, cpus})
    in_subprocess: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("default (subprocess)", {}, {}),
        *((f"intra-op threads {n}", {"intra_op_threads": n}, {}) for n in threads),
        ("oneDNN off", {}, {"TF_ENABLE_ONEDNN_OPTS": "0"}),
        # Keras on JAX (runner.backend jax) instead of TensorFlow; XLA is JAX's normal mode.
        ("backend jax", {"backend": "jax", "jit_compile": True}, {"KERAS_BACKEND": "jax"}),
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


def variant_trial(params: Params, runtime: Runtime, settings: Mapping[str, Any]) -> EpochTrial:
    """The warmed-up trial of one CPU-settings variant (same model, data and seed for all)."""
    dataset = data.load_dataset(paths.DATASET)
    spec = params.model(settings["model"])
    train = data.stratified_subset(dataset["y_train"], settings["images"], params.seed)
    policy = "mixed_bfloat16" if settings["mixed_precision"] else "float32"
    part = {
        "x_train": dataset["x_train"][train],
        "y_train": dataset["y_train"][train],
        "mean": dataset["mean"],
        "std": dataset["std"],
    }
    _, trainee = fresh_model(
        params, spec, part, runtime, settings["batch_size"], policy, settings["jit_compile"]
    )
    trial = EpochTrial(
        trainee,
        part["x_train"],
        part["y_train"],
        settings["batch_size"],
        params.seed,
        (dataset["x_val"], dataset["y_val"]),
        params.evaluate.batch_size,
    )
    trial.warm_up()
    return trial


class VariantWorker:
    """A `python -m tools.bench --variant` process: one JSON line per `epoch` request."""

    def __init__(
        self, settings: Mapping[str, Any], env: Mapping[str, str], log_path: Path
    ) -> None:
        self.log_path = log_path
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.bench", "--variant", json.dumps(dict(settings))],
            cwd=paths.ROOT,  # where `tools` is importable
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
    backend = settings.get("backend", "tensorflow")
    select_backend(backend)  # the worker's KERAS_BACKEND; JAX without TensorFlow, as in a stage
    from pipeline import runner

    if settings.get("intra_op_threads"):  # only possible before the runtime starts
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(settings["intra_op_threads"])
    runtime = runner.configure(dataclasses.replace(params.runner, backend=backend), params.seed)
    trial = variant_trial(params, runtime, settings)
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
                trial = variant_trial(params, runtime, variant["settings"])
                measures[variant["name"]] = trial.epoch
                val_images = len(trial.validation[1])
        for variant_name, worker in workers.items():
            log.info("  waiting for worker %s", variant_name)
            worker.wait_ready()
            measures[variant_name] = worker.epoch
        measures = {variant["name"]: measures[variant["name"]] for variant in variants}
        baselines = {variant["name"]: variant["baseline"] for variant in variants}
        runs = interleave(measures, repeats, settled=clearly_slower(baselines))
    clear_keras()
    return cpu_result(variants, runs, defaults, repeats, val_images)


def clearly_slower(
    baselines: Mapping[str, str], settled_ratio: float = SETTLED_RATIO
) -> Callable[[str, Mapping[str, Sequence[Mapping[str, Any]]]], bool]:
    """For `interleave`: a variant is settled once its first epoch took `settled_ratio` times
    its baseline's first epoch or longer."""

    def settled(name: str, runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> bool:
        base = runs[baselines[name]]
        return bool(base) and runs[name][0]["wall_s"] >= settled_ratio * base[0]["wall_s"]

    return settled


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
        own_runs = variant["epoch_s"]["runs"]  # a settled variant has fewer: pair the first
        variant["ratio"] = paired_ratio(own_runs, base["epoch_s"]["runs"][: len(own_runs)])
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
        "settled_ratio": SETTLED_RATIO,
        "fastest_same_accuracy": fastest["name"],
    }
