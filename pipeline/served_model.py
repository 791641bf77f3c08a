"""The registered champion as MLflow's models-from-code file: raw images in, digit and ten
probabilities out (the logic is pipeline.serving's DigitReader).

MLflow runs this file when it logs or loads the model (`mlflow.pyfunc.log_model(python_model=
<this file>)` in pipeline.tracking); no pipeline module imports it, so pipeline.tracking stays the
only door to MLflow for the pipeline itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from pipeline import serving
from pipeline.errors import DataError


class DigitModel(mlflow.pyfunc.PythonModel):
    """Averaged members' probabilities of each request row's image."""

    def load_context(self, context: Any) -> None:
        members = {
            key.removeprefix("member_"): Path(path)
            for key, path in context.artifacts.items()
            if key.startswith("member_")
        }
        manifest = Path(context.artifacts[serving.MANIFEST])
        self.reader = serving.DigitReader.load(manifest, members)

    # A DataFrame hint: MLflow infers no second schema from it (the logged signature holds).
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        try:
            return self.reader.predict(model_input)
        except DataError as error:
            raise RequestError(str(error)) from None


class RequestError(mlflow.exceptions.MlflowException):
    """A bad request to the served model: HTTP 400 whose JSON message is exactly our one line.

    MLflow's scoring server turns any other exception into a generic message with the server's
    traceback (paths, source lines), and rewrites an MlflowException's message to start with the
    whole request (`Failed to predict data '...'`); this one keeps the message it was raised with.
    """

    def __init__(self, message: str) -> None:
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        self.__dict__.setdefault("_message", value)  # the first assignment only


mlflow.models.set_model(DigitModel())
