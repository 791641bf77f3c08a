"""Device, precision, XLA and distribution strategy, chosen from params.runner, on either backend.

`configure()` must run before the backend creates any op: device visibility, logical devices and
determinism can only be set while TensorFlow's runtime (or JAX's XLA client) is uninitialised.
Keras' backend itself is chosen earlier, by `pipeline.entry`, from `runner.backend`. With
`jax`, nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras

from pipeline.config import RunnerConfig
from pipeline.errors import RunnerError

log = logging.getLogger(__name__)

# XLA's GPU autotuner and atomics pick kernels by timing; this flag makes them repeatable.
_XLA_DETERMINISTIC = "--xla_gpu_deterministic_ops=true"


@dataclass(frozen=True)
class JaxStrategy:
    """What the rest of the pipeline needs of a tf.distribute.Strategy, on JAX."""

    name: str  # "default" or "DataParallel"
    num_replicas_in_sync: int
    distribution: Any = None  # keras.distribution.DataParallel for `mirrored`

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build and compile under this; DataParallel places the variables on every device."""
        if self.distribution is None:
            yield
            return
        with self.distribution.scope():
            yield


@dataclass(frozen=True)
class Runtime:
    """What `configure()` chose: the strategy to build and fit under, and how to describe it."""

    strategy: Any  # tf.distribute.Strategy on TensorFlow, JaxStrategy on JAX
    device: str  # "gpu" or "cpu"
    device_names: tuple[str, ...]
    jit_compile: bool
    precision_policy: str
    backend: str = "tensorflow"

    @property
    def strategy_name(self) -> str:
        if isinstance(self.strategy, JaxStrategy):
            return self.strategy.name
        return type(self.strategy).__name__

    def tags(self) -> dict[str, str]:
        """MLflow tags describing where and how the model trained."""
        tags = {
            "runner.backend": self.backend,
            "runner.device": self.device,
            "runner.devices": ", ".join(self.device_names),
            "runner.strategy": self.strategy_name,
            "runner.replicas": str(self.strategy.num_replicas_in_sync),
            "runner.jit_compile": str(self.jit_compile).lower(),
            "runner.precision_policy": self.precision_policy,
            "keras.version": keras.__version__,
        }
        if self.backend == "jax":
            import jax
            import jaxlib

            return {**tags, "jax.version": jax.__version__, "jaxlib.version": jaxlib.__version__}
        import tensorflow as tf

        build = tf.sysconfig.get_build_info()
        return {
            **tags,
            "tensorflow.version": tf.__version__,
            "cuda.version": str(build.get("cuda_version", "none")),
            "cudnn.version": str(build.get("cudnn_version", "none")),
        }


def _check_backend(runner: RunnerConfig) -> None:
    loaded = keras.backend.backend()
    if loaded != runner.backend:
        raise RunnerError(
            f"runner.backend is {runner.backend} but Keras runs on {loaded} "
            f"(set KERAS_BACKEND={runner.backend} before importing keras)"
        )


def configure(runner: RunnerConfig, seed: int) -> Runtime:
    """Apply params.runner and seed Python, NumPy and Keras; return the chosen Runtime."""
    _check_backend(runner)
    configure_backend = _configure_jax if runner.backend == "jax" else _configure_tensorflow
    runtime = configure_backend(runner)
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(runtime.precision_policy)
    log.info(
        "%s on %s (%s), strategy %s x%d, precision %s, jit_compile %s",
        runtime.backend,
        runtime.device,
        ", ".join(runtime.device_names),
        runtime.strategy_name,
        runtime.strategy.num_replicas_in_sync,
        runtime.precision_policy,
        runtime.jit_compile,
    )
    return runtime


# TensorFlow


def _select_tf_device(device: str) -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise RunnerError(
            "runner.device is gpu but TensorFlow sees no GPU (install the gpu extra: "
            "pip install -e '.[gpu]', check nvidia-smi, or set runner.device=auto)"
        )
    if device == "cpu" or not gpus:
        if gpus:
            tf.config.set_visible_devices([], "GPU")
        return "cpu"
    for gpu in gpus:  # memory growth lets queued experiments share one card
        tf.config.experimental.set_memory_growth(gpu, True)
    return "gpu"


def _split_cpu(count: int) -> None:
    import tensorflow as tf

    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )


def _tf_strategy(name: str, device: str) -> Any:
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        kind = "GPU" if device == "gpu" else "CPU"
        devices = [d.name for d in tf.config.list_logical_devices(kind)]
        return tf.distribute.MirroredStrategy(devices=devices)
    if not os.environ.get("TF_CONFIG"):
        raise RunnerError(
            "runner.strategy is multi_worker but TF_CONFIG is not set "
            '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}})'
        )
    try:
        json.loads(os.environ["TF_CONFIG"])
    except json.JSONDecodeError as error:
        raise RunnerError(f"TF_CONFIG is not valid JSON ({error})") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def _configure_tensorflow(runner: RunnerConfig) -> Runtime:
    import tensorflow as tf

    device = _select_tf_device(runner.device)
    if device == "cpu":
        _split_cpu(runner.logical_cpus)
    if runner.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = "float32"
    if runner.mixed_precision:
        policy = "mixed_float16" if device == "gpu" else "mixed_bfloat16"
    # auto: XLA on GPU, unless op determinism is on, under which Keras compiles without it
    auto = device == "gpu" and not runner.deterministic
    jit = runner.jit_compile if runner.jit_compile != "auto" else auto
    strategy = _tf_strategy(runner.strategy, device)
    kind = "GPU" if device == "gpu" else "CPU"
    names = tuple(d.name for d in tf.config.list_logical_devices(kind))
    return Runtime(strategy, device, names, bool(jit), policy, "tensorflow")


# JAX


def _unsupported_on_jax(runner: RunnerConfig) -> None:
    if runner.strategy == "multi_worker":
        raise RunnerError(
            "runner.strategy multi_worker is not supported with runner.backend jax "
            "(use mirrored: data parallel over this machine's devices)"
        )
    if runner.logical_cpus > 1:
        raise RunnerError(
            f"runner.logical_cpus {runner.logical_cpus} is not supported with runner.backend "
            "jax (JAX fixes its CPU device count at start-up; set runner.logical_cpus=0)"
        )


def _jax_devices(device: str) -> tuple[str, list[Any]]:
    import jax

    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # no CUDA plugin, or no card it can use
        gpus = []
    if device == "gpu" and not gpus:
        raise RunnerError(
            "runner.device is gpu but JAX sees no GPU (install jax[cuda12] or jax[cuda13], "
            "check nvidia-smi, or set runner.device=auto)"
        )
    if device == "cpu" or not gpus:
        cpus = jax.devices("cpu")
        jax.config.update("jax_default_device", cpus[0])
        return "cpu", cpus
    return "gpu", gpus


def _jax_precision(mixed: bool, device: str, devices: list[Any]) -> str:
    if not mixed:
        return "float32"
    if device == "cpu":
        return "mixed_bfloat16"
    # bfloat16 needs compute capability 8.0 (Ampere) or newer; older cards get float16.
    capability = min(float(getattr(d, "compute_capability", "0")) for d in devices)
    return "mixed_bfloat16" if capability >= 8.0 else "mixed_float16"


def _configure_jax(runner: RunnerConfig) -> Runtime:
    _unsupported_on_jax(runner)
    if runner.deterministic and _XLA_DETERMINISTIC not in os.environ.get("XLA_FLAGS", ""):
        # Read when JAX creates its XLA client: the first device query, just below.
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_DETERMINISTIC}"
    device, devices = _jax_devices(runner.device)
    strategy = JaxStrategy("default", 1)
    if runner.strategy == "mirrored":
        distribution = keras.distribution.DataParallel(devices=devices)
        strategy = JaxStrategy("DataParallel", len(devices), distribution)
    jit = runner.jit_compile if runner.jit_compile != "auto" else True  # JAX's normal mode
    names = tuple(f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".strip() for d in devices)
    policy = _jax_precision(runner.mixed_precision, device, devices)
    return Runtime(strategy, device, names, bool(jit), policy, "jax")
