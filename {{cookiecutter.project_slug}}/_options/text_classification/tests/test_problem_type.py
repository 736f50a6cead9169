import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import bundle, data, drift, features, monitor
from {{ cookiecutter.package_name }}.api import Settings, create_app
from {{ cookiecutter.package_name }}.config import PreprocessingParams, load_params
from {{ cookiecutter.package_name }}.contract import Recent
from {{ cookiecutter.package_name }}.data import read_processed
from {{ cookiecutter.package_name }}.errors import DataError
from {{ cookiecutter.package_name }}.predictor import MAX_TEXT_CHARS, to_frame
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    return PROBLEM_TYPE.samples["reviews"]()


def test_the_review_sample_is_deterministic_varied_and_rated_1_to_5(reviews):
    pd.testing.assert_frame_equal(reviews, PROBLEM_TYPE.samples["reviews"]())
    assert len(reviews) >= 1000
    assert sorted(reviews["stars"].unique()) == [1, 2, 3, 4, 5]
    assert reviews["review"].nunique() > 0.95 * len(reviews)
    words = reviews["review"].str.split().str.len()
    assert words.min() <= 5 and words.max() >= 30
    assert reviews["review"].str.contains(r"\bnot (?:bad|great|good)\b").any()  # negations


def test_the_review_column_is_inferred_as_text_and_short_labels_are_not(reviews):
    frame = reviews.head(200).assign(
        sku=[f"C{i:05d}" for i in range(200)], plan=["basic", "pro"] * 100
    )
    kinds = {name: features.infer_kind(frame[name]) for name in ("review", "sku", "plan")}
    assert kinds == {"review": "text", "sku": "categorical", "plan": "categorical"}


def test_mae_counts_stars_off():
    y = np.array([5, 4, 1, 3])
    classes = np.array([1, 2, 3, 4, 5])
    off = np.array([4, 4, 3, 3])  # one star off, right, two stars off, right
    proba = (off[:, None] == classes) * 0.9 + 0.02
    scores = PROBLEM_TYPE.score(y, PROBLEM_TYPE.Predictions(off, proba, classes))
    assert scores["mae"] == pytest.approx(0.75)
    assert scores["accuracy"] == 0.5


@pytest.mark.parametrize("name", list(PROBLEM_TYPE.candidates))
def test_each_candidate_learns_ratings_from_tf_idf(problem, reviews, name):
    train, test = reviews.iloc[:900], reviews.iloc[900:]
    candidate = PROBLEM_TYPE.make_candidate(name, {}, 0, problem.target)
    model = features.model_pipeline({"review": "text"}, PreprocessingParams(), candidate)
    model.fit(train[["review"]], train["stars"])
    predictions = PROBLEM_TYPE.predict(model, test[["review"]])
    assert np.allclose(predictions.proba.sum(axis=1), 1)
    majority = (test["stars"] == train["stars"].mode()[0]).mean()
    assert PROBLEM_TYPE.score(test["stars"].to_numpy(), predictions)["accuracy"] > majority + 0.2


@pytest.mark.parametrize(
    ("stars", "rule"), [(6, "isin"), (4.5, "is_whole_number")], ids=["off scale", "half star"]
)
def test_a_rating_outside_the_contract_is_counted(problem, params, reviews, stars, rule):
    frame = reviews.astype({"stars": float})
    frame.loc[:4, "stars"] = stars
    with pytest.raises(DataError, match=rf"column 'stars': {rule}.*5 rows fail"):
        data.validate(frame, problem, params, PROBLEM_TYPE.resolve_features(frame, problem))


def test_data_without_a_text_feature_is_refused_naming_features(problem, reviews):
    numbers = reviews.drop(columns="review").assign(votes=1.0)  # inferred: no text left
    declared = problem.model_copy(update={"features": {"review": "categorical"}})
    for frame, config in ((numbers, problem), (reviews, declared)):
        with pytest.raises(DataError, match=r"problem.yaml features: .* of kind text"):
            PROBLEM_TYPE.resolve_features(frame, config)


@pytest.fixture(scope="module")
def client(mixed_project, tmp_path_factory):
    settings = Settings(
        models_dir=mixed_project.models,
        prediction_log_path=tmp_path_factory.mktemp("log") / "predictions.jsonl",
    )
    with TestClient(create_app(settings)) as client:
        yield client


def one_review(client, text) -> object:
    row = {"review": text, "votes": 2.0, "band": "mid", "seen_on": "2024-03-01"}
    return client.post("/v1/predict", json={"instances": [row]})


def test_a_review_gets_stars_and_a_probability_per_rating(client):
    response = one_review(client, "Absolutely brilliant, the sound is superb. Love it!")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"][0] in {1, 2, 3, 4, 5}
    assert set(body["probabilities"][0]) == {"1", "2", "3", "4", "5"}
    assert sum(body["probabilities"][0].values()) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize(
    "text",
    ["", "   \n\t ", "x" * (MAX_TEXT_CHARS + 1), None],
    ids=["empty", "whitespace", "too long", "null"],
)
def test_a_blank_missing_or_overlong_review_gets_a_422_naming_the_field(client, text):
    response = one_review(client, text)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "instances", 0, "review"]


def test_a_review_at_the_length_limit_is_accepted(client):
    assert one_review(client, "good " * (MAX_TEXT_CHARS // 5)).status_code == 200


def test_reviews_in_another_language_raise_an_oov_alarm_naming_the_text(mixed_project):
    served = bundle.load(bundle.resolve(mixed_project.models, "current"))
    thresholds = load_params(mixed_project.params).monitoring
    recent = read_processed(mixed_project.processed)[0].sample(200, random_state=0)
    recent["review"] = [
        f"Das Gehäuse ist {word} und die Lieferung war schnell, Nummer {i}."
        for i, word in enumerate(["prima", "schlecht", "okay", "wunderbar"] * 50)
    ]
    frame = to_frame(recent.to_dict("records"), served.metadata["features"])
    outputs = PROBLEM_TYPE.predict(served.model, frame).values.tolist()
    columns = {name: frame[name] for name in drift.feature_references(served.reference)}
    report = monitor.compare(served.reference, Recent(columns, outputs, source={}), thresholds)
    assert "review" in report["drifted"]
    result = next(r for r in report["features"] if r["name"] == "review")
    assert result["oov_rate_recent"] > 0.8 > result["oov_rate_reference"]
    assert any("never seen in training" in reason for reason in result["reasons"])
    assert "gehause" in result["oov_examples"]  # accents folded, as in training
