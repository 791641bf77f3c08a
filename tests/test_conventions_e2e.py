"""MLflow's and DVC's own conventions, end to end on one tiny `dvc repro`: the training runs carry
MLflow's source, git and system metrics and a logged model named after the architecture with
its metrics; the terminal stays quiet; no `Default` experiment under mlruns/; `dvc plots show`
draws its curves and confusion matrices offline; `make ui` prints a link to the model runs.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.support import (
    REPO_ROOT,
    VENV_BIN,
    background_server,
    copy_repository,
    free_port,
    pipeline_env,
    run,
    stages_run,
    store_uri,
    write_small_params,
)

pytestmark = pytest.mark.e2e

MODELS = ("tiny_mlp", "tiny_cnn")
CHROMIUM = "/usr/bin/chromium"
# What TensorFlow's C++ side prints (absl's prefix `I0000 00:00:...`, its pre-init notice, the
# oneDNN and CUDA lines), and any warning MLflow raises or logs.
NATIVE_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:[\d.]+ |absl::InitializeLog|oneDNN|cuInit|cuda")
MLFLOW_WARNING = re.compile(r"mlflow.*(Warning|WARNING)|(Warning|WARNING).*mlflow", re.IGNORECASE)


@pytest.fixture(scope="module")
def repro(
    tmp_path_factory: pytest.TempPathFactory, mirror: Path
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A tiny copy after `dvc repro` (system metrics sampled every second), and its output."""
    repo = copy_repository(tmp_path_factory.mktemp("conventions") / "repo")
    write_small_params(repo)
    run(["git", "commit", "-qam", "small params"], repo)
    done = run(["dvc", "repro"], repo, pipeline_env(MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1"))
    assert len(stages_run(done.stdout)) == 7, done.stdout
    return repo, done


@pytest.fixture(scope="module")
def repo(repro: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    return repro[0]


@pytest.fixture(scope="module")
def client(repo: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri(repo))


@pytest.mark.parametrize("name", MODELS)
def test_training_run_has_mlflows_git_source_system_metrics_and_a_named_model(
    client: MlflowClient, repo: Path, name: str
) -> None:
    experiment = client.get_experiment_by_name("mnist-pipeline")
    [found] = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`pipeline.model` = '{name}'"
    )
    tags = found.data.tags
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.name"] == str(repo / "pipeline" / "stages" / "train.py")
    assert tags["mlflow.user"]
    assert any(key.startswith("system/") for key in found.data.metrics), found.data.metrics
    [model] = client.search_logged_models(
        [experiment.experiment_id], filter_string=f"source_run_id = '{found.info.run_id}'"
    )
    assert model.name == name
    assert tags["pipeline.model_uri"] == f"models:/{model.model_id}"
    linked = {metric.key: metric.value for metric in model.metrics or []}
    # Training's totals and evaluate's scores, logged into the run, are the model's metrics.
    assert linked["test_accuracy"] == found.data.metrics["test_accuracy"]
    assert linked["parameters"] == found.data.metrics["parameters"]


def test_stage_output_holds_no_tensorflow_start_up_line_and_no_mlflow_warning(
    repro: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    done = repro[1]
    output = done.stderr + done.stdout
    assert not [line for line in output.splitlines() if NATIVE_LINE.search(line)]
    assert not [line for line in output.splitlines() if MLFLOW_WARNING.search(line)]
    assert "\x1b[" not in output  # no colour codes when the output is not a terminal
    # The stages still print their own lines and Keras' progress.
    assert "INFO tiny_cnn: validation accuracy" in done.stderr
    assert re.search(r"^\d+/\d+ - .*val_accuracy", done.stdout, re.MULTILINE), done.stdout


def test_stage_help_names_the_module() -> None:
    shown = run([str(VENV_BIN / "python"), "-m", "pipeline.stages.train", "--help"], REPO_ROOT)
    assert shown.stdout.startswith("usage: python -m pipeline.stages.train "), shown.stdout


def test_no_default_experiment_under_mlruns(client: MlflowClient, repo: Path) -> None:
    assert not (repo / "mlruns").exists()
    artifacts = (repo / "mlflow" / "artifacts").as_uri()
    for experiment in client.search_experiments():
        assert experiment.artifact_location.startswith(artifacts), experiment
        assert "mlruns" not in experiment.artifact_location


# ---------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - Playwright's Browser
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


# Keeps every view vega-embed renders (window.__views), to read back its scenegraph.
KEEP_VIEWS_JS = """(() => {
  let embed;
  window.__views = [];
  Object.defineProperty(window, 'vegaEmbed', {
    configurable: true,
    get: () => embed && ((...args) => embed(...args).then(result => {
      window.__views.push(result.view);
      return result;
    })),
    set: value => { embed = value; },
  });
})();"""
# Per rendered view: how many data marks (lines, points, cells) its scenegraph holds.
MARKS_JS = """() => window.__views.map(view => {
  const marks = scene => (scene.role === 'mark' ? (scene.items || []).length : 0) +
    (scene.items || []).reduce((n, item) => n + (item.items || []).reduce(
      (m, child) => m + marks(child), 0), 0);
  return marks(view.scenegraph().root);
})"""
# Per canvas: how many of its pixels are drawn (not blank or near-white).
DRAWN_PIXELS_JS = """() => [...document.querySelectorAll('canvas')].map(canvas => {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 0 && (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200)) drawn++;
  }
  return drawn;
})"""


def test_dvc_plots_draw_offline(repo: Path, tmp_path: Path, browser) -> None:  # noqa: ANN001
    out = tmp_path / "plots"
    run(["dvc", "plots", "show", "-o", str(out)], repo)
    page_html = (out / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in page_html
    context = browser.new_context(offline=True)
    requested: list[str] = []
    context.route(
        "**/*",
        lambda route: (
            requested.append(route.request.url),
            route.continue_() if route.request.url.startswith("file:") else route.abort(),
        ),
    )
    try:
        page = context.new_page()
        page.add_init_script(KEEP_VIEWS_JS)
        page.goto((out / "index.html").as_uri())
        # Four curve overlays and two confusion matrices per model.
        expected = 4 + 2 * len(MODELS)
        page.wait_for_function(f"window.__views.length >= {expected}", timeout=60_000)
        marks = page.evaluate(MARKS_JS)
        assert len(marks) == expected
        # A point per model on each curve (one epoch), at least ten cells per confusion matrix.
        assert min(marks) >= len(MODELS), marks
        assert sum(count >= 10 for count in marks) >= 2 * len(MODELS), marks
        drawn = page.evaluate(DRAWN_PIXELS_JS)
        assert len(drawn) == expected and min(drawn) > 500, drawn
        for title in ("Training loss per epoch", "tiny_cnn test confusion matrix"):
            assert title in page_html, title
    finally:
        context.close()
    assert all(url.startswith("file:") for url in requested), requested


def test_make_ui_link_opens_the_runs_and_model_training_is_remembered(
    repo: Path,
    tmp_path: Path,
    browser,  # noqa: ANN001
) -> None:
    port = free_port()
    venv = VENV_BIN.parent
    # As a user runs it; `-o` keeps make from rebuilding the (shared) venv of this checkout.
    command = ["make", "-o", f"{venv}/.installed", "ui", f"VENV={venv}", f"PORT={port}"]
    log = tmp_path / "ui.log"
    url = f"http://127.0.0.1:{port}"
    with background_server(command, url, log, pipeline_env(), cwd=repo):
        printed = re.search(r"Runs of mnist-pipeline: (\S+)", log.read_text())
        assert printed, log.read_text()
        experiment = MlflowClient(store_uri(repo)).get_experiment_by_name("mnist-pipeline")
        assert printed.group(1) == f"{url}/#/experiments/{experiment.experiment_id}/runs"
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(printed.group(1))
            for name in MODELS:
                page.get_by_text(name, exact=True).first.wait_for(timeout=90_000)
            # The README's one click: the sidebar's "Model training", which the browser keeps:
            # a new page's experiment list then opens the experiment on its runs.
            page.get_by_text("Model training", exact=True).first.click()
            page = context.new_page()
            page.goto(f"{url}/#/experiments")
            row = page.locator(f'a[href^="#/experiments/{experiment.experiment_id}"]')
            row.get_by_text("mnist-pipeline", exact=True).click()
            for name in MODELS:
                page.get_by_text(name, exact=True).first.wait_for(timeout=90_000)
            assert f"/experiments/{experiment.experiment_id}/runs" in page.url
        finally:
            context.close()
    assert not (repo / "mlruns").exists()
