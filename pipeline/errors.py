"""The project's error types: each is an expected fault reported as one line, never a traceback."""


class PipelineError(Exception):
    """An expected fault a user can act on; the message names the key, file or URL."""


class ConfigError(PipelineError):
    """params.yaml is missing a key, has an unknown one, or holds a wrong type or value."""


class DataError(PipelineError):
    """A data file is missing, corrupt or inconsistent, or no source could provide it."""


class TrackingError(PipelineError):
    """The MLflow tracking store cannot be reached or refused a write."""


class RunnerError(PipelineError):
    """The requested device, precision or distribution strategy is not available here."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so `finally` blocks and context managers clean up."""
