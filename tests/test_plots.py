"""tfool.plots: the attribution heat maps and the backworking scaling figure."""

import itertools

import numpy as np
import pytest
from PIL import Image

from tfool import io, plots


@pytest.fixture()
def image_and_attr():
    rng = np.random.default_rng(0)
    return rng.random((8, 8, 1)), rng.normal(size=(8, 8, 1))


def test_normalize_uses_captum_cumulative_sum_threshold():
    attr = np.array([[1.0, 1.0], [2.0, 96.0]])
    # Mass 100: 98% of it lies up to and including the 96, so 96 is the scale.
    np.testing.assert_allclose(plots.normalize_attribution(attr, "absolute_value", 2.0), attr / 96)
    # 50%: the cumulative sum passes 50 only at 96 as well; at 1% it passes at the first 1.
    np.testing.assert_allclose(
        plots.normalize_attribution(attr, "absolute_value", 99.0), np.ones_like(attr)
    )


@pytest.mark.parametrize("sign", plots.ATTR_SIGNS)
def test_normalize_keeps_the_sign_asked_for(sign):
    attr = np.random.default_rng(1).normal(size=(6, 6, 3))
    norm = plots.normalize_attribution(attr, sign, outlier_perc=0.0)
    combined = attr.sum(axis=2)
    assert norm.shape == (6, 6)
    assert norm.min() >= (-1.0 if sign == "all" else 0.0) and norm.max() <= 1.0
    if sign == "positive":
        assert np.all(norm[combined <= 0] == 0) and np.all(norm[combined > 0] > 0)
    if sign == "negative":
        assert np.all(norm[combined >= 0] == 0) and np.all(norm[combined < 0] > 0)
    if sign == "all":
        np.testing.assert_array_equal(np.sign(norm), np.sign(combined))
    assert np.isclose(np.abs(norm).max(), 1.0)  # no outliers clipped: the largest is 1


def test_outlier_clipping_saturates_the_largest_values():
    attr = np.arange(1.0, 101.0).reshape(10, 10)
    saturated = [
        np.sum(plots.normalize_attribution(attr, outlier_perc=p) == 1.0) for p in (0, 5, 30)
    ]
    assert saturated[0] == 1 and saturated[0] < saturated[1] < saturated[2]


def test_normalize_all_zero_and_errors():
    assert not np.any(plots.normalize_attribution(np.zeros((3, 3)), "all"))
    assert not np.any(plots.normalize_attribution(-np.ones((3, 3)), "positive"))
    with pytest.raises(ValueError, match="sign='both'"):
        plots.normalize_attribution(np.ones((3, 3)), "both")
    with pytest.raises(ValueError, match="outlier_perc=100"):
        plots.normalize_attribution(np.ones((3, 3)), outlier_perc=100)
    with pytest.raises(ValueError, match="attr has shape"):
        plots.normalize_attribution(np.ones(3))


@pytest.mark.parametrize("method,sign", itertools.product(plots.ATTR_VIEWS, plots.ATTR_SIGNS))
def test_visualize_image_attr_views(image_and_attr, method, sign):
    image, attr = image_and_attr
    fig = plots.visualize_image_attr(
        attr, image, method=method, sign=sign, show_colorbar=True, title="t"
    )
    try:
        ax = fig.axes[0]
        expected_images = {"original_image": 1, "heat_map": 1, "blended_heat_map": 2}[method]
        assert len(ax.images) == expected_images
        assert len(fig.axes) == (1 if method == "original_image" else 2)  # + colour bar
        if method == "blended_heat_map":
            assert ax.images[-1].get_alpha() == 0.5
        if method != "original_image":
            lo, hi = ax.images[-1].get_clim()
            assert (lo, hi) == ((-1.0, 1.0) if sign == "all" else (0.0, 1.0))
    finally:
        plots.close(fig)


def test_visualize_image_attr_errors(image_and_attr):
    image, attr = image_and_attr
    with pytest.raises(ValueError, match="method='masked'"):
        plots.visualize_image_attr(attr, image, method="masked")
    with pytest.raises(ValueError, match="needs original_image"):
        plots.visualize_image_attr(attr, method="blended_heat_map")
    with pytest.raises(ValueError, match="same height and width"):
        plots.visualize_image_attr(attr, image[:4], method="blended_heat_map")


def test_attribution_comparison_figure_layout(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.random((3, 8, 8, 1))
    attrs = {"saliency": rng.random((3, 8, 8, 1)), "occlusion": rng.normal(size=(3, 8, 8, 1))}
    fig = plots.attribution_comparison_figure(
        images, attrs, titles=["a", "b", "c"], sign={"occlusion": "all"}, suptitle="s"
    )
    try:
        assert len(fig.axes) == 3 * 3
        headers = [ax.get_title() for ax in fig.axes[:3]]
        assert headers == ["input", "saliency\n(absolute_value)", "occlusion\n(all)"]
        assert [fig.axes[3 * r].get_ylabel() for r in range(3)] == ["a", "b", "c"]
        path = io.save_figure(fig, tmp_path / "attribution.png")
        assert path.stat().st_size > 0
    finally:
        plots.close(fig)
    with pytest.raises(ValueError, match="attributions\\['saliency'\\] has shape"):
        plots.attribution_comparison_figure(images, {"saliency": np.zeros((2, 8, 8, 1))})
    with pytest.raises(ValueError, match="titles has 1 entries"):
        plots.attribution_comparison_figure(images, attrs, titles=["a"])
    with pytest.raises(ValueError, match="attributions is empty"):
        plots.attribution_comparison_figure(images, {})


def test_training_frames_and_gif(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.random((2, 8, 8, 1))
    grads = rng.normal(size=(4, 2, 8, 8, 1))
    frames = plots.training_attribution_frames(
        images, grads, np.cumsum(grads, axis=0), ["start", "1", "2", "3"]
    )
    assert len(frames) == 4 and frames[0].dtype == np.uint8 and frames[0].shape[-1] == 3
    assert not np.array_equal(frames[0], frames[3])
    path = plots.save_gif(frames, tmp_path / "a.gif", duration_ms=50)
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.size == frames[0].shape[1::-1]
    with pytest.raises(ValueError, match="labels do not match"):
        plots.training_attribution_frames(images, grads, grads, ["x"])
    with pytest.raises(ValueError, match="frames is empty"):
        plots.save_gif([], tmp_path / "b.gif")


def test_backwork_scaling_figure():
    by_refs = [
        {"ref_per_label": n, "step_s": 0.01 * n / 100 + 0.05, "floor_s": 0.001 * n / 100}
        for n in (600, 3000, 6000)
    ]
    by_examples = [{"examples_per_label": e, "step_s": 0.2 + 0.01 * e} for e in (8, 16, 32)]
    fig = plots.backwork_scaling(by_refs, by_examples)
    left, right = fig.axes
    assert len(left.lines) == 2 and len(right.lines) == 2
    np.testing.assert_allclose(left.lines[0].get_ydata(), [1e3 * r["step_s"] for r in by_refs])
    assert [t.get_text() for t in left.texts] == [
        f"{r['step_s'] / r['floor_s']:.1f}x" for r in by_refs
    ]
    plots.close(fig)


def _drawn(fig):
    """The arrays the grid's axes draw, in order."""
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes]


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_image_grid_draws_any_channel_count(channels):
    """Grey and RGB as they are; other counts (never taken for alpha) as a grey mean."""
    images = np.random.default_rng(4).random((2, 3, 6, 5, channels))
    fig = plots.image_grid(images, row_labels=["a", "b"])
    try:
        drawn = _drawn(fig)
        assert len(drawn) == 6
        first = images[0, 0]
        if channels == 3:
            assert drawn[0].shape == (6, 5, 3)
            np.testing.assert_allclose(drawn[0], first)
        else:
            assert drawn[0].shape == (6, 5)
            np.testing.assert_allclose(drawn[0], first.mean(axis=-1))
    finally:
        plots.close(fig)


def test_image_grid_maps_the_pixel_range_of_rgb_images():
    """vmin / vmax set the drawn range of RGB images too (matplotlib would ignore them)."""
    images = np.zeros((1, 2, 2, 2, 3))
    images[0, 0, 0, 0] = (-1.0, 0.0, 1.0)
    images[0, 1] = 0.25
    fig = plots.image_grid(images, vmin=-1.0, vmax=1.0)
    try:
        drawn = _drawn(fig)
        np.testing.assert_allclose(drawn[0][0, 0], (0.0, 0.5, 1.0))
        np.testing.assert_allclose(drawn[1], 0.625)
    finally:
        plots.close(fig)
    fig = plots.image_grid(images, vmin=None, vmax=None)  # each image's own range
    try:
        drawn = _drawn(fig)
        assert drawn[0].min() == 0.0 and drawn[0].max() == 1.0
        np.testing.assert_allclose(drawn[1], 0.0)  # a flat image
    finally:
        plots.close(fig)


def test_image_grid_rows_make_room_for_multi_line_titles():
    images = np.zeros((2, 2, 4, 4))
    heights = []
    for title in ("one line", "two\nlines", "three\nlines\nhere"):
        fig = plots.image_grid(images, titles=[[title] * 2] * 2)
        heights.append(fig.get_size_inches()[1])
        plots.close(fig)
    assert heights[0] < heights[1] < heights[2]
