"""Our own tooling, not installed with the package: the benchmark (`python -m tools.bench`), the
MLflow UI screenshots (`python -m tools.screenshots`) and the README's results block
(`python -m tools.readme`). Run from the repository root; they call the package's own functions
and share tests/support.py (a repository copy, small params, an MLflow server) with the tests.
"""
