"""Keep only the files the answers chose, then print the next steps.

Standard library only, offline, no subprocess. Running it twice changes nothing.
"""

import json
import shutil
import tempfile
from pathlib import Path

# r'''...''' on purpose (see pre_gen_project.py); the formatter must not swap the quotes.
# fmt: off
SLUG = json.loads(r'''{{ cookiecutter.project_slug | tojson }}''')
PACKAGE = json.loads(r'''{{ cookiecutter.package_name | tojson }}''')
PROBLEM_TYPE = json.loads(r'''{{ cookiecutter.problem_type | tojson }}''')
DEEP_LEARNING = json.loads(r'''{{ cookiecutter.deep_learning | tojson }}''')
LICENSE = json.loads(r'''{{ cookiecutter.license | tojson }}''')
CI = json.loads(r'''{{ cookiecutter.ci | tojson }}''')
# Set by cruft only: the template commit being rendered.
CRUFT_COMMIT = json.loads(r'''{{ cookiecutter._commit | default("") | tojson }}''')
# fmt: on

SAMPLE_DATA = {
    "classification": "the wine data set (3 cultivars from 13 chemical measurements)",
    "regression": "the diabetes data set (disease progression from 10 measurements)",
    "text_classification": "1,500 generated product reviews with star ratings (CC0)",
    "forecasting": "a generated daily demand series (trend, weekly season, noise and gaps)",
    "anomaly_detection": "generated factory sensor readings with labelled injected anomalies",
}

# Shared modules a problem type never reaches: a rendered project holds only code its type
# runs. Paths are relative to the project root; the package directory is `{package}`.
UNUSED = {
    "classification": [],
    "regression": ["src/{package}/labels.py", "tests/test_labels.py"],
    "text_classification": ["src/{package}/compiled.py", "src/{package}/fastpath.py"],
    "forecasting": [
        "src/{package}/compiled.py",
        "src/{package}/eda.py",
        "src/{package}/fastpath.py",
        "src/{package}/features.py",
        "src/{package}/labels.py",
        "src/{package}/predictor.py",
        "src/{package}/row_architectures.py",
        "src/{package}/row_networks.py",
        "src/{package}/rows.py",
        "tests/test_features.py",
        "tests/test_labels.py",
        "tests/test_monitor.py",
        "tests/test_row_networks.py",
        "tests/test_rows_api.py",
        "tests/test_split.py",
    ],
    "anomaly_detection": [
        "src/{package}/labels.py",
        "src/{package}/row_architectures.py",
        "src/{package}/row_networks.py",
        "tests/test_labels.py",
        "tests/test_row_networks.py",
    ],
}


# The network candidates' modules and tests: only projects that chose deep_learning keep them.
NETWORK_FILES = [
    "src/{package}/neural.py",
    "src/{package}/networks.py",
    "src/{package}/architectures.py",
    "src/{package}/row_networks.py",
    "src/{package}/row_architectures.py",
    "tests/test_networks.py",
    "tests/test_row_networks.py",
]


def drop_networks(root: Path, deep_learning: str, package: str) -> None:
    """Delete the network modules unless the project asked for them."""
    if deep_learning != "yes":
        for pattern in NETWORK_FILES:
            (root / pattern.format(package=package)).unlink(missing_ok=True)


def apply_problem_type(root: Path, problem_type: str) -> None:
    """Copy ``_options/<problem_type>/`` over the project, then drop every option."""
    options = root / "_options"
    chosen = options / problem_type
    if chosen.is_dir():
        shutil.copytree(chosen, root, dirs_exist_ok=True)
    shutil.rmtree(options, ignore_errors=True)


def drop_unused(root: Path, problem_type: str, package: str) -> None:
    """Delete the shared modules this problem type never reaches (see UNUSED)."""
    for pattern in UNUSED.get(problem_type, []):
        (root / pattern.format(package=package)).unlink(missing_ok=True)


def apply_license(root: Path, license_id: str) -> None:
    """Move ``_licenses/<license_id>`` to ``LICENSE``; Proprietary has no licence file."""
    licenses = root / "_licenses"
    chosen = licenses / license_id
    if chosen.is_file():
        shutil.move(chosen, root / "LICENSE")
    shutil.rmtree(licenses, ignore_errors=True)


# The files of each CI choice, relative to the project root.
CI_FILES = {"github": ".github", "gitlab": ".gitlab-ci.yml"}


def apply_ci(root: Path, ci: str) -> None:
    """Keep the chosen CI's files (if any) and drop the others'."""
    for choice, name in CI_FILES.items():
        if choice != ci:
            path = root / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def is_cruft_scratch_render(root: Path) -> bool:
    """True when cruft renders the project only to compute a diff, not for the user.

    `cruft update` renders the template twice, at the project's recorded commit and at the
    new one, and `cruft diff` once; each render goes to a new folder in the temporary
    directory (``<tmp>/tmpXXXXXXXX/<slug>``) and runs this hook. `cruft create` and
    cookiecutter render into the output folder the user chose.
    """
    return bool(CRUFT_COMMIT) and root.parent.parent == Path(tempfile.gettempdir()).resolve()


def next_steps() -> str:
    return "\n".join(
        [
            f"Created {SLUG}/ for a {PROBLEM_TYPE} problem. Next steps:",
            f"  cd {SLUG}",
            "  make setup      # create the virtual environment and install; writes uv.lock",
            "  git init && git add -A && git commit -m 'New project'   # uv.lock included",
            "  make pipeline   # collect, EDA, train and evaluate on the sample data",
            "  make serve      # serve the model that passed the gate, docs at /docs",
            f"The sample data is {SAMPLE_DATA.get(PROBLEM_TYPE, 'bundled with the project')}.",
            "To use your own data, edit configs/problem.yaml.",
        ]
    )


def main() -> None:
    root = Path.cwd().resolve()
    apply_problem_type(root, PROBLEM_TYPE)
    drop_unused(root, PROBLEM_TYPE, PACKAGE)
    drop_networks(root, DEEP_LEARNING, PACKAGE)
    apply_license(root, LICENSE)
    apply_ci(root, CI)
    if not is_cruft_scratch_render(root):
        print(next_steps())


if __name__ == "__main__":
    main()
