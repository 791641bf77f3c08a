"""Tests of pipeline.config: the real params.yaml loads, and every fault names its dotted key."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
import shlex
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import paths
from pipeline.config import (
    MODEL_NAME,
    Params,
    flatten,
    load_params,
    parameter_count,
    parse_params,
)
from pipeline.errors import ConfigError
from pipeline.layers import BAD_LAYER, BatchNorm, Conv, Dense, Dropout, Flatten, Pool

RAW = yaml.safe_load(paths.PARAMS.read_text())
MLP_NAMES = {"mlp_c_5x30", "mlp_d_784", "mlp_e_128"}
CNN_NAMES = {
    "cnn_a_32_64",
    "cnn_b_64_dense",
    "cnn_c_20_40_60",
    "cnn_d_32",
    "cnn_d_30_15",
    "cnn_ours_bn",
}
DELETE = object()  # marks a key to remove instead of set


def mutated(dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of the real params with `dotted` (list indexes as digits) set or deleted."""
    raw = copy.deepcopy(RAW)
    *parents, last = dotted.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    index: Any = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[index]
    else:
        node[index] = copy.deepcopy(value)
    return raw


def config_error(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    return str(info.value)


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params()


# ---------------------------------------------------------------------------- the real file


def test_real_params_load_with_models_grouped_by_kind(params: Params) -> None:
    kinds = {name: spec.kind for name, spec in params.models.items()}
    assert kinds == {**dict.fromkeys(MLP_NAMES, "mlp"), **dict.fromkeys(CNN_NAMES, "cnn")}
    assert all(spec.name == name for name, spec in params.models.items())
    assert params.seed == RAW["seed"]
    assert params.train.learning_rate == RAW["train"]["learning_rate"]
    assert type(params.train.learning_rate) is float
    assert params.data.image_shape == (28, 28) and params.data.num_classes == 10
    assert params.model("mlp_c_5x30").hidden == (30, 30, 30, 30, 30)
    assert params.model("mlp_c_5x30").layers == ()
    assert params.model("cnn_a_32_64").hidden == ()
    assert params.model("cnn_a_32_64").dropout == RAW["models"]["cnn"]["cnn_a_32_64"]["dropout"]
    assert params.model("cnn_a_32_64").layers == (
        Conv(32, 3),
        Pool(2),
        Conv(64, 3),
        Pool(2),
        Flatten(),
        Dropout(),
    )


def test_params_are_immutable(params: Params) -> None:
    assert isinstance(params.models, types.MappingProxyType)
    with pytest.raises(TypeError):
        params.models["extra"] = params.model("cnn_d_32")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.seed = 1  # type: ignore[misc]


def test_model_lookup_lists_known_names(params: Params) -> None:
    with pytest.raises(ConfigError) as info:
        params.model("nope")
    known = ", ".join(sorted(MLP_NAMES | CNN_NAMES))
    assert str(info.value) == f"models: no model named 'nope' (known: {known})"


# ---------------------------------------------------------------------------- one test per fault


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        # unknown keys, top level and nested
        ("learning_rate", 0.1, "learning_rate is not a known key (known: seed, data, "),
        ("train.epohcs", 10, "train.epohcs is not a known key"),
        ("data.files.train_images.sha", "0" * 64, "data.files.train_images.sha is not a known"),
        ("models.mlp.mlp_e_128.dropuot", 0.1, "models.mlp.mlp_e_128.dropuot is not a known key"),
        (
            "models.cnn.cnn_a_32_64.train.epohcs",
            5,
            "models.cnn.cnn_a_32_64.train.epohcs is not a known key",
        ),
        # augmentation and padding of our own model
        (
            "models.cnn.cnn_ours_bn.augment.zoom",
            1.5,
            "models.cnn.cnn_ours_bn.augment.zoom must be in [0, 1)",
        ),
        (
            "models.cnn.cnn_ours_bn.augment.tilt",
            0.1,
            "models.cnn.cnn_ours_bn.augment.tilt is not a known",
        ),
        (
            "models.cnn.cnn_ours_bn.layers.0.padding",
            "full",
            "models.cnn.cnn_ours_bn.layers.0.padding must be one of valid | same",
        ),
        # missing keys
        ("seed", DELETE, "seed is missing"),
        ("train", DELETE, "train is missing"),
        ("models", DELETE, "models is missing"),
        ("train.optimizer", DELETE, "train.optimizer is missing"),
        ("data.files.train_images.sha256", DELETE, "data.files.train_images.sha256 is missing"),
        ("models.cnn.cnn_d_32.source", DELETE, "models.cnn.cnn_d_32.source is missing"),
        ("models.mlp.mlp_e_128.hidden", DELETE, "models.mlp.mlp_e_128.hidden is missing"),
        ("models.cnn.cnn_d_32.layers", DELETE, "models.cnn.cnn_d_32.layers is missing"),
        # wrong types
        ("train.epochs", "ten", "train.epochs must be an integer, got 'ten'"),
        ("train.batch_size", 12.5, "train.batch_size must be an integer, got 12.5"),
        ("seed", True, "seed must be an integer, got True"),
        ("models.mlp.mlp_c_5x30.hidden.2", True, "models.mlp.mlp_c_5x30.hidden.2 must be an "),
        (
            "train.learning_rate",
            "1e-3",
            "train.learning_rate must be a number, got '1e-3'"
            " (write floats with a decimal point: 0.001)",
        ),
        (
            "models.cnn.cnn_a_32_64.dropout",
            True,
            "models.cnn.cnn_a_32_64.dropout must be a number, got True",
        ),
        ("data.timeout_seconds", float("nan"), "data.timeout_seconds must be finite, got nan"),
        ("runner.mixed_precision", "yes", "runner.mixed_precision must be a bool, got 'yes'"),
        ("tracking.experiment", 7, "tracking.experiment must be a str, got 7"),
        ("data.mirrors", "https://x/", "data.mirrors must be a list, got 'https://x/'"),
        ("data.mirrors.0", 5, "data.mirrors.0 must be a str, got 5"),
        (
            "preprocess.normalize",
            "minmax",
            "preprocess.normalize must be one of scale | standardize, got 'minmax'",
        ),
        ("train", [1], "train must be a mapping, got [1]"),
        ("data.files", None, "data.files must be a mapping, got None"),
        ("models.mlp.mlp_e_128.train", [], "models.mlp.mlp_e_128.train must be a mapping, got []"),
        ("models.mlp.mlp_e_128", 3, "models.mlp.mlp_e_128 must be a mapping, got 3"),
        ("models.cnn", ["cnn_a"], "models.cnn must be a mapping of name -> model, got ['cnn_a']"),
        ("models", ["mlp"], "models must be a mapping of kind -> models, got ['mlp']"),
        # out of range
        ("train.epochs", 0, "train.epochs must be > 0, got 0"),
        ("train.epochs", -1, "train.epochs must be > 0, got -1"),
        (
            "models.mlp.mlp_c_5x30.train.epochs",
            0,
            "models.mlp.mlp_c_5x30.train.epochs must be > 0, got 0",
        ),
        ("train.batch_size", 0, "train.batch_size must be > 0, got 0"),
        ("train.learning_rate", 0.0, "train.learning_rate must be > 0, got 0.0"),
        ("seed", -1, "seed must be >= 0, got -1"),
        (
            "models.cnn.cnn_a_32_64.dropout",
            1.0,
            "models.cnn.cnn_a_32_64.dropout must be in [0, 1)",
        ),
        (
            "models.cnn.cnn_a_32_64.dropout",
            1.5,
            "models.cnn.cnn_a_32_64.dropout must be in [0, 1)",
        ),
        ("models.mlp.mlp_e_128.dropout", -0.1, "models.mlp.mlp_e_128.dropout must be in [0, 1)"),
        (
            "models.mlp.mlp_d_784.reported_accuracy",
            1.2,
            "models.mlp.mlp_d_784.reported_accuracy must be in [0, 1], got 1.2",
        ),
        (
            "preprocess.validation_fraction",
            0,
            "preprocess.validation_fraction must be in (0, 1), got 0",
        ),
        (
            "preprocess.validation_fraction",
            1,
            "preprocess.validation_fraction must be in (0, 1), got 1",
        ),
        ("data.num_classes", 1, "data.num_classes must be >= 2, got 1"),
        ("data.retries", 0, "data.retries must be >= 1, got 0"),
        ("data.image_shape", [28], "data.image_shape must be two positive ints, got [28]"),
        (
            "data.files.test_labels.sha256",
            "abc",
            "data.files.test_labels.sha256 must be 64 lowercase hex digits, got 'abc'",
        ),
        (
            "data.files.test_labels.sha256",
            RAW["data"]["files"]["test_labels"]["sha256"].upper(),
            "data.files.test_labels.sha256 must be 64 lowercase hex digits, got 'FF7BCFD",
        ),
        ("models.mlp.mlp_e_128.hidden.0", 0, "models.mlp.mlp_e_128.hidden.0 must be > 0, got 0"),
        ("models.mlp.mlp_e_128.hidden", [], "models.mlp.mlp_e_128.hidden must be a non-empty"),
        # model kinds and structure
        (
            "models.rnn",
            {"rnn_a": {"source": "A"}},
            "models.rnn: unknown model kind 'rnn' (known: mlp, cnn)",
        ),
        (
            "models.cnn.cnn_d_32.hidden",
            [64],
            "models.cnn.cnn_d_32.hidden is not a key of a cnn model (use layers)",
        ),
        (
            "models.mlp.mlp_e_128.layers",
            ["flatten"],
            "models.mlp.mlp_e_128.layers is not a key of a mlp model (use hidden)",
        ),
        (
            "models.cnn.mlp_e_128",
            RAW["models"]["cnn"]["cnn_d_32"],
            "models.cnn.mlp_e_128: duplicate model name (also models.mlp)",
        ),
        ("models", {"mlp": {}, "cnn": {}}, "models is empty"),
        ("models", {"mlp": None, "cnn": None}, "models is empty"),
        ("models", {}, "models is empty"),
        # bad layers
        (
            "models.cnn.cnn_a_32_64.layers.0",
            {"conv": 32},
            "models.cnn.cnn_a_32_64.layers.0.kernel is missing",
        ),
        (
            "models.cnn.cnn_a_32_64.layers.0",
            {"conv": 32, "kernel": 3, "dilation": 2},
            "models.cnn.cnn_a_32_64.layers.0.dilation is not a known key (known: conv, kernel,"
            " padding, stride)",
        ),
        (
            "models.cnn.cnn_a_32_64.layers.0",
            {"conv": 32, "kernel": True},
            "models.cnn.cnn_a_32_64.layers.0.kernel must be an integer, got True",
        ),
        (
            "models.cnn.cnn_a_32_64.layers.1",
            {"pool": 0},
            "models.cnn.cnn_a_32_64.layers.1.pool must be > 0, got 0",
        ),
        (
            "models.cnn.cnn_a_32_64.layers.1",
            {"attention": 4},
            f"models.cnn.cnn_a_32_64.layers.1 {BAD_LAYER}, got {{'attention': 4}}",
        ),
        (
            "models.cnn.cnn_a_32_64.layers.1",
            "maxpool",
            f"models.cnn.cnn_a_32_64.layers.1 {BAD_LAYER}, got 'maxpool'",
        ),
        (
            "models.cnn.cnn_a_32_64.layers.1",
            {},
            f"models.cnn.cnn_a_32_64.layers.1 {BAD_LAYER}, got {{}}",
        ),
        ("models.cnn.cnn_a_32_64.layers", [], "models.cnn.cnn_a_32_64.layers must be a non-empty"),
        # stride: a positive integer, conv layers only
        (
            "models.cnn.cnn_a_32_64.layers.0",
            {"conv": 32, "kernel": 3, "stride": 0},
            "models.cnn.cnn_a_32_64.layers.0.stride must be > 0, got 0",
        ),
        (
            "models.cnn.cnn_a_32_64.layers.1",
            {"pool": 2, "stride": 2},
            "models.cnn.cnn_a_32_64.layers.1.stride is not a known key (known: pool)",
        ),
    ],
)
def test_parse_error_names_the_dotted_key(dotted: str, value: Any, expected: str) -> None:
    assert config_error(mutated(dotted, value)).startswith(expected)


@pytest.mark.parametrize("value", [["a", "b"], "seed: 1", 42, None])
def test_params_must_be_a_mapping(value: Any) -> None:
    assert config_error(value) == f"params must be a mapping, got {type(value).__name__}"


@pytest.mark.parametrize("value", ["auto", True, False])
def test_jit_compile_accepts_auto_true_false(value: Any) -> None:
    raw = mutated("runner.jit_compile", value)
    raw["runner"]["deterministic"] = False  # true refuses XLA on TensorFlow (the next test)
    jit = parse_params(raw).runner.jit_compile
    assert jit == value and type(jit) is type(value)


def test_jit_compile_true_with_deterministic_names_both_keys() -> None:
    raw = mutated("runner.jit_compile", True)
    assert raw["runner"]["deterministic"] is True and raw["runner"]["backend"] == "tensorflow"
    assert config_error(raw) == (
        "runner.jit_compile: true needs runner.deterministic: false (Keras turns XLA off under "
        "TensorFlow's op determinism); set one of them to false, or jit_compile: auto"
    )
    raw["runner"]["backend"] = "jax"  # XLA is JAX's only mode, deterministic by its flags
    assert parse_params(raw).runner.jit_compile is True


@pytest.mark.parametrize(
    ("value", "shown"), [(1, "1"), (0, "0"), ("yes", "'yes'"), ("true", "'true'")]
)
def test_jit_compile_rejects_other_values(value: Any, shown: str) -> None:
    message = config_error(mutated("runner.jit_compile", value))
    assert message == f"runner.jit_compile must be one of auto | true | false, got {shown}"


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        (
            "models.cnn.cnn_a_32_64.train.\n",
            1,
            "models.cnn.cnn_a_32_64.train.'\\n' is not a known",
        ),
        ("data.\n", 1, "data.'\\n' is not a known key"),
        ("models.c\tnn", {}, "models.'c\\tnn': unknown model kind"),
        ("models.cnn.a\nb", {}, "models.cnn.'a\\nb': a model name must match [a-z][a-z0-9_]"),
    ],
)
def test_keys_that_would_break_the_line_are_quoted(dotted: str, value: Any, expected: str) -> None:
    message = config_error(mutated(dotted, value))
    assert "\n" not in message and "\t" not in message
    assert message.startswith(expected)


def test_layer_keys_may_come_in_any_order() -> None:
    raw = mutated("models.cnn.cnn_d_32.layers.0", {"kernel": 5, "conv": 32})
    assert parse_params(raw).model("cnn_d_32").layers[0] == Conv(32, 5)


def test_conv_stride_defaults_to_1_and_reads_when_given() -> None:
    assert parse_params(RAW).model("cnn_d_32").layers[0].stride == 1
    raw = mutated("models.cnn.cnn_d_32.layers.0", {"conv": 32, "kernel": 5, "stride": 2})
    assert parse_params(raw).model("cnn_d_32").layers[0] == Conv(32, 5, stride=2)


def test_model_train_overrides_merge_with_defaults() -> None:
    raw = mutated("train.batch_size", 64)
    raw["models"]["cnn"]["cnn_d_32"]["train"] = {"epochs": 3, "learning_rate": 0.01}
    params = parse_params(raw)
    train = params.model("cnn_d_32").train
    assert (train.epochs, train.learning_rate, train.batch_size) == (3, 0.01, 64)
    assert (train.optimizer, train.lr_schedule) == (
        RAW["train"]["optimizer"],
        RAW["train"]["lr_schedule"],
    )
    assert params.train.epochs == RAW["train"]["epochs"] != 3
    assert params.train.learning_rate == RAW["train"]["learning_rate"] != 0.01
    own_epochs = RAW["models"]["mlp"]["mlp_c_5x30"]["train"]["epochs"]
    assert params.model("mlp_c_5x30").train.epochs == own_epochs  # the real override, untouched
    assert params.model("mlp_c_5x30").train.batch_size == 64


def test_model_without_train_section_takes_every_default() -> None:
    raw = mutated("models.cnn.cnn_b_64_dense.train", DELETE)
    params = parse_params(raw)
    assert params.model("cnn_b_64_dense").train == params.train


def test_numeric_model_name_is_rejected_naming_the_rule() -> None:
    raw = copy.deepcopy(RAW)
    raw["models"]["mlp"][2024] = raw["models"]["mlp"]["mlp_e_128"]  # YAML reads `2024:` as int
    assert config_error(raw).startswith(
        "models.mlp.2024: a model name must match [a-z][a-z0-9_]{0,63} (a shell word, "
    )


# ---------------------------------------------------------------------------- names and bounds

NAME_RULE = "a model name must match [a-z][a-z0-9_]{0,63} (a shell word, a path segment, "


def renamed(name: Any) -> dict[str, Any]:
    """The real params with mlp_e_128 renamed to `name`."""
    raw = copy.deepcopy(RAW)
    raw["models"]["mlp"][name] = raw["models"]["mlp"].pop("mlp_e_128")
    return raw


@pytest.mark.parametrize(
    "name", ["..", "x;touch PWNED;", "a b", "zähler", "a/b", "A", "_a", "a" * 65]
)
def test_unsafe_model_name_is_one_line_naming_key_and_rule(name: str) -> None:
    message = config_error(renamed(name))
    assert message == f"models.mlp.{name!r}: {NAME_RULE}a DVC stage key, an MLflow run name)"


def test_the_ensembles_name_is_reserved() -> None:
    message = config_error(renamed("ensemble"))
    assert message == "models.mlp.ensemble: the name 'ensemble' is reserved for the ensemble"


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("seed", 2**40, "seed must be <= 4294967295, got 1099511627776"),
        ("evaluate.grid_size", 20000, "evaluate.grid_size must be <= 100, got 20000"),
        ("evaluate.grid_size", 0, "evaluate.grid_size must be >= 1, got 0"),
        ("evaluate.top_confusions", 1000, "evaluate.top_confusions must be <= 100, got 1000"),
        ("evaluate.batch_size", 10**6, "evaluate.batch_size must be <= 100000, got 1000000"),
        (
            "models.mlp.mlp_e_128.hidden",
            [1000000000],
            "models.mlp.mlp_e_128.hidden.0 must be <= 16384, got 1000000000",
        ),
        (
            "runner.backend",
            "theano",
            "runner.backend must be one of tensorflow | jax, got 'theano'",
        ),
        ("data.max_idx_bytes", 0, "data.max_idx_bytes must be >= 1, got 0"),
        ("data.max_idx_bytes", DELETE, "data.max_idx_bytes is missing"),
        ("ensemble.rounds", 0, "ensemble.rounds must be >= 1, got 0"),
        ("ensemble.rounds", 101, "ensemble.rounds must be <= 100, got 101"),
        ("ensemble", DELETE, "ensemble is missing"),
        (
            "models.cnn.cnn_a_32_64.layers.0",
            {"conv": 20000, "kernel": 3},
            "models.cnn.cnn_a_32_64.layers.0.conv must be <= 16384, got 20000",
        ),
        (
            "models.cnn.cnn_a_32_64.layers.0",
            {"conv": 32, "kernel": 29},
            "models.cnn.cnn_a_32_64.layers.0.kernel must be <= 28, got 29",
        ),
        (
            "models.cnn.cnn_a_32_64.layers.1",
            {"pool": 1000},
            "models.cnn.cnn_a_32_64.layers.1.pool must be <= 28, got 1000",
        ),
        (  # each layer within bounds, the model not: 784*16384 + 2 * 16384**2 + ...
            "models.mlp.mlp_e_128.hidden",
            [16384, 16384, 16384],
            "models.mlp.mlp_e_128: 549,928,970 parameters, more than the 100,000,000 allowed",
        ),
        (  # 16384 filters of 3x3 on a 26x26x16384 map, then a dense layer on all of it
            "models.cnn.cnn_b_64_dense.layers",
            [{"conv": 16, "kernel": 3}, {"conv": 16384, "kernel": 3}, "flatten", {"dense": 64}],
            "models.cnn.cnn_b_64_dense: ",
        ),
    ],
)
def test_bounds_name_the_key_in_one_line(dotted: str, value: Any, expected: str) -> None:
    message = config_error(mutated(dotted, value))
    assert message.startswith(expected) and "\n" not in message


def test_backend_defaults_to_tensorflow_and_reads_jax() -> None:
    assert parse_params(mutated("runner.backend", DELETE)).runner.backend == "tensorflow"
    assert parse_params(mutated("runner.backend", "jax")).runner.backend == "jax"


def test_new_keys_of_the_real_file(params: Params) -> None:
    assert params.data.max_idx_bytes == RAW["data"]["max_idx_bytes"] >= 1
    assert 1 <= params.ensemble.rounds == RAW["ensemble"]["rounds"] <= 100
    assert params.runner.backend in ("tensorflow", "jax")


def test_parameter_count_of_an_mlp_is_exact(params: Params) -> None:
    spec = params.model("mlp_c_5x30")  # 784 -> 30 x5 -> 10
    expected = (784 + 1) * 30 + 4 * (30 + 1) * 30 + (30 + 1) * 10
    assert parameter_count(spec, (28, 28), 10) == expected


SHELL_SPECIALS = set(" \t\n;&|<>()$`\\\"'*?[]#~=%!{}/,.:")


@settings(max_examples=300, deadline=None)
@given(name=st.one_of(st.text(max_size=70), st.from_regex(MODEL_NAME, fullmatch=True)))
def test_random_model_names_are_safe_or_rejected_in_one_line(name: str) -> None:
    try:
        params = parse_params(renamed(name))
    except ConfigError as error:
        assert "\n" not in str(error)
        assert str(error).startswith(f"models.mlp.{name!r}: {NAME_RULE}")
    else:
        spec = params.model(name)
        assert spec.name == name and name in params.models
        assert shlex.quote(name) == name and name not in (".", "..")  # one shell word
        assert not SHELL_SPECIALS & set(name) and name.isascii()  # path segment, DVC key
        assert Path(name).name == name and len(name) <= 64


# ---------------------------------------------------------------------------- reading the file


def write_params(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "params.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_load_params_reads_another_file(tmp_path: Path) -> None:
    text = re.sub(r"(?m)^seed: .*$", "seed: 7", paths.PARAMS.read_text())
    assert load_params(write_params(tmp_path, text)).seed == 7


def test_yaml_1e_minus_3_is_a_string_and_gets_the_decimal_point_hint(tmp_path: Path) -> None:
    text = re.sub(r"(?m)^  learning_rate: .*$", "  learning_rate: 1e-3", paths.PARAMS.read_text())
    with pytest.raises(ConfigError) as info:
        load_params(write_params(tmp_path, text))
    assert str(info.value) == (
        "train.learning_rate must be a number, got '1e-3'"
        " (write floats with a decimal point: 0.001)"
    )


@pytest.mark.parametrize(
    ("indent", "key"),
    [("", "seed"), ("  ", "batch_size"), ("        ", "epochs")],  # top, train, a model's train
)
def test_duplicate_yaml_key_names_key_and_line(tmp_path: Path, indent: str, key: str) -> None:
    text = paths.PARAMS.read_text()
    anchor = re.search(rf"(?m)^{indent}{key}: .*\n", text).group(0)
    duplicate = f"{indent}{key}: 7\n"
    before, after = text.split(anchor, 1)
    path = write_params(tmp_path, before + anchor + duplicate + after)
    line = before.count("\n") + 2  # the anchor's line, then the duplicate on the next
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value) == f"{path}: duplicate key {key!r} at line {line}"


def test_params_file_holding_a_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_params(write_params(tmp_path, "- seed\n- data\n"))
    assert str(info.value) == "params must be a mapping, got list"


def test_empty_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_params(write_params(tmp_path, ""))
    assert str(info.value) == "params must be a mapping, got NoneType"


def test_missing_params_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "params.yaml"
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value) == f"{path}: cannot read params (No such file or directory)"


def test_params_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_params(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read params (Is a directory)"


def test_binary_params_file(tmp_path: Path) -> None:
    path = write_params(tmp_path, b"seed: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value) == f"{path}: cannot read params (not UTF-8 text)"


@pytest.mark.parametrize("text", ["seed: [1, 2\n", "seed: 1\n  data: 2\n", "a: b: c\n"])
def test_invalid_yaml_is_one_line_naming_the_file(tmp_path: Path, text: str) -> None:
    path = write_params(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_params(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML (") and message.endswith(")")
    assert "\n" not in message
    assert "line " in message  # PyYAML's mark says where


# ---------------------------------------------------------------------------- flatten


def test_flatten_gives_dotted_keys_and_readable_layers(params: Params) -> None:
    flat = flatten(params)
    assert flat["train.epochs"] == RAW["train"]["epochs"]
    assert flat["seed"] == RAW["seed"]
    assert flat["runner.jit_compile"] == RAW["runner"]["jit_compile"]
    assert flat["data.files.train_images.name"] == "train-images-idx3-ubyte.gz"
    assert (
        flat["models.mlp_c_5x30.train.epochs"]
        == RAW["models"]["mlp"]["mlp_c_5x30"]["train"]["epochs"]
    )
    assert flat["models.mlp_c_5x30.hidden"] == (30, 30, 30, 30, 30)
    assert flat["models.cnn_a_32_64.layers"] == (
        "conv32x3, pool2, conv64x3, pool2, flatten, dropout"
    )
    assert flat["models.cnn_b_64_dense.layers"] == "conv64x3, flatten, dense64, dense64"
    strided = dataclasses.replace(params.model("cnn_d_32"), layers=(Conv(8, 3, "same", stride=2),))
    assert flatten(strided, "model")["model.layers"] == "conv8x3s2same"
    assert not any(
        isinstance(v, dict | Conv | Pool | Dense | Flatten | Dropout | BatchNorm)
        for v in flat.values()
    )
    assert all(not k.startswith(".") and ".." not in k for k in flat)


def test_flatten_a_model_with_prefix(params: Params) -> None:
    flat = flatten(params.model("cnn_d_30_15"), "model")
    assert flat["model.name"] == "cnn_d_30_15"
    assert flat["model.kind"] == "cnn"
    assert flat["model.dropout"] == RAW["models"]["cnn"]["cnn_d_30_15"]["dropout"]
    assert flat["model.train.batch_size"] == RAW["train"]["batch_size"]  # inherited default
    assert (
        flat["model.layers"]
        == "conv30x5, pool2, conv15x3, pool2, dropout, flatten, dense128, dense50"
    )
    assert set(flatten(params.runner, "runner")) == {
        "runner.device",
        "runner.mixed_precision",
        "runner.jit_compile",
        "runner.strategy",
        "runner.deterministic",
        "runner.logical_cpus",
        "runner.backend",
    }


# ---------------------------------------------------------------------------- fuzz

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def leaf_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a leaf or container of the real params, for mutation."""
    paths = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += leaf_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths += leaf_paths(value, (*prefix, index))
    return paths


PATHS = leaf_paths(RAW)


@settings(max_examples=300, deadline=None)
@given(raw=VALUES)
def test_random_mappings_give_params_or_config_error(raw: Any) -> None:
    with contextlib.suppress(ConfigError):  # any other exception fails the test
        parse_params(raw)


@settings(max_examples=400, deadline=None)
@given(path=st.sampled_from(PATHS), value=VALUES)
def test_mutated_real_params_give_params_or_config_error(path: tuple, value: Any) -> None:
    raw = copy.deepcopy(RAW)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    try:
        params = parse_params(raw)
    except ConfigError as error:
        assert "\n" not in str(error)  # one line, for one line on stderr
    else:
        assert params.models  # whatever was accepted is a usable configuration
