"""The one entry helper every stage shares: argv, logging, params, exit codes.

An expected fault (PipelineError) ends the stage with one line on stderr and exit code 1;
Ctrl-C/SIGTERM end it with 130/143 after the stage's own cleanup has run.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from pipeline.config import Params, load_params
from pipeline.errors import PipelineError, RunnerError, Terminated

log = logging.getLogger("pipeline")


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def handle_sigterm() -> None:
    """Make SIGTERM raise Terminated, so `finally` blocks and `exit_code` see it like Ctrl-C."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def exit_code(work: Callable[[], int | None]) -> int:
    """Run a command's `work()`; its exit code (None is 0), or one line on stderr and 1 for an
    expected fault, 130 for Ctrl-C, 143 for SIGTERM (see `handle_sigterm`)."""
    try:
        return work() or 0
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, Terminated)
        print(f"error: interrupted by {'SIGTERM' if terminated else 'Ctrl-C'}", file=sys.stderr)
        return 143 if terminated else 130


def select_backend(backend: str) -> None:
    """Make `backend` Keras' backend; it must happen before Keras is first imported.

    A Keras already loaded with another backend cannot switch, so that is a one-line error.
    """
    loaded = sys.modules.get("keras")
    if loaded is not None:
        current = loaded.backend.backend()
        if current != backend:
            raise RunnerError(
                f"runner.backend is {backend} but Keras was already loaded with {current} "
                "(set runner.backend before anything imports keras)"
            )
    else:
        os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        _keep_keras_off_tensorflow()


def _keep_keras_off_tensorflow() -> None:
    """Make Keras on JAX behave as where TensorFlow is not installed.

    Keras imports TensorFlow whenever it is installed, whatever the backend: to seed it, to
    check for TensorShapes when saving. On JAX that costs seconds and memory, and hides
    whether the JAX path works on a machine without TensorFlow (a GPU machine, typically).
    """
    from keras.src.utils import module_utils

    if "tensorflow" not in sys.modules:
        module_utils.tensorflow._available = False


def run_stage(main: Callable[..., None], description: str, per_model: bool = False) -> None:
    """Run a stage's `main(params)` or `main(params, model_name)` as a CLI and exit.

    Order matters: argv first (so --help needs no params and no TensorFlow), then params, then
    the Keras backend they name, and only then `main`, which imports Keras and TensorFlow.
    """
    parser = argparse.ArgumentParser(description=description)
    if per_model:
        parser.add_argument(
            "model",
            help="model name, a key of models.mlp or models.cnn, or <name>_r<k> for seed "
            "replicate k (params.yaml `replicates`)",
        )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's info lines are noise
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU" is noise
    handle_sigterm()

    def work() -> None:
        params: Params = load_params()
        select_backend(params.runner.backend)
        if per_model:
            params.replicate(args.model)  # an unknown name fails here, before any work
            main(params, args.model)
        else:
            main(params)

    sys.exit(exit_code(work))
