"""A sweep across machines: two clones each run half of a grid, a third summarises all of it.

What they share is DVC's and MLflow's own: a bare Git remote (`origin`), a DVC remote in a local
folder, and one real `mlflow server` on 127.0.0.1. Each of the first two clones queues half of a
2x2 grid and runs `dvc exp push origin`; the third runs `dvc exp pull origin` and
`python -m pipeline.sweep`, which reads the pulled experiments and their MLflow runs.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.support import (
    POLL_SECONDS,
    TINY_MODELS,
    VENV_BIN,
    copy_repository,
    mlflow_server,
    pipeline_env,
    run,
    start_queue,
    write_small_params,
)

pytestmark = pytest.mark.e2e

QUEUE_SECONDS = 1500
HALVES = {"first": "0.1", "second": "0.2"}  # each clone's dropout; both run batch sizes 64, 128


def settled(clone: Path, env: dict[str, str]) -> bool:
    status = run(["dvc", "queue", "status"], clone, env).stdout
    return not any(word in status for word in (" Queued", " Running"))


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("team")
    origin, storage = root / "origin.git", root / "dvc-storage"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    with mlflow_server(root / "server") as uri:
        env = pipeline_env(MLFLOW_TRACKING_URI=uri)
        first = copy_repository(root / "first")
        models = copy.deepcopy(TINY_MODELS)
        models["mlp"]["tiny_mlp"]["train"] = {"batch_size": 128}
        write_small_params(first, train_limit=1000, models=models, ensemble={"rounds": 1})
        for command in (
            ["dvc", "remote", "add", "-d", "storage", str(storage)],
            ["git", "add", "-A"],
            ["git", "commit", "-qm", "small params, the team's DVC remote"],
            ["dvc", "repro"],
            ["git", "add", "-A"],
            ["git", "commit", "-qm", "baseline results"],
            ["git", "remote", "add", "origin", str(origin)],
            ["git", "push", "-q", "origin", "main"],
            ["dvc", "push"],
        ):
            run(command, first, env)
        clones = {"first": first}
        for name in ("second", "third"):
            run(["git", "clone", "-q", str(origin), name], root, env)
            clones[name] = root / name
        run(["dvc", "pull"], clones["second"], env)
        for name, dropout in HALVES.items():
            run(
                [
                    "dvc", "exp", "run", "--queue",
                    "-S", f"models.mlp.tiny_mlp.dropout={dropout}",
                    "-S", "models.mlp.tiny_mlp.train.batch_size=64,128",
                ],
                clones[name],
                env,
            )  # fmt: skip
            start_queue(clones[name], 1, env)
        deadline = time.monotonic() + QUEUE_SECONDS
        while not all(settled(clones[name], env) for name in HALVES):
            if time.monotonic() > deadline:
                raise TimeoutError("the two halves of the grid did not finish")
            time.sleep(POLL_SECONDS * 40)  # polling both queues' state, every 10 s
        for name in HALVES:
            run(["dvc", "exp", "push", "origin"], clones[name], env)
        run(["dvc", "exp", "pull", "origin"], clones["third"], env)
        done = run([str(VENV_BIN / "python"), "-m", "pipeline.sweep"], clones["third"], env)
        yield {"clones": clones, "env": env, "uri": uri, "summary": done.stdout}


def experiment_names(clone: Path, env: dict[str, str]) -> set[str]:
    listed = run(["dvc", "exp", "list", "--name-only"], clone, env).stdout
    return set(listed.split())


def test_the_third_clone_summarises_every_experiment_of_both_halves(team: dict) -> None:
    clones, env = team["clones"], team["env"]
    first, second = (experiment_names(clones[name], env) for name in HALVES)
    assert len(first) == 2 and len(second) == 2 and not first & second
    lines = [line for line in team["summary"].splitlines() if line.startswith("| ")]
    rows = {
        cells[1].strip(): [cell.strip() for cell in cells[1:-1]]
        for cells in (line.split("|") for line in lines[1:])  # lines[0]: the header
    }
    assert set(rows) == {"baseline", *first, *second}
    assert experiment_names(clones["third"], env) == first | second
    marked = [name for name, cells in rows.items() if "★ best on validation" in cells]
    assert len(marked) == 1
    client = MlflowClient(tracking_uri=team["uri"])
    for name in first | second:
        # its training seconds come from its run on the shared server
        assert rows[name][-2].replace(".", "", 1).isdigit(), rows[name]
        version = client.get_model_version_by_alias("mnist-champion", f"exp-{name}")
        assert version.tags["dvc.experiment"] == name
    champion = client.get_model_version_by_alias("mnist-champion", "champion")
    assert "dvc.experiment" not in champion.tags
