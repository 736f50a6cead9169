"""Problem types plug in through the contract: no type replaces a shared module or test,
and no code is copied between a type and the shared code or between two types
(CONTRIBUTING.md)."""

import difflib
from pathlib import Path

from conftest import TEMPLATE_DIR

PROJECT = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
OPTIONS = PROJECT / "_options"
PLUG_IN = {"problem_type.py", "test_problem_type.py"}
MAX_COPIED_LINES = 60
MIN_RUN = 6  # identical consecutive lines that count as a copy


def _type_files(pattern: str) -> dict[str, list[Path]]:
    return {t.name: sorted(t.rglob(pattern)) for t in sorted(OPTIONS.iterdir())}


def _code_lines(path: Path) -> list[str]:
    """Non-blank lines that are not comments, stripped: moving or re-indenting code does
    not hide a copy."""
    stripped = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


def _copied(lines: list[str], others: list[list[str]]) -> int:
    """How many of `lines` sit in an identical run of MIN_RUN or more lines of another file."""
    marked: set[int] = set()
    for other in others:
        matcher = difflib.SequenceMatcher(None, lines, other, autojunk=False)
        for block in matcher.get_matching_blocks():
            if block.size >= MIN_RUN:
                marked.update(range(block.a, block.a + block.size))
    return len(marked)


def test_no_problem_type_replaces_a_shared_module_or_test():
    replaced = [
        f"{problem_type}: {path.relative_to(OPTIONS / problem_type)}"
        for problem_type, paths in _type_files("*").items()
        for path in paths
        if path.is_file()
        and path.name not in PLUG_IN
        and path.relative_to(OPTIONS / problem_type).parts[0] in {"src", "tests"}
        and (PROJECT / path.relative_to(OPTIONS / problem_type)).exists()
    ]
    assert not replaced, f"type files at shared paths: {replaced}"


def test_types_copy_no_more_than_a_few_lines():
    shared = [_code_lines(p) for p in PROJECT.rglob("*.py") if OPTIONS not in p.parents]
    by_type = {t: [_code_lines(p) for p in paths] for t, paths in _type_files("*.py").items()}
    copied, seen = {}, []
    for problem_type, files in by_type.items():
        paths = _type_files("*.py")[problem_type]
        for path, lines in zip(paths, files, strict=True):
            count = _copied(lines, shared + seen)
            if count:
                copied[str(path.relative_to(OPTIONS))] = count
        seen.extend(files)
    worst = sorted(copied.items(), key=lambda item: -item[1])[:5]
    assert sum(copied.values()) <= MAX_COPIED_LINES, f"copied lines by file: {worst}"
