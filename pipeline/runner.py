"""Device, precision, XLA and distribution strategy, chosen from params.runner.

`configure()` must run before TensorFlow creates any op: device visibility, logical devices and
determinism can only be set while the runtime is still uninitialised.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from pipeline.config import RunnerConfig
from pipeline.errors import RunnerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """What `configure()` chose: the strategy to build and fit under, and how to describe it."""

    strategy: tf.distribute.Strategy
    device: str  # "gpu" or "cpu"
    device_names: tuple[str, ...]
    jit_compile: bool
    precision_policy: str

    def tags(self) -> dict[str, str]:
        """MLflow tags describing where and how the model trained."""
        build = tf.sysconfig.get_build_info()
        return {
            "runner.device": self.device,
            "runner.devices": ", ".join(self.device_names),
            "runner.strategy": type(self.strategy).__name__,
            "runner.replicas": str(self.strategy.num_replicas_in_sync),
            "runner.jit_compile": str(self.jit_compile).lower(),
            "runner.precision_policy": self.precision_policy,
            "tensorflow.version": tf.__version__,
            "keras.version": keras.__version__,
            "cuda.version": str(build.get("cuda_version", "none")),
            "cudnn.version": str(build.get("cudnn_version", "none")),
        }


def _select_device(device: str) -> str:
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
    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )


def _strategy(name: str, device: str) -> tf.distribute.Strategy:
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


def configure(runner: RunnerConfig, seed: int) -> Runtime:
    """Apply params.runner and seed Python, NumPy and Keras; return the chosen Runtime."""
    device = _select_device(runner.device)
    if device == "cpu":
        _split_cpu(runner.logical_cpus)
    keras.utils.set_random_seed(seed)
    if runner.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = "float32"
    if runner.mixed_precision:
        policy = "mixed_float16" if device == "gpu" else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    jit = runner.jit_compile if runner.jit_compile != "auto" else device == "gpu"
    strategy = _strategy(runner.strategy, device)
    kind = "GPU" if device == "gpu" else "CPU"
    names = tuple(d.name for d in tf.config.list_logical_devices(kind))
    log.info(
        "device %s (%s), strategy %s x%d, precision %s, jit_compile %s",
        device,
        ", ".join(names),
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        policy,
        jit,
    )
    return Runtime(strategy, device, names, bool(jit), policy)
