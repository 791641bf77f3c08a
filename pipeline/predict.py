"""Read the digit in image files with a trained model: `python -m pipeline.predict IMAGE...`.

`--champion` loads the registered champion `models:/<tracking.registered_model>@champion` from
the tracking store (MLFLOW_TRACKING_URI, else the embedded store): it needs no models/, reports/
or data/ here. `--model NAME` reads models/NAME.keras; with neither, the champion named in
reports/summary.json is read from models/ (the ensemble's members if it is the ensemble). Local
models are normalised with the scalars of data/processed/dataset.npz, as in training, and every
way reads images with the same code as the served model, so they print the same digits.
Prints `file: digit (probability)` per image, or a JSON list with --json; writes no files.
An image that cannot be read or centred gets one error line on stderr, the others are still
predicted (exit 1).
"""

from __future__ import annotations

import argparse
import base64
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
from pipeline.errors import DataError, PipelineError
from pipeline.imaging import read_image, to_mnist


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


def champion_members() -> dict[str, int]:
    """The local champion's members and weights: {name: 1}, or the ensemble's members."""
    name = champion_name()
    summary = json.loads((paths.REPORTS_DIR / "summary.json").read_text())
    ensemble = summary.get("ensemble") if isinstance(summary, dict) else None
    if name == "ensemble" and isinstance(ensemble, dict) and ensemble.get("members"):
        return {str(member): int(count) for member, count in ensemble["members"].items()}
    return {name: 1}


def _as_data_error(file: str | Path, error: Exception) -> PipelineError:
    """Any fault of reading or centring one image as one line naming the file."""
    if isinstance(error, PipelineError):
        return error
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return DataError(f"{file}: cannot be read as a digit ({type(error).__name__}: {reason[:200]})")


def load_images(
    files: Sequence[str | Path],
) -> tuple[list[str], np.ndarray, list[PipelineError]]:
    """(readable file names, their MNIST images [N, 28, 28], one error per image that cannot be
    read or centred, whatever the fault)."""
    names: list[str] = []
    images: list[np.ndarray] = []
    errors: list[PipelineError] = []
    for file in files:
        try:
            images.append(to_mnist(read_image(file), source=file))
            names.append(str(file))
        except Exception as error:  # noqa: BLE001 - one bad image must not hide the others
            errors.append(_as_data_error(file, error))
    stacked = np.stack(images) if images else np.zeros((0, 28, 28), dtype=np.float32)
    return names, stacked, errors


def load_encoded(files: Sequence[str | Path]) -> tuple[list[str], list[str], list[PipelineError]]:
    """(file names, their bytes in base64, errors) for the files that read and centre as digits:
    the request a served model gets."""
    names, _, errors = load_images(files)  # each file's own error line, as locally
    encoded = [base64.b64encode(Path(name).read_bytes()).decode("ascii") for name in names]
    return names, encoded, errors


def results(names: Sequence[str], probabilities: np.ndarray) -> list[dict[str, Any]]:
    """One result per image: file, digit, its probability and all ten probabilities."""
    rows = []
    for name, row in zip(names, np.asarray(probabilities), strict=True):
        digit = int(np.argmax(row))
        rows.append(
            {
                "file": name,
                "digit": digit,
                "probability": round(float(row[digit]), 6),
                "probabilities": [round(float(p), 6) for p in row],
            }
        )
    return rows


def classify(
    model: Any, names: Sequence[str], images: np.ndarray, mean: float, std: float
) -> list[dict[str, Any]]:
    """One result per image: file, digit, its probability and all ten probabilities."""
    from pipeline.serving import DigitReader

    if len(names) == 0:
        return []
    return results(
        names, DigitReader({"model": model}, {"model": 1}, mean, std).probabilities(images)
    )


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


def _local(
    files: Sequence[str], members: dict[str, int] | None
) -> tuple[list[dict[str, Any]], list[PipelineError]]:
    """Predict with local Keras files: `members` (name: weight), or the summary's champion."""
    from pipeline.serving import DigitReader

    members = members or champion_members()
    mean, std = normalization(paths.DATASET)
    names, images, errors = load_images(files)
    if not names:
        return [], errors
    reader = DigitReader({name: load(name) for name in members}, members, mean, std)
    return results(names, reader.probabilities(images)), errors


def _registered(files: Sequence[str]) -> tuple[list[dict[str, Any]], list[PipelineError]]:
    """Predict with the registered champion, sending each file's bytes as the server gets them."""
    import pandas as pd

    from pipeline import tracking
    from pipeline.serving import IMAGE_COLUMN

    model = tracking.load_registered(load_params().tracking.registered_model)
    names, encoded, errors = load_encoded(files)
    if not names:
        return [], errors
    answer = model.predict(pd.DataFrame({IMAGE_COLUMN: encoded}))
    return results(names, np.array(answer["probabilities"].tolist())), errors


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
        help="the registered champion, models:/<tracking.registered_model>@champion, from the "
        "tracking store (MLFLOW_TRACKING_URI or the embedded one); without --model or "
        "--champion: the champion of reports/summary.json, read from models/",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (1 if anything failed)."""
    args = _parser().parse_args(argv)

    def work() -> int:
        if paths.PARAMS.is_file():  # the Keras backend of params (jax needs no TensorFlow)
            select_backend(load_params().runner.backend)
        if args.champion:
            found, errors = _registered(args.images)
        else:
            found, errors = _local(args.images, {args.model: 1} if args.model else None)
        if args.json:
            print(json.dumps(found, indent=2))
        else:
            for result in found:
                print(f"{result['file']}: {result['digit']} ({result['probability']:.1%})")
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 1 if errors else 0

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
