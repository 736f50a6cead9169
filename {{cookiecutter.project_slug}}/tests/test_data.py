import json
import sqlite3

import pandas as pd
import pytest
from conftest import edit_yaml

from {{ cookiecutter.package_name }} import bundle, data
from {{ cookiecutter.package_name }}.config import load_problem
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


@pytest.fixture
def sample(problem) -> pd.DataFrame:
    return PROBLEM_TYPE.samples[problem.source.name]()


def use_file(project, frame: pd.DataFrame, name: str = "rows.csv"):
    path = project.root / "data" / "external" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False) if name.endswith(".parquet") else frame.to_csv(
        path, index=False
    )
    edit_yaml(project.problem, source={"kind": "file", "path": f"data/external/{name}"})
    return load_problem(project.problem)


def test_collect_writes_a_snapshot_and_its_manifest(project, problem, sample):
    manifest = data.collect(problem, project.raw, project.root)

    raw = data.read_raw(project.raw)
    assert len(raw) == len(sample) == manifest["rows"]
    assert manifest["sha256"] == bundle.sha256_file(project.raw / data.RAW_FILE)
    assert manifest["source"] == {"kind": "sample", "name": problem.source.name}
    assert json.loads((project.raw / data.MANIFEST_FILE).read_text()) == manifest


def test_collect_is_a_no_op_when_the_data_is_unchanged(project, problem):
    first = data.collect(problem, project.raw, project.root)
    assert data.collect(problem, project.raw, project.root) == first


def test_collect_never_overwrites_different_raw_data(project, sample):
    problem = use_file(project, sample)
    data.collect(problem, project.raw, project.root)
    before = (project.raw / data.RAW_FILE).read_bytes()

    use_file(project, sample.head(50))
    with pytest.raises(DataError, match="--force"):
        data.collect(problem, project.raw, project.root)
    assert (project.raw / data.RAW_FILE).read_bytes() == before


def test_collect_force_archives_the_previous_raw_data(project, sample):
    problem = use_file(project, sample)
    old = data.collect(problem, project.raw, project.root)
    use_file(project, sample.head(50))

    new = data.collect(problem, project.raw, project.root, force=True)

    assert new["rows"] == 50
    archived = project.raw / "archive" / f"dataset-{old['sha256'][:12]}.parquet"
    assert bundle.sha256_file(archived) == old["sha256"]


def test_collect_reads_parquet_files(project, sample):
    problem = use_file(project, sample, "rows.parquet")
    assert data.collect(problem, project.raw, project.root)["rows"] == len(sample)


def test_collect_reads_a_sqlite_database(project, sample):
    database = project.root / "data" / "external" / "warehouse.db"
    database.parent.mkdir(parents=True)
    with sqlite3.connect(database) as connection:
        sample.to_sql("observations", connection, index=False)
    edit_yaml(
        project.problem,
        source={
            "kind": "sql",
            "url": "sqlite:///data/external/warehouse.db",
            "query": "SELECT * FROM observations LIMIT 100",
        },
    )
    manifest = data.collect(load_problem(project.problem), project.raw, project.root)

    assert manifest["rows"] == 100
    pd.testing.assert_frame_equal(data.read_raw(project.raw), sample.head(100), check_dtype=False)


def test_a_failing_sql_query_is_reported(project, sample):
    database = project.root / "empty.db"
    sqlite3.connect(database).close()
    edit_yaml(
        project.problem,
        source={"kind": "sql", "url": "sqlite:///empty.db", "query": "SELECT * FROM nope"},
    )
    with pytest.raises(DataError, match="SQL query failed"):
        data.collect(load_problem(project.problem), project.raw, project.root)


def test_validation_names_the_column_and_counts_bad_rows(problem, params, sample):
    kinds = PROBLEM_TYPE.resolve_features(sample, problem)
    column = next(name for name, kind in kinds.items() if kind in ("numeric", "text", "datetime"))
    broken = sample.astype({column: object})
    broken.loc[:2, column] = "  " if kinds[column] == "text" else "n/a?"
    with pytest.raises(DataError, match=rf"column '{column}': .*3 rows fail"):
        data.validate(broken, problem, params, kinds)


def test_validation_rejects_a_feature_missing_too_often(problem, params, sample):
    column = next(iter(PROBLEM_TYPE.resolve_features(sample, problem)))
    sample.loc[: int(len(sample) * 0.8), column] = None
    with pytest.raises(
        DataError, match=rf"column '{column}': missing_share: \d+ of {len(sample)} rows missing"
    ):
        data.validate(sample, problem, params, PROBLEM_TYPE.resolve_features(sample, problem))


def test_a_target_missing_from_the_data_is_named(problem, sample):
    with pytest.raises(DataError, match=f"target.name: '{problem.target.name}' is not a column"):
        PROBLEM_TYPE.resolve_features(sample.drop(columns=problem.target.name), problem)


def test_row_identities_follow_values_not_positions_or_dtypes():
    frame = pd.DataFrame({"code": [1, 2, 1, 3], "city": ["Oslo", "Rome", "Oslo", None]})
    ids = data.row_ids(frame)

    assert ids.nunique() == len(frame)
    assert (ids[0].endswith(".0"), ids[2].endswith(".1")) == (True, True)  # two copies
    assert data.row_content(ids)[0] == data.row_content(ids)[2]
    reordered = frame.iloc[[3, 1, 0, 2]][["city", "code"]].astype({"code": float})
    assert sorted(data.row_ids(reordered)) == sorted(ids)  # 3 and 3.0 are one value
    grown = pd.concat([frame, pd.DataFrame({"code": [9], "city": ["Lima"]})])
    assert set(ids) < set(data.row_ids(grown))
