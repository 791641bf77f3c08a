"""PNG screenshots of the MLflow UI for the docs: the runs list, the champion's confusion matrix,
the comparison of the model runs and the metric charts.

    python -m tools.screenshots [--out docs] [--port N]

Serves the embedded store with `mlflow server` on 127.0.0.1 (as `make ui` does), finds the ids it
needs through pipeline.tracking (the only module that imports mlflow) and drives the system's
headless Chromium with Playwright. Each page is captured once its own content is there and its
DOM has stopped changing, with CSS animations disabled: the artifact tree's JavaScript slide
animation was caught half-way in some runs when the capture fired on a timer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from pipeline import io, paths
from pipeline.entry import exit_code, handle_sigterm
from pipeline.errors import PipelineError

CHAMPION_ALIAS = "champion"
CONFUSION_FIGURES = ("evaluation/figures/confusion_errors.png", "evaluation/figures/confusion.png")
CHROMIUM = "/usr/bin/chromium"
WIDTH = 1600
HEIGHT = 1000
CONFUSION_HEIGHT = 1200  # the whole matrix, colour bar and axis labels below the run header
PAGE_SECONDS = 90
POLL_MS = 250
STABLE_POLLS = 4  # the page counts as rendered when its DOM is unchanged for this many polls
# Columns of the runs list besides the run name, creation time and duration.
RUN_COLUMNS = (
    "attributes.`Models`", "metrics.`test_accuracy`", "metrics.`parameters`",
    "metrics.`train_seconds`", "tags.`pipeline.kind`",
)  # fmt: skip
# True once `ready` has held and the DOM has not changed for STABLE_POLLS polls in a row.
SETTLED_JS = """() => {
  if (!(%s)) { window.__settled = 0; return false; }
  const html = document.body.innerHTML;
  window.__settled = html === window.__lastHtml ? (window.__settled || 0) + 1 : 0;
  window.__lastHtml = html;
  return window.__settled >= %d;
}"""


@dataclass(frozen=True)
class Action:
    """A step before the capture: click the first element matching `selector`, or type `text`."""

    selector: str
    text: str | None = None


@dataclass(frozen=True)
class Shot:
    """One page to capture: its URL, a JavaScript condition for "its content is there", a file."""

    file: str
    url: str
    ready: str
    height: int = HEIGHT
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class Targets:
    """The ids the screenshots show, read from the tracking store."""

    experiment_id: str
    champion_run_id: str
    model_run_ids: list[str]
    confusion_path: str


# ---------------------------------------------------------------- the ids, from the store


def find_targets(experiment: str, registered_model: str) -> Targets:
    """The experiment, the champion's run, the model runs of the newest report and its figure,
    from the store pipeline.tracking names (MLFLOW_TRACKING_URI, else the embedded one)."""
    from pipeline import tracking

    experiment_id = tracking.find_experiment(experiment)
    if experiment_id is None:
        raise PipelineError(f"no MLflow experiment {experiment!r} yet; run `dvc repro` first")
    champion_run_id = tracking.alias_run(registered_model, CHAMPION_ALIAS)
    if champion_run_id is None:
        raise PipelineError(
            f"no registered model {registered_model}@{CHAMPION_ALIAS} yet; run `dvc repro` first"
        )
    # The report stage tags its run with the run id of every model it compared.
    report = tracking.find_run(experiment_id, {"pipeline.stage": "report"})
    report_tags = tracking.run_tags(report) if report else {}
    model_run_ids = [v for k, v in sorted(report_tags.items()) if k.startswith("pipeline.run.")]
    if champion_run_id not in model_run_ids:
        model_run_ids.append(champion_run_id)

    folder = CONFUSION_FIGURES[0].rsplit("/", 1)[0]
    logged = set(tracking.artifact_files(champion_run_id, folder))
    figure = next((path for path in CONFUSION_FIGURES if path in logged), None)
    if figure is None:
        raise PipelineError(
            f"run {champion_run_id} (the champion) logged none of {', '.join(CONFUSION_FIGURES)}"
        )
    return Targets(experiment_id, champion_run_id, model_run_ids, figure)


# ---------------------------------------------------------------- the pages


def ui_preferences(experiment_id: str) -> dict[str, Any]:
    """The browser's localStorage entries the UI reads its preferences from, as a user sets them.

    The "Model training" pages (not GenAI); the MLflow Assistant kept closed (on a localhost
    server it opens on first visit and covers a third of the page); the runs list's columns.
    """
    return {
        "mlflow.workflowType_v1": "machine_learning",
        "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
        "mlflow.assistant.panelOpen_v1": False,
        f'MLflowLocalStorage-1.1-ExperimentPage-["{experiment_id}"]-ReactComponentState': {
            "selectedColumns": list(RUN_COLUMNS)
        },
    }


def _json_list(values: list[str]) -> str:
    return quote(json.dumps(values, separators=(",", ":")))


def _has_text(text: str) -> str:
    return f"document.body.innerText.includes({json.dumps(text)})"


def _exists(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)}) !== null"


def shots(url: str, targets: Targets) -> list[Shot]:
    """The pages to capture, with the UI's own routes (MLflow 3.17 hash router)."""
    experiment = f"{url}/#/experiments/{targets.experiment_id}"
    ml = urlencode({"workflowType": "machine_learning"})
    run_filter = ", ".join(f"'{run_id}'" for run_id in targets.model_run_ids)
    charts = urlencode(
        {
            "workflowType": "machine_learning",
            "compareRunsMode": "CHART",
            "searchFilter": f"attributes.run_id IN ({run_filter})",
        },
        quote_via=quote,
    )
    compare = (
        f"runs={_json_list(targets.model_run_ids)}"
        f"&experiments={_json_list([targets.experiment_id])}&{ml}"
    )
    # The artifact view shows the figure as a blob: URL under a header naming its path.
    figure_shown = (
        f"{_has_text(targets.confusion_path)} && [...document.images].some(image =>"
        " image.src.startsWith('blob:') && image.complete && image.naturalWidth > 0)"
    )
    plot = ".js-plotly-plot .main-svg"
    return [
        Shot("mlflow-runs.png", f"{experiment}/runs?{ml}", _has_text("matching runs")),
        Shot(
            "mlflow-confusion.png",
            f"{experiment}/runs/{targets.champion_run_id}/artifacts/{targets.confusion_path}?{ml}",
            figure_shown,
            CONFUSION_HEIGHT,
        ),
        Shot(
            "mlflow-compare.png",
            f"{url}/#/compare-runs?{compare}",
            f"{_has_text('Run details')} && {_exists(plot)}",
        ),
        # The model runs' charts, narrowed to val_accuracy and opened full screen.
        Shot(
            "mlflow-charts.png",
            f"{experiment}/runs?{charts}",
            f"{_exists(f'[role=dialog] {plot}')} && {_has_text('val_accuracy')}",
            actions=(
                Action("input[placeholder='Search metric charts']", "val_accuracy"),
                Action("[data-component-id=fullscreen_button_chartcard]"),
            ),
        ),
    ]


# ---------------------------------------------------------------- headless Chromium


def capture(
    shots: Sequence[Shot], out: Path, storage: dict[str, Any], executable: str = CHROMIUM
) -> list[Path]:
    """Open each shot's page with `storage` in its localStorage; write its PNG into `out`."""
    from playwright.sync_api import Error, sync_playwright

    preferences = "".join(
        f"localStorage.setItem({json.dumps(key)}, {json.dumps(json.dumps(value))});"
        for key, value in storage.items()
    )
    written = []
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable)
        except Error as error:
            raise PipelineError(f"{executable}: cannot start ({_first_line(error)})") from None
        try:
            for shot in shots:
                print(f"{shot.file} <- {shot.url}", file=sys.stderr)
                try:
                    image = _screenshot(browser, shot, preferences)
                except Error as error:
                    raise PipelineError(f"{shot.url}: {_first_line(error)}") from None
                io.write_bytes(out / shot.file, image)
                written.append(out / shot.file)
        finally:
            browser.close()
    return written


def _screenshot(browser: Any, shot: Shot, preferences: str) -> bytes:
    """The PNG of one page once its content is there and its DOM has settled."""
    context = browser.new_context(viewport={"width": WIDTH, "height": shot.height})
    try:
        context.set_default_timeout(PAGE_SECONDS * 1000)
        context.add_init_script(preferences)
        page = context.new_page()
        page.goto(shot.url)
        for action in shot.actions:  # Playwright waits for each element to be actionable
            element = page.locator(action.selector).first
            if action.text is None:
                element.click()
            else:  # typed as keyboard input, so the page's own handlers see it
                element.press_sequentially(action.text)
        page.wait_for_function(SETTLED_JS % (shot.ready, STABLE_POLLS), polling=POLL_MS)
        return page.screenshot(animations="disabled")
    finally:
        context.close()


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# ---------------------------------------------------------------- the CLI


def take_screenshots(out: Path, port: int) -> list[Path]:
    """Serve the embedded store, capture every page into `out`; return the files written."""
    if shutil.which(CHROMIUM) is None:
        raise PipelineError(f"{CHROMIUM} not found; install it (apt-get install chromium)")
    from pipeline import tracking
    from pipeline.config import load_params
    from tests.support import mlflow_server

    if not tracking.store_database().is_file():
        raise PipelineError(
            f"{tracking.store_database()}: no MLflow store yet; run `dvc repro` first"
        )
    config = load_params().tracking
    targets = find_targets(config.experiment, config.registered_model)
    with (
        tempfile.TemporaryDirectory(prefix="screenshots-") as scratch,
        mlflow_server(Path(scratch), tracking.store_options(), port) as url,
    ):
        return capture(shots(url, targets), out, ui_preferences(targets.experiment_id))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.screenshots", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=paths.ROOT / "docs", help="output folder")
    parser.add_argument("--port", type=int, default=0, help="port of the UI (default: a free one)")
    args = parser.parse_args(argv)
    handle_sigterm()  # so that `finally` stops the server

    def work() -> None:
        for path in take_screenshots(args.out, args.port):
            print(f"wrote {path} ({path.stat().st_size // 1024} KB)")

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
