"""Errors a user can act on. The CLI prints their message as one line, without a traceback."""


class ProjectError(Exception):
    """Base class: something the user can fix in config or data."""


class ConfigError(ProjectError):
    """configs/*.yaml is invalid."""


class DataError(ProjectError):
    """The data does not meet the contract in configs/problem.yaml."""


class GateFailed(ProjectError):
    """The candidate did not pass the evaluation gate: go back to stage 4."""


class DriftDetected(ProjectError):
    """The drift monitor found recent data past a threshold in configs/params.yaml."""
