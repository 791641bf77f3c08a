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
        return self.reader.predict(model_input)


mlflow.models.set_model(DigitModel())
