"""Check the answers before cookiecutter writes anything.

On a bad answer: print one line that names the field, the value, the rule and a good
example, then exit 1 (cookiecutter then removes the half-made project directory).
project_slug is checked earlier too, by the ``checked_slug`` filter of local_extensions.py
while the answers are read: by the time this hook runs, cookiecutter has already made the
project folder and its parents, which a slug such as 'a/b' would leave behind.
Standard library only. Answers are read through ``tojson`` so that quotes, backslashes
and newlines cannot break this file.
"""

import json
import keyword
import re
import sys
from typing import NoReturn

# tojson output starts and ends with `"`, so r"""...""" would close early on any string;
# r'''...''' is safe because tojson escapes `'`. The formatter must not swap the quotes.
# fmt: off
ANSWERS = {
    "project_name": json.loads(r'''{{ cookiecutter.project_name | tojson }}'''),
    "project_slug": json.loads(r'''{{ cookiecutter.project_slug | tojson }}'''),
    "package_name": json.loads(r'''{{ cookiecutter.package_name | tojson }}'''),
    "author_email": json.loads(r'''{{ cookiecutter.author_email | tojson }}'''),
    "problem_type": json.loads(r'''{{ cookiecutter.problem_type | tojson }}'''),
    "deep_learning": json.loads(r'''{{ cookiecutter.deep_learning | tojson }}'''),
    "python_version": json.loads(r'''{{ cookiecutter.python_version | tojson }}'''),
    "license": json.loads(r'''{{ cookiecutter.license | tojson }}'''),
    "ci": json.loads(r'''{{ cookiecutter.ci | tojson }}'''),
}
# fmt: on

SLUG_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
SLUG_RULE = "must be 1-64 lowercase letters, digits, '-' or '_', starting with a letter"
PACKAGE_RE = re.compile(r"[a-z][a-z0-9_]*")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[a-zA-Z]{2,}")
PROBLEM_TYPES = (
    "classification",
    "regression",
    "text_classification",
    "forecasting",
    "anomaly_detection",
)
YES_NO = ("no", "yes")
PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13")
LICENSES = ("MIT", "BSD-3-Clause", "Apache-2.0", "Proprietary")
CI_CHOICES = ("github", "gitlab", "none")
# Not in the standard library list, but importing them would still go wrong.
RESERVED_PACKAGES = {"test", "tests", "src", "setup", "site", "conftest"}


def package_problem(name: str) -> str | None:
    """Return why ``name`` cannot be the import name, or None when it can."""
    if not PACKAGE_RE.fullmatch(name):
        return "must be lowercase ASCII snake_case starting with a letter"
    if keyword.iskeyword(name):
        return "must not be a Python keyword"
    if name in sys.stdlib_module_names or name in RESERVED_PACKAGES:
        return "must not shadow a standard-library or reserved module"
    return None


def fail(field: str, rule: str, example: str, hint: str = "") -> NoReturn:
    value = ANSWERS[field]
    print(f"ERROR: {field}={value!r} {rule} (e.g. {example!r}).{hint}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    # Both names default from project_name; cookiecutter.json turns a name with nothing
    # to slugify (emoji, another script without transliteration) into '(none)'.
    names_hint = (
        " Set project_slug and package_name explicitly when"
        f" project_name={ANSWERS['project_name']!r} does not give valid ones."
    )
    if not SLUG_RE.fullmatch(ANSWERS["project_slug"]):
        fail("project_slug", SLUG_RULE, "churn-model", names_hint)
    problem = package_problem(ANSWERS["package_name"])
    if problem:
        fail("package_name", problem, "churn_model", names_hint)
    if not EMAIL_RE.fullmatch(ANSWERS["author_email"]):
        fail("author_email", "must look like name@domain.tld", "ml-team@example.com")
    if ANSWERS["problem_type"] not in PROBLEM_TYPES:
        fail("problem_type", f"must be one of {', '.join(PROBLEM_TYPES)}", "classification")
    if ANSWERS["deep_learning"] not in YES_NO:
        fail("deep_learning", "must be yes or no", "no")
    if ANSWERS["python_version"] not in PYTHON_VERSIONS:
        fail("python_version", f"must be one of {', '.join(PYTHON_VERSIONS)}", "3.12")
    if ANSWERS["license"] not in LICENSES:
        fail("license", f"must be one of {', '.join(LICENSES)}", "MIT")
    if ANSWERS["ci"] not in CI_CHOICES:
        fail("ci", f"must be one of {', '.join(CI_CHOICES)}", "github")


if __name__ == "__main__":
    main()
