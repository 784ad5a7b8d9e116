"""Tests of tfool.survey: the seeded noise survey and its statistics."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_imagenet import tiny_imagenet_model

from tfool import imagenet, io, plots, survey


@pytest.fixture(scope="module")
def two_models():
    return [
        tiny_imagenet_model(16, 0, "small", preprocess="resnet50", filters=6),
        tiny_imagenet_model(20, 1, "large", preprocess="resnet50", filters=6),
    ]


def direct_top1(model, images):
    """The same predictions, computed without the survey's batching or compiled steps."""
    crop = images.shape[1] - model.input_size[0]
    lo = int(round(crop / 2))
    pixels = images[:, lo : lo + model.input_size[0], lo : lo + model.input_size[1]]
    probs = model.predict(pixels.astype(np.float32), batch_size=len(pixels))
    return probs.argmax(axis=1), probs.max(axis=1)


def test_stats_equal_direct_numpy(two_models):
    result = survey.noise_survey(
        two_models, survey.SurveyConfig(num_images=23, batch_size=5, seed=3)
    )
    images = survey.noise_images(0, 23, 20, seed=3)
    assert result.config.image_size == 20
    for model, part in zip(two_models, result.models, strict=True):
        labels, conf = direct_top1(model, images)
        np.testing.assert_array_equal(part.labels, labels)
        np.testing.assert_allclose(part.confidences, conf, rtol=1e-5)
        c = conf.astype(np.float64)
        expected = {
            "count": 23,
            "mean": c.mean(),
            "std": c.std(ddof=1),
            "min": c.min(),
            "25%": np.quantile(c, 0.25),
            "50%": np.median(c),
            "75%": np.quantile(c, 0.75),
            "max": c.max(),
        }
        assert list(part.stats) == list(survey.STAT_NAMES)
        for key, value in expected.items():
            assert part.stats[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
        values, counts = np.unique(labels, return_counts=True)
        assert {i: c for i, _, c in part.histogram} == dict(
            zip(values.tolist(), counts.tolist(), strict=True)
        )
        assert sum(c for _, _, c in part.histogram) == 23
        hist_counts = [c for _, _, c in part.histogram]
        assert hist_counts == sorted(hist_counts, reverse=True)
        assert all(name == imagenet.class_names()[i] for i, name, _ in part.histogram)


def test_noise_is_seeded_and_independent_of_batching(two_models):
    a = survey.noise_survey(two_models[:1], survey.SurveyConfig(num_images=9, batch_size=2, seed=1))
    b = survey.noise_survey(two_models[:1], survey.SurveyConfig(num_images=9, batch_size=9, seed=1))
    c = survey.noise_survey(two_models[:1], survey.SurveyConfig(num_images=9, batch_size=9, seed=2))
    np.testing.assert_array_equal(a.models[0].labels, b.models[0].labels)
    np.testing.assert_allclose(a.models[0].confidences, b.models[0].confidences, rtol=1e-6)
    assert not np.array_equal(a.models[0].confidences, c.models[0].confidences)
    np.testing.assert_array_equal(
        survey.noise_images(3, 6, 8, seed=5), survey.noise_images(0, 6, 8, seed=5)[3:]
    )


def test_normal_noise_is_the_posts_wrapped_cast():
    images = survey.noise_images(0, 2, (4, 5), seed=7, noise="normal")
    assert images.shape == (2, 4, 5, 3) and images.dtype == np.uint8
    z = np.random.default_rng([7, 1]).standard_normal((4, 5, 3)) * 255
    expected = np.array([int(v) % 256 for v in z.ravel()], np.uint8).reshape(z.shape)
    np.testing.assert_array_equal(images[1], expected)


def test_uniform_noise_spans_the_pixel_range():
    images = survey.noise_images(0, 4, 16, seed=0, noise="uniform")
    assert images.min() == 0 and images.max() == 255
    assert abs(images.mean() - 127.5) < 5


def test_describe_matches_numpy(rng):
    values = rng.uniform(size=101)
    stats = survey.describe(values)
    assert stats["count"] == 101
    assert stats["std"] == pytest.approx(np.std(values, ddof=1))
    assert stats["25%"] == pytest.approx(np.percentile(values, 25))
    with pytest.raises(ValueError, match="empty"):
        survey.describe([])


def test_table_json_and_csv(two_models, tmp_path):
    result = survey.noise_survey(
        {"a": two_models[0], "b": two_models[1]}, survey.SurveyConfig(num_images=6, seed=0)
    )
    header, rows = result.table()
    assert header == ["statistic", "a", "b"]
    assert [row[0] for row in rows] == list(survey.STAT_NAMES)
    assert rows[1][1] == pytest.approx(result["a"].stats["mean"])
    io.write_csv(tmp_path / "survey.csv", header, rows)
    io.write_json(tmp_path / "survey.json", result.to_dict())
    loaded = json.loads((tmp_path / "survey.json").read_text())
    assert loaded["models"][1]["name"] == "b"
    settings = dataclasses.asdict(result.config)
    assert loaded["seed"] == settings.pop("seed") == 0  # beside the config, as before
    assert loaded["config"] == settings
    with pytest.raises(KeyError):
        result["c"]


def test_strategy_gives_the_same_answers(two_models):
    config = survey.SurveyConfig(num_images=6, batch_size=4, seed=4)
    plain = survey.noise_survey(two_models, config)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    dist = survey.noise_survey(two_models, config, strategy=strategy)
    for p, d in zip(plain.models, dist.models, strict=True):
        np.testing.assert_array_equal(p.labels, d.labels)
        np.testing.assert_allclose(p.confidences, d.confidences, rtol=1e-6)


def test_the_config_seed_is_the_noise_seed(two_models):
    config = survey.SurveyConfig(num_images=5, batch_size=2, seed=3)
    inside = survey.noise_survey(two_models[:1], config)
    other = survey.noise_survey(two_models[:1], dataclasses.replace(config, seed=0))
    assert inside.seed == inside.config.seed == 3 and other.seed == other.config.seed == 0
    labels, conf = direct_top1(two_models[0], survey.noise_images(0, 5, 16, seed=3))
    np.testing.assert_array_equal(inside.models[0].labels, labels)
    np.testing.assert_allclose(inside.models[0].confidences, conf, rtol=1e-5)
    assert not np.array_equal(inside.models[0].confidences, other.models[0].confidences)
    assert survey.SurveyConfig().seed == 0
    assert "seed" not in inside.to_dict()["config"] and inside.to_dict()["seed"] == 3
    with pytest.raises(ValueError, match="seed=1.5 must be an integer"):
        survey.SurveyConfig(seed=1.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_images": 0}, "num_images=0"),
        ({"noise": "pink"}, "noise='pink'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"image_size": 18}, "image_size=18 is smaller than model 'large'"),
        ({"models": []}, "models is empty"),
    ],
)
def test_bad_arguments(two_models, kwargs, match):
    models = kwargs.pop("models", two_models)
    with pytest.raises(ValueError, match=match):
        survey.noise_survey(models, survey.SurveyConfig(**kwargs))


def test_duplicate_model_names(two_models):
    with pytest.raises(ValueError, match="repeat"):
        survey.noise_survey([two_models[0], two_models[0]], survey.SurveyConfig(num_images=2))


def test_keras_application_survey():
    keras.utils.set_random_seed(0)
    vgg = imagenet.load_imagenet_model("vgg16", weights=None, input_size=32)
    result = survey.noise_survey(
        [vgg], survey.SurveyConfig(num_images=4, noise="uniform", batch_size=4, seed=0)
    )
    part = result["vgg16"]
    assert part.labels.shape == (4,) and part.stats["count"] == 4
    assert 1e-3 <= part.stats["min"] <= part.stats["max"] <= 1.0


def test_survey_histogram_figure(two_models, tmp_path):
    result = survey.noise_survey(two_models[:1], survey.SurveyConfig(num_images=12, seed=0))
    fig = plots.survey_histogram(result.models[0], top=2)
    assert len(fig.axes) == 2
    path = io.save_figure(fig, tmp_path / "hist.png")
    plots.close(fig)
    assert path.stat().st_size > 0
