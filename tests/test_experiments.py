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
    found = experiments.attack_sweep(small_cnn, small_data, SMALL, seed=1, callback=seen.append)
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
