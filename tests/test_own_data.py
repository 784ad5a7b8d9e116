"""Your own data and model through both run scripts, end to end and in process: RGB arrays
of 4 named classes, a folder of PNGs, a Keras model of your own ending in a softmax, and a
cached model made for other data."""

import json
import logging
import os

import keras
import matplotlib.image
import numpy as np
import pytest
from PIL import Image

import run_backwork
from tfool import backwork, classifier, data, models, plots
from tfool.plots import _grid as plots_grid

#: The synthetic RGB classes: every image is its class's colour plus noise.
COLOURS = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.8, 0.1),
    "blue": (0.1, 0.2, 0.9),
    "grey": (0.5, 0.5, 0.5),
}
NAMES = list(COLOURS)
SIZE = 16
#: A quick run: few images and steps, the figures' attributions on few points.
QUICK = [
    "--backwork_num_examples=2",
    "--backwork_max_num_steps=3",
    "--nobackwork_jit_compile",
    "--train_epochs=3",
    "--batch_size=16",
]
#: What run_backwork.py writes: its figures, drawn in colour for RGB data, and the rest.
FIGURES = ("backworked.png", "worst_train.png", "salient.png", "attribution.png")
OUTPUTS = (*FIGURES, "images.npz", "summary.json", "flags.cfg")


def _coloured(rng, colours, per_class, shape):
    x, y = [], []
    for k, colour in enumerate(colours):
        noise = 0.15 * rng.standard_normal((per_class, *shape, 3))
        x.append(np.clip(np.asarray(colour) + noise, 0.0, 1.0).astype(np.float32))
        y.append(np.full(per_class, k))
    x, y = np.concatenate(x), np.concatenate(y)
    order = rng.permutation(len(y))
    return x[order], y[order]


@pytest.fixture(scope="module")
def rgb_npz(tmp_path_factory):
    """``rgb.npz``: 16x16 RGB images of 4 named classes, 24 train / 8 test per class."""
    rng = np.random.default_rng(0)
    x_train, y_train = _coloured(rng, COLOURS.values(), 24, (SIZE, SIZE))
    x_test, y_test = _coloured(rng, COLOURS.values(), 8, (SIZE, SIZE))
    path = tmp_path_factory.mktemp("data") / "rgb.npz"
    np.savez(
        path,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=np.array(NAMES),
    )
    return path


@pytest.fixture(scope="module")
def rgb_model(rgb_npz, tmp_path_factory):
    """A small reference CNN trained on ``rgb.npz`` and cached with its data record."""
    path = tmp_path_factory.mktemp("models") / "rgb_cnn.keras"
    models.get_or_train(
        path,
        data.load_arrays(rgb_npz),
        models.TrainConfig(epochs=3, batch_size=16, verbose=0),
        build_kwargs=dict(conv_filters=(8, 16), fc_units=64),
    )
    return path


@pytest.fixture(scope="module")
def own_model(rgb_npz, tmp_path_factory):
    """A functional RGB model of one's own ending in ``Dense(4, activation="softmax")``,
    trained briefly, saved without a data record."""
    ds = data.load_arrays(rgb_npz)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="mine")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(ds.x_train, ds.y_train, epochs=3, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("own") / "mine.keras"
    model.save(path)
    return path


class _Figures:
    """Records the row labels and titles of every figure the reports draw."""

    def __init__(self, monkeypatch):
        self.grids, self.attributions, self.examples = [], [], []
        grid, attr, examples = (
            plots.image_grid,
            plots.attribution_comparison_figure,
            plots.attack_examples,
        )

        def spy_grid(images, titles=None, row_labels=None, suptitle=None, **kw):
            self.grids.append((np.shape(images), row_labels, suptitle))
            return grid(images, titles, row_labels, suptitle, **kw)

        def spy_attr(images, attributions, titles=None, **kw):
            self.attributions.append(titles)
            return attr(images, attributions, titles, **kw)

        def spy_examples(originals, adversarials, titles, original_titles, eps, **kw):
            self.examples.append(original_titles)
            return examples(originals, adversarials, titles, original_titles, eps, **kw)

        monkeypatch.setattr(plots, "image_grid", spy_grid)
        monkeypatch.setattr(plots_grid, "image_grid", spy_grid)  # the grids drawn through it
        monkeypatch.setattr(plots, "attribution_comparison_figure", spy_attr)
        monkeypatch.setattr(plots, "attack_examples", spy_examples)


def _coloured_share(path) -> float:
    """The share of a PNG's pixels whose channels differ clearly: 0 for grey figures."""
    image = matplotlib.image.imread(path)[..., :3]
    return float(np.mean(np.ptp(image, axis=-1) > 0.25))


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _check_outputs(out, labels, image_shape, num_examples, class_names):
    """Every backworking output is there; the summary and the arrays fit the data."""
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert [r["label"] for r in summary["labels"]] == list(labels)
    assert [r["name"] for r in summary["labels"]] == [class_names[k] for k in labels]
    assert summary["class_names"] == list(class_names)
    result = backwork.load_result(out / "images.npz")
    assert result.images.shape == (len(labels), num_examples, *image_shape)
    assert result.probabilities.shape == (len(labels), num_examples, len(class_names))
    assert 0 <= result.images.min() and result.images.max() <= 1
    assert list(result.layer_names) == summary["layer_names"]
    return summary, result


def test_rgb_arrays_train_the_reference_cnn_and_write_every_output(
    rgb_npz, tmp_path, monkeypatch, caplog, backwork_main, parse_backwork_flags
):
    monkeypatch.chdir(tmp_path)  # the default model path, out/models/rgb_cnn.keras, is here
    figures = _Figures(monkeypatch)
    argv = ["--dataset=arrays", f"--data_dir={rgb_npz}", "--output_dir=run", *QUICK]
    with caplog.at_level(logging.INFO):
        assert backwork_main(argv) == 0
    assert not _errors(caplog)

    model_path = tmp_path / "out" / "models" / "rgb_cnn.keras"
    record = json.loads(models.record_path(model_path).read_text())
    assert record["dataset"] == "rgb" and record["source"] == "arrays"
    assert record["image_shape"] == [SIZE, SIZE, 3] and record["class_names"] == NAMES
    model = models.load_model(model_path)
    assert tuple(model.inputs[0].shape) == (None, SIZE, SIZE, 3)
    assert tuple(model.outputs[0].shape) == (None, 4)

    out = tmp_path / "run"
    # the default labels, the first ten classes, are all 4 classes of this data
    summary, result = _check_outputs(out, range(4), (SIZE, SIZE, 3), 2, NAMES)
    assert summary["layer_names"] == list(classifier.default_layer_names(model))
    assert summary["layer_names"][0] == "inputs" and len(summary["layer_names"]) == 5
    assert summary["dataset"] == "rgb" and summary["model_path"] == "out/models/rgb_cnn.keras"
    assert 0.5 <= summary["model_accuracy"] <= 1
    np.testing.assert_allclose(result.probabilities.sum(-1), 1.0, atol=1e-5)

    # RGB images are drawn in colour, the rows named after the classes
    for name in FIGURES:
        assert _coloured_share(out / name) > 0.05, name
    grids = {suptitle.split(":")[0]: (shape, rows) for shape, rows, suptitle in figures.grids}
    assert set(grids) == {
        "backworked images",
        "training images the model classifies worst",
        "salient features",
    }
    for shape, rows in grids.values():
        assert shape == (4, 2, SIZE, SIZE, 3) and list(rows) == NAMES
    (titles,) = figures.attributions
    assert [t.split(":")[0] for t in titles] == NAMES
    # flags.cfg holds the default labels; replayed, they still mean every class
    replay = parse_backwork_flags([f"--flagfile={out / 'flags.cfg'}"])
    assert replay.dataset == "arrays" and replay.data_dir == str(rgb_npz)
    assert run_backwork._labels(NAMES, None) == (0, 1, 2, 3)


def test_rgb_retraining_with_the_extra_class(rgb_npz, rgb_model, tmp_path, backwork_main):
    # the uniform mode's rounds are run end to end in tests/test_flags_retrain.py
    out = tmp_path / "run"
    argv = [
        "--dataset=arrays",
        f"--data_dir={rgb_npz}",
        f"--model_path={rgb_model}",
        f"--output_dir={out}",
        "--backwork_labels=red,green,blue,grey",
        *QUICK,
        "--retrain_rounds=1",
        "--retrain_mode=extra_class",
        "--retrain_epochs=1",
        "--retrain_num_zero=4",
        "--retrain_num_noise=4",
        "--retrain_max_num_steps=3",
        "--retrain_fooling_budget=2",
        "--retrain_fooling_examples=1",  # one row per label: no batch cost
        "--retrain_fgsm_eps=0.1",
    ]
    assert backwork_main(argv) == 0
    _check_outputs(out, range(4), (SIZE, SIZE, 3), 2, NAMES)
    for mode, outputs in (("extra_class", 5),):
        where = out / "retrain" / mode
        summary = json.loads((where / "retrain.json").read_text())
        assert [r["round"] for r in summary["records"]] == [0, 1]
        assert [r["fooling"]["rows"] for r in summary["records"]] == [4, 4]
        for r in summary["records"]:
            assert 0 <= r["test_accuracy"] <= 1 and len(r["fgsm_accuracy"]) == 1
        trained = models.load_model(where / "round_1" / "model.keras")
        assert tuple(trained.inputs[0].shape) == (None, SIZE, SIZE, 3)
        assert tuple(trained.outputs[0].shape) == (None, outputs)
        fresh = backwork.load_result(where / "round_1" / "backwork.npz")
        assert fresh.images.shape == (4, 2, SIZE, SIZE, 3)
        assert fresh.probabilities.shape[-1] == outputs
        for name in ("retrain.png", "round_0/backworked.png", "round_1/backworked.png"):
            assert (where / name).stat().st_size > 0, name
    table = json.loads((out / "retrain" / "retrain_modes.json").read_text())
    assert set(table) == {"extra_class", "settings"}
    assert _coloured_share(out / "retrain" / "retrain_images.png") > 0.05


def test_rgb_fgsm_sweep_and_attributions(rgb_npz, rgb_model, tmp_path, monkeypatch, fgsm_main):
    figures = _Figures(monkeypatch)
    common = ["--dataset=arrays", f"--data_dir={rgb_npz}", f"--model_path={rgb_model}"]
    out = tmp_path / "sweep"
    sweep = [
        f"--output_dir={out}",
        "--fgsm_methods=fgsm,bim",
        "--fgsm_eps=0,0.1",
        "--fgsm_steps=2",
        "--fgsm_num_examples=2",
    ]
    assert fgsm_main([*common, *sweep]) == 0
    report = json.loads((out / "robustness.json").read_text())
    ds = data.load_arrays(rgb_npz)
    assert report["dataset"] == "rgb" and report["class_names"] == NAMES
    assert report["num_images"] == len(ds.x_test) == 32
    assert report["clean_accuracy"] == pytest.approx(
        models.evaluate(models.load_model(rgb_model), ds.x_test, ds.y_test)
    )
    assert "goodfellow_fgsm_error_at_0_25" not in report  # MNIST's numbers, not this data's
    assert sum(report["gradient_sign_image"]["predicted_class_counts"]) == 32
    assert len(report["gradient_sign_image"]["predicted_class_counts"]) == 4
    for name in ("robustness.csv", "fgsm_flags.cfg"):
        assert (out / name).stat().st_size > 0
    assert _coloured_share(out / "examples.png") > 0.05
    (originals,) = figures.examples
    assert len(originals) == 2
    for title in originals:  # "<label>: <answer> (<p>%)", both class names
        label, answer = title.split(": ")
        assert label in NAMES and answer.split(" (")[0] == label

    out = tmp_path / "attribute"
    attribute = [
        f"--output_dir={out}",
        "--fgsm_mode=attribute",
        "--fgsm_attribute_num_images=2",
        "--fgsm_attribute_methods=saliency,integrated_gradients,occlusion",
    ]
    assert fgsm_main([*common, *attribute]) == 0
    found = json.loads((out / "attribution.json").read_text())
    assert found["class_names"] == NAMES and found["methods"] == [
        "saliency",
        "integrated_gradients",
        "occlusion",
    ]
    assert [r["image"] for r in found["rows"]] == ["test", "fgsm", "test", "fgsm"]
    assert all(0 <= r["label"] < 4 and 0 <= r["predicted"] < 4 for r in found["rows"])
    assert _coloured_share(out / "attribution.png") > 0.05
    (titles,) = figures.attributions
    for title in titles:
        assert title.split("answer ")[-1].split(" (")[0] in NAMES


def test_a_folder_of_pngs(tmp_path, monkeypatch, backwork_main):
    folder = tmp_path / "paints"
    rng = np.random.default_rng(1)
    colours = {"cyan": (0, 200, 200), "magenta": (200, 0, 200), "yellow": (220, 220, 0)}
    counts = {"cyan": 6, "magenta": 6, "yellow": 3}  # yellow: 2 training images only
    for name, colour in colours.items():
        (folder / name).mkdir(parents=True)
        for i in range(counts[name]):
            pixels = np.clip(np.asarray(colour) + rng.normal(0, 30, (12, 10, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    figures = _Figures(monkeypatch)
    argv = [
        "--dataset=folder",
        f"--data_dir={folder}",
        "--output_dir=run",
        *QUICK,
        "--backwork_num_examples=3",
    ]
    assert backwork_main(argv) == 0
    names = sorted(colours)
    record = json.loads((tmp_path / "out" / "models" / "paints_cnn.keras.json").read_text())
    assert record["image_shape"] == [12, 10, 3] and record["class_names"] == names
    assert record["source"] == "folder"
    _check_outputs(tmp_path / "run", range(3), (12, 10, 3), 3, names)
    worst = [shape for shape, _, title in figures.grids if title.startswith("training")]
    assert worst == [(3, 2, 12, 10, 3)]  # as many per row as the smallest class has
    assert _coloured_share(tmp_path / "run" / "backworked.png") > 0.05


def test_an_own_model_ending_in_a_softmax(
    rgb_npz, own_model, tmp_path, caplog, backwork_main, fgsm_main
):
    model = models.load_model(own_model)
    ds = data.load_arrays(rgb_npz)
    common = ["--dataset=arrays", f"--data_dir={rgb_npz}", f"--model_path={own_model}"]
    out = tmp_path / "backwork"
    with caplog.at_level(logging.INFO):
        assert backwork_main([*common, f"--output_dir={out}", *QUICK]) == 0
    summary, result = _check_outputs(out, range(4), (SIZE, SIZE, 3), 2, NAMES)
    layers = list(classifier.default_layer_names(model))
    assert summary["layer_names"] == layers == ["image", "conv", "probabilities"]
    assert any(f"exposed layers of mine: {', '.join(layers)}" in m for m in caplog.messages)
    # the model's own probabilities: its softmax is read, never applied twice
    images = result.images.reshape(-1, SIZE, SIZE, 3)
    expected = model.predict(images, verbose=0).reshape(result.probabilities.shape)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    for row, probs in zip(summary["labels"], expected, strict=True):
        assert row["mean_target_prob"] == pytest.approx(probs[:, row["label"]].mean(), abs=1e-5)
    clean = model.predict(ds.x_test, verbose=0)
    assert summary["model_accuracy"] == pytest.approx(np.mean(clean.argmax(-1) == ds.y_test))

    out = tmp_path / "sweep"
    sweep = [f"--output_dir={out}", "--fgsm_methods=fgsm", "--fgsm_eps=0,0.1", "--verbose=0"]
    assert fgsm_main([*common, *sweep]) == 0
    report = json.loads((out / "robustness.json").read_text())
    confident = clean.max(-1).mean()
    assert confident > 0.9  # a second softmax would flatten 4 classes below 0.48
    assert report["clean_mean_confidence"] == pytest.approx(confident, abs=1e-5)
    (clean_row,) = [r for r in report["rows"] if r["eps"] == 0]
    assert clean_row["accuracy"] == pytest.approx(np.mean(clean.argmax(-1) == ds.y_test))
    wrong = clean.argmax(-1) != ds.y_test
    if wrong.any():
        assert clean_row["mean_wrong_confidence"] == pytest.approx(clean[wrong].max(-1).mean())


def test_a_model_cached_for_other_data_is_refused(
    rgb_npz, mnist_sample, tmp_path, caplog, backwork_main, fgsm_main
):
    path = tmp_path / "models" / "cnn.keras"
    models.get_or_train(
        path,
        mnist_sample.head(100, 20),
        models.TrainConfig(epochs=1, verbose=0),
        build_kwargs=dict(conv_filters=(2, 2), fc_units=4),
    )
    before = (path.stat().st_mtime_ns, models.record_path(path).read_text())
    common = ["--dataset=arrays", f"--data_dir={rgb_npz}", f"--model_path={path}"]
    for run, out in ((backwork_main, tmp_path / "b"), (fgsm_main, tmp_path / "f")):
        caplog.clear()
        args = [*common, f"--output_dir={out}"]
        with caplog.at_level(logging.INFO):
            status = run(args)
        assert status == 2
        (message,) = _errors(caplog)
        assert "\n" not in message and f"the cached model at {path} was trained on other " in (
            message
        )
        assert "image_shape [28, 28, 1] (the data: [16, 16, 3])" in message
        assert not any(m.startswith("trained ") for m in caplog.messages)  # nothing trained
        assert not out.exists()  # nothing written, not even flags.cfg
    assert (path.stat().st_mtime_ns, models.record_path(path).read_text()) == before
    assert sorted(os.listdir(path.parent)) == ["cnn.keras", "cnn.keras.json"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backwork_labels=green,7"], "--backwork_labels: [7] is not among the model's 4 "),
        (["--backwork_labels=purple"], "'purple' is not a class name"),
    ],
    ids=["index", "name"],
)
def test_labels_outside_the_classes_fail_before_any_training(
    rgb_npz, tmp_path, caplog, backwork_main, args, message
):
    untrained = tmp_path / "never.keras"  # trained if the check came late
    out = tmp_path / "o"
    argv = ["--dataset=arrays", f"--data_dir={rgb_npz}", f"--model_path={untrained}", *QUICK]
    with caplog.at_level(logging.INFO):
        assert backwork_main([*argv, f"--output_dir={out}", *args]) == 2
    (error,) = _errors(caplog)
    assert message in error
    assert not untrained.exists() and not out.exists()
    assert not any("backworking" in m for m in caplog.messages)


def test_a_target_class_outside_the_classes_fails_before_any_training(
    rgb_npz, tmp_path, caplog, fgsm_main
):
    untrained = tmp_path / "never.keras"
    out = tmp_path / "o"
    argv = [
        "--dataset=arrays",
        f"--data_dir={rgb_npz}",
        f"--model_path={untrained}",
        f"--output_dir={out}",
        "--fgsm_targeted",
        "--fgsm_target_class=7",
    ]
    with caplog.at_level(logging.INFO):
        assert fgsm_main(argv) == 2
    (error,) = _errors(caplog)
    assert "--fgsm_target_class=7 is not a class of rgb; expected 0..3" in error
    assert not untrained.exists() and not out.exists()


@pytest.mark.parametrize(
    "value, labels",
    [("5,7", (1, 2)), ("3", (0,)), ("0,2", (0, 2)), ("0,1,2,3,4,5,6,7,8,9", (0, 1, 2))],
    ids=["names", "name_not_index", "indices", "default"],
)
def test_labels_name_the_classes_of_an_image_folder_named_with_numbers(
    parse_backwork_flags, value, labels
):
    """Folders 3, 5, 7: a label that is a class name is that class, others are indices."""
    parse_backwork_flags([f"--backwork_labels={value}"])
    assert run_backwork._labels(("3", "5", "7"), None) == labels
