"""The one entry helper every stage shares: argv, logging, params, exit codes.

An expected fault (PipelineError) ends the stage with one line on stderr and exit code 1;
Ctrl-C/SIGTERM end it with 130/143 after the stage's own cleanup has run.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType

from pipeline.config import Params, load_params
from pipeline.errors import PipelineError, Terminated

log = logging.getLogger("pipeline")


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def run_stage(main: Callable[..., None], description: str, per_model: bool = False) -> None:
    """Run a stage's `main(params)` or `main(params, model_name)` as a CLI and exit."""
    parser = argparse.ArgumentParser(description=description)
    if per_model:
        parser.add_argument("model", help="model name, a key of models.mlp or models.cnn")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        params: Params = load_params()
        if per_model:
            params.model(args.model)  # an unknown name fails here, before any work
            main(params, args.model)
        else:
            main(params)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as interrupt:
        signal_name = "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
        print(f"error: interrupted by {signal_name}", file=sys.stderr)
        sys.exit(143 if isinstance(interrupt, Terminated) else 130)
