"""The one entry helper every stage shares: argv, logging, params, exit codes, a quiet start.

An expected fault (PipelineError) ends the stage with one line on stderr and exit code 1;
Ctrl-C/SIGTERM end it with 130/143 after the stage's own cleanup has run. What TensorFlow's C++
side prints while it loads (oneDNN, CUDA stubs, absl) is held back and shown only if loading
fails; after that its C++ log is at FATAL only (TF_CPP_MIN_LOG_LEVEL=3, unless already set).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from pipeline.config import Params, load_params
from pipeline.errors import ConfigError, PipelineError, RunnerError, Terminated

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


@contextmanager
def native_stderr_held() -> Iterator[None]:
    """Send what is written to file descriptor 2 (C++ libraries too) to a temporary file while
    the block runs; replay it on stderr only if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                sys.stderr.buffer.write(held.read())
                sys.stderr.flush()


def load_keras() -> None:
    """Import Keras (and its backend) with their start-up lines held back (native_stderr_held)."""
    with native_stderr_held():
        import keras  # noqa: F401


def _program() -> str | None:
    """`python -m pipeline.stages.<stage>` for a stage run as a module (argparse's usage line)."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return f"python -m {spec.name}" if spec is not None else None


def stage_model_name() -> str:
    """The model name of the DVC stage running us: DVC_STAGE's key, `train_mlp@<name>` or a
    replicate's `train_mlp_replicate@<name>-<k>` (the model `<name>_r<k>`).

    dvc.yaml's commands carry no `${key}`: DVC runs a command in a shell, so a name written
    into it would reach the shell before params validation could refuse it. DVC_STAGE is set
    by DVC for every stage command and reaches us without any shell parsing.
    """
    stage = os.environ.get("DVC_STAGE", "")
    _, at, name = stage.rpartition(":")[2].partition("@")
    if not at:
        raise ConfigError(
            "no model name: pass one (`python -m pipeline.stages.train <name>`) or run the "
            f"stage through DVC (DVC_STAGE is {stage!r}, not <stage>@<name>)"
        )
    # A replicate stage's key is DVC's matrix key `<model>-<k>` (a model name has no `-`).
    model, dash, replicate = name.rpartition("-")
    return f"{model}_r{replicate}" if dash else name


def run_stage(
    main: Callable[..., None], description: str, per_model: bool = False, loads_keras: bool = True
) -> None:
    """Run a stage's `main(params)` or `main(params, model_name)` as a CLI and exit.

    Order matters: argv first (so --help needs no params and no TensorFlow), then params, then
    the Keras backend they name, then Keras itself (if the stage `loads_keras`), quietly, and
    only then `main`.
    """
    parser = argparse.ArgumentParser(prog=_program(), description=description)
    if per_model:
        parser.add_argument(
            "model",
            nargs="?",
            help="model name, a key of models.mlp or models.cnn, or <name>_r<k> for seed "
            "replicate k (params.yaml `replicates`); under DVC, the stage's own key",
        )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # its errors on a CPU machine too
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU" is noise
    handle_sigterm()

    def work() -> None:
        params: Params = load_params()
        select_backend(params.runner.backend)
        if per_model:
            name = args.model or stage_model_name()
            params.replicate(name)  # an unknown name fails here, before any work
        if loads_keras:
            load_keras()
        main(params, name) if per_model else main(params)

    sys.exit(exit_code(work))


def print_runs_url(base_url: str) -> None:
    """Print the MLflow UI page of the experiment params.yaml names (what `make ui` shows)."""

    def work() -> None:
        experiment = load_params().tracking.experiment
        with native_stderr_held():  # pipeline.tracking loads Keras and MLflow
            from pipeline import tracking

            url = tracking.runs_url(base_url, experiment)
        print(f"Runs of {experiment}: {url}")

    code = exit_code(work)
    if code:
        sys.exit(code)
