"""Batch scoring (`predict`): a file scored in chunks answers as the API does, refused
{%- if cookiecutter.problem_type == "forecasting" %} series
{%- else %} rows
{%- endif %} go to the side file with the reason, and the Ray engine writes the same output."""

import pandas as pd
import pytest
from conftest import settings_for
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import batch
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.errors import DataError, RowsRefused
{%- if cookiecutter.problem_type == "forecasting" %}
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


@pytest.fixture(scope="module")
def rows(trained_project) -> pd.DataFrame:
    """The last weeks of the sample series, in the layout of the training data."""
    from {{ cookiecutter.package_name }}.config import load_problem

    problem = load_problem(trained_project.problem)
    return PROBLEM_TYPE.samples[problem.source.name]().tail(60).reset_index(drop=True)


def api_rows(client, frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """The API's forecast for the history in `frame`, as output rows."""
    history = {"timestamps": frame["date"].tolist(), "values": frame[target].tolist()}
    answer = client.post("/v1/predict", json={"history": history})
    assert answer.status_code == 200, answer.text
    points = pd.DataFrame(answer.json()["forecast"])
    return points.rename(columns={"value": "forecast"})


def test_the_file_is_forecast_as_the_api_forecasts(trained_project, rows, tmp_path):
    target = rows.columns[1]
    rows.to_csv(tmp_path / "in.csv", index=False)
    counts = batch.run(
        trained_project.models, tmp_path / "in.csv", tmp_path / "out.parquet", chunk_rows=7
    )
    output = pd.read_parquet(tmp_path / "out.parquet")
    with TestClient(create_app(settings_for(trained_project, tmp_path))) as client:
        expected = api_rows(client, rows, target)
    assert counts["refused"] == 0
    assert output["step"].tolist() == list(range(1, len(expected) + 1))
    pd.testing.assert_frame_equal(
        output[["timestamp", "forecast", "lower", "upper"]],
        expected[["timestamp", "forecast", "lower", "upper"]],
    )


def test_a_bad_series_goes_to_the_side_file(trained_project, rows, tmp_path):
    bad = rows.astype({rows.columns[1]: object})
    bad.loc[10, rows.columns[1]] = "many"
    bad.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(RowsRefused, match="1 of 60"):
        batch.run(trained_project.models, tmp_path / "in.csv", tmp_path / "out.csv")
    refused = pd.read_csv(tmp_path / "out.errors.csv")
    assert refused["row"].tolist() == [0]
    assert "valid number" in refused["message"][0]
    assert pd.read_csv(tmp_path / "out.csv").empty
{%- else %}


@pytest.fixture(scope="module")
def rows(trained_project) -> pd.DataFrame:
    """Test rows of the trained project's features, as a client would send them."""
    from {{ cookiecutter.package_name }} import bundle, data

    _, test, _ = data.read_processed(trained_project.processed)
    metadata = bundle.read_metadata(bundle.resolve(trained_project.models, "current"))
    names = [feature["name"] for feature in metadata["features"]]
    return test[names].head(40).reset_index(drop=True)


def wrong_value(kind: str) -> str:
    """A value of the kind that the API refuses."""
    return {
        "numeric": "twelve",
        "text": " ",
        "categorical": "x" * 100_000,
        "datetime": "31.01.2024",
    }[kind]


def api_answer(trained_project, tmp_path, rows: pd.DataFrame) -> list[list]:
    """The API's answer for each row, flattened into the order of the output columns."""
    instances = rows.astype(object).where(rows.notna(), None).to_dict("records")
    with TestClient(create_app(settings_for(trained_project, tmp_path))) as client:
        answer = client.post("/v1/predict", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    lists = [v for v in answer.json().values() if isinstance(v, list) and len(v) == len(rows)]
    flat = []
    for i in range(len(rows)):
        values = []
        for column in lists:
            item = column[i]
            values.extend(item.values() if isinstance(item, dict) else [item])
        flat.append(values)
    return flat


def split(values: list) -> tuple[list[str], list[float]]:
    """Labels as text and the numbers (probabilities, scores, flags) as floats."""
    labels = [str(v) for v in values if isinstance(v, str)]
    return labels, [float(v) for v in values if not isinstance(v, str)]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunked_output_equals_the_api_answers(trained_project, rows, tmp_path, suffix):
    source = tmp_path / f"in{suffix}"
    rows.to_csv(source, index=False) if suffix == ".csv" else rows.to_parquet(source)
    out = tmp_path / f"out{suffix}"
    counts = batch.run(trained_project.models, source, out, chunk_rows=7)
    output = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert counts == counts | {"read": 40, "scored": 40, "refused": 0}
    assert output["row"].tolist() == list(range(40))
    expected = api_answer(trained_project, tmp_path, rows)
    for got, want in zip(output.drop(columns="row").values.tolist(), expected, strict=True):
        labels, numbers = split(got)
        want_labels, want_numbers = split(want)
        assert labels == want_labels
        # The API may answer from its compiled fast path: equal to float32 precision.
        assert numbers == pytest.approx(want_numbers, rel=1e-5, abs=1e-5)


def test_bad_rows_go_to_the_side_file_and_the_rest_is_scored_in_order(
    trained_project, rows, tmp_path
):
    from {{ cookiecutter.package_name }} import bundle

    features = bundle.read_metadata(bundle.resolve(trained_project.models, "current"))["features"]
    features = features[:30]
    bad = rows.astype(object)
    for i, feature in enumerate(features):  # a wrong value of every feature, in rows 3, 4, ...
        bad.loc[3 + i, feature["name"]] = wrong_value(feature["kind"])
    bad["unknown"] = None
    bad.loc[35, "unknown"] = "a value the model does not read"
    bad.to_csv(tmp_path / "in.csv", index=False)
    refused_rows = [*range(3, 3 + len(features)), 35]
    with pytest.raises(RowsRefused, match=f"{len(refused_rows)} of 40 input rows refused"):
        batch.run(trained_project.models, tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=8)
    refused = pd.read_csv(tmp_path / "out.errors.csv")
    assert refused["row"].tolist() == refused_rows
    assert refused["field"].tolist() == [feature["name"] for feature in features] + ["unknown"]
    kept = [i for i in range(40) if i not in refused_rows]
    assert pd.read_csv(tmp_path / "out.csv")["row"].tolist() == kept
{%- endif %}


def test_an_existing_output_is_kept_and_a_missing_column_is_an_error(
    trained_project, rows, tmp_path
):
    rows.to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "out.csv").write_text("earlier results\n")
    with pytest.raises(DataError, match="--force"):
        batch.run(trained_project.models, tmp_path / "in.csv", tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text() == "earlier results\n"
    renamed = rows.rename(columns={rows.columns[0]: "renamed"})
    renamed.to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match="columns missing"):
        batch.run(trained_project.models, tmp_path / "short.csv", tmp_path / "new.csv")
    with pytest.raises(DataError, match="CSV"):
        batch.run(trained_project.models, tmp_path / "in.csv", tmp_path / "out.json")


@pytest.mark.slow
def test_the_ray_engine_writes_the_same_output(trained_project, rows, tmp_path):
    rows.to_parquet(tmp_path / "in.parquet")
    batch.run(trained_project.models, tmp_path / "in.parquet", tmp_path / "local.parquet")
    batch.run(
        trained_project.models,
        tmp_path / "in.parquet",
        tmp_path / "ray.parquet",
        chunk_rows=16,
        engine="ray",
        cpus=2,
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "ray.parquet"), pd.read_parquet(tmp_path / "local.parquet")
    )
