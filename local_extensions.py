"""Jinja extensions cookiecutter loads from cookiecutter.json ``_extensions``.

``checked_slug`` refuses a bad project_slug while the answers are still being read, before
cookiecutter creates any directory: the pre_gen hook runs only after cookiecutter has made
``<output>/<project_slug>`` with its parents, and a slug such as 'a/b', '../x' or '/abs' would
leave folders behind, outside the output directory even. Standard library and jinja2 only,
so that cookiecutter and cruft can both import it. The rule and the line printed are those
of hooks/pre_gen_project.py.
"""

import re
import sys

from jinja2.ext import Extension

SLUG_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
SLUG_RULE = "must be 1-64 lowercase letters, digits, '-' or '_', starting with a letter"


def checked_slug(slug: str, project_name: str) -> str:
    """Return ``slug`` if it is a valid folder name; else print one line and exit 1."""
    if SLUG_RE.fullmatch(slug):
        return slug
    print(
        f"ERROR: project_slug={slug!r} {SLUG_RULE} (e.g. 'churn-model')."
        " Set project_slug and package_name explicitly when"
        f" project_name={project_name!r} does not give valid ones.",
        file=sys.stderr,
    )
    sys.exit(1)


class SlugCheck(Extension):
    """Adds the ``checked_slug`` filter."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["checked_slug"] = checked_slug
