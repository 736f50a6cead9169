"""{{ cookiecutter.problem_type | capitalize }} project: one module per stage of the ML workflow."""
