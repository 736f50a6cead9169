import math

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }} import data, eda, features
from {{ cookiecutter.package_name }}.config import PreprocessingParams
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE

FIRST = ["Ada", "Ben", "Cleo", "Dara", "Emil", "Fay", "Gus", "Hana", "Ivo", "Jun"]
SYLLABLES = ["ber", "ko", "lin", "mar", "nes", "ost", "pa", "ren", "sa", "tov", "ul", "vik"]


def names(rows: int, share: float) -> list[str]:
    """Two-word names with share * rows distinct values, none repeated more than twice."""
    surnames = [f"{a}{b}{c}".title() for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES]
    pool = [f"{first} {last}" for last in surnames for first in FIRST]
    distinct = math.ceil(share * rows)
    return [pool[i % distinct] for i in range(rows)]


def with_name_and_code(sample: pd.DataFrame) -> pd.DataFrame:
    rows = len(sample)
    return sample.assign(
        customer=names(rows, 0.6),
        region=[["north", "south", "east", "west"][i % 4] for i in range(rows)],
        occupation=[(i * 7) % 9 + 1 for i in range(rows)],  # a code: 1 to 9
    )


def test_kinds_are_inferred_from_the_data():
    frame = pd.DataFrame(
        {
            "age": [31, 45, None, 52],
            "city": ["Seoul", "Busan", None, "Seoul"],
            "signed_up": ["2024-01-03", "2024-02-11", "2024-03-05", None],
            "active": [True, False, True, True],
            "note": ["arrived late and scratched", "works fine for me", None, "great value"],
        }
    )
    kinds = {name: features.infer_kind(frame[name]) for name in frame}
    assert kinds == {
        "age": "numeric",
        "city": "categorical",
        "signed_up": "datetime",
        "active": "categorical",
        "note": "text",
    }


def test_inference_leaves_out_id_like_text_columns_and_dropped_columns(problem, caplog):
    sample = PROBLEM_TYPE.samples[problem.source.name]()
    sample["ticket"] = [f"T-{i:05d}" for i in range(len(sample))]
    sample["leak"] = 1.0
    inferred = features.resolve_features(sample, problem.model_copy(update={"drop": ["leak"]}))
    assert "ticket" not in inferred
    assert "leak" not in inferred
    assert problem.target.name not in inferred
    assert "looks like an ID" in caplog.text


def test_cleaning_keeps_repeated_rows_unless_asked_and_counts_both_rules():
    frame = pd.DataFrame({"x": [1, 1, 2, 3, 1], "y": ["a", "a", None, "b", "a"]})
    frame.index = data.row_ids(frame)

    kept, report = features.clean(frame, ["y"])
    assert (report.duplicates, report.duplicates_dropped, report.missing_target) == (2, 0, 1)
    assert len(kept) == report.rows_out == 4
    assert kept["y"].notna().all()

    dropped, report = features.clean(frame, ["y"], drop_duplicates=True)
    assert (report.duplicates, report.duplicates_dropped, report.missing_target) == (2, 2, 1)
    assert list(dropped["x"]) == [1, 3]
    assert report.duplicate_share == pytest.approx(2 / 5)


def test_a_high_cardinality_name_column_is_not_a_categorical_feature(problem, caplog):
    sample = with_name_and_code(PROBLEM_TYPE.samples[problem.source.name]())
    inferred = features.resolve_features(sample, problem)
    assert inferred.get("customer") != "categorical"
    assert inferred["region"] == "categorical"
    assert "customer" in features.dropped_columns(sample, problem)
    assert "looks like a name or an ID" in caplog.text

    declared = problem.model_copy(update={"features": {"customer": "categorical"}})
    assert features.resolve_features(sample, declared) == {"customer": "categorical"}
    assert "region" in features.dropped_columns(sample, declared)


@pytest.mark.parametrize(
    ("distinct", "rows", "id_like"),
    [(10, 300, False), (60, 300, False), (160, 300, True), (15, 20, False), (30, 30, True)],
)
def test_a_column_is_id_like_when_each_value_is_seen_at_most_twice(distinct, rows, id_like):
    column = pd.Series([f"v{i % distinct}" for i in range(rows)])
    assert (features.id_like(column) is not None) is id_like


def test_dates_are_read_year_first_with_any_separator_and_nothing_else():
    dates = features.parse_dates(
        ["2012/01/31", "2012-1-31", "2012.01.31", "2012-01-31 13:45", "31/01/2012", "2012/02/30"]
    )
    assert dates.dt.strftime("%Y-%m-%d").tolist()[:4] == ["2012-01-31"] * 4
    assert dates.iloc[4:].isna().all()
    texts = ["2012/1/31", "2012-02-30", "2012-01-31T13:45", "20120131"]
    for text, parsed in zip(texts, features.parse_dates(texts), strict=True):
        one = features.parse_date(text)  # the API's reading of one value
        assert (one is None and pd.isna(parsed)) or one == parsed.to_pydatetime()


def test_a_category_is_one_value_however_it_is_written():
    column = pd.Series([3.0, np.nan, 12.0, 2.5])  # a code column read with a gap: floats
    stored = features.normalise_types(pd.DataFrame({"code": column}), {"code": "categorical"})
    assert stored["code"].tolist()[:1] + stored["code"].tolist()[2:] == ["3", "12", "2.5"]
    assert stored["code"].isna().tolist() == [False, True, False, False]
    assert {features.category_text(v) for v in (3, 3.0, "3", "3.0")} == {"3"}
    assert features.category_text("007") == "007"  # a code with leading zeros stays text


@pytest.mark.slow  # draws the report's figures
def test_the_eda_report_lists_left_out_columns_and_possible_codes(problem, tmp_path):
    sample = with_name_and_code(PROBLEM_TYPE.samples[problem.source.name]())
    kinds = features.resolve_features(sample, problem)
    dropped = features.dropped_columns(sample, problem)
    frame = features.normalise_types(sample, kinds)
    text = eda.report(frame, kinds, problem.target.name, tmp_path, dropped).read_text()
    assert "## Columns left out" in text and "| customer" in text
    assert "## Possible codes" in text
    assert "  occupation: categorical" in text
    assert "e+0" not in text  # counts and years are whole numbers, not 1.1e+03


def test_preprocessing_handles_missing_values_and_unseen_categories():
    train = pd.DataFrame(
        {
            "size": [1.0, 2.0, np.nan, 4.0],
            "colour": ["red", "blue", None, "red"],
            "day": ["2024-01-01", "2024-01-02", None, "2024-01-04"],
            "note": ["very good", "not good", None, "good enough"],
        }
    )
    kinds = {"size": "numeric", "colour": "categorical", "day": "datetime", "note": "text"}
    preprocessor = features.build_preprocessor(kinds, PreprocessingParams()).fit(train)

    unseen = pd.DataFrame(
        {"size": [np.nan], "colour": ["green"], "day": ["not a date"], "note": [None]}
    )
    out = preprocessor.transform(unseen)

    assert np.isfinite(out).all()
    names = list(preprocessor.get_feature_names_out())
    assert "day_day_of_week" in names
    colour = [i for i, n in enumerate(names) if n.startswith("colour_")]
    assert out[0, colour].sum() == 0  # an unseen category switches on no known column
    assert out[0, names.index("good")] == 0  # a missing text holds no words


def test_invalid_data_writes_nothing_downstream(project, problem, params):
    raw = PROBLEM_TYPE.samples[problem.source.name]()
    kinds = features.resolve_features(raw, problem)
    column = next(name for name, kind in kinds.items() if kind in ("numeric", "text", "datetime"))
    raw[column] = raw[column].astype(object)
    raw.loc[0, column] = " "  # neither a number, a date nor a text
    with pytest.raises(data.DataError, match=column):
        features.prepare(raw, problem, params, project.processed)
    assert not project.processed.exists()
