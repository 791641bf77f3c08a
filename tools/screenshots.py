"""PNG screenshots of the MLflow UI for the docs: the runs list, the champion's confusion matrix,
the comparison of the model runs and the metric charts.

    python -m tools.screenshots [--out docs] [--port N]

Starts `mlflow ui` on 127.0.0.1 against the embedded store (as `make ui` does), finds the ids it
needs through the server's REST API (only tracking.py imports mlflow) and drives headless Chromium
over the DevTools protocol. Each page is captured once its own content is there and the page has
stopped changing: Chromium's `--screenshot` fires on a virtual-time budget, which caught the
artifact tree's JavaScript slide animation half-way in some runs and not in others.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import requests

from pipeline import io, paths
from pipeline.config import load_params
from pipeline.entry import exit_code, handle_sigterm
from pipeline.errors import PipelineError

CHAMPION_ALIAS = "champion"
CONFUSION_FIGURES = ("evaluation/figures/confusion_errors.png", "evaluation/figures/confusion.png")
WIDTH = 1600
HEIGHT = 1000
CONFUSION_HEIGHT = 1200  # the whole matrix, colour bar and axis labels below the run header
SERVER_START_SECONDS = 120
PAGE_SECONDS = 90
POLL_SECONDS = 0.25
STABLE_POLLS = 4  # the page counts as rendered when its DOM is unchanged for this many polls
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}", "--remote-debugging-pipe",
)  # fmt: skip
# Columns of the runs list besides the run name, creation time and duration.
RUN_COLUMNS = (
    "attributes.`Models`", "metrics.`test_accuracy`", "metrics.`parameters`",
    "metrics.`train_seconds`", "tags.`pipeline.kind`",
)  # fmt: skip
# A hash of the page's DOM once `ready` holds, else null.
SNAPSHOT_JS = """(() => {
  if (!(%s)) return null;
  const html = document.body.innerHTML;
  let hash = 0;
  for (let i = 0; i < html.length; i++) hash = (hash * 31 + html.charCodeAt(i)) | 0;
  return hash;
})()"""


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
    """The ids the screenshots show, read from the tracking server."""

    experiment_id: str
    champion_run_id: str
    model_run_ids: list[str]
    confusion_path: str


# ---------------------------------------------------------------- the MLflow server and its API


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def mlflow_ui(port: int, log_path: Path) -> Iterator[str]:
    """Run `mlflow ui` on 127.0.0.1:`port` against the embedded store; yield its URL."""
    database = paths.MLFLOW_DIR / "mlflow.db"
    if not database.is_file():
        raise PipelineError(f"{database}: no MLflow store yet; run `dvc repro` first")
    command = [
        str(Path(sys.executable).parent / "mlflow"), "ui",
        "--backend-store-uri", f"sqlite:///{database}",
        "--default-artifact-root", str(paths.MLFLOW_DIR / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    # No job runner (eight more processes that only slow the boot down), and no UI telemetry:
    # the browser talks to 127.0.0.1 only.
    environment = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    with log_path.open("wb") as log:
        # Its own process group: the server runs uvicorn as a child, stopped together.
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process, log_path)
        yield url
    finally:
        _stop(process)


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(POLL_SECONDS)
    state = (
        "exited" if process.poll() is not None else f"not healthy after {SERVER_START_SECONDS} s"
    )
    raise PipelineError(f"mlflow ui on {url} {state}: {_last_line(log_path)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the process group of `process` and wait for it (SIGKILL if it lingers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def _api(url: str, endpoint: str, query: dict[str, str] | None = None, body: Any = None) -> Any:
    """GET (or with `body`, POST) an MLflow REST endpoint; None if the resource does not exist."""
    address = f"{url}/api/2.0/mlflow/{endpoint}"
    try:
        if body is None:
            response = requests.get(address, params=query, timeout=30)
        else:
            response = requests.post(address, json=body, timeout=30)
    except requests.RequestException as error:
        raise PipelineError(f"{address}: {type(error).__name__}") from None
    if response.status_code == 404:
        return None
    if not response.ok:
        raise PipelineError(f"{address}: HTTP {response.status_code} {response.text[:200]}")
    return response.json()


def _tags(entity: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in entity.get("tags", [])}


def find_targets(url: str, experiment: str, registered_model: str) -> Targets:
    """The experiment, the champion's run, the model runs of the newest report and its figure."""
    found = _api(url, "experiments/get-by-name", {"experiment_name": experiment})
    if found is None:
        raise PipelineError(f"no MLflow experiment {experiment!r} yet; run `dvc repro` first")
    experiment_id = found["experiment"]["experiment_id"]

    alias = {"name": registered_model, "alias": CHAMPION_ALIAS}
    version = _api(url, "registered-models/alias", alias)
    if version is None:
        raise PipelineError(
            f"no registered model {registered_model}@{CHAMPION_ALIAS} yet; run `dvc repro` first"
        )
    champion = version["model_version"]
    champion_run_id = _tags(champion).get("pipeline.run_id") or champion["run_id"]

    # The report stage tags its run with the run id of every model it compared.
    search = {
        "experiment_ids": [experiment_id],
        "filter": "tags.`pipeline.stage` = 'report'",
        "order_by": ["attributes.start_time DESC"],
        "max_results": 1,
    }
    reports = _api(url, "runs/search", body=search).get("runs", [])
    report_tags = _tags(reports[0]["data"]) if reports else {}
    model_run_ids = [v for k, v in sorted(report_tags.items()) if k.startswith("pipeline.run.")]
    if champion_run_id not in model_run_ids:
        model_run_ids.append(champion_run_id)

    folder = CONFUSION_FIGURES[0].rsplit("/", 1)[0]
    listing = _api(url, "artifacts/list", {"run_id": champion_run_id, "path": folder}) or {}
    logged = {item["path"] for item in listing.get("files", [])}
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


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe).

    Chromium reads commands on its fd 3 and writes replies and events on its fd 4, each a JSON
    message ended by a NUL byte.
    """

    def __init__(self, executable: str, profile: Path, log_path: Path) -> None:
        self.log_path = log_path
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        self._buffer = b""
        self._next_id = 0
        # Chromium's ends, first moved above fd 4 so that neither dup2 below overwrites the other.
        commands_read, replies_write = _above_four(commands_read), _above_four(replies_write)

        def wire_pipes() -> None:  # runs in the child between fork and exec
            os.dup2(commands_read, 3)
            os.dup2(replies_write, 4)

        command = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"]
        try:
            with log_path.open("wb") as log:
                # close_fds=False keeps fds 3 and 4; every other fd Python opens is close-on-exec.
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    close_fds=False,
                    preexec_fn=wire_pipes,  # safe: this process runs no other threads
                    start_new_session=True,
                )
        except OSError as error:
            os.close(self._commands)
            os.close(self._replies)
            raise PipelineError(f"{executable}: cannot start ({error.strerror})") from None
        finally:
            os.close(commands_read)
            os.close(replies_write)

    def close(self) -> None:
        """Ask Chromium to quit, then make sure it has."""
        with suppress(PipelineError):
            self.call("Browser.close", timeout=10)
        _stop(self.process)
        os.close(self._commands)
        os.close(self._replies)

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:  # fmt: skip
        """Send one command and return its result (events that arrive meanwhile are dropped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        try:
            os.write(self._commands, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise self._died() from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise PipelineError(f"chromium {method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _receive(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PipelineError(f"chromium did not answer {method} in time")
            readable, _, _ = select.select([self._replies], [], [], remaining)
            if readable:
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    raise self._died()
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _died(self) -> PipelineError:
        return PipelineError(f"chromium exited: {_last_line(self.log_path)}")

    def capture(self, shot: Shot, out: Path, storage: dict[str, Any]) -> None:
        """Open `shot.url` in a new tab, `storage` in its localStorage; write its PNG to `out`."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attach = {"targetId": target, "flatten": True}
        session = self.call("Target.attachToTarget", attach)["sessionId"]
        try:
            metrics = {
                "width": WIDTH,
                "height": shot.height,
                "deviceScaleFactor": 1,
                "mobile": False,
            }
            self.call("Emulation.setDeviceMetricsOverride", metrics, session)
            preferences = "".join(
                f"localStorage.setItem({json.dumps(key)}, {json.dumps(json.dumps(value))});"
                for key, value in storage.items()
            )
            self.call("Page.enable", {}, session)  # else the script below is not injected
            self.call("Page.addScriptToEvaluateOnNewDocument", {"source": preferences}, session)
            self.call("Page.navigate", {"url": shot.url}, session)
            for action in shot.actions:
                self._wait_until_rendered(shot.url, _exists(action.selector), session)
                self._act(action, session)
            self._wait_until_rendered(shot.url, shot.ready, session)
            image = self.call("Page.captureScreenshot", {"format": "png"}, session)["data"]
            io.write_bytes(out, base64.b64decode(image))
        finally:
            with suppress(PipelineError):  # Chromium died: the error that said so wins
                self.call("Target.closeTarget", {"targetId": target})

    def _act(self, action: Action, session: str) -> None:
        element = f"document.querySelector({json.dumps(action.selector)})"
        if action.text is None:
            self.call("Runtime.evaluate", {"expression": f"{element}.click()"}, session)
        else:  # typed as keyboard input, so the page's own handlers see it
            self.call("Runtime.evaluate", {"expression": f"{element}.focus()"}, session)
            self.call("Input.insertText", {"text": action.text}, session)

    def _wait_until_rendered(self, url: str, ready: str, session: str) -> None:
        """Poll until `ready` holds and the DOM is unchanged over STABLE_POLLS polls."""
        expression = {"expression": SNAPSHOT_JS % ready, "returnByValue": True}
        deadline = time.monotonic() + PAGE_SECONDS
        previous, stable = None, 0
        while time.monotonic() < deadline:
            snapshot = self.call("Runtime.evaluate", expression, session)["result"].get("value")
            stable = stable + 1 if snapshot is not None and snapshot == previous else 0
            if stable >= STABLE_POLLS:
                return
            previous = snapshot
            time.sleep(POLL_SECONDS)
        raise PipelineError(f"{url}: the page did not finish rendering in {PAGE_SECONDS} s")


def _above_four(fd: int) -> int:
    """A duplicate of `fd` numbered 5 or more (close-on-exec), closing `fd`."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved


# ---------------------------------------------------------------- the CLI


def take_screenshots(out: Path, port: int) -> list[Path]:
    """Start the UI and Chromium, capture every page into `out`; return the files written."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise PipelineError("chromium not found on PATH; install it (apt-get install chromium)")
    tracking = load_params().tracking
    written = []
    with tempfile.TemporaryDirectory(prefix="screenshots-") as scratch:
        folder = Path(scratch)
        with mlflow_ui(port or free_port(), folder / "mlflow-ui.log") as url:
            targets = find_targets(url, tracking.experiment, tracking.registered_model)
            preferences = ui_preferences(targets.experiment_id)
            (folder / "profile").mkdir()
            browser = Chromium(executable, folder / "profile", folder / "chromium.log")
            try:
                for shot in shots(url, targets):
                    path = out / shot.file
                    print(f"{path.name} <- {shot.url}", file=sys.stderr)
                    browser.capture(shot, path, preferences)
                    written.append(path)
            finally:
                browser.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=paths.ROOT / "docs", help="output folder")
    parser.add_argument("--port", type=int, default=0, help="port of the UI (default: a free one)")
    args = parser.parse_args()
    handle_sigterm()  # so that `finally` stops the server

    def work() -> None:
        for path in take_screenshots(args.out, args.port):
            print(f"wrote {path} ({path.stat().st_size // 1024} KB)")

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
