"""Tests of tools.bench.cpu: the CPU-settings variants and their ratios and accuracy checks."""

from __future__ import annotations

import pytest

from tools.bench.cpu import SETTLED_RATIO, clearly_slower, cpu_result, cpu_variants

# The default settings the variants differ from.
DEFAULTS = {
    "model": "m",
    "images": 10240,
    "batch_size": 128,
    "jit_compile": False,
    "mixed_precision": False,
}


def test_cpu_result_ratios_accuracy_tolerance_and_fastest_same_accuracy() -> None:
    variants = cpu_variants(DEFAULTS, 2)
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
    result = cpu_result(variants, runs, DEFAULTS, 3, 9000)
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


def test_a_variant_far_slower_than_its_baseline_after_one_epoch_is_settled() -> None:
    baselines = {v["name"]: v["baseline"] for v in cpu_variants(DEFAULTS, 2)}
    settled = clearly_slower(baselines)
    runs = {
        "default": [{"wall_s": 2.0}],
        "mixed_bfloat16": [{"wall_s": 2.0 * SETTLED_RATIO}],
        "jit_compile on": [{"wall_s": 2.0 * SETTLED_RATIO - 0.01}],
        "default (subprocess)": [{"wall_s": 1.0}],
        "oneDNN off": [{"wall_s": 2.0 * SETTLED_RATIO}],  # 5x its own (subprocess) baseline
    }
    assert settled("mixed_bfloat16", runs)
    assert not settled("jit_compile on", runs)
    assert not settled("default", runs)
    assert settled("oneDNN off", runs)


def test_a_settled_variant_is_paired_with_its_baselines_first_epoch() -> None:
    variants = cpu_variants(DEFAULTS, 2)
    runs = {
        v["name"]: [
            {"wall_s": wall, "cpu_s": 1.0, "train_loss": 0.1, "val_accuracy": 0.9}
            for wall in (4.0, 2.0, 2.0)
        ]
        for v in variants
    }
    runs["mixed_bfloat16"] = [runs["mixed_bfloat16"][0] | {"wall_s": 20.0}]
    result = cpu_result(variants, runs, DEFAULTS, 3, 9000)
    by_name = {v["name"]: v for v in result["variants"]}
    assert by_name["mixed_bfloat16"]["ratio"] == 5.0  # 20 / 4, not 20 / median(4, 2, 2)
    assert by_name["mixed_bfloat16"]["epoch_s"]["runs"] == [20.0]
    assert by_name["default"]["ratio"] == 1.0


@pytest.mark.parametrize(("cpus", "threads"), [(1, []), (2, [1]), (3, [1]), (8, [1, 4])])
def test_cpu_variants_try_fewer_threads_than_the_default_one_per_cpu(cpus, threads) -> None:
    variants = cpu_variants(DEFAULTS, cpus)
    tried = [
        v["settings"]["intra_op_threads"] for v in variants if "intra_op_threads" in v["settings"]
    ]
    assert tried == threads


def test_cpu_variants_change_one_setting_each() -> None:
    variants = {v["name"]: v for v in cpu_variants(DEFAULTS, 2)}
    assert list(variants) == [
        "default",
        "jit_compile on",
        "mixed_bfloat16",
        "batch 64",
        "batch 256",
        "default (subprocess)",
        "intra-op threads 1",
        "oneDNN off",
        "backend jax",
    ]
    assert variants["batch 64"]["settings"] == {**DEFAULTS, "batch_size": 64}
    assert variants["intra-op threads 1"]["settings"]["intra_op_threads"] == 1
    assert variants["oneDNN off"]["env"] == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert {v["baseline"] for v in variants.values() if v["where"] == "subprocess"} == {
        "default (subprocess)"
    }


def test_cpu_variants_time_keras_on_jax_in_its_own_process() -> None:
    jax = {v["name"]: v for v in cpu_variants(DEFAULTS, 2)}["backend jax"]
    assert jax["where"] == "subprocess" and jax["baseline"] == "default (subprocess)"
    assert jax["env"] == {"KERAS_BACKEND": "jax"}
    assert jax["settings"]["backend"] == "jax" and jax["settings"]["jit_compile"] is True
