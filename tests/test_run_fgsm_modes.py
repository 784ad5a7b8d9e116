"""Tests of run_fgsm.py's project, survey and attribute modes, end to end, and their errors."""

import csv
import json
import logging

import keras
import matplotlib.image
import numpy as np
import pytest
from absl import flags
from tiny_imagenet import tiny_imagenet_model

import run_fgsm
from flags import imagenet as imagenet_flags
from tfool import attribution, imagenet, models
from tfool.imagenet import _weights as imagenet_weights

SIZE = 32


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    """A tiny 1,000-class CNN at 32x32 saved as a whole .keras model (a weights file)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    models.save_model(tiny_imagenet_model(size=SIZE).model, path)
    return path


@pytest.fixture()
def png(tmp_path, rng):
    """A 40x50 RGB PNG of random pixels (resized to the model's input by the run)."""
    path = tmp_path / "start.png"
    keras.utils.save_img(path, rng.integers(0, 256, (40, 50, 3)).astype(np.uint8))
    return path


def _flags(out, *args):
    fv = flags.FlagValues()
    run_fgsm.define_flags(fv)
    fv(["run_fgsm", f"--output_dir={out}", "--verbose=0", *args])
    return fv


def _run(out, *args):
    fv = _flags(out, *args)
    run_fgsm.main(["run_fgsm"], fv)
    return fv


def _check_png(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 100 and np.ptp(image) > 0


def _check_top5(predictions):
    probs = [p["probability"] for p in predictions]
    assert len(predictions) == 5 and probs == sorted(probs, reverse=True)
    assert all(0 <= p["index"] < 1000 and p["name"] for p in predictions)


PROJECT = ("--fgsm_mode=project", f"--fgsm_imagenet_image_size={SIZE}")


def test_project_from_grey_with_random_vgg16(tmp_path):
    out = tmp_path / "grey"
    fv = _run(
        out,
        *PROJECT,
        "--fgsm_imagenet_weights=none",
        "--fgsm_project_targets=envelope,3",
        "--fgsm_project_steps=3",
        "--fgsm_project_step_size=4",
    )
    report = json.loads((out / "projection.json").read_text())
    assert report["model"] == "vgg16" and report["weights"] == "none"
    assert report["input_size"] == [SIZE, SIZE] and report["image"] == "grey"
    assert report["config"]["steps"] == 3 and report["config"]["step_size"] == 4.0
    _check_top5(report["top5_before"])
    rows = report["targets"]
    assert [(r["index"], r["name"]) for r in rows] == [(549, "envelope"), (3, "tiger_shark")]
    for row in rows:
        _check_top5(row["top5_after"])
        assert row["reached"] is False and row["steps"] == 3  # random weights: p stays tiny
        assert len(row["target_probs"]) == 4  # the start image and after each step
        assert row["target_probs"][-1] == pytest.approx(row["final_probability"], rel=1e-5)
        assert row["max_abs_change"] > 0
        assert (
            row["max_abs_change"]
            <= row["l2_change"]
            <= row["max_abs_change"] * (3 * SIZE**2) ** 0.5
        )
    start = np.mean([r["target_probs"][0] for r in rows])
    assert np.mean([r["final_probability"] for r in rows]) > start

    arrays = np.load(out / "projection.npz")
    for k, row in enumerate(rows):
        assert row["l2_change"] == pytest.approx(
            np.linalg.norm(arrays["perturbations"][k]), rel=1e-5
        )
    assert np.all(arrays["original"] == imagenet.grey_image(SIZE))
    assert arrays["images"].shape == (2, SIZE, SIZE, 3)
    assert np.allclose(arrays["perturbations"], arrays["images"] - arrays["original"])
    assert arrays["images"].min() >= 0 and arrays["images"].max() <= 255
    _check_png(out / "projection.png")

    replay = flags.FlagValues()
    run_fgsm.define_flags(replay)
    replay(["run_fgsm", f"--flagfile={out / 'fgsm_flags.cfg'}"])
    config = imagenet_flags.projection_experiment(fv)
    assert imagenet_flags.projection_experiment(replay) == config


def test_project_from_a_png_file_with_a_keras_file_and_a_budget(tmp_path, png, tiny_keras):
    out = tmp_path / "png"
    _run(
        out,
        *PROJECT,
        f"--fgsm_imagenet_weights={tiny_keras}",
        f"--fgsm_project_image={png}",
        "--fgsm_project_targets=great white shark",
        "--fgsm_project_steps=4",
        "--fgsm_project_eps=2",
    )
    report = json.loads((out / "projection.json").read_text())
    assert report["image"] == str(png) and report["weights"] == str(tiny_keras)
    (row,) = report["targets"]
    assert row["index"] == 2 and row["steps"] <= 4
    assert 0 < row["max_abs_change"] <= 2 + 1e-4
    arrays = np.load(out / "projection.npz")
    assert np.array_equal(arrays["original"], imagenet.load_image(png, SIZE))
    assert np.abs(arrays["perturbations"]).max() <= 2 + 1e-4
    _check_png(out / "projection.png")


def test_survey_of_two_models(tmp_path, tiny_keras):
    out = tmp_path / "survey"
    _run(
        out,
        "--fgsm_mode=survey",
        f"--fgsm_imagenet_image_size={SIZE}",
        f"--fgsm_survey_models=mobilenet_v2,vgg16={tiny_keras}",
        "--fgsm_survey_weights=none",
        "--fgsm_survey_num_images=6",
        "--fgsm_survey_batch_size=4",
        "--fgsm_survey_noise=uniform",
    )
    report = json.loads((out / "survey.json").read_text())
    assert report["config"]["num_images"] == 6 and report["config"]["noise"] == "uniform"
    assert report["weights"] == {"mobilenet_v2": "none", "vgg16": str(tiny_keras)}
    assert report["input_sizes"] == {"mobilenet_v2": [SIZE, SIZE], "vgg16": [SIZE, SIZE]}
    surveys = {m["name"]: m for m in report["models"]}
    assert list(surveys) == ["mobilenet_v2", "vgg16"]
    for survey in surveys.values():
        assert survey["stats"]["count"] == 6
        assert 0 < survey["stats"]["min"] <= survey["stats"]["mean"] <= survey["stats"]["max"] <= 1
        assert sum(h["count"] for h in survey["histogram"]) == 6

    with open(out / "survey.csv", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["statistic", "mobilenet_v2", "vgg16"]
    assert [row[0] for row in table[1:]] == [
        "count",
        "mean",
        "std",
        "min",
        "25%",
        "50%",
        "75%",
        "max",
    ]
    for row in table[1:]:
        for name, value in zip(table[0][1:], row[1:], strict=True):
            assert float(value) == pytest.approx(surveys[name]["stats"][row[0]], rel=1e-5)
    for name in surveys:
        _check_png(out / f"survey_{name}.png")


def test_attribute_writes_every_method_for_test_and_fgsm_images(tmp_path, model_path):
    out = tmp_path / "attribute"
    _run(
        out,
        "--fgsm_mode=attribute",
        f"--model_path={model_path}",
        "--data_source=sample",
        "--fgsm_num_images=50",
        "--fgsm_attribute_num_images=2",
        "--fgsm_example_eps=0.3",
    )
    report = json.loads((out / "attribution.json").read_text())
    assert report["methods"] == list(attribution.DEFAULT_METHODS) and report["eps"] == 0.3
    rows = report["rows"]
    assert [r["image"] for r in rows] == ["test", "fgsm", "test", "fgsm"]
    for test, fgsm in zip(rows[::2], rows[1::2], strict=True):
        assert test["test_index"] == fgsm["test_index"] and test["label"] == fgsm["label"]
        assert test["predicted"] == test["label"]  # correctly classified test images only
    assert all(0.1 <= r["confidence"] <= 1 for r in rows)
    changed = sum(f["predicted"] != t["predicted"] for t, f in zip(rows[::2], rows[1::2]))
    assert report["fgsm_changed_answer"] == changed
    _check_png(out / "attribution.png")
    assert (out / "fgsm_flags.cfg").is_file()


@pytest.mark.parametrize(
    "args, error, match",
    [
        (["--fgsm_project_targets=envelop"], ValueError, "close matches: envelope"),
        (["--fgsm_imagenet_weights=imagenet"], ConnectionError, "weights=FILE"),
        (["--fgsm_project_image={missing}"], FileNotFoundError, "does not exist"),
        (["--fgsm_project_image={bad}"], ValueError, "not a readable PNG/JPEG image"),
        (["--fgsm_imagenet_weights={missing}"], FileNotFoundError, "no such file"),
    ],
)
def test_bad_project_input_is_a_clear_error(tmp_path, monkeypatch, args, error, match):
    monkeypatch.setattr(
        imagenet_weights, "cached_weights", lambda name: None
    )  # as if never downloaded
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    paths = {"missing": tmp_path / "missing.png", "bad": bad}
    args = [a.format(**paths) for a in args]
    out = tmp_path / "out"
    fv = _flags(out, "--fgsm_mode=project", *args)
    with pytest.raises(error, match=match):
        run_fgsm.main(["run_fgsm"], fv)
    assert not (out / "projection.json").exists()
    if "weights" not in args[0]:  # a bad class or image fails before the folder is made
        assert not out.exists()


def test_library_errors_get_the_flags_that_set_their_arguments(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(imagenet_weights, "cached_weights", lambda name: None)
    fv = _flags(tmp_path, "--fgsm_mode=project", "--fgsm_imagenet_weights=imagenet")
    with caplog.at_level(logging.ERROR):
        assert run_fgsm._main_with_clear_errors(["run_fgsm"], fv) == 2
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "weights=FILE" in record.getMessage()
    assert "(flags: --fgsm_imagenet_weights)" in record.getMessage()


def test_disk_errors_become_one_line_and_exit_code_2(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should go")
    fv = _flags(blocker / "out", "--fgsm_mode=survey")
    with caplog.at_level(logging.ERROR):
        assert run_fgsm._main_with_clear_errors(["run_fgsm"], fv) == 2
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage().startswith("error: ") and str(blocker) in record.getMessage()
    assert record.exc_info is None


def test_errors_become_one_line_and_exit_code_2(tmp_path, caplog):
    fv = _flags(tmp_path, "--fgsm_mode=project", "--fgsm_project_targets=great_whit_shark")
    with caplog.at_level(logging.ERROR):
        assert run_fgsm._main_with_clear_errors(["run_fgsm"], fv) == 2
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = record.getMessage()
    assert message.startswith("error: ") and "great_white_shark (2)" in message
    assert "\n" not in message and record.exc_info is None


def test_a_batch_too_large_for_the_memory_is_refused(tmp_path, caplog, monkeypatch):
    from tfool import _tf

    monkeypatch.setattr(_tf, "available_memory", lambda: 10**6)
    fv = _flags(
        tmp_path / "out",
        "--fgsm_mode=survey",
        f"--fgsm_imagenet_image_size={SIZE}",
        "--fgsm_survey_models=mobilenet_v2",
        "--fgsm_survey_weights=none",
        "--fgsm_survey_batch_size=64",
    )
    with caplog.at_level(logging.ERROR):
        assert run_fgsm._main_with_clear_errors(["run_fgsm"], fv) == 2
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "--fgsm_survey_batch_size=64 needs about" in record.getMessage()
    assert not (tmp_path / "out" / "survey.json").exists()


def test_photos_mode_writes_fgsm_and_attributions(tmp_path, png, tiny_keras):
    out = tmp_path / "photos"
    settings = f"--fgsm_imagenet_image_size={SIZE} --fgsm_photo_ig_steps=3 --fgsm_photo_eps=2,16"
    files = [f"--fgsm_imagenet_weights={tiny_keras}", f"--fgsm_photos={png}"]
    _run(out, "--fgsm_mode=photos", *settings.split(), *files)
    report = json.loads((out / "photos.json").read_text())
    assert report["eps_pixels"] == [2.0, 16.0]
    assert report["attribution_methods"] == ["saliency", "gradient_x_input", "integrated_gradients"]
    (row,) = report["photos"]
    assert row["photo"] == "start.png"
    _check_top5(row["top5"])
    for attacked, eps in zip(row["fgsm"], (2.0, 16.0)):
        _check_top5(attacked["top5"])
        assert attacked["eps_pixels"] == eps
        assert eps - 0.01 <= attacked["linf_pixels"] <= eps + 1e-3  # the sign step, clipped
        assert attacked["clean_class_probability"] <= row["top5"][0]["probability"] + 1e-6
    arrays = np.load(out / "photos.npz")
    assert np.array_equal(arrays["photos"][0], imagenet.load_image(png, SIZE))
    assert arrays["adversarial"].shape == (1, 2, SIZE, SIZE, 3)
    assert arrays["attribution_integrated_gradients"].shape == (2, SIZE, SIZE, 3)
    _check_png(out / "photo_fgsm.png")
    _check_png(out / "photo_attribution.png")


@pytest.mark.parametrize(
    "args, error, match",
    [
        (["--fgsm_photos={missing}"], FileNotFoundError, "does not exist"),
        (["--fgsm_photos={bad}"], ValueError, "not a readable PNG/JPEG image"),
        (["--fgsm_photos=no_such_sample_photo"], FileNotFoundError, "does not exist"),
    ],
)
def test_bad_photos_are_a_clear_error_before_the_model(tmp_path, monkeypatch, args, error, match):
    def no_model(*a, **k):
        raise AssertionError("the model must not load before the photos are checked")

    monkeypatch.setattr(imagenet, "load_imagenet_model", no_model)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    args = [a.format(missing=tmp_path / "missing.png", bad=bad) for a in args]
    out = tmp_path / "out"
    fv = _flags(out, "--fgsm_mode=photos", *args)
    with pytest.raises(error, match=match):
        run_fgsm.main(["run_fgsm"], fv)
    assert not out.exists()  # not even fgsm_flags.cfg


@pytest.mark.parametrize("value", ["0", "300", "nan", "two", ""])
def test_bad_photo_eps_is_refused_at_parse_time(tmp_path, value):
    with pytest.raises(flags.IllegalFlagValueError, match="fgsm_photo_eps"):
        _flags(tmp_path, "--fgsm_mode=photos", f"--fgsm_photo_eps={value}")
