"""A sweep on DVC's own queue, end to end, and the champion promoted only on purpose.

One tiny repository for the module: the baseline `dvc repro` committed (its champion is
`@champion`), then a 2x2 grid of tiny_mlp settings queued with `dvc exp run --queue -S` and run by
`dvc queue start -j 2`. The tests read what DVC and MLflow recorded, summarise the sweep with
`python -m pipeline.sweep`, and move `@champion` with `python -m pipeline.promote`.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from pipeline.data import decompress, parse_idx
from tests.support import (
    POLL_SECONDS,
    TINY_MODELS,
    VENV_BIN,
    copy_repository,
    run,
    start_queue,
    store_uri,
    write_small_params,
)

pytestmark = pytest.mark.e2e

REGISTERED = "mnist-champion"
DROPOUTS = ("0.1", "0.2")
BATCHES = ("64", "128")
QUEUE_SECONDS = 1500


def python(*args: str, repo: Path, check: bool = True):  # noqa: ANN201
    return run([str(VENV_BIN / "python"), "-m", *args], repo, check=check)


def queue_settled(repo: Path) -> bool:
    status = run(["dvc", "queue", "status"], repo).stdout
    return not any(word in status for word in (" Queued", " Running"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    repo = copy_repository(tmp_path_factory.mktemp("sweep") / "repo")
    models = copy.deepcopy(TINY_MODELS)
    models["mlp"]["tiny_mlp"]["train"] = {"batch_size": 128}  # a key the grid may set
    write_small_params(repo, train_limit=1000, models=models, ensemble={"rounds": 1})
    run(["git", "commit", "-qam", "small params"], repo)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline results"], repo)
    run(
        [
            "dvc", "exp", "run", "--queue",
            "-S", f"models.mlp.tiny_mlp.dropout={','.join(DROPOUTS)}",
            "-S", f"models.mlp.tiny_mlp.train.batch_size={','.join(BATCHES)}",
        ],
        repo,
    )  # fmt: skip
    start_queue(repo, 2)
    deadline = time.monotonic() + QUEUE_SECONDS
    while not queue_settled(repo):
        if time.monotonic() > deadline:
            raise TimeoutError(run(["dvc", "queue", "status"], repo).stdout)
        time.sleep(POLL_SECONDS * 40)  # polling the queue's state, every 10 s
    return repo


@pytest.fixture(scope="module")
def client(repo: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri(repo))


@pytest.fixture(scope="module")
def experiment_names(repo: Path) -> list[str]:
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    baseline = next(entry for entry in shown if entry["rev"] != "workspace")
    names = [group["name"] for group in baseline["experiments"] or []]
    states = run(["dvc", "queue", "status"], repo).stdout
    assert len(names) == 4 and "Failed" not in states, states
    return names


@pytest.fixture(scope="module")
def digits(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = mirror / "t10k-images-idx3-ubyte.gz"
    folder = tmp_path_factory.mktemp("digits")
    files = []
    for index, image in enumerate(parse_idx(decompress(path.read_bytes(), path), path)[:4]):
        Image.fromarray(image).save(folder / f"{index}.png")
        files.append(str(folder / f"{index}.png"))
    return files


def predicted(repo: Path, *args: str) -> list[int]:
    done = python("pipeline.predict", *args, "--json", repo=repo)
    return [result["digit"] for result in json.loads(done.stdout)]


def champion_version(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(REGISTERED, "champion").version)


def test_experiments_register_their_own_alias_and_never_move_the_champion(
    repo: Path, client: MlflowClient, experiment_names: list[str], digits: list[str]
) -> None:
    champion = client.get_model_version_by_alias(REGISTERED, "champion")
    assert "dvc.experiment" not in champion.tags
    summary = json.loads((repo / "reports" / "summary.json").read_text())
    assert champion.tags["pipeline.model"] == summary["champion"]
    versions = set()
    for name in experiment_names:
        version = client.get_model_version_by_alias(REGISTERED, f"exp-{name}")
        assert version.tags["dvc.experiment"] == name
        assert "champion" not in version.aliases
        versions.add(version.version)
    assert len(versions) == 4 and champion.version not in versions
    # The workspace's champion answers both ways: from models/ and from the registry.
    assert predicted(repo, *digits, "--champion") == predicted(repo, *digits)


def test_the_ensembles_run_carries_a_models_figures(repo: Path, client: MlflowClient) -> None:
    experiment = client.get_experiment_by_name("mnist-pipeline")
    [ensemble] = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`pipeline.kind` = 'ensemble' and tags.`git.dirty` = 'false'",
        max_results=1,
    )
    figures = {
        item.path for item in client.list_artifacts(ensemble.info.run_id, "evaluation/figures")
    }
    assert {
        f"evaluation/figures/{name}.png"
        for name in ("confusion", "confusion_validation", "confusion_errors", "misclassified")
    } <= figures
    assert (repo / "reports" / "plots" / "ensemble" / "misclassified.png").is_file()


def test_the_sweep_summary_lists_every_experiment_with_intervals_and_marks_the_best(
    repo: Path, experiment_names: list[str]
) -> None:
    done = python("pipeline.sweep", repo=repo)
    text = (repo / "reports" / "sweep.md").read_text()
    assert done.stdout == text
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("|")]
    header, rows = [cell.strip() for cell in rows[0]], [[c.strip() for c in r] for r in rows[2:]]
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert len(table) == 5 and table[0]["experiment"] == "baseline"
    assert {row["experiment"] for row in table[1:]} == set(experiment_names)
    # the grid as typed; the baseline's own settings are 0.0 and 128
    assert {row["models.mlp.tiny_mlp.dropout"] for row in table} == {"0.0", *DROPOUTS}
    assert {row["models.mlp.tiny_mlp.train.batch_size"] for row in table} == set(BATCHES)
    for row in table:
        accuracy, interval = row["val accuracy (95% CI)"].split(" [")
        low, high = (float(value.rstrip("%]")) for value in interval.split(", "))
        assert low <= float(accuracy.rstrip("%")) <= high
        if row["experiment"] != "baseline":
            assert 0 <= float(row["p (McNemar, val)"]) <= 1
            assert float(row["train s"]) > 0
    [best] = [row for row in table if row[""]]
    best_accuracy = float(best["val accuracy (95% CI)"].split("%")[0])
    assert all(float(row["val accuracy (95% CI)"].split("%")[0]) <= best_accuracy for row in table)
    assert not any("test" in column for column in header)
    if best["experiment"] != "baseline":
        assert f"`dvc exp apply {best['experiment']}`" in text
    with_test = python("pipeline.sweep", "--test", "--output", "sweep-test.md", repo=repo)
    assert "[test] accuracy (95% CI)" in with_test.stdout


def test_a_workspace_with_uncommitted_changes_registers_without_moving_the_champion(
    repo: Path, client: MlflowClient
) -> None:
    before = champion_version(client)
    readme = repo / "README.md"
    readme.write_text(readme.read_text() + "\nan uncommitted line\n")
    try:
        python("pipeline.stages.report", repo=repo)
        workspace = client.get_model_version_by_alias(REGISTERED, "workspace")
        assert champion_version(client) == before != str(workspace.version)
    finally:
        run(["git", "checkout", "-q", "--", "."], repo)
    # Committed again: the report's own outputs differ from HEAD, and that does not count.
    python("pipeline.stages.report", repo=repo)
    assert champion_version(client) not in (before, str(workspace.version))
    run(["git", "checkout", "-q", "--", "."], repo)


def test_promote_moves_the_champion_and_names_an_unknown_alias_in_one_line(
    repo: Path, client: MlflowClient, experiment_names: list[str], digits: list[str]
) -> None:
    name = experiment_names[0]
    chosen = client.get_model_version_by_alias(REGISTERED, f"exp-{name}")
    done = python("pipeline.promote", f"exp-{name}", repo=repo)
    assert done.stdout.strip() == (
        f"{REGISTERED}@champion is now version {chosen.version} ({chosen.tags['pipeline.model']})"
    )
    assert champion_version(client) == str(chosen.version)
    assert predicted(repo, *digits[:1], "--champion")  # the promoted version loads and reads
    failed = python("pipeline.promote", "exp-no-such-experiment", repo=repo, check=False)
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert errors[0].startswith(f"error: MLflow sqlite:///{repo}/mlflow/mlflow.db")
    assert f"no {REGISTERED}@exp-no-such-experiment (its aliases: champion, exp-" in errors[0]
    again = python("pipeline.promote", "--version", str(chosen.version), repo=repo)
    assert again.stdout.strip() == f"{REGISTERED}@champion is already version {chosen.version}"
