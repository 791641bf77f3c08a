"""Tests of tools.bench.formatting: tables, and a report of every section as text and JSON
(built by each section's own result function)."""

from __future__ import annotations

import json

import pytest

from pipeline.config import load_params
from tools.bench.cpu import cpu_result, cpu_variants
from tools.bench.epochs import epoch_row
from tools.bench.formatting import format_report, format_table
from tools.bench.full import full_result
from tools.bench.loading import input_result
from tools.bench.noop import dvc_result
from tools.bench.overhead import tracking_result
from tools.bench.sections import TITLES
from tools.bench.trials import pick_model


def test_format_table_left_aligns_the_first_column_and_right_aligns_the_rest() -> None:
    table = format_table(["name", "s"], [["a", "1.50"], ["longer", "10.25"]])
    assert table.splitlines() == [
        "name        s",
        "------  -----",
        "a        1.50",
        "longer  10.25",
    ]


def test_format_table_rejects_a_row_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="has 1 cells, expected 2"):
        format_table(["a", "b"], [["only one"]])


def runs_of(key: str, *values: float) -> list[dict[str, float]]:
    return [{key: value, "cpu_s": value} for value in values]


def fake_report() -> dict:
    """A report of every section, built by the section's own result function."""
    spec = load_params().model(pick_model(load_params()))
    tracking = tracking_result(
        {
            "plain": runs_of("wall_s", 10.0, 10.0, 10.0),
            "pipeline": runs_of("wall_s", 10.1, 10.2, 10.6),
        },
        [{"connect": 0.01, "log_keras_model": 0.5, "total": 0.51}] * 3,
        runs_of("wall_s", 0.04, 0.05, 0.06),
        {
            "model": spec.name,
            "train_images": 12000,
            "val_images": 3000,
            "epochs": 2,
            "batch_size": 128,
        },
    )
    epochs = {
        "full_train_images": 51000,
        "repeats": 3,
        "target_epoch_s": 2.5,
        "models": [epoch_row(spec, 34826, 5120, 51000, runs_of("wall_s", 1.0, 1.1, 0.9))],
    }
    dvc = dvc_result(
        {
            side: [{"wall_s": s, "stages_run": []} for s in (1.0, 1.2, 1.1)]
            for side in ("repro", "status", "version")
        },
        60.0,
        7,
    )
    full = full_result(
        5.0,
        20,
        {
            "wall_s": 1800.0,
            "samples": 3600,
            "sample_interval_s": 0.5,
            "peak_rss_sum_bytes": 5 * 2**30,
            "peak_rss_sampled_process_bytes": 2**30,
            "max_rss_process_bytes": 2**30,
        },
        "the repository's params.yaml",
        "| model | test acc |\n|:--|:--|\n| cnn_a_32_64 | 98.98% |\n",
    )
    inputs = input_result(
        {"raw": runs_of("wall_s", 0.2, 0.3), "processed": runs_of("wall_s", 2.5, 2.4)}, "scale"
    )
    defaults = {
        "model": spec.name,
        "images": 10240,
        "batch_size": 128,
        "jit_compile": False,
        "mixed_precision": False,
    }
    variants = cpu_variants(defaults, 2)
    cpu_runs = {
        v["name"]: [{"wall_s": 5.0, "cpu_s": 9.0, "train_loss": 0.5, "val_accuracy": 0.9}] * 3
        for v in variants
    }
    cpu_runs["mixed_bfloat16"] = cpu_runs["mixed_bfloat16"][:1]  # settled after one epoch
    cpu = cpu_result(variants, cpu_runs, defaults, 3, 9000)
    sections = {
        "tracking": tracking,
        "epochs": epochs,
        "dvc": dvc,
        "full": full,
        "input": inputs,
        "cpu": cpu,
    }
    for result in sections.values():
        result.update(seconds=1.0, budget_s=10, other_cpus=0.0)
    return {
        "machine": {
            "cpus": 2,
            "processor": "x86_64",
            "load_start": [0.5, 0, 0],
            "load_end": [0.6, 0, 0],
        },
        "seconds": 6.0,
        "other_cpus": 0.0,
        "sections": sections,
    }


def test_report_text_has_every_section_its_verdicts_and_the_extrapolation_note() -> None:
    text = format_report(fake_report())
    for title in TITLES.values():
        assert title in text
    flat = " ".join(text.split())  # the tables' column widths are tabulate's
    assert "ratio b/a (median of the per-repeat ratios) 1.020" in flat
    assert "goal b/a <= 1.03" in text
    # 0.05 s of bookkeeping on a plain epoch of 10 s / 2 epochs = 5 s
    assert "ratio (plain epoch + bookkeeping) / plain epoch 1.010 1.010" in flat
    assert "EXTRAPOLATED" in text
    assert "peak summed RSS of the process tree (sampled) 5.00 GiB" in flat
    assert "FAIL" in text  # 5 GiB is over the memory goal and the npz load over 2 s
    assert "PASS" in text
    cpu_rows = {line.split("  ")[0]: line.split() for line in text.splitlines()}
    assert cpu_rows["mixed_bfloat16"][-6] == "1"  # runs: settled after one epoch
    assert cpu_rows["batch 64"][-6] == "3"
    assert "2.5x or more slower than that default after its first epoch is not repeated" in text


def test_the_full_run_shows_its_report_table_or_warns_that_there_is_none() -> None:
    report = fake_report()
    lines = format_report(report).splitlines()
    heading = lines.index("This run's reports/results.md (the report stage):")
    assert lines[heading + 3] == "| cnn_a_32_64 | 98.98% |"
    report["sections"]["full"]["results_table"] = None
    text = format_report(report)
    assert "This run's reports/results.md" not in text
    assert "WARNING: the run's report stage wrote no reports/results.md" in text


def test_a_section_run_beside_other_work_is_flagged_as_noisy() -> None:
    report = fake_report()
    assert "WARNING" not in format_report(report)
    report["sections"]["tracking"]["other_cpus"] = 1.2
    warnings = [line for line in format_report(report).splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert "other processes kept 1.20 of 2 CPUs busy" in warnings[0]


def test_report_is_plain_json() -> None:
    report = fake_report()
    again = json.loads(json.dumps(report))
    assert again == report
    tracking = again["sections"]["tracking"]
    assert tracking["order"] == ["plain", "pipeline", "pipeline", "plain", "plain", "pipeline"]
    assert tracking["ratio_wall_s"] == pytest.approx(1.02)
    assert tracking["verdict_wall_s"] == "PASS"
    assert again["sections"]["full"]["verdict"] == "FAIL"
    assert again["sections"]["input"]["processed_verdict"] == "FAIL"
