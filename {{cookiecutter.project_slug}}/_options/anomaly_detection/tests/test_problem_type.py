import numpy as np
import pandas as pd
import pytest
from conftest import edit_yaml, quick
from fastapi.testclient import TestClient
from sklearn.pipeline import Pipeline

from {{ cookiecutter.package_name }} import (
    bundle,
    data,
    eda,
    evaluate,
    fastpath,
    features,
    monitor,
    registry,
    train,
)
from {{ cookiecutter.package_name }}.api import Settings, create_app
from {{ cookiecutter.package_name }}.config import load_params, load_problem
from {{ cookiecutter.package_name }}.detectors import RobustZScore, choose_threshold
from {{ cookiecutter.package_name }}.errors import CannotTell, DataError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE, SENSORS


@pytest.fixture(scope="module")
def sensors() -> pd.DataFrame:
    return PROBLEM_TYPE.samples["sensors"]()


def test_the_sample_is_deterministic_with_a_few_percent_labelled_anomalies(sensors):
    assert sensors.equals(PROBLEM_TYPE.samples["sensors"]())
    assert {*SENSORS, "timestamp", "machine_id", "anomaly"} == set(sensors.columns)
    assert 0.02 < sensors["anomaly"].mean() < 0.06
    assert sensors["timestamp"].is_monotonic_increasing


def test_the_new_product_line_shifts_normal_behaviour(sensors):
    new = PROBLEM_TYPE.samples["sensors_new_line"]()
    normal = sensors[sensors["anomaly"] == 0]
    shift = (new["motor_current"].median() - normal["motor_current"].median()) / normal[
        "motor_current"
    ].std()
    assert shift > 0.5
    assert new["timestamp"].min() > sensors["timestamp"].max()


def test_the_baseline_flags_a_spike_but_not_a_broken_correlation():
    rng = np.random.default_rng(0)
    load = rng.normal(size=2000)
    X = pd.DataFrame({"a": load + rng.normal(0, 0.1, 2000), "b": load + rng.normal(0, 0.1, 2000)})
    baseline = RobustZScore().fit(X)
    odd = pd.DataFrame({"a": [9.0, 1.5], "b": [0.0, -1.5]})  # a spike; a and b disagree
    scores = baseline.score_samples(odd)
    assert scores[0] > baseline.threshold_ > scores[1]
    assert RobustZScore().fit(X).score_samples(pd.DataFrame({"a": [np.nan], "b": [0.0]}))[0] < 1


def test_the_threshold_follows_the_rule():
    scores = np.arange(100, dtype=float)
    labels = (scores >= 90).astype(int)
    assert choose_threshold(scores, labels, 0.05, None)[0] == 90  # the best F1
    assert choose_threshold(scores, None, 0.05, None)[0] == pytest.approx(94.05)  # the quantile
    noisy = labels.copy()
    noisy[[80, 85]] = 1  # two anomalies among low scores
    low, _ = choose_threshold(scores, noisy, 0.05, min_precision=0.5)
    high, _ = choose_threshold(scores, noisy, 0.05, min_precision=1.0)
    assert low < high == 90


@pytest.mark.parametrize("name", list(PROBLEM_TYPE.candidates))
def test_every_candidate_scores_and_flags(name, sensors):
    X = sensors[list(SENSORS)].to_numpy()
    model = PROBLEM_TYPE.make_candidate(name, {}, seed=0, spec=None).fit(X, sensors["anomaly"])
    predictions = PROBLEM_TYPE.predict(model, X)
    assert predictions.values.shape == predictions.flags.shape == (len(X),)
    assert np.array_equal(predictions.flags, model.predict(X) == 1)
    assert PROBLEM_TYPE.score(sensors["anomaly"].to_numpy(), predictions)["pr_auc"] > 0.1
    exported = fastpath.export_onnx(Pipeline([("model", model)]))
{%- if cookiecutter.deep_learning == "yes" %}
    exported_by_onnx = {"robust_covariance", "network"}  # the others: scikit-learn
    assert (exported is not None) == (name in exported_by_onnx)
{%- else %}
    assert (exported is not None) == (name == "robust_covariance")  # the others: scikit-learn
{%- endif %}


@pytest.mark.slow
def test_the_same_rows_in_another_order_give_the_same_model(sensors):
    X = sensors[list(SENSORS)].to_numpy()
    shuffled = X[np.random.default_rng(1).permutation(len(X))]
    first = PROBLEM_TYPE.make_candidate("robust_covariance", {}, seed=0, spec=None).fit(X)
    second = PROBLEM_TYPE.make_candidate("robust_covariance", {}, seed=0, spec=None).fit(shuffled)
    assert first.threshold_ == pytest.approx(second.threshold_)
    assert np.allclose(first.score_samples(X), second.score_samples(X))


def test_perfect_scores_score_perfectly():
    y = np.array([0, 0, 1, 0, 1])
    scores = y.astype(float)
    metrics = PROBLEM_TYPE.score(y, PROBLEM_TYPE.Predictions(scores, scores >= 0.5, 0.5))
    assert metrics == {"pr_auc": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}


def test_a_label_other_than_0_or_1_is_counted(problem, params, sensors):
    frame = sensors.copy()
    frame.loc[:2, "anomaly"] = 7
    with pytest.raises(DataError, match=r"column 'anomaly': isin.*3 rows fail"):
        data.validate(frame, problem, params, features.resolve_features(frame, problem))


def test_free_text_is_left_out_because_the_detectors_cannot_read_it(problem, sensors):
    words = ["belt", "loud", "squeak", "fine", "checked", "oil", "leak", "hot", "worn"]
    frame = sensors.head(300).assign(
        note=[f"{words[i % 9]} {words[i * 5 % 9]} {words[i * 7 % 9]} shift {i}" for i in range(300)]
    )
    assert features.infer_kind(frame["note"]) == "text"
    assert "note" not in features.resolve_features(frame, problem)
    assert "free text" in features.dropped_columns(frame, problem)["note"]
    declared = problem.model_copy(update={"features": {"note": "text"}})
    with pytest.raises(DataError, match="'note' declared text"):
        features.resolve_features(frame, declared)


@pytest.mark.slow
def test_the_eda_report_shows_the_anomalies_and_needs_no_labels(problem, sensors, tmp_path):
    frame = sensors.head(600)
    kinds = features.resolve_features(frame, problem)
    labelled = eda.report(frame, kinds, "anomaly", tmp_path / "labelled").read_text()
    assert "1 categorical, 0 date), label `anomaly`." in labelled
    assert "## Anomalies" in labelled and "## Target" not in labelled
    assert "| ('machine_id', 'press-01')" in labelled  # the anomaly rate per machine
    assert "`anomaly` ~" not in labelled and "~ `anomaly`" not in labelled
    assert "A sensor that goes silent" in labelled
    unlabelled = eda.report(frame.drop(columns="anomaly"), kinds, None, tmp_path / "unlabelled")
    assert "no labels." in unlabelled.read_text()
    assert "## Anomalies" not in unlabelled.read_text()


def test_an_unknown_hyper_parameter_is_named():
    with pytest.raises(ValueError, match="n_estimator"):
        PROBLEM_TYPE.make_candidate("isolation_forest", {"n_estimator": 10}, seed=0, spec=None)


def test_the_response_gives_a_score_a_flag_and_the_threshold():
    predictions = PROBLEM_TYPE.Predictions(np.array([0.2, 3.5]), np.array([False, True]), 2.0)
    response = PROBLEM_TYPE.response(predictions, "v1")
    body = PROBLEM_TYPE.PredictResponse.model_validate(response).model_dump()
    assert body == {
        "model_version": "v1",
        "threshold": 2.0,
        "predictions": [0.2, 3.5],
        "anomalies": [False, True],
    }
    assert PROBLEM_TYPE.prediction_counts(predictions, {}) == {"anomaly": 1, "normal": 1}


@pytest.mark.slow
def test_without_labels_it_trains_but_the_gate_says_why_it_cannot_judge(project, sensors):
    external = project.root / "data" / "external"
    external.mkdir(parents=True)
    sensors.drop(columns="anomaly").to_csv(external / "unlabelled.csv", index=False)
    edit_yaml(
        project.problem,
        target={"name": None},
        source={"kind": "file", "path": "data/external/unlabelled.csv"},
    )
    problem, params = load_problem(project.problem), quick(load_params(project.params))
    data.collect(problem, project.raw, project.root)
    PROBLEM_TYPE.prepare(data.read_raw(project.raw), problem, params, project.processed)
    train.run(project.processed, project.models, problem, params)

    with pytest.raises(CannotTell, match="no labels: pr_auc cannot be measured"):
        evaluate.run(project.processed, project.models, project.reports, problem, params)
    report = evaluate.evaluate(
        bundle.load(bundle.resolve(project.models, "candidate")),
        *data.read_processed(project.processed)[:2],
        problem,
        params,
    )[0]
    expected = params.model.params.get("expected_share", 0.05)
    assert report["candidate"]["flagged_share"] == pytest.approx(expected, abs=0.03)
    assert "not measured: no labels" in (project.reports / "evaluation.md").read_text()

    version = bundle.read_pointer(project.models, "candidate")
    registry.promote(project.models, version, "flags reviewed by maintenance", force=True)
    settings = Settings(
        models_dir=project.models, prediction_log=False, reports_dir=project.reports
    )
    with TestClient(create_app(settings)) as client:
        page = client.get("/dashboard")
    assert page.status_code == 200
    assert "no labels" in page.text
    assert 'id="gate-verdict" class="badge warn">inconclusive<' in page.text
    assert "flagged_share" in page.text


def test_the_new_product_line_raises_drift(mixed_project, tmp_path):
    new = PROBLEM_TYPE.samples["sensors_new_line"]()
    reference = data.read_processed(mixed_project.processed)[0]
    for name in ("band", "seen_on"):  # the mixed project's extra columns, as in training
        new[name] = reference[name].sample(len(new), replace=True, random_state=0).to_numpy()
    new.to_csv(tmp_path / "new_line.csv", index=False)
    thresholds = load_params(mixed_project.params).monitoring

    report = monitor.run(
        mixed_project.models, tmp_path / "reports", thresholds, data_path=tmp_path / "new_line.csv"
    )

    assert report["drift"]
    assert {"motor_current", "pressure"} <= set(report["drifted"])
    assert report["predictions"]["status"] == "drift"  # far more readings are flagged


def test_the_service_answers_scores_flags_and_the_threshold(mixed_project, tmp_path):
    settings = Settings(models_dir=mixed_project.models, prediction_log=False)
    test = data.read_processed(mixed_project.processed)[1]
    names = [
        f["name"]
        for f in bundle.load(bundle.resolve(mixed_project.models, "current")).metadata["features"]
    ]
    rows = test[names].head(5).astype(object).where(test[names].head(5).notna(), None)
    with TestClient(create_app(settings)) as client:
        body = client.post("/v1/predict", json={"instances": rows.to_dict("records")}).json()
    flags = [score >= body["threshold"] for score in body["predictions"]]
    assert body["anomalies"] == flags
    assert len(body["predictions"]) == 5
