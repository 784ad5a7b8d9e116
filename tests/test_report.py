"""tfool.report: the files and console tables of every result, written in one place."""

import json

import numpy as np
import pytest

from tfool import experiments, report


def test_sweep_summary_lists_every_method_and_eps():
    rows = [
        {"method": m, "eps": e, "accuracy": a}
        for m, e, a in [
            ("fgsm", 0.0, 0.99),
            ("fgsm", 0.1, 0.5),
            ("bim", 0.0, 0.99),
            ("bim", 0.1, 0.2),
        ]
    ]
    text = report.format_sweep_summary(
        {"methods": ["fgsm", "bim"], "eps_values": [0.0, 0.1], "rows": rows,
         "clean_accuracy": 0.99, "num_images": 100}
    )  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == "clean accuracy 99.00% on 100 images; accuracy (%) under attack:"
    assert lines[1].split() == ["eps", "fgsm", "bim"]
    assert lines[3].split() == ["0.1", "50.0", "20.0"]


def _record(r, rate, median):
    return {
        "round": r,
        "test_accuracy": 0.99,
        "fgsm_eps": [0.1, 0.25],
        "fgsm_accuracy": [0.7, 0.2],
        "num_negatives": 80 * r,
        "old_mean_target_prob": None if r == 0 else 0.2,
        "fooling": {"rate": rate, "median_steps": median, "mean_target_prob": 0.5,
                    "rows": 80, "threshold": 0.999, "budget": 100},
        "confidence_on_noise": 0.3,
        "confidence_on_zeros": 0.2,
    }  # fmt: skip


def test_retrain_table_has_a_line_per_round_and_the_measurement():
    summary = {
        "mode": "control",
        "from_scratch": False,
        "rounds": 1,
        "interrupted": True,
        "records": [_record(0, 1.0, 14.0), _record(1, 0.0, None)],
    }
    lines = report.format_retrain_table(summary).splitlines()
    assert "fgsm 0.1" in lines[0] and "fgsm 0.25" in lines[0] and "fooled" in lines[0]
    first, second = lines[2].split(), lines[3].split()
    assert first[:4] == ["0", "99.00%", "70.00%", "20.00%"] and "100.0%" in first
    assert second[0] == "1" and "0.0%" in second and "-" in second  # no median: none fooled
    assert "80 rows" in lines[5] and "within 100 steps" in lines[5]
    assert lines[-1].startswith("INTERRUPTED with 2 finished round(s) (round 0 included)")


def test_attribution_outputs_are_written_and_reloadable(small_cnn, small_data, tmp_path):
    config = experiments.AttackExperimentConfig(
        num_images=30, attribute_num_images=1, attribute_methods=("saliency",)
    )
    found = experiments.attribute_test_and_fgsm(small_cnn, small_data, config)
    line = report.write_attribution_outputs(tmp_path, found)
    saved = json.loads((tmp_path / "attribution.json").read_text())
    assert saved["methods"] == ["saliency"] and len(saved["rows"]) == 2
    assert saved["fgsm_changed_answer"] == found.changed
    assert (tmp_path / "attribution.png").stat().st_size > 0
    assert line.startswith("attribution.png: 1 test images") and "saliency" in line


def test_sweep_outputs_match_the_report(small_cnn, small_data, tmp_path):
    config = experiments.AttackExperimentConfig(
        methods=("fgsm",), eps_values=(0.0, 0.2), num_images=30, num_examples=1
    )
    found = experiments.attack_sweep(small_cnn, small_data, config)
    text = report.write_sweep_outputs(tmp_path, found)
    saved = json.loads((tmp_path / "robustness.json").read_text())
    assert saved["clean_accuracy"] == pytest.approx(found.report["clean_accuracy"])
    csv_rows = (tmp_path / "robustness.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 2  # header, one row per (method, eps)
    assert text == report.format_sweep_summary(saved)
    assert np.isfinite(saved["gradient_sign_image"]["mean_confidence"])
    for name in ("accuracy_vs_eps.png", "examples.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_a_sweep_with_no_correct_answer_has_no_examples(tmp_path):
    """A model right on none of the test images still gets its table and curves."""
    import keras

    from tfool import data

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (12, 6, 6, 3)).astype(np.float32)
    y = np.arange(12) % 2
    ds = data.from_arrays(x, y, x[:6], np.ones(6, int), class_names=["cat", "dog"])
    inputs = keras.Input((6, 6, 3))
    logits = keras.layers.Dense(  # always "cat", whatever the image
        2, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant([3.0, -2.0])
    )(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, logits)
    config = experiments.AttackExperimentConfig(
        methods=("fgsm",), eps_values=(0.0, 0.1), num_examples=2
    )
    found = experiments.attack_sweep(model, ds, config)
    assert found.examples.images.shape == (0, 6, 6, 3) and found.examples.originals == []
    assert found.report["clean_accuracy"] == 0.0
    assert found.report["clean_mean_confidence"] == pytest.approx(1 / (1 + np.exp(-5.0)))
    assert found.report["class_names"] == ["cat", "dog"]
    text = report.write_sweep_outputs(tmp_path, found)
    assert text.endswith(
        "no examples.png: the model classifies none of the 6 test images correctly"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "accuracy_vs_eps.png",
        "robustness.csv",
        "robustness.json",
    ]
