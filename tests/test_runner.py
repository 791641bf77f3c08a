"""The runner: device selection, distribution over logical CPUs, bit-for-bit reproducibility.

Each case runs in its own Python process: TensorFlow's devices, logical device split and
determinism can only be configured once per process, before the runtime starts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.support import REPO_ROOT, free_port, pipeline_env

# Trains a tiny model on 512 synthetic images under params.runner-like settings, prints JSON.
SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    from pipeline import runner, training
    from pipeline.config import ModelSpec, RunnerConfig, TrainConfig
    from pipeline.layers import Conv, Dense, Dropout, Pool
    from pipeline.models import build_model

    settings = json.loads(sys.argv[1])
    runtime = runner.configure(RunnerConfig(**settings), seed=7)
    train = TrainConfig(epochs=2, batch_size=64, learning_rate=0.01, optimizer="adam",
                        lr_schedule="cosine")
    spec = ModelSpec(name="tiny", kind="cnn", source="test", reported_accuracy=0.0,
                     target_accuracy=0.0, dropout=0.25, train=train,
                     layers=(Conv(4, 3), Pool(2), Dropout(),
                             Dense(16)))
    rng = np.random.default_rng(0)
    x = rng.random((512, 28, 28, 1), dtype=np.float32)
    y = (x[:, :14].mean(axis=(1, 2, 3)) > x[:, 14:].mean(axis=(1, 2, 3))).astype(np.int64)
    with runtime.strategy.scope():
        model = build_model(spec, (28, 28, 1), 10)
        training.compile_model(model, train, 448, runtime.jit_compile)
    history = model.fit(training.batches(x[:448], y[:448], 64, shuffle=True), epochs=2,
                        validation_data=training.batches(x[448:], y[448:], 64, shuffle=False),
                        shuffle=False, verbose=0)
    digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
    print(json.dumps({"weights": digest, "history": history.history,
                      "tags": runtime.tags(), "replicas": runtime.strategy.num_replicas_in_sync}))
    """
)

CPU = {
    "device": "cpu",
    "mixed_precision": False,
    "jit_compile": "auto",
    "strategy": "default",
    "deterministic": True,
    "logical_cpus": 0,
}


def train_tiny(**settings: object) -> subprocess.CompletedProcess[str]:
    backend = str(settings.get("backend", "tensorflow"))
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps({**CPU, **settings})],
        cwd=REPO_ROOT,
        env=pipeline_env(KERAS_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=300,
    )


def result(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_same_seed_gives_identical_weights_and_metrics() -> None:
    first, second = result(train_tiny(device="auto")), result(train_tiny(device="auto"))
    assert first["weights"] == second["weights"]
    assert first["history"] == second["history"]
    assert len(first["history"]["val_accuracy"]) == 2
    # auto falls back to the CPU here and says so; XLA stays off on the CPU
    assert first["tags"]["runner.device"] == "cpu"
    assert first["tags"]["runner.jit_compile"] == "false"
    assert first["tags"]["tensorflow.version"].startswith("2.")
    assert first["tags"]["runner.backend"] == "tensorflow"
    assert {"cuda.version", "cudnn.version", "keras.version"} <= set(first["tags"])


def test_jax_backend_same_seed_gives_identical_weights_and_metrics() -> None:
    first, second = result(train_tiny(backend="jax")), result(train_tiny(backend="jax"))
    assert first["weights"] == second["weights"]
    assert first["history"] == second["history"]
    assert first["tags"]["runner.backend"] == "jax"
    assert first["tags"]["runner.jit_compile"] == "true"  # JAX's normal mode, also on CPU
    assert first["tags"]["jax.version"]
    assert "tensorflow.version" not in first["tags"]


def test_jax_mirrored_is_data_parallel_and_mixed_precision_bfloat16_on_cpu() -> None:
    done = result(train_tiny(backend="jax", strategy="mirrored", mixed_precision=True))
    assert done["tags"]["runner.strategy"] == "DataParallel"
    assert done["tags"]["runner.precision_policy"] == "mixed_bfloat16"
    assert all(0.0 <= a <= 1.0 for a in done["history"]["val_accuracy"])


def test_mirrored_strategy_trains_on_two_logical_cpus() -> None:
    mirrored = result(train_tiny(strategy="mirrored", logical_cpus=2))
    assert mirrored["replicas"] == 2
    assert mirrored["tags"]["runner.strategy"] == "MirroredStrategy"
    assert mirrored["tags"]["runner.devices"].count("CPU") == 2
    assert all(0.0 <= a <= 1.0 for a in mirrored["history"]["val_accuracy"])


def test_mixed_precision_on_cpu_uses_bfloat16_and_is_recorded() -> None:
    mixed = result(train_tiny(mixed_precision=True))
    assert mixed["tags"]["runner.precision_policy"] == "mixed_bfloat16"
    assert mixed["tags"]["runner.device"] == "cpu"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU may be present")
def test_gpu_requested_without_gpu_raises_runner_error() -> None:
    done = train_tiny(device="gpu")
    assert done.returncode != 0
    assert "runner.device is gpu but TensorFlow sees no GPU" in done.stderr
    done = train_tiny(device="gpu", backend="jax")
    assert done.returncode != 0
    assert "runner.device is gpu but JAX sees no GPU" in done.stderr


def test_multi_worker_without_tf_config_is_a_clear_error() -> None:
    done = train_tiny(strategy="multi_worker")
    assert done.returncode != 0
    assert "TF_CONFIG is not set" in done.stderr


@pytest.mark.xfail(
    strict=True,
    reason="keras-team/keras#20585: Keras 3 model.fit fails under MultiWorkerMirroredStrategy "
    "(PerReplica to Tensor); strict, so a fixed Keras turns this into a failure to notice",
)
def test_multi_worker_strategy_trains_with_two_workers_on_localhost() -> None:
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, json.dumps({**CPU, "strategy": "multi_worker"})],
            cwd=REPO_ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=pipeline_env(
                TF_CONFIG=json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                )
            ),
        )
        for index in range(2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    results = []
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["tags"]["runner.strategy"] == "MultiWorkerMirroredStrategy"
    assert results[0]["weights"] == results[1]["weights"]  # the workers stay in sync
