"""tfool.stress: starts, budgets, every measurement, the resumable folder and its report."""

import dataclasses
import json

import numpy as np
import pytest

from tfool import backwork as bw
from tfool import io, report, retrain, stress
from tfool.backwork import BackworkConfig
from tfool.retrain import _measure as retrain_measure

BACKWORK = BackworkConfig(labels=(0, 1), reference_size=20, jit_compile=False)
TINY = stress.StressConfig(
    budgets=(2, 5), examples=2, attack_examples=12, pgd_steps=3, pgd_eps=(0.1, 0.3)
)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"budgets": (10, 10)}, "budgets=.* distinct integers >= 1"),
        ({"budgets": (0, 5)}, "budgets"),
        ({"budgets": ()}, "budgets"),
        ({"starts": ("uniform", "sky")}, "starts=.*distinct names"),
        ({"starts": ("zeros", "zeros")}, "starts"),
        ({"pgd_eps": (0.1, 1.5)}, "pgd_eps"),
        ({"pgd_eps": (0.1, 0.10)}, "pgd_eps=.* distinct"),
        ({"budgets": (2.5,)}, "budgets"),
        ({"gaussian_mean": float("nan")}, "gaussian_mean=nan"),
        ({"targeted_eps": 0.0}, "targeted_eps=0.0"),
        ({"threshold": 1.0}, "threshold=1.0"),
        ({"examples": 0}, "examples=0"),
        ({"attack_examples": 2.5}, "attack_examples=2.5"),
        ({"pgd_step_size": 0}, "pgd_step_size=0"),
        ({"seed": -1}, "seed=-1"),
        ({"reference_size": 0}, "reference_size=0"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stress.StressConfig(**kwargs)


def test_budgets_are_sorted_and_parts_listed():
    config = stress.StressConfig(budgets=(300, 100), starts=("zeros",), targeted_eps=None)
    assert config.budgets == (100, 300)
    assert config.parts() == (
        "clean_accuracy",
        "pgd_accuracy/0.1",
        "pgd_accuracy/0.2",
        "pgd_accuracy/0.3",
        "fooling/zeros",
        "rubbish",
    )


def test_start_images(mnist_sample):
    labels = (0, 3, 7)
    config = stress.StressConfig(examples=5, seed=3)
    shape = (3, 5, 28, 28, 1)
    uniform = stress.start_images("uniform", mnist_sample, labels, config)
    assert uniform.shape == shape and 0 <= uniform.min() and uniform.max() <= 1
    assert abs(uniform.mean() - 0.5) < 0.01
    gaussian = stress.start_images("gaussian", mnist_sample, labels, config)
    assert gaussian.min() == 0.0 and gaussian.max() == 1.0  # clipped, both ends reached
    clipped = np.mean((gaussian == 0) | (gaussian == 1))
    assert 0.035 < clipped < 0.056  # N(0.5, 0.25) lies outside [0, 1] 4.6% of the time
    assert abs(gaussian.mean() - 0.5) < 0.01
    assert not np.any(stress.start_images("zeros", mnist_sample, labels, config))
    digits = stress.start_images("digits", mnist_sample, labels, config)
    flat = mnist_sample.x_test.reshape(len(mnist_sample.x_test), -1)
    for k, label in enumerate(labels):
        for image in digits[k]:
            rows = np.flatnonzero((flat == image.reshape(1, -1)).all(axis=1))
            assert len(rows) >= 1 and np.all(mnist_sample.y_test[rows] != label)
    again = stress.start_images("digits", mnist_sample, labels, config)
    np.testing.assert_array_equal(digits, again)  # seeded
    other = stress.start_images(
        "uniform", mnist_sample, labels, dataclasses.replace(config, seed=4)
    )
    assert not np.array_equal(uniform, other)


def test_budget_rates_read_the_first_steps():
    first = np.array([[3, 50], [-1, 200]])
    rates = stress.budget_rates(first, (10, 100, 300))
    assert rates == {
        "10": {"rate": 0.25, "median_steps": 3.0},
        "100": {"rate": 0.5, "median_steps": 26.5},
        "300": {"rate": 0.75, "median_steps": 50.0},
    }
    assert stress.budget_rates(np.array([-1, -1]), (5,)) == {
        "5": {"rate": 0.0, "median_steps": None}
    }


def test_run_configs_keep_the_costs_and_never_reinitialise():
    config = stress.StressConfig(budgets=(100, 1000), examples=3)
    run = stress.fooling_config(BACKWORK, config)
    assert run.max_num_steps == 1000 and run.num_examples == 3 and run.save_freq == 1
    assert run.num_mono_dec_saves > 1000  # the window never fills: no re-initialisation
    assert run.reference_cost_coeff == BACKWORK.reference_cost_coeff
    assert run.batch_cost_coeff == BACKWORK.batch_cost_coeff
    assert run.prob_cap_min == config.threshold and run.labels == BACKWORK.labels
    one_row = stress.fooling_config(BACKWORK, dataclasses.replace(config, examples=1))
    assert one_row.batch_cost_coeff == 0.0
    assert run.reference_size == BACKWORK.reference_size == 20  # the run's
    cut = stress.fooling_config(BACKWORK, dataclasses.replace(config, reference_size=7))
    assert cut.reference_size == 7
    rubbish = stress.rubbish_config(BACKWORK, config)
    assert rubbish.layer_names == ("probabilities",)
    assert rubbish.reference_cost_coeff == rubbish.batch_cost_coeff == 0.0


@pytest.fixture(scope="module")
def stressed(small_cnn, small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stress")
    found = stress.stress_models([("m", small_cnn)], small_data, BACKWORK, TINY, output_dir=out)
    return found, out


def test_every_part_is_measured_and_kept(stressed, small_cnn, small_data):
    found, out = stressed
    assert found["complete"] and list(found["models"]) == ["m"]
    row = found["models"]["m"]
    assert row["clean_accuracy"] == pytest.approx(small_cnn.test_accuracy)
    assert list(row["pgd_accuracy"]) == ["0.1", "0.3"]
    assert row["pgd_accuracy"]["0.3"] <= row["pgd_accuracy"]["0.1"] <= row["clean_accuracy"]
    assert 0 <= row["targeted_pgd_success"] <= 1
    assert set(row["fooling"]) == set(stress.STARTS)
    for rates in [*row["fooling"].values(), row["rubbish"]]:
        assert list(rates) == ["2", "5"]
        for budget in rates.values():
            assert 0 <= budget["rate"] <= 1
            assert (budget["median_steps"] is None) == (budget["rate"] == 0)
    saved = io.read_json(out / "m.json")
    assert saved["weights"] == retrain.weights_fingerprint(small_cnn)
    assert set(saved["parts"]) == set(TINY.parts())
    assert set(found["seconds"]["m"]) == set(found["measured"]["m"]) == set(TINY.parts())
    assert set(saved["seconds"]) == set(TINY.parts())


def test_pgd_accuracy_is_the_models_own(stressed, small_cnn, small_data):
    """The PGD accuracy equals an attack run by hand on the same seeded subset."""
    from tfool import attacks, models

    x, y = stress._attacked_subset(small_data, TINY)
    assert len(x) == TINY.attack_examples
    x_adv = attacks.pgd(small_cnn, x, 0.1, y, step_size=0.01, steps=3, seed=TINY.seed)
    expected = float(np.mean(models.predict_classes(small_cnn, x_adv) == y))
    assert stressed[0]["models"]["m"]["pgd_accuracy"]["0.1"] == expected


def test_a_finished_folder_resumes_without_work_and_refuses_otherwise(
    stressed, small_cnn, small_data
):
    found, out = stressed
    again = stress.stress_models(
        [("m", small_cnn)], small_data, BACKWORK, TINY, output_dir=out, resume=True
    )
    assert again["models"] == found["models"] and again["measured"]["m"] == []
    assert again["seconds"] == found["seconds"]  # kept in the folder
    with pytest.raises(ValueError, match="resume=True continues it"):
        stress.stress_models([("m", small_cnn)], small_data, BACKWORK, TINY, output_dir=out)
    other = dataclasses.replace(TINY, seed=9)
    with pytest.raises(ValueError, match="other stress or backworking settings"):
        stress.stress_models(
            [("m", small_cnn)], small_data, BACKWORK, other, output_dir=out, resume=True
        )
    with pytest.raises(ValueError, match="stress seed 2000 but this run asks for 9"):
        stress.stress_models(
            [("m", small_cnn)], small_data, BACKWORK, other, output_dir=out, resume=True
        )


def test_a_new_model_under_a_kept_name_is_measured_afresh(stressed, small_cnn, small_data):
    """More rounds make a mode's last model another one: its old parts are not reused."""
    out = stressed[1]
    moved = retrain.copy_model(small_cnn)
    moved.set_weights([w + 0.01 for w in moved.get_weights()])
    wanted = stress.settings(small_data, BACKWORK, TINY)
    moved_print = retrain.weights_fingerprint(moved)
    assert stress._load_parts(out / "m.json", wanted, moved_print, resume=True) == ({}, {})
    own = retrain.weights_fingerprint(small_cnn)
    kept = stress._load_parts(out / "m.json", wanted, own, resume=True)
    assert set(kept[0]) == set(TINY.parts())


def test_first_reach_is_the_loops_step(small_cnn, small_data):
    """The step a row first reaches the threshold, read from the real loop: step 0 is the
    start, step k the save after k updates; a row fooled from the start counts 0."""
    run = stress.fooling_config(BACKWORK, dataclasses.replace(TINY, budgets=(6,)))
    run = dataclasses.replace(run, prob_cap_min=0.6)
    reach, probs = retrain_measure.FirstReach(0.6), []

    class Every(bw.BackworkCallback):
        def on_save(self, event):
            probs.append((event.step, np.asarray(event.target_probs).copy()))

    initial = stress.start_images("digits", small_data, BACKWORK.labels, TINY)
    initial[0, 0] = small_data.x_test[small_data.y_test == 0][0]  # a real 0
    bw.backwork(small_cnn, small_data, run, None, [reach, Every()], initial_images=initial)
    assert probs[0][0] == 0 and probs[0][1][0, 0] > 0.6 and reach.first[0, 0] == 0
    for row in np.ndindex(reach.first.shape):
        steps = [step for step, p in probs if p[row] >= 0.6]
        assert reach.first[row] == (steps[0] if steps else -1)
    assert [step for step, _ in probs] == list(range(len(probs)))  # a save after every step


def test_ctrl_c_keeps_the_finished_parts_and_stops(small_cnn, small_data, tmp_path, monkeypatch):
    calls = []
    measure = stress._measure

    def interrupted_at_the_third(part, *args):
        calls.append(part)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return measure(part, *args)

    monkeypatch.setattr(stress, "_measure", interrupted_at_the_third)
    found = stress.stress_models(
        [("a", small_cnn), ("b", small_cnn)], small_data, BACKWORK, TINY, output_dir=tmp_path
    )
    assert not found["complete"] and list(found["models"]) == ["a"]  # b never started
    assert found["measured"]["a"] == list(TINY.parts()[:2])
    assert set(io.read_json(tmp_path / "a.json")["parts"]) == set(TINY.parts()[:2])
    assert not (tmp_path / "b.json").exists()


def test_an_interrupted_test_continues_with_the_missing_parts(
    stressed, small_cnn, small_data, tmp_path
):
    found, out = stressed
    saved = io.read_json(out / "m.json")
    kept = ("clean_accuracy", "pgd_accuracy/0.1", "fooling/uniform")
    saved["parts"] = {k: saved["parts"][k] for k in kept}
    io.write_json(tmp_path / "m.json", saved)
    again = stress.stress_models(
        [("m", small_cnn)], small_data, BACKWORK, TINY, output_dir=tmp_path, resume=True
    )
    assert set(again["measured"]["m"]) == set(TINY.parts()) - set(kept)
    assert again["models"] == found["models"]  # seeded: the same values as in one go


def test_an_extra_class_model_is_fooled_only_by_its_digits(small_cnn, small_data):
    """A model grown by a 'negative' class that takes every image: no digit ever reaches the
    threshold, and every attacked image counts as misclassified."""
    grown = retrain.grow_output_layer(small_cnn)
    weights = grown.layers[-1].get_weights()
    weights[1][-1] = 1e4  # the negative class wins everywhere
    grown.layers[-1].set_weights(weights)
    config = dataclasses.replace(TINY, starts=("uniform",), pgd_eps=(0.1,))
    parts = stress.stress_test(grown, small_data, BACKWORK, config)
    assert parts["clean_accuracy"] == 0.0 and parts["pgd_accuracy/0.1"] == 0.0
    assert parts["targeted_pgd_success"] == 0.0
    assert parts["fooling/uniform"]["mean_target_prob"] < 1e-6
    assert all(v["rate"] == 0.0 for v in parts["fooling/uniform"]["budgets"].values())
    assert all(v["rate"] == 0.0 for v in parts["rubbish"]["budgets"].values())


def test_report_writes_the_table_and_figure(stressed, tmp_path):
    found = stressed[0]
    table = report.write_stress_outputs(tmp_path, found)
    saved = json.loads((tmp_path / "stress.json").read_text())
    assert saved == json.loads(json.dumps(table))
    row = saved["m"]
    assert set(row) == {
        "clean_accuracy",
        "pgd_accuracy",
        "targeted_pgd_success",
        "fooling",
        "rubbish",
        "seconds",
    }
    assert saved["settings"]["stress"]["budgets"] == [2, 5] and saved["settings"]["complete"]
    assert (tmp_path / "stress.png").stat().st_size > 10_000
    text = report.format_stress_table(found)
    assert text.startswith("m: clean") and "fooling/digits" in text and "rubbish" in text
