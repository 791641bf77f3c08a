"""The bench's sections: the order they run in, their titles and wall-clock budgets."""

from __future__ import annotations

SECTIONS = ("tracking", "epochs", "dvc", "full", "input", "cpu")  # in the order they run
DEFAULT_SECTIONS = ("tracking", "epochs", "dvc", "input", "cpu")  # "full" needs --full
TENSORFLOW_SECTIONS = {"tracking", "epochs", "cpu"}
TITLES = {
    "tracking": "1. Tracking overhead",
    "epochs": "2. Epoch time per architecture",
    "dvc": "3. DVC start-up (no-op dvc repro)",
    "full": "4. Full dvc repro",
    "input": "5. Input pipeline",
    "cpu": "6. CPU settings",
}
# Wall-clock budget per section on 2 idle cores; the default sections must stay under 10 minutes
# on the slower of our two machines, where section 3 alone needs ~260 s.
BUDGET_SECONDS = {
    "tracking": 100,
    "epochs": 64,
    "dvc": 270,
    "full": 3600,
    "input": 10,
    "cpu": 90,
}
