"""The Keras backend (runner.backend) and bit-identical resume, through the real train stage.

Each training runs in its own process: the backend is fixed when Keras is first imported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.support import REPO_ROOT, copy_repository, pipeline_env, run, write_small_params

# Runs a stage module as `python -m` would, then reports which TensorFlow modules got imported.
STAGE_WITH_MODULES = textwrap.dedent(
    """
    import atexit, json, runpy, sys
    report = sys.argv.pop(1)
    def modules():
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
        open(report, "w").write(json.dumps(loaded))
    atexit.register(modules)
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    """
)

# Saves a tiny trained CNN under one backend or loads it under another; prints predictions.
CROSS = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    mode, path = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    if mode == "save":
        keras.utils.set_random_seed(1)
        inputs = keras.Input((28, 28, 1))
        hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        hidden = keras.layers.BatchNormalization()(keras.layers.MaxPooling2D()(hidden))
        hidden = keras.layers.Dropout(0.2)(keras.layers.Flatten()(hidden))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, np.arange(64) % 10, epochs=1, batch_size=16, verbose=0)
        model.save(path)
    else:
        model = keras.saving.load_model(path)
    print(json.dumps(np.asarray(model.predict(x, verbose=0)).tolist()))
    """
)


def python(code: str, *args: str, backend: str, cwd: Path = REPO_ROOT, **env: str):
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=pipeline_env(KERAS_BACKEND=backend, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def predictions(done: subprocess.CompletedProcess[str]) -> np.ndarray:
    assert done.returncode == 0, done.stderr[-3000:]
    return np.array(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(("saved_on", "loaded_on"), [("jax", "tensorflow"), ("tensorflow", "jax")])
def test_a_model_saved_on_one_backend_predicts_the_same_on_the_other(
    tmp_path: Path, saved_on: str, loaded_on: str
) -> None:
    path = str(tmp_path / "model.keras")
    saved = predictions(python(CROSS, "save", path, backend=saved_on))
    loaded = predictions(python(CROSS, "load", path, backend=loaded_on))
    np.testing.assert_allclose(loaded, saved, atol=1e-5)
    assert (loaded.argmax(axis=1) == saved.argmax(axis=1)).all()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    """A copy of the repo with 4-epoch tiny params, data downloaded and processed."""
    repo = copy_repository(tmp_path_factory.mktemp("backend") / "repo")
    write_small_params(repo, train_limit=2000, epochs=4, tracking={"log_model": False})
    for module in ("download", "preprocess"):
        run(["python", "-m", f"pipeline.stages.{module}"], repo)
    return repo


def set_params(repo: Path, **changes: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def train(repo: Path, name: str = "tiny_cnn") -> subprocess.CompletedProcess[str]:
    return run(["python", "-m", "pipeline.stages.train", name], repo, check=False)


def weights(repo: Path, name: str, backend: str) -> list[np.ndarray]:
    code = (
        "import sys, keras, numpy as np; "
        "m = keras.saving.load_model(sys.argv[1]); "
        "np.savez(sys.argv[2], *[np.asarray(w) for w in m.get_weights()])"
    )
    out = repo / f"{name}.{backend}.weights.npz"
    done = python(code, str(repo / "models" / f"{name}.keras"), str(out), backend=backend)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(out) as saved:
        return [saved[key] for key in sorted(saved.files, key=lambda k: int(k.split("_")[1]))]


def history(repo: Path, name: str = "tiny_cnn") -> list[dict]:
    lines = (repo / "reports" / "models" / name / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]


def assert_same_weights(first: list[np.ndarray], second: list[np.ndarray]) -> None:
    assert len(first) == len(second) > 0
    for a, b in zip(first, second, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)


def checkpoint_epochs(repo: Path, name: str) -> int:
    """Epochs in the training's checkpoint history file (0 while none has finished)."""
    files = list((repo / "checkpoints" / name).glob("*/history.csv"))
    return max((len(f.read_text().splitlines()) - 1 for f in files), default=0)


def kill_after_two_epochs(repo: Path, name: str = "tiny_cnn") -> None:
    """Start the train stage and SIGKILL it once its checkpoint shows epoch 2 done."""
    with (repo / "killed.err").open("w") as err:
        process = subprocess.Popen(
            ["python", "-m", "pipeline.stages.train", name],
            cwd=repo,
            env=pipeline_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while checkpoint_epochs(repo, name) < 2:
            assert process.poll() is None, (repo / "killed.err").read_text()[-2000:]
            assert time.monotonic() < deadline, "epoch 2 did not complete within 300 s"
            time.sleep(0.05)  # polling the checkpoint, not waiting for it
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert checkpoint_epochs(repo, name) < 4, "the training finished before it was killed"


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_training_killed_at_epoch_two_resumes_to_identical_weights(
    repo: Path, backend: str
) -> None:
    set_params(repo, **{"runner.backend": backend})
    done = train(repo)
    assert done.returncode == 0, done.stderr[-2000:]
    uninterrupted, uninterrupted_history = weights(repo, "tiny_cnn", backend), history(repo)
    assert len(uninterrupted_history) == 4

    kill_after_two_epochs(repo)
    resumed = train(repo)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Epoch 1/4" not in resumed.stdout  # it resumed rather than starting over
    assert_same_weights(weights(repo, "tiny_cnn", backend), uninterrupted)
    assert history(repo) == uninterrupted_history


@pytest.mark.e2e
def test_jax_training_twice_gives_identical_weights_and_never_imports_tensorflow(
    repo: Path,
) -> None:
    set_params(repo, **{"runner.backend": "jax"})
    results = []
    for attempt in range(2):
        report = repo / f"modules{attempt}.json"
        done = python(
            STAGE_WITH_MODULES, str(report), "pipeline.stages.train", "tiny_cnn",
            backend="jax", cwd=repo,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(report.read_text()) == []  # no tensorflow module at all
        results.append((weights(repo, "tiny_cnn", "jax"), history(repo)))
    assert_same_weights(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
    # The backend is a param and a tag of the run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist-pipeline")
    last = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])[0]
    assert last.data.params["runner.backend"] == "jax"
    assert last.data.tags["runner.backend"] == "jax"
    assert last.data.tags["jax.version"]


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-2000:]
    return errors[0]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"runner.device": "gpu"}, "runner.device is gpu but JAX sees no GPU"),
        ({"runner.strategy": "multi_worker"}, "runner.strategy multi_worker is not supported"),
        ({"runner.logical_cpus": 2}, "runner.logical_cpus 2 is not supported"),
    ],
)
def test_jax_settings_it_cannot_honour_fail_at_once_naming_the_key(
    repo: Path, changes: dict, expected: str
) -> None:
    if "device" in str(changes) and Path("/dev/nvidia0").exists():
        pytest.skip("a GPU may be present")
    old = (repo / "params.yaml").read_bytes()
    set_params(repo, **{"runner.backend": "jax", **changes})
    try:
        started = time.monotonic()
        done = train(repo, "tiny_mlp")
    finally:
        (repo / "params.yaml").write_bytes(old)
    assert expected in one_line_error(done)
    assert time.monotonic() - started < 60
    assert not (repo / "checkpoints" / "tiny_mlp").exists()


def test_train_help_is_fast_and_loads_no_keras() -> None:
    code = (
        "import runpy, sys; sys.argv = ['train', '--help']\n"
        "try:\n    runpy.run_module('pipeline.stages.train', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'mlflow') if m in sys.modules))"
    )
    started = time.monotonic()
    done = python(code, backend="tensorflow")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert time.monotonic() - started < 2


def test_a_keras_already_loaded_with_another_backend_is_one_line_naming_the_key() -> None:
    import keras

    from pipeline.entry import select_backend
    from pipeline.errors import RunnerError

    loaded = keras.backend.backend()
    other = "jax" if loaded == "tensorflow" else "tensorflow"
    select_backend(loaded)  # the same backend is fine
    with pytest.raises(RunnerError, match=f"runner.backend is {other} but Keras was already"):
        select_backend(other)
