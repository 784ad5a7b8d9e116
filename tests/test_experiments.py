"""tfool.experiments: the attack sweep and the attribution comparison as library calls."""

import dataclasses

import numpy as np
import pytest

from tfool import attacks, experiments
from tfool.experiments import AttackExperimentConfig

SMALL = AttackExperimentConfig(
    methods=("fgsm", "random"),
    eps_values=(0.0, 0.2),
    num_images=40,
    num_examples=2,
    attribute_num_images=2,
    attribute_methods=("saliency", "gradient_x_input"),
)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"methods": ("fgsm", "deepfool")}, "methods="),
        ({"methods": ("fgsm", "fgsm")}, "methods="),
        ({"attribute_methods": ()}, "attribute_methods="),
        ({"eps_values": ()}, "eps_values="),
        ({"eps_values": (0.1, float("nan"))}, "eps_values="),
        ({"example_eps": float("inf")}, "example_eps=inf"),
        ({"step_size": float("nan")}, "step_size=nan"),
        ({"step_size": 0.0}, "step_size=0.0"),
        ({"steps": 0}, "steps=0"),
        ({"num_images": 0}, "num_images=0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"target_class": 3}, "needs targeted=True"),
        ({"target_class": -1, "targeted": True}, "target_class=-1"),
        ({"seed": -1}, "seed=-1"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"seed": True}, "seed=True"),
    ],
)
def test_config_names_the_bad_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttackExperimentConfig(**kwargs)


def test_attack_options_follow_the_targeting():
    labels = np.array([1, 2])
    plain = AttackExperimentConfig().attack_options(labels)
    assert plain["y"] is labels and not plain["targeted"] and not plain["least_likely"]
    toward = AttackExperimentConfig(targeted=True, target_class=4).attack_options(labels)
    assert toward == {"y": 4, "targeted": True, "least_likely": False}
    least = AttackExperimentConfig(targeted=True).attack_options(labels)
    assert least == {"y": None, "targeted": False, "least_likely": True}


def test_attack_sweep_reports_what_the_attacks_do(small_cnn, small_data):
    seen = []
    config = dataclasses.replace(SMALL, seed=1)
    found = experiments.attack_sweep(small_cnn, small_data, config, callback=seen.append)
    assert found.num_images == 40 and found.dataset_name == small_data.name
    assert [(r.method, r.eps) for r in seen] == [
        (m, e) for m in SMALL.methods for e in SMALL.eps_values
    ]
    x, y = small_data.x_test[:40], small_data.y_test[:40]
    clean = float(np.mean(attacks.probabilities(small_cnn, x).argmax(-1) == y))
    assert found.report["clean_accuracy"] == pytest.approx(clean)
    rows = {(r["method"], r["eps"]): r["accuracy"] for r in found.report["rows"]}
    assert rows["fgsm", 0.0] == pytest.approx(clean)
    assert rows["fgsm", 0.2] < clean  # FGSM at 0.2 hurts the small CNN
    ex = found.examples
    assert set(ex.adversarial) == {"fgsm", "random"} and len(ex.images) == 2
    for adv in ex.adversarial.values():
        assert np.abs(adv - ex.images).max() <= SMALL.example_eps + 1e-6
    gsi = found.report["gradient_sign_image"]
    assert gsi["predicted_class_counts"].sum() == 40 and 0 <= gsi["mean_confidence"] <= 1


def test_the_seed_lives_in_the_config(small_cnn, small_data):
    config = dataclasses.replace(SMALL, methods=("random",), eps_values=(0.3,), num_examples=1)
    assert config.hyperparameters() == {"steps": 5, "step_size": None, "seed": 0}
    seeded = dataclasses.replace(config, seed=7)
    assert seeded.hyperparameters()["seed"] == 7
    inside = experiments.attack_sweep(small_cnn, small_data, seeded)
    other = experiments.attack_sweep(small_cnn, small_data, config)
    images = inside.examples.images
    direct = attacks.attack("random", small_cnn, images, config.example_eps, steps=5, seed=7)
    np.testing.assert_array_equal(inside.examples.adversarial["random"], direct)
    assert not np.array_equal(
        inside.examples.adversarial["random"], other.examples.adversarial["random"]
    )


def test_attribution_pairs_test_and_fgsm_images(small_cnn, small_data):
    found = experiments.attribute_test_and_fgsm(small_cnn, small_data, SMALL)
    assert found.images.shape == (4, *small_data.image_shape)
    assert set(found.attributions) == {"saliency", "gradient_x_input"}
    test, fgsm = found.images[0::2], found.images[1::2]
    assert np.abs(fgsm - test).max() == pytest.approx(SMALL.example_eps, abs=1e-6)
    assert [r["image"] for r in found.report["rows"]] == ["test", "fgsm"] * 2
    assert 0 <= found.changed <= 2 and found.report["fgsm_changed_answer"] == found.changed


def test_attribution_needs_a_correct_answer(small_cnn, small_data):
    wrong = dataclasses.replace(
        small_data, y_test=(small_cnn.predict(small_data.x_test[:5], verbose=0).argmax(-1) + 1) % 10
    )
    config = dataclasses.replace(SMALL, num_images=5)
    with pytest.raises(ValueError, match="none of the first 5 test images"):
        experiments.attribute_test_and_fgsm(small_cnn, wrong, config)


def test_photo_attacks_move_away_from_the_top_class(rng):
    from tiny_imagenet import tiny_imagenet_model

    model = tiny_imagenet_model(size=16)
    photos = {f"p{i}": rng.uniform(0, 255, (16, 16, 3)).astype(np.float32) for i in range(2)}
    config = experiments.PhotoConfig(eps=(4.0, 32.0), ig_steps=4, batch_size=3)
    found = experiments.photo_attacks(model, photos, config)
    assert found.names == ("p0", "p1")
    clean = found.probabilities[0.0]
    top = clean.argmax(-1)
    for eps in config.eps:
        delta = found.adversarial[eps] - found.pixels
        assert np.abs(delta).max() <= eps + 1e-3
        assert found.adversarial[eps].min() >= 0 and found.adversarial[eps].max() <= 255 + 1e-3
        # FGSM lowers the probability of the class it moves away from
        after = found.probabilities[eps][np.arange(2), top]
        assert np.all(after < clean[np.arange(2), top])
    assert found.attribution_images.shape == (4, 16, 16, 3)
    assert list(found.attributions) == list(experiments.PHOTO_METHODS)
    assert all(np.abs(a).sum() > 0 for a in found.attributions.values())
    assert found.titles[0].startswith("p0\n") and found.titles[1].startswith("FGSM, eps 32/255")
    row = found.report["photos"][1]
    assert row["photo"] == "p1" and len(row["fgsm"]) == 2
    assert row["fgsm"][1]["changed"] == bool(found.probabilities[32.0][1].argmax() != top[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(eps=()), "eps=\\(\\)"),
        (dict(eps=(0.0,)), "pixel sizes in \\(0, 255\\]"),
        (dict(eps=(float("nan"),)), "pixel sizes"),
        (dict(methods=("shap",)), "methods"),
        (dict(ig_steps=0), "ig_steps=0"),
    ],
)
def test_photo_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        experiments.PhotoConfig(**kwargs)


def test_photo_attacks_check_the_photos():
    from tiny_imagenet import tiny_imagenet_model

    model = tiny_imagenet_model(size=16)
    with pytest.raises(ValueError, match="photos is empty"):
        experiments.photo_attacks(model, {})
    with pytest.raises(ValueError, match="expected \\(16, 16, 3\\)"):
        experiments.photo_attacks(model, {"a": np.zeros((8, 8, 3), np.float32)})
