import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }} import data, features, task
from {{ cookiecutter.package_name }}.config import PreprocessingParams


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
    sample = task.SAMPLES[problem.source.name]()
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

    kept, report = features.clean(frame, "y")
    assert (report.duplicates, report.duplicates_dropped, report.missing_target) == (2, 0, 1)
    assert len(kept) == report.rows_out == 4
    assert kept["y"].notna().all()

    dropped, report = features.clean(frame, "y", drop_duplicates=True)
    assert (report.duplicates, report.duplicates_dropped, report.missing_target) == (2, 2, 1)
    assert list(dropped["x"]) == [1, 3]
    assert report.duplicate_share == pytest.approx(2 / 5)


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
    raw = task.SAMPLES[problem.source.name]()
    kinds = features.resolve_features(raw, problem)
    column = next(name for name, kind in kinds.items() if kind in ("numeric", "text", "datetime"))
    raw[column] = raw[column].astype(object)
    raw.loc[0, column] = " "  # neither a number, a date nor a text
    with pytest.raises(data.DataError, match=column):
        features.prepare(raw, problem, params, project.processed)
    assert not project.processed.exists()
