"""Errors a user can act on. The CLI prints their message as one line, without a traceback.

Every gate and check answers with one of four exit codes:

| code | gate (evaluate, pipeline, retrain) | monitor | predict |
|------|------------------------------------|---------|---------|
| 0 | passed | no drift | every row scored |
| 1 | failed (`GateFailed`) | drift (`DriftDetected`) | rows refused (`RowsRefused`) |
| 2 | error: bad input or config (`ProjectError`) | error | error |
| 3 | inconclusive (`CannotTell`) | not enough data (`CannotTell`) | — |
"""


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


class RowsRefused(ProjectError):
    """Batch scoring refused some input rows: the side file says which and why."""


class CannotTell(ProjectError):
    """Too little data to judge: the message names what to change (more data, a smaller
    test_size, fewer folds, a longer monitoring window). Never reported as a pass."""


EXIT_CODES: dict[type[ProjectError], int] = {
    GateFailed: 1,
    DriftDetected: 1,
    RowsRefused: 1,
    CannotTell: 3,
}


def exit_code(error: ProjectError) -> int:
    """1 for a "no" verdict, 3 for "cannot tell", 2 for every other error the user can fix."""
    return next((code for kind, code in EXIT_CODES.items() if isinstance(error, kind)), 2)
