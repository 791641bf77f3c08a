"""The GPU check in one command (python -m tools.gpu_check); not part of the package."""
