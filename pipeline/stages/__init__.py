"""One module per dvc.yaml stage, each a short recipe of calls into the package."""
