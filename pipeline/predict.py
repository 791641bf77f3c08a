"""Read the digit in image files with a trained model: `python -m pipeline.predict IMAGE...`.

Reads models/<name>.keras (the champion named in reports/summary.json unless --model is given)
and the normalisation scalars of data/processed/dataset.npz, so images are scaled as in training.
Prints `file: digit (probability)` per image, or a JSON list with --json; writes no files.
A file that cannot be read is reported on stderr and the others are still predicted (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import paths
from pipeline.config import load_params
from pipeline.data import normalization
from pipeline.entry import exit_code, select_backend
from pipeline.errors import DataError
from pipeline.imaging import read_image, to_mnist

PREDICT_BATCH = 256


def champion_name() -> str:
    """The champion model's name from reports/summary.json, written by the report stage."""
    summary_path = paths.REPORTS_DIR / "summary.json"
    hint = "run `dvc repro` first, or choose a model with --model NAME"
    try:
        summary = json.loads(summary_path.read_text())
    except FileNotFoundError:
        raise DataError(f"{summary_path}: missing; {hint}") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{summary_path}: not readable JSON ({error}); {hint}") from None
    name = summary.get("champion") if isinstance(summary, dict) else None
    if not isinstance(name, str) or not name:
        raise DataError(f"{summary_path}: names no champion; {hint}")
    return name


def load_images(files: Sequence[str | Path]) -> tuple[list[str], np.ndarray, list[DataError]]:
    """(readable file names, their MNIST images [N, 28, 28], one error per unreadable file)."""
    names: list[str] = []
    images: list[np.ndarray] = []
    errors: list[DataError] = []
    for file in files:
        try:
            images.append(to_mnist(read_image(file), source=file))
            names.append(str(file))
        except DataError as error:
            errors.append(error)
    stacked = np.stack(images) if images else np.zeros((0, 28, 28), dtype=np.float32)
    return names, stacked, errors


def classify(
    model: Any, names: Sequence[str], images: np.ndarray, mean: float, std: float
) -> list[dict[str, Any]]:
    """One result per image: file, digit, its probability and all ten probabilities."""
    if len(names) == 0:
        return []
    batch = ((images - np.float32(mean)) / np.float32(std)).astype(np.float32)[..., np.newaxis]
    probabilities = np.asarray(model.predict(batch, batch_size=PREDICT_BATCH, verbose=0))
    results = []
    for name, row in zip(names, probabilities, strict=True):
        digit = int(np.argmax(row))
        results.append(
            {
                "file": name,
                "digit": digit,
                "probability": round(float(row[digit]), 6),
                "probabilities": [round(float(p), 6) for p in row],
            }
        )
    return results


def predict_files(
    model: Any, files: Sequence[str | Path], normalize_mean: float, normalize_std: float
) -> list[dict[str, Any]]:
    """Predict every file with `model`; any file that cannot be read raises DataError."""
    names, images, errors = load_images(files)
    if errors:
        raise DataError("; ".join(str(error) for error in errors))
    return classify(model, names, images, normalize_mean, normalize_std)


def load(name: str) -> Any:
    """The trained model `name` from models/, loaded in Keras' safe mode."""
    from pipeline.models import load_model  # imports Keras: slow, so only when a model is needed

    model = load_model(paths.model_file(name))
    if tuple(model.input_shape[1:]) != (28, 28, 1):
        raise DataError(
            f"{paths.model_file(name)}: expects inputs of shape {model.input_shape[1:]}, "
            "not 28x28x1 images"
        )
    return model


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.predict",
        description="Read the handwritten digit in each image (PNG, JPEG, any size or colours).",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to read")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--model", metavar="NAME", help="a trained model in models/NAME.keras")
    choice.add_argument(
        "--champion",
        action="store_true",
        help="the best model of the last report (reports/summary.json); the default",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (1 if anything failed)."""
    args = _parser().parse_args(argv)

    def work() -> int:
        if paths.PARAMS.is_file():  # the Keras backend of params (jax needs no TensorFlow)
            select_backend(load_params().runner.backend)
        name = args.model or champion_name()
        mean, std = normalization(paths.DATASET)
        names, images, errors = load_images(args.images)
        results = classify(load(name), names, images, mean, std) if names else []
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            for result in results:
                print(f"{result['file']}: {result['digit']} ({result['probability']:.1%})")
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 1 if errors else 0

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
