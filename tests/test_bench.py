"""Tests of pipeline.bench: the pure helpers, the report's text and JSON, and the input-pipeline
section end to end on a tiny synthetic data set. Nothing here trains a model or runs dvc."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import bench, paths
from pipeline.config import load_params
from pipeline.data import raw_name, save_dataset
from pipeline.errors import DataError

# ---------------------------------------------------------------------------- statistics


def test_median_of_odd_and_even_counts() -> None:
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_median_of_nothing_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        bench.median([])


def test_alternating_order_reverses_every_other_repeat() -> None:
    assert bench.alternating_order(["a", "b"], 4) == list("abbaabba")
    assert bench.alternating_order(["a", "b", "c"], 3) == list("abccbaabc")
    assert bench.alternation_text(["a", "b"]) == "a,b,b,a,..."


def test_interleave_runs_sides_in_alternating_order_and_keeps_repeats_in_order() -> None:
    calls: list[str] = []

    def side(name: str):
        def measure() -> dict[str, float]:
            calls.append(name)
            return {"index": float(len(calls))}

        return measure

    runs = bench.interleave({"a": side("a"), "b": side("b")}, 3)
    assert calls == list("abbaab")
    assert [run["index"] for run in runs["a"]] == [1.0, 4.0, 5.0]
    assert [run["index"] for run in runs["b"]] == [2.0, 3.0, 6.0]


def test_paired_ratio_is_the_median_of_per_repeat_ratios_not_a_ratio_of_medians() -> None:
    # Per-repeat ratios 2, 1, 3 -> 2; the ratio of the medians would be 4 / 3.
    assert bench.paired_ratio([2.0, 4.0, 9.0], [1.0, 4.0, 3.0]) == 2.0


def test_paired_ratio_needs_one_denominator_per_numerator() -> None:
    with pytest.raises(ValueError, match="2 numerators but 1 denominators"):
        bench.paired_ratio([1.0, 2.0], [1.0])


def test_verdict_passes_at_the_goal_and_fails_above_it() -> None:
    assert bench.verdict(1.03, 1.03) == "PASS"
    assert bench.verdict(0.5, 1.03) == "PASS"
    assert bench.verdict(1.0301, 1.03) == "FAIL"


def test_summary_holds_runs_median_and_range() -> None:
    runs = [{"wall_s": 3.0}, {"wall_s": 1.0}, {"wall_s": 2.0}]
    assert bench.summary(runs, "wall_s") == {
        "runs": [3.0, 1.0, 2.0],
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
    }


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (1000.0, 2944),  # 3,000 images wanted -> 23 whole batches of 128
        (10.0, 2560),  # too slow: the lower bound
        (1e6, 10240),  # fast: the upper bound
    ],
)
def test_subset_size_is_whole_batches_within_bounds(rate: float, expected: int) -> None:
    assert bench.subset_size(rate, 3.0, 128, 2560, 10240) == expected


def test_subset_size_is_at_least_one_batch() -> None:
    assert bench.subset_size(1.0, 1.0, 512, 100, 200) == 512


def test_timed_measures_wall_and_cpu_seconds() -> None:
    with bench.timed() as figures:
        sum(range(200_000))
    assert figures["wall_s"] > 0
    assert figures["cpu_s"] >= 0


def test_environment_sets_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_KEPT", "old")
    monkeypatch.delenv("BENCH_NEW", raising=False)
    with bench.environment(BENCH_KEPT="new", BENCH_NEW="x"):
        assert (bench.os.environ["BENCH_KEPT"], bench.os.environ["BENCH_NEW"]) == ("new", "x")
    assert bench.os.environ["BENCH_KEPT"] == "old"
    assert "BENCH_NEW" not in bench.os.environ


# ---------------------------------------------------------------------------- formatting


def test_format_table_left_aligns_the_first_column_and_right_aligns_the_rest() -> None:
    table = bench.format_table(["name", "s"], [["a", "1.50"], ["longer", "10.25"]])
    assert table.splitlines() == [
        "name        s",
        "------  -----",
        "a        1.50",
        "longer  10.25",
    ]


def test_format_table_rejects_a_row_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="has 1 cells, expected 2"):
        bench.format_table(["a", "b"], [["only one"]])


def runs_of(key: str, *values: float) -> list[dict[str, float]]:
    return [{key: value, "cpu_s": value} for value in values]


def fake_report() -> dict:
    """A report of every section, built by the section's own result function."""
    spec = load_params().model(bench.pick_model(load_params()))
    tracking = bench.tracking_result(
        {
            "plain": runs_of("wall_s", 10.0, 10.0, 10.0),
            "pipeline": runs_of("wall_s", 10.1, 10.2, 10.6),
        },
        [{"connect": 0.01, "log_keras_model": 0.5, "total": 0.51}] * 3,
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
        "models": [bench.epoch_row(spec, 34826, 5120, 51000, runs_of("wall_s", 1.0, 1.1, 0.9))],
    }
    dvc = bench.dvc_result(
        {
            side: [{"wall_s": s, "stages_run": []} for s in (1.0, 1.2, 1.1)]
            for side in ("repro", "status", "version")
        },
        60.0,
        7,
    )
    full = bench.full_result(
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
    )
    inputs = bench.input_result(
        {"raw": runs_of("wall_s", 0.2, 0.3), "processed": runs_of("wall_s", 2.5, 2.4)}, "scale"
    )
    defaults = {
        "model": spec.name,
        "images": 10240,
        "batch_size": 128,
        "jit_compile": False,
        "mixed_precision": False,
    }
    variants = bench.cpu_variants(defaults, 2)
    cpu_runs = {
        v["name"]: [{"wall_s": 5.0, "cpu_s": 9.0, "train_loss": 0.5, "val_accuracy": 0.9}] * 3
        for v in variants
    }
    cpu = bench.cpu_result(variants, cpu_runs, defaults, 3, 9000)
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
    text = bench.format_report(fake_report())
    for title in bench.TITLES.values():
        assert title in text
    assert "ratio b/a (median of the per-repeat ratios)        1.020" in text
    assert "goal b/a <= 1.03" in text
    assert "EXTRAPOLATED" in text
    assert "peak summed RSS of the process tree (sampled)  5.00 GiB" in text
    assert "FAIL" in text  # 5 GiB is over the memory goal and the npz load over 2 s
    assert "PASS" in text


def test_a_section_run_beside_other_work_is_flagged_as_noisy() -> None:
    report = fake_report()
    assert "WARNING" not in bench.format_report(report)
    report["sections"]["tracking"]["other_cpus"] = 1.2
    warnings = [line for line in bench.format_report(report).splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert "other processes kept 1.20 of 2 CPUs busy" in warnings[0]


def test_other_cpus_is_the_machine_s_busy_time_not_ours_per_second() -> None:
    assert bench.other_cpus(30.0, 10.0, 10.0) == 2.0
    assert bench.other_cpus(10.0, 12.0, 10.0) == 0.0  # clock granularity: never negative
    assert bench.other_cpus(1.0, 0.0, 0.0) == 0.0


def test_busy_cpu_seconds_grow_with_our_own_work() -> None:
    machine, own = bench.busy_cpu_seconds()
    sum(range(2_000_000))
    machine_after, own_after = bench.busy_cpu_seconds()
    assert own_after > own
    assert machine_after >= machine


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


def test_cpu_result_ratios_accuracy_tolerance_and_fastest_same_accuracy() -> None:
    defaults = {
        "model": "m",
        "images": 10240,
        "batch_size": 128,
        "jit_compile": False,
        "mixed_precision": False,
    }
    variants = bench.cpu_variants(defaults, 2)
    seconds = {"default": 4.0, "mixed_bfloat16": 2.0, "batch 256": 1.0, "oneDNN off": 6.0}
    accuracy = {"batch 256": 0.85}
    runs = {
        v["name"]: [
            {
                "wall_s": seconds.get(v["name"], 4.0),
                "cpu_s": 1.0,
                "train_loss": 0.1,
                "val_accuracy": accuracy.get(v["name"], 0.9),
            }
        ]
        * 3
        for v in variants
    }
    result = bench.cpu_result(variants, runs, defaults, 3, 9000)
    by_name = {v["name"]: v for v in result["variants"]}
    assert by_name["default"]["ratio"] == 1.0
    assert by_name["mixed_bfloat16"]["ratio"] == 0.5
    assert by_name["oneDNN off"]["ratio"] == 1.5
    assert result["accuracy_tolerance"] == pytest.approx(2 * (0.9 * 0.1 / 9000) ** 0.5)
    assert not by_name["batch 256"]["same_accuracy"]
    assert by_name["batch 256"]["accuracy_delta"] == pytest.approx(-0.05)
    # batch 256 is faster still, but its accuracy changed.
    assert result["fastest_same_accuracy"] == "mixed_bfloat16"
    assert all(v["replay_exact"] for v in result["variants"])


def test_cpu_variants_change_one_setting_each() -> None:
    defaults = {
        "model": "m",
        "images": 10240,
        "batch_size": 128,
        "jit_compile": False,
        "mixed_precision": False,
    }
    variants = {v["name"]: v for v in bench.cpu_variants(defaults, 2)}
    assert list(variants) == [
        "default",
        "jit_compile on",
        "mixed_bfloat16",
        "batch 64",
        "batch 256",
        "default (subprocess)",
        "intra-op threads 1",
        "intra-op threads 2",
        "oneDNN off",
    ]
    assert variants["batch 64"]["settings"] == {**defaults, "batch_size": 64}
    assert variants["intra-op threads 1"]["settings"]["intra_op_threads"] == 1
    assert variants["oneDNN off"]["env"] == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert {v["baseline"] for v in variants.values() if v["where"] == "subprocess"} == {
        "default (subprocess)"
    }


# ---------------------------------------------------------------------------- dvc helpers


def test_stages_run_reads_the_stage_names_of_a_repro_output() -> None:
    output = (
        "Running stage 'download':\n> python -m pipeline.stages.download\n"
        "Stage 'preprocess' didn't change, skipping\n"
        "Running stage 'train_cnn@tiny_cnn':\nData and pipelines are up to date.\n"
    )
    assert bench.stages_run(output) == ["download", "train_cnn@tiny_cnn"]


def test_shrink_params_gives_valid_tiny_params(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(paths.PARAMS.read_text())
    bench.shrink_params(path)
    params = load_params(path)
    assert set(params.models) == {"tiny_mlp", "tiny_cnn"}
    assert params.preprocess.train_limit == bench.TINY_TRAIN_LIMIT
    assert params.model("tiny_cnn").train.epochs == bench.TINY_EPOCHS


def test_shrink_params_can_keep_every_model_at_one_epoch(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(paths.PARAMS.read_text())
    bench.shrink_params(path, models=None)
    params, real = load_params(path), load_params(paths.PARAMS)
    assert set(params.models) == set(real.models)
    assert {params.model(name).train.epochs for name in params.models} == {bench.TINY_EPOCHS}
    assert params.preprocess.train_limit == bench.TINY_TRAIN_LIMIT


def test_missing_mnist_copy_is_one_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_MIRROR", str(tmp_path / "empty"))
    monkeypatch.setattr(paths, "ROOT", tmp_path / "repo")
    with pytest.raises(DataError, match="set MNIST_MIRROR") as error:
        bench.mnist_mirror()
    assert "\n" not in str(error.value)


def test_copy_repository_copies_sources_but_not_outputs(tmp_path: Path) -> None:
    copy = bench.copy_repository(tmp_path / "copy")
    assert (copy / "params.yaml").read_bytes() == paths.PARAMS.read_bytes()
    assert (copy / "pipeline" / "bench.py").is_file()
    assert not (copy / "dvc.lock").exists()
    assert not (copy / "data").exists()
    log = subprocess.run(
        ["git", "log", "--oneline"], cwd=copy, capture_output=True, text=True, check=True
    )
    assert len(log.stdout.splitlines()) == 1


def test_command_env_puts_this_venv_first_and_drops_outer_dvc_and_mlflow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DVC_ROOT", "/elsewhere")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere.db")
    env = bench.command_env(tmp_path)
    assert env["PATH"].split(bench.os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "DVC_ROOT" not in env and "MLFLOW_TRACKING_URI" not in env
    assert env["MNIST_MIRROR"] == str(tmp_path)


# ---------------------------------------------------------------------------- command line


def test_full_runs_only_with_the_flag() -> None:
    assert bench.parse_args([]).sections == list(bench.DEFAULT_SECTIONS)
    assert bench.parse_args(["--full", "--sections", "input"]).sections == ["full", "input"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--sections", "full"])


@pytest.mark.parametrize("argv", [["--sections", "input,nope"], ["--repeats", "0"]])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2


def test_importing_the_bench_does_not_import_tensorflow_or_mlflow() -> None:
    code = (
        "import sys, pipeline.bench; print('tensorflow' in sys.modules, 'mlflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------- input section


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file holding uint8 `array`."""
    header = bytes([0, 0, 0x08, array.ndim])
    return header + b"".join(size.to_bytes(4, "big") for size in array.shape) + array.tobytes()


@pytest.fixture
def tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Raw IDX files and a processed .npz of a few random images, in place of the real ones."""
    rng = np.random.default_rng(0)
    files = load_params().data.files
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    arrays = {
        files.train_images.name: rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        files.train_labels.name: np.arange(60, dtype=np.uint8) % 10,
        files.test_images.name: rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        files.test_labels.name: np.arange(20, dtype=np.uint8) % 10,
    }
    for name, array in arrays.items():
        (raw_dir / raw_name(name)).write_bytes(idx_bytes(array))
    images = rng.random((80, 28, 28, 1), dtype=np.float32)
    labels = np.arange(80, dtype=np.int64) % 10
    dataset = tmp_path / "dataset.npz"
    save_dataset(
        dataset,
        x_train=images[:50],
        y_train=labels[:50],
        x_val=images[50:60],
        y_val=labels[50:60],
        x_test=images[60:],
        y_test=labels[60:],
        mean=0.0,
        std=1.0,
        normalize="scale",
    )
    monkeypatch.setattr(paths, "RAW_DIR", raw_dir)
    monkeypatch.setattr(paths, "DATASET", dataset)
    return tmp_path


def test_input_section_measures_both_loads_and_writes_the_json(
    tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tiny_data / "out" / "bench.json"
    assert bench.main(["--sections", "input", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    section = report["sections"]["input"]
    for side in ("raw", "processed"):
        assert section[f"{side}_wall_s"]["median"] > 0
        assert len(section[f"{side}_wall_s"]["runs"]) == bench.INPUT_REPEATS
        assert section[f"{side}_verdict"] == "PASS"  # 80 images load far under 2 s
    assert set(report["sections"]) == {"input"}
    printed = capsys.readouterr().out
    assert "5. Input pipeline" in printed
    assert "data.load_dataset(data/processed/dataset.npz)" in printed
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # no temporary file left


def test_missing_dataset_is_one_line_and_exit_1_before_any_measurement(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(paths, "DATASET", tiny_data / "absent.npz")
    assert bench.main(["--sections", "input"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {tiny_data / 'absent.npz'}: missing (section input); run `dvc repro preprocess`"
    ]
