"""The champion's last mile, end to end: real stages on tiny models, then MLflow's own serving,
the registry from an empty folder, the runs as MLflow and its UI show them, and DVC's plots.

One repository is trained once for the module (`dvc repro`, two tiny models); the tests read it.
`ensemble.rounds` is 1 there, so the ensemble ties its best member and the champion is a single
model: `predict --model <champion>` then reads the same network as the served model.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from pipeline.data import decompress, parse_idx
from tests.support import (
    REPO_ROOT,
    VENV_BIN,
    background_server,
    copy_repository,
    free_port,
    mlflow_server,
    pipeline_env,
    run,
    write_small_params,
)

pytestmark = pytest.mark.e2e

MODELS = ("tiny_mlp", "tiny_cnn")
REGISTERED = "mnist-champion"
ML_WORKFLOW = "workflowType=machine_learning"
EMBEDDED = "sqlite:///mlflow/mlflow.db"  # the README's serve line, run from the repo root
# The README's request line; PORT and IMAGE are filled in.
CURL = (
    "curl -s -X POST http://127.0.0.1:PORT/invocations -H 'Content-Type: application/json' "
    '-d "{\\"dataframe_records\\": [{\\"image\\": \\"$(base64 -w0 IMAGE)\\"}]}"'
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    repo = copy_repository(tmp_path_factory.mktemp("champion") / "repo")
    write_small_params(repo, ensemble={"rounds": 1})
    run(["git", "commit", "-qam", "small params"], repo)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline results"], repo)
    return repo


@pytest.fixture(scope="module")
def client(repo: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")


@pytest.fixture(scope="module")
def digits(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three real MNIST test digits: dark on light PNG, light on dark PNG (larger), RGB JPEG."""
    path = mirror / "t10k-images-idx3-ubyte.gz"
    images = parse_idx(decompress(path.read_bytes(), path), path)[:3]
    folder = tmp_path_factory.mktemp("digits")
    dark = folder / "dark-on-light.png"
    Image.fromarray(255 - images[0]).save(dark)
    light = folder / "light-on-dark.png"
    Image.fromarray(images[1]).resize((84, 84), Image.Resampling.BILINEAR).save(light)
    ink = images[2].astype(np.float32) / 255
    paper, pen = np.array([250, 235, 180]), np.array([30, 40, 150])
    rgb = (paper * (1 - ink[..., None]) + pen * ink[..., None]).astype(np.uint8)
    jpeg = folder / "rgb.jpg"
    Image.fromarray(rgb).resize((56, 56)).save(jpeg, quality=92)
    return [dark, light, jpeg]


def predict_json(args: list[str], cwd: Path, env: dict[str, str]) -> list[int]:
    done = run([str(VENV_BIN / "python"), "-m", "pipeline.predict", *args, "--json"], cwd, env)
    return [result["digit"] for result in json.loads(done.stdout)]


@contextmanager
def served_champion(repo: Path, log: Path) -> Iterator[int]:
    """`mlflow models serve` of the registered champion, as the README runs it; yields the port."""
    port = free_port()
    command = [
        str(VENV_BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{REGISTERED}@champion",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = pipeline_env(MLFLOW_TRACKING_URI=EMBEDDED)
    with background_server(command, f"http://127.0.0.1:{port}", log, env, repo, health="/ping"):
        yield port


def test_champion_is_chosen_on_validation_and_the_ensemble_has_its_row(repo: Path) -> None:
    summary = json.loads((repo / "reports" / "summary.json").read_text())
    rows = summary["models"]
    assert set(rows) == {*MODELS, "ensemble"}
    best_validation = max(rows[m]["val_accuracy"] for m in rows)
    assert rows[summary["champion"]]["val_accuracy"] == best_validation
    assert summary["champion"] in MODELS  # one round: the ensemble only ties its member
    # One round picks one best single model (its ties are broken by log loss, not size).
    ((member, count),) = summary["ensemble"]["members"].items()
    assert count == 1 and rows[member]["val_accuracy"] == best_validation
    report = (repo / "reports" / "report.md").read_text()
    assert "| ensemble" in report and "chosen on the validation split" in report
    for name in MODELS:
        stored = np.load(repo / "reports" / "models" / name / "probabilities.npz")
        assert stored["validation"].shape == (len(stored["y_validation"]), 10)
        assert stored["test"].shape == (10_000, 10)


def test_served_champion_reads_real_images_like_predict(
    repo: Path, digits: list[Path], tmp_path: Path
) -> None:
    champion = json.loads((repo / "reports" / "summary.json").read_text())["champion"]
    env = pipeline_env()
    local = predict_json([*map(str, digits), "--model", champion], repo, env)
    registry = predict_json([*map(str, digits), "--champion"], repo, env)
    assert registry == local
    with served_champion(repo, tmp_path / "serve.log") as port:
        records = [{"image": base64.b64encode(path.read_bytes()).decode()} for path in digits]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": records}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = json.loads(response.read())["predictions"]
        assert [p["digit"] for p in predictions] == local
        for prediction in predictions:
            assert len(prediction["probabilities"]) == 10
            assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        # The README's curl line, as written there.
        line = CURL.replace("PORT", str(port)).replace("IMAGE", str(digits[0]))
        answer = run(["bash", "-c", line], repo, env)
        assert json.loads(answer.stdout)["predictions"][0]["digit"] == local[0]


def test_registered_model_carries_signature_example_and_code(repo: Path) -> None:
    from mlflow.models import Model

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    info = Model.load(f"models:/{REGISTERED}@champion")
    assert info.signature is not None
    assert [spec.name for spec in info.signature.inputs.inputs] == ["image", "pixels"]
    assert [spec.name for spec in info.signature.outputs.inputs] == ["digit", "probabilities"]
    assert info.saved_input_example_info is not None
    local = mlflow.artifacts.download_artifacts(f"models:/{REGISTERED}@champion")
    assert (Path(local) / "code" / "pipeline" / "imaging.py").is_file()
    example = json.loads((Path(local) / "input_example.json").read_text())
    encoded = example["data"][0][0] if "data" in example else example[0]["image"]
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        assert image.size == (28, 28)  # a real validation digit


@pytest.mark.parametrize("name", MODELS)
def test_model_runs_have_datasets_training_duration_and_stay_finished(
    client: MlflowClient, repo: Path, name: str
) -> None:
    experiment = client.get_experiment_by_name("mnist-pipeline")
    [found] = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`pipeline.model` = '{name}'"
    )
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    md5 = lock["stages"]["preprocess"]["outs"][0]["md5"]
    inputs = found.inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == [
        "mnist-test",
        "mnist-train",
        "mnist-validation",
    ]
    assert {i.dataset.digest for i in inputs} == {md5}
    assert {json.loads(i.dataset.source)["uri"] for i in inputs} == {"data/processed/dataset.npz"}
    assert found.info.status == "FINISHED"
    assert {"test_accuracy", "validation_accuracy"} <= set(found.data.metrics)
    assert [p.step for p in client.get_metric_history(found.info.run_id, "val_accuracy")] == [1]
    train = json.loads((repo / "reports" / "models" / name / "train.json").read_text())
    duration = (found.info.end_time - found.info.start_time) / 1000
    # The run spans its training (plus saving and logging the model), not the evaluation.
    assert train["train_seconds"] <= duration <= train["train_seconds"] + 15


def test_experiment_opens_on_its_runs_in_a_real_browser(repo: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    store = ["--backend-store-uri", f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}"]
    with mlflow_server(tmp_path, store_args=store) as url:
        experiment = MlflowClient(tracking_uri=url).get_experiment_by_name("mnist-pipeline")
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            try:
                page = browser.new_page()
                # MLflow 3.17's UI takes the kind from its GenAI / Model training switch
                # (default GenAI), which this query parameter sets; the tag is checked above.
                page.goto(f"{url}/#/experiments/{experiment.experiment_id}?{ML_WORKFLOW}")
                for name in MODELS:
                    page.get_by_text(name, exact=True).first.wait_for(timeout=90_000)
                assert f"/experiments/{experiment.experiment_id}/runs" in page.url
            finally:
                browser.close()


def test_plots_diff_shows_two_experiments_confusion_matrices(repo: Path, tmp_path: Path) -> None:
    run(["dvc", "exp", "run", "-n", "narrow", "-S", "models.mlp.tiny_mlp.hidden=[16]"], repo)
    shown = run(["dvc", "exp", "show", "--only-changed", "--csv"], repo).stdout
    header = next(csv.reader(io.StringIO(shown)))
    assert any("tiny_mlp.hidden" in column for column in header), header
    assert any(column.endswith("tiny_mlp.val") for column in header), header  # the headline
    untouched = ("reports/models/tiny_cnn/", "models.cnn.tiny_cnn", "models.tiny_cnn.")
    assert not any(column.startswith(untouched) for column in header), header
    assert len(header) < 60, header
    out = tmp_path / "plots"
    run(["dvc", "plots", "diff", "HEAD", "narrow", "-o", str(out)], repo)
    page = (out / "index.html").read_text()
    images = {path.name for path in (out / "static").iterdir()}
    for revision in ("HEAD", "narrow"):
        name = f"{revision}_reports_plots_tiny_mlp_confusion.png"
        assert name in images and name in page, sorted(images)
    assert "Validation accuracy per epoch" in page
    run(["git", "checkout", "-q", "--", "."], repo)
    run(["dvc", "checkout", "-q"], repo, check=False)


def test_predict_champion_in_an_empty_folder_with_only_the_server(
    repo: Path, digits: list[Path], tmp_path: Path
) -> None:
    with mlflow_server(tmp_path / "server") as uri:
        # The report stage registers the champion on the server (artifacts proxied there).
        run([str(VENV_BIN / "python"), "-m", "pipeline.stages.report"], repo,
            pipeline_env(MLFLOW_TRACKING_URI=uri))  # fmt: skip
        empty = tmp_path / "empty"
        empty.mkdir()
        env = {
            "MLFLOW_TRACKING_URI": uri,
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "PYTHONPATH": str(REPO_ROOT),
        }
        found = predict_json([*map(str, digits), "--champion"], empty, env)
        assert len(found) == 3 and all(0 <= digit <= 9 for digit in found)
        assert list(empty.iterdir()) == []
        local = predict_json([*map(str, digits)], repo, pipeline_env())
        assert found == local
