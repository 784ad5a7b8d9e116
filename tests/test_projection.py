"""Tests of tfool.projection: gradient projection in pixel space."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_imagenet import tiny_imagenet_model

from tfool import imagenet, io, plots, projection


@pytest.fixture(scope="module")
def tiny():
    return tiny_imagenet_model()


@pytest.fixture(scope="module")
def vgg16_small():
    keras.utils.set_random_seed(0)
    return imagenet.load_imagenet_model("vgg16", weights=None, input_size=32)


@pytest.fixture()
def start(rng):
    return rng.uniform(40, 215, (16, 16, 3)).astype(np.float32)


@pytest.mark.parametrize("normalize", projection.NORMALIZATIONS)
def test_target_probability_rises_on_average(tiny, start, normalize):
    result = projection.project(
        tiny,
        start,
        ["envelope", 3, "jellyfish"],
        projection.ProjectionConfig(steps=15, step_size=1.0, normalize=normalize),
    )
    mean = result.target_probs.mean(axis=1)
    assert result.target_probs.shape == (16, 3)
    assert np.all(np.diff(mean) >= -1e-7), mean
    assert np.all(result.target_probs[-1] > result.target_probs[0])
    assert result.targets == (
        imagenet.class_index("envelope"),
        3,
        imagenet.class_index("jellyfish"),
    )
    assert result.target_names == ("envelope", "tiger_shark", "jellyfish")


def test_budget_and_pixel_range(tiny, start):
    eps = 3.0
    result = projection.project(
        tiny, start, [1, 2], projection.ProjectionConfig(steps=12, step_size=2.0, eps=eps)
    )
    assert np.all(result.linf <= eps + 1e-4)
    assert result.linf.max() > eps / 2  # the budget was actually used
    assert np.allclose(result.perturbations, result.images - start[None])
    assert result.images.min() >= 0.0 and result.images.max() <= 255.0


def test_clip_range_is_respected(tiny):
    white = np.full((16, 16, 3), 250.0, np.float32)
    result = projection.project(
        tiny, white, 7, projection.ProjectionConfig(steps=5, step_size=20.0, normalize="sign")
    )
    assert result.images.max() <= 255.0
    assert result.images.min() >= 250.0 - 5 * 20.0 - 1e-4


def test_stops_at_threshold(tiny, start):
    first = projection.project(
        tiny, start, [5, 9], projection.ProjectionConfig(steps=1)
    ).target_probs[0]
    threshold = float(first[0]) * 1.02  # target 5 gets there in a few steps
    result = projection.project(
        tiny,
        start,
        [5, 9],
        projection.ProjectionConfig(steps=200, step_size=1.0, threshold=threshold),
    )
    assert result.reached[0]
    assert 0 < result.steps_taken[0] < 200
    column = result.target_probs[:, 0]
    stop = int(result.steps_taken[0])
    assert column[stop] >= threshold
    assert np.all(column[stop:] == column[stop])  # a finished target no longer moves
    assert np.all(column[:stop] < threshold)


def test_all_targets_reached_stops_early(tiny, start):
    result = projection.project(
        tiny, start, [4], projection.ProjectionConfig(steps=50, threshold=1e-6)
    )
    assert result.reached.all()
    assert result.steps_taken.tolist() == [0]
    assert result.target_probs.shape == (1, 1)
    np.testing.assert_array_equal(result.images[0], start)


def test_targets_are_independent(tiny, start):
    together = projection.project(tiny, start, [11, 22], projection.ProjectionConfig(steps=4))
    alone = projection.project(tiny, start, [22], projection.ProjectionConfig(steps=4))
    np.testing.assert_allclose(together.images[1], alone.images[0], atol=1e-3)


def test_grey_start_and_top5(tiny):
    result = projection.project(tiny, None, "envelope", projection.ProjectionConfig(steps=3))
    assert np.all(result.original == 128.0)
    assert len(result.top5_before) == 5 and len(result.top5_after[0]) == 5
    probs = [p.probability for p in result.top5_after[0]]
    assert probs == sorted(probs, reverse=True)
    after = tiny.predict(result.images)[0]
    assert result.top5_after[0][0].index == int(np.argmax(after))


def test_image_file_start(tiny, tmp_path, rng):
    pixels = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)
    path = tmp_path / "start.png"
    keras.utils.save_img(path, pixels)
    result = projection.project(tiny, path, 0, projection.ProjectionConfig(steps=2))
    assert result.original.shape == (16, 16, 3)
    np.testing.assert_allclose(result.original, imagenet.load_image(path, 16))


def test_bad_image_files(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        projection.project(tiny, tmp_path / "missing.png", 0)
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    with pytest.raises(ValueError, match="not a readable PNG/JPEG"):
        projection.project(tiny, fake, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps=0"),
        ({"step_size": -1.0}, "step_size=-1.0"),
        ({"eps": 0.0}, "eps=0.0"),
        ({"threshold": 0.0}, "threshold=0.0"),
        ({"normalize": "l3"}, "normalize='l3'"),
        ({"clip_min": 10.0, "clip_max": 5.0}, "clip_min=10.0"),
        ({"target": "envelop"}, "close matches: envelope"),
        ({"target": []}, "target is empty"),
        ({"image": np.zeros((8, 8, 3))}, r"shape \(8, 8, 3\)"),
        ({"image": np.full((16, 16, 3), 300.0)}, "outside"),
    ],
)
def test_bad_arguments(tiny, start, kwargs, match):
    args = {"image": start, "target": 1, **kwargs}
    settings = {k: args.pop(k) for k in list(args) if k in CONFIG_FIELDS}
    with pytest.raises(ValueError, match=match):
        projection.project(tiny, config=projection.ProjectionConfig(**settings), **args)


CONFIG_FIELDS = {f.name for f in dataclasses.fields(projection.ProjectionConfig)}


def test_vgg16_projection_rises_within_budget(vgg16_small, rng):
    image = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    result = projection.project(
        vgg16_small, image, ["envelope", "ostrich"], projection.ProjectionConfig(steps=3, eps=2.0)
    )
    assert np.all(np.diff(result.target_probs.mean(axis=1)) > 0)
    assert np.all(result.linf <= 2.0 + 1e-4)


def test_projection_grid_figure(tiny, tmp_path):
    result = projection.project(tiny, None, [1, 2], projection.ProjectionConfig(steps=2))
    fig = plots.projection_grid(result)
    assert len(fig.axes) == 6
    path = io.save_figure(fig, tmp_path / "grid.png")
    plots.close(fig)
    assert path.stat().st_size > 0


def test_strategy_gives_the_same_result(tiny, start):
    plain = projection.project(tiny, start, [3, 4], projection.ProjectionConfig(steps=3))
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    dist = projection.project(
        tiny, start, [3, 4], projection.ProjectionConfig(steps=3), strategy=strategy
    )
    np.testing.assert_allclose(dist.images, plain.images, atol=1e-4)
    np.testing.assert_allclose(dist.target_probs, plain.target_probs, rtol=1e-5)
