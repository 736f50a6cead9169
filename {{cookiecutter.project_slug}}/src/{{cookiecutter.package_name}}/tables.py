"""Tables of the Markdown reports, with numbers as a reader expects them.

Counts and years as whole numbers (1096, 2012: not 1.1e+03 or 2.01e+03), other values with
four significant digits, and scientific notation only for magnitudes where it reads better.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .data import FEATURES_FILE


def number(value: object) -> str:
    """One value as it appears in a report table; text passes through."""
    if value is None or isinstance(value, str | bool | np.bool_):
        return "" if value is None else str(value)
    if not isinstance(value, int | float | np.number):
        return str(value)
    x = float(value)
    if math.isnan(x):
        return ""
    if math.isinf(x) or (x.is_integer() and abs(x) < 1e15):
        return str(int(x)) if math.isfinite(x) else str(x)
    if abs(x) >= 1000:
        return f"{x:.1f}"
    if abs(x) >= 1e-4:
        return f"{x:.4g}"
    return f"{x:.2e}"


def markdown(table: pd.DataFrame, index: bool = True) -> str:
    """A DataFrame as a Markdown table, numbers formatted by `number` and right-aligned."""
    align = ["right" if pd.api.types.is_numeric_dtype(t) else "left" for t in table.dtypes]
    cells = table.map(number)
    return cells.to_markdown(
        index=index,
        disable_numparse=True,
        colalign=(["left"] if index else []) + align,
    )


def preparation(processed_dir: Path) -> dict:
    """What `prepare` recorded for the EDA report, as its keyword arguments: the columns
    left out with the reason for each (features.json) and, where the problem type cleans
    rows, what happened to them (cleaning.json)."""
    features_path, cleaning_path = processed_dir / FEATURES_FILE, processed_dir / "cleaning.json"
    notes = {"dropped": {}}
    if features_path.exists():
        notes["dropped"] = json.loads(features_path.read_text()).get("dropped", {})
    if cleaning_path.exists():
        notes["cleaning"] = json.loads(cleaning_path.read_text())
    return notes


def rows_section(summary: dict) -> list[str]:
    """The EDA report's account of every raw row: kept, repeated, dropped, and where it went."""
    cleaning = summary["cleaning"]
    repeated = (
        f"{cleaning['duplicates']} rows repeat an earlier row "
        f"({cleaning['duplicate_share']:.1%} of the rows in)"
    )
    if cleaning["duplicates_dropped"]:
        repeated += f": {cleaning['duplicates_dropped']} dropped (`preprocessing.drop_duplicates`)"
    else:
        repeated += ": all kept, every copy on the same side of the split and in one CV fold"
    return [
        "## Rows",
        "",
        f"- {cleaning['rows_in']} rows in the raw snapshot;",
        f"- {repeated};",
        f"- {cleaning['missing_target']} rows without a target dropped;",
        f"- {cleaning['rows_out']} rows kept: {summary['train_rows']} for training (this "
        f"report), {summary['test_rows']} in the held-out test set.",
        "",
    ]


def dropped_section(dropped: dict[str, str]) -> list[str]:
    """The EDA report's list of columns that are not features, and why."""
    table = pd.DataFrame({"column": list(dropped), "why it is left out": list(dropped.values())})
    return [
        "## Columns left out",
        "",
        markdown(table, index=False),
        "",
        "To model one of them, list it in `features` in `configs/problem.yaml`.",
        "",
    ]
