"""Summarise a sweep: the DVC experiments of HEAD, one row each, chosen on validation.

    dvc exp run --queue -S 'models.mlp.mlp_e_128.dropout=0.1,0.2,0.3'
    dvc queue start -j 2            # wait for `dvc queue status` to show them done
    python -m pipeline.sweep        # prints the table and writes reports/sweep.md
    dvc exp apply <best>            # then commit, and `python -m pipeline.promote exp-<best>`

Reads the experiments as `dvc exp show --json` lists them (dvc's Python API), each one's and
its baseline's reports/models/<model>/probabilities.npz through DVC (cache or remote), and the
MLflow runs tagged `dvc.experiment` with its name. Per experiment: the parameters that differ,
validation accuracy of <model> with a 95% Wilson interval, the McNemar exact p against the
baseline on the same validation images, training seconds; the best on validation is marked.
Test columns only with --test. Parameters are printed as the experiment's params.yaml has them:
write a float grid as a list (`-S 'x=0.1,0.2,0.3'`); Hydra's `range(0.1,0.4,0.1)` adds the
steps up and queues 0.30000000000000004, which is then what was trained and what is shown.
"""

from __future__ import annotations

import argparse
import io as text_io
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import io, metrics, paths
from pipeline.entry import exit_code
from pipeline.errors import PipelineError

DEFAULT_OUTPUT = paths.REPORTS_DIR / "sweep.md"
SIGNIFICANCE = 0.05
BEST_MARK = "best on validation"


class SweepError(PipelineError):
    """Nothing to summarise, or a model the experiments cannot say."""


@dataclass(frozen=True)
class Experiment:
    """One finished DVC experiment (or the baseline it started from)."""

    name: str
    rev: str
    baseline_rev: str
    params: dict[str, Any]  # flattened params.yaml, dotted keys


@dataclass(frozen=True)
class Predictions:
    """Which validation (and test) images a model read right."""

    validation: np.ndarray  # bool per image
    test: np.ndarray


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def experiments(shown: Sequence[Mapping[str, Any]]) -> tuple[Experiment, list[Experiment]]:
    """The baseline commit and its finished experiments, from `dvc exp show --json`'s list."""
    baselines = [entry for entry in shown if entry.get("rev") != "workspace"]
    if not baselines:
        raise SweepError("no commit to compare with: commit the baseline first")
    base = baselines[0]

    def parsed(state: Mapping[str, Any], name: str) -> Experiment | None:
        data = state.get("data") or {}
        params = (data.get("params") or {}).get("params.yaml", {}).get("data")
        if state.get("error") or params is None:
            return None
        return Experiment(name, state["rev"], base["rev"], _flatten(params))

    baseline = parsed(base, "baseline")
    if baseline is None:
        raise SweepError(f"the baseline {base['rev'][:7]} has no readable params.yaml")
    found = []
    for group in base.get("experiments") or []:
        executor = group.get("executor") or {}
        if executor.get("state") not in (None, "success"):
            continue  # queued, running or failed
        for state in group.get("revs") or []:
            experiment = parsed(state, state.get("name") or group.get("name") or state["rev"][:7])
            if experiment is not None:
                found.append(experiment)
    if not found:
        raise SweepError(
            f"no finished experiment of {base['rev'][:7]}: queue some with "
            "`dvc exp run --queue -S key=a,b` and run them with `dvc queue start`"
        )
    return baseline, found


def changed_params(rows: Sequence[Experiment]) -> list[str]:
    """The dotted keys whose values differ between `rows`, in params.yaml's order."""
    keys: list[str] = []
    for row in rows:
        keys.extend(key for key in row.params if key not in keys)
    missing = object()
    return [
        key
        for key in keys
        if len({json.dumps(r.params.get(key, missing), default=str) for r in rows}) > 1
    ]


def model_of(keys: Sequence[str], known: Sequence[str]) -> str:
    """The one model the changed keys `keys` name (models.<kind>.<name>...)."""
    named = sorted({key.split(".")[2] for key in keys if key.startswith("models.")} & set(known))
    if len(named) != 1:
        which = f"they change {', '.join(named)}" if named else "they change no one model"
        raise SweepError(
            f"say which model to compare with --model ({which}; models: {', '.join(known)})"
        )
    return named[0]


def param_text(value: Any) -> str:
    """A param as YAML writes it: floats in their shortest exact form (0.1, not 0.1000...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def mcnemar(baseline: np.ndarray, other: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test on paired right/wrong answers: (baseline only right, other only
    right, two-sided p); p is 1 without discordant pairs."""
    if baseline.shape != other.shape:
        raise SweepError(f"{len(baseline)} and {len(other)} images: not the same split")
    lost = int(np.sum(baseline & ~other))
    gained = int(np.sum(~baseline & other))
    return lost, gained, metrics.mcnemar_p(lost, gained)


def _accuracy(correct: np.ndarray) -> str:
    low, high = metrics.accuracy_interval(int(correct.sum()), len(correct))
    return f"{correct.mean():.2%} [{low:.2%}, {high:.2%}]"


def summary_table(
    baseline: Experiment,
    rows: Sequence[Experiment],
    predictions: Mapping[str, Predictions],
    seconds: Mapping[str, float | None],
    with_test: bool = False,
) -> pd.DataFrame:
    """One row per experiment (the baseline first): changed params, validation accuracy with
    its interval, Δ and McNemar p against the baseline, training seconds, the best marked."""
    everyone = [baseline, *rows]
    keys = changed_params(everyone)
    base = predictions[baseline.name]
    records = []
    for row in everyone:
        found = predictions[row.name]
        lost, gained, p = mcnemar(base.validation, found.validation)
        record: dict[str, Any] = {"experiment": row.name}
        record.update({key: param_text(row.params.get(key, "")) for key in keys})
        record["val accuracy (95% CI)"] = _accuracy(found.validation)
        record["Δ val pp"] = f"{(found.validation.mean() - base.validation.mean()) * 100:+.2f}"
        record["lost/gained"] = f"{lost}/{gained}"
        record["p (McNemar, val)"] = "" if row is baseline else f"{p:.3g}"
        time = seconds.get(row.name)
        record["train s"] = "" if time is None else f"{time:.1f}"
        if with_test:
            record["[test] accuracy (95% CI)"] = _accuracy(found.test)
        record["_val"] = float(found.validation.mean())
        records.append(record)
    table = pd.DataFrame(records)
    best = int(table["_val"].to_numpy().argmax())  # ties: the first, baseline before experiments
    table[""] = ["★ " + BEST_MARK if i == best else "" for i in range(len(table))]
    return table.drop(columns="_val")


def best_experiment(table: pd.DataFrame) -> str:
    """The name of the row marked best on validation."""
    return str(table.loc[table[""] != "", "experiment"].iloc[0])


def markdown(table: pd.DataFrame, model: str, baseline: Experiment, images: int) -> str:
    """The summary as a markdown document."""
    best = best_experiment(table)
    lines = [
        f"# Sweep of `{model}` against the baseline {baseline.rev[:7]}",
        "",
        f"Validation accuracy on {images:,} images with its 95% Wilson interval; p is McNemar's "
        f"exact test against the baseline on the same images (lost/gained: images only the "
        f"baseline / only the experiment read right; below {SIGNIFICANCE} the difference is "
        "unlikely to be noise). Chosen on validation; [test] columns are not for choosing.",
        "",
        table.to_markdown(index=False, disable_numparse=True),
        "",
    ]
    if best != "baseline":
        lines += [
            f"Next: `dvc exp apply {best}`, commit, and `python -m pipeline.promote exp-{best}` "
            "to serve the champion it registered."
        ]
    else:
        lines += ["The baseline stays best on validation: nothing to apply."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the edges: DVC and MLflow


def _show(root: Path) -> list[dict[str, Any]]:
    """`dvc exp show --json` of HEAD, through dvc's Python API."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return [state.dumpd() for state in repo.experiments.show()]


def _reader(root: Path) -> Callable[[str, str], Predictions]:
    def read(model: str, rev: str) -> Predictions:
        import dvc.api

        path = (paths.model_reports(model) / "probabilities.npz").relative_to(paths.ROOT)
        try:
            with dvc.api.open(path.as_posix(), repo=str(root), rev=rev, mode="rb") as handle:
                stored = np.load(text_io.BytesIO(handle.read()))
                return Predictions(
                    stored["validation"].argmax(axis=1) == stored["y_validation"],
                    stored["test"].argmax(axis=1) == stored["y_test"],
                )
        except Exception as error:  # noqa: BLE001 - not in the cache nor the remote: one line
            raise SweepError(
                f"{path} at {rev[:7]} cannot be read through DVC ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); `dvc exp pull` it?"
            ) from None

    return read


def _train_seconds(experiment_name: str, rows: Sequence[Experiment], model: str, shown) -> dict:
    """Seconds the model trained in each experiment: its MLflow run tagged with the experiment,
    else (the baseline, or a model the experiment did not retrain) DVC's train.json metric."""
    from pipeline import tracking

    metric_file = (paths.model_reports(model) / "train.json").relative_to(paths.ROOT).as_posix()
    seconds: dict[str, float | None] = {}
    for row in rows:
        runs = tracking.tagged_runs(
            experiment_name, {"dvc.experiment": row.name, "pipeline.model": model}
        )
        timed = [
            run["metrics"]["train_seconds"] for run in runs if "train_seconds" in run["metrics"]
        ]
        seconds[row.name] = timed[0] if timed else shown.get(row.rev, {}).get(metric_file)
    return seconds


def _metric_values(shown: Sequence[Mapping[str, Any]], name: str) -> dict[str, dict]:
    """rev: {metrics file: its `name` value}, for every state in `shown`."""
    values: dict[str, dict] = {}

    def visit(state: Mapping[str, Any]) -> None:
        metrics = ((state.get("data") or {}).get("metrics")) or {}
        values[state["rev"]] = {
            path: (found.get("data") or {}).get(name) for path, found in metrics.items()
        }
        for group in state.get("experiments") or []:
            for inner in group.get("revs") or []:
                visit(inner)

    for state in shown:
        visit(state)
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.sweep",
        description="Summarise the DVC experiments of HEAD (a queued sweep), chosen on "
        "validation.",
    )
    parser.add_argument(
        "--model", help="the model to compare (default: the one model the sweep changes)"
    )
    parser.add_argument("--test", action="store_true", help="add test accuracy, marked [test]")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file (reports/sweep.md)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = _parser().parse_args(argv)

    def work() -> None:
        from pipeline.config import load_params

        params = load_params()
        shown = _show(paths.ROOT)
        baseline, rows = experiments(shown)
        model = args.model or model_of(changed_params([baseline, *rows]), list(params.models))
        if model not in params.models:
            raise SweepError(f"--model {model}: no such model ({', '.join(params.models)})")
        read = _reader(paths.ROOT)
        predictions = {row.name: read(model, row.rev) for row in [baseline, *rows]}
        seconds = _train_seconds(
            params.tracking.experiment,
            [baseline, *rows],
            model,
            _metric_values(shown, "train_seconds"),
        )
        table = summary_table(baseline, rows, predictions, seconds, args.test)
        text = markdown(table, model, baseline, len(predictions[baseline.name].validation))
        io.write_text(args.output, text)
        print(text, end="")

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
