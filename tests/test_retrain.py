"""tfool.retrain: augmentation with negatives, growing the output layer, rounds and resume."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from tfool import backwork as bw
from tfool import data, models, retrain

H = W = 28
TINY_BACKWORK = bw.BackworkConfig(
    labels=(0, 1), num_examples=3, reference_size=20, max_num_steps=10, jit_compile=False
)
TINY_TRAIN = models.TrainConfig(epochs=1, batch_size=50, learning_rate=1e-3, verbose=0)
EXTRA = {
    "num_zero": 10,
    "num_noise": 10,
    "fooling_budget": 6,
    "fooling_examples": 2,
    "num_noise_probe": 20,
}


def rc(rounds, mode="uniform", **kw):
    """A RetrainConfig that keeps the tiny configs' epochs and step limit."""
    return retrain.RetrainConfig(
        rounds=rounds, mode=mode, epochs=None, max_num_steps=None, **{**EXTRA, **kw}
    )


def marked_dataset(n=30, m=8, num_classes=3):
    """A synthetic dataset whose pixel [0, 0] tells every image apart (index / 1000)."""
    x = np.zeros((n, H, W, 1), np.float32)
    x[:, 0, 0, 0] = np.arange(n) / 1000.0
    y = np.arange(n, dtype=np.int64) % num_classes
    x_test = np.full((m, H, W, 1), 0.5, np.float32)
    y_test = np.arange(m, dtype=np.int64) % num_classes
    names = tuple(str(i) for i in range(num_classes))
    return data.Dataset(x, y, x_test, y_test, names, "synthetic", "marked")


def marked_negatives(count=6, offset=0.5):
    x = np.zeros((count, H, W, 1), np.float32)
    x[:, 0, 0, 0] = offset + np.arange(count) / 1000.0
    x[:, 5, 5, 0] = 1.0  # not a zero image
    return x


# ---------------------------------------------------------------- augment_with_negatives


@pytest.mark.parametrize("mode", retrain.MODES)
def test_augment_shapes_and_targets_sum_to_one(mode):
    ds, neg = marked_dataset(), marked_negatives()
    aug = retrain.augment_with_negatives(ds, neg, mode, num_zero=4, num_noise=5, seed=1)
    adds = mode not in ("control", "adversarial")
    n = len(ds.x_train) + (len(neg) + 4 + 5 if adds else 0)
    width = ds.num_classes + (mode == "extra_class")
    assert aug.x_train.shape == (n, H, W, 1) and aug.x_train.dtype == np.float32
    assert aug.y_train.shape == (n, width) and aug.y_train.dtype == np.float32
    assert aug.num_classes == width and aug.image_shape == (H, W, 1)
    np.testing.assert_allclose(aug.y_train.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(aug.y_train >= 0)
    counts = np.bincount(aug.origin, minlength=4)
    if not adds:  # nothing added
        assert counts.tolist() == [len(ds.x_train), 0, 0, 0]
        assert aug.y_train.shape == (len(ds.x_train), width)
        assert aug.class_names == ds.class_names and np.all(aug.y_train.max(axis=1) == 1.0)
        return
    assert counts.tolist() == [len(ds.x_train), len(neg), 4, 5]
    added = aug.origin != retrain.ORIGIN_DATA
    if mode == "uniform":
        np.testing.assert_allclose(aug.y_train[added], 1.0 / ds.num_classes)
        assert np.all(aug.hard_labels[added] == -1)
        assert aug.class_names == ds.class_names
    else:
        assert np.all(aug.y_train[added, ds.num_classes] == 1.0)
        assert np.all(aug.hard_labels[added] == ds.num_classes)
        assert aug.class_names == (*ds.class_names, retrain.NEGATIVE_CLASS_NAME)
    zero = aug.x_train[aug.origin == retrain.ORIGIN_ZERO]
    noise = aug.x_train[aug.origin == retrain.ORIGIN_NOISE]
    assert np.all(zero == 0) and noise.min() >= 0 and noise.max() <= 1 and noise.std() > 0.2


def test_augment_shuffle_is_complete_and_keeps_labels():
    ds, neg = marked_dataset(), marked_negatives()
    aug = retrain.augment_with_negatives(ds, neg, num_zero=0, num_noise=0, seed=3)
    is_data = aug.origin == retrain.ORIGIN_DATA
    idx = np.rint(aug.x_train[is_data, 0, 0, 0] * 1000).astype(int)
    assert sorted(idx) == list(range(len(ds.x_train)))  # every image once
    np.testing.assert_array_equal(aug.hard_labels[is_data], ds.y_train[idx])
    assert not np.array_equal(idx, np.arange(len(ds.x_train)))  # shuffled
    neg_marks = np.sort(aug.x_train[~is_data, 0, 0, 0])
    np.testing.assert_allclose(neg_marks, np.sort(neg[:, 0, 0, 0]))
    np.testing.assert_array_equal(aug.x_test, ds.x_test)
    np.testing.assert_array_equal(aug.y_test, ds.y_test)


def test_data_rows_keep_their_order_in_every_mode():
    """The control arm sees the data rows in the same order as the other modes."""
    ds, neg = marked_dataset(), marked_negatives()
    orders = []
    for mode in retrain.MODES:
        aug = retrain.augment_with_negatives(ds, neg, mode, num_zero=4, num_noise=5, seed=2)
        is_data = aug.origin == retrain.ORIGIN_DATA
        orders.append(np.rint(aug.x_train[is_data, 0, 0, 0] * 1000).astype(int))
    for order in orders[1:]:
        np.testing.assert_array_equal(order, orders[0])
    other = retrain.augment_with_negatives(ds, neg, "control", seed=3)
    assert not np.array_equal(np.rint(other.x_train[:, 0, 0, 0] * 1000), orders[0])


def test_augment_is_seeded():
    ds, neg = marked_dataset(), marked_negatives()
    a = retrain.augment_with_negatives(ds, neg, num_zero=3, num_noise=3, seed=5)
    b = retrain.augment_with_negatives(ds, neg, num_zero=3, num_noise=3, seed=5)
    c = retrain.augment_with_negatives(ds, neg, num_zero=3, num_noise=3, seed=6)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_train, c.x_train)


def test_augment_does_not_mutate_or_share_its_inputs():
    ds, neg = marked_dataset(), marked_negatives().reshape(2, 3, H, W, 1)  # [L, E, ...]
    before = [a.copy() for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test, neg)]
    aug = retrain.augment_with_negatives(ds, neg, "extra_class", num_zero=2, num_noise=2)
    for old, now in zip(before, (ds.x_train, ds.y_train, ds.x_test, ds.y_test, neg)):
        np.testing.assert_array_equal(old, now)
    for new in (aug.x_train, aug.y_train, aug.x_test, aug.y_test):
        for old in (ds.x_train, ds.y_train, ds.x_test, ds.y_test, neg):
            assert not np.shares_memory(new, old)
    assert np.count_nonzero(aug.origin == retrain.ORIGIN_NEGATIVE) == 6


def test_augment_without_negatives():
    ds = marked_dataset()
    aug = retrain.augment_with_negatives(ds, np.zeros((0, H, W, 1)), num_zero=0, num_noise=0)
    assert len(aug.x_train) == len(ds.x_train)
    np.testing.assert_array_equal(np.sort(aug.hard_labels), np.sort(ds.y_train))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "ones"}, "mode='ones'"),
        ({"num_zero": -1}, "num_zero=-1"),
        ({"num_noise": 2.5}, "num_noise=2.5"),
        ({"negatives": np.zeros((2, 14, 14, 1))}, "negatives have shape"),
        ({"negatives": np.full((1, H, W, 1), np.nan)}, "non-finite"),
    ],
)
def test_augment_rejects_bad_input(kwargs, message):
    args = {"data": marked_dataset(), "negatives": marked_negatives(), **kwargs}
    with pytest.raises(ValueError, match=message):
        retrain.augment_with_negatives(**args)


def test_augment_rejects_soft_data():
    aug = retrain.augment_with_negatives(marked_dataset(), marked_negatives())
    with pytest.raises(ValueError, match="AugmentedData"):
        retrain.augment_with_negatives(aug, marked_negatives())


# ---------------------------------------------------------------- models


def test_grow_output_layer_copies_every_weight(small_cnn, small_data):
    before = [w.copy() for w in small_cnn.get_weights()]
    grown = retrain.grow_output_layer(small_cnn)
    assert grown.outputs[0].shape[-1] == 11 and small_cnn.outputs[0].shape[-1] == 10
    assert [layer.name for layer in grown.layers] == [layer.name for layer in small_cnn.layers]
    for old, new in zip(small_cnn.get_weights()[:-2], grown.get_weights()[:-2]):
        np.testing.assert_array_equal(old, new)
    kernel, bias = grown.get_weights()[-2:]
    np.testing.assert_array_equal(kernel[:, :10], small_cnn.get_weights()[-2])
    np.testing.assert_array_equal(bias[:10], small_cnn.get_weights()[-1])
    assert np.any(kernel[:, 10] != 0)
    x = small_data.x_test[:8]
    np.testing.assert_allclose(
        grown.predict(x, verbose=0)[:, :10], small_cnn.predict(x, verbose=0), atol=1e-5
    )
    for old, now in zip(before, small_cnn.get_weights()):
        np.testing.assert_array_equal(old, now)  # the input model is untouched


def test_grow_output_layer_needs_a_dense_last_layer():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3)(inputs)))
    with pytest.raises(ValueError, match="Dense last layer"):
        retrain.grow_output_layer(model)
    with pytest.raises(ValueError, match="extra=0"):
        retrain.grow_output_layer(keras.Sequential([inputs, keras.layers.Dense(3)]), extra=0)


def test_copy_model_is_independent_and_fresh_restarts():
    model = models.build_mnist_cnn(conv_filters=(4,), fc_units=8, seed=0)
    initial = [w.copy() for w in model.get_weights()]
    for w in model.weights:
        w.assign(w + 1.0)  # "trained"
    copy = retrain.copy_model(model)
    for a, b in zip(copy.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    copy.weights[0].assign(copy.weights[0] * 0)
    assert np.any(model.get_weights()[0] != 0)
    fresh = retrain.copy_model(model, fresh=True)
    for a, b in zip(fresh.get_weights(), initial):
        np.testing.assert_array_equal(a, b)  # seeded initialisers: the untrained model


def test_train_accepts_soft_targets(small_data):
    model = models.build_mnist_cnn(conv_filters=(4,), fc_units=8, seed=0)
    aug = retrain.augment_with_negatives(
        small_data, np.zeros((0, H, W, 1)), num_zero=20, num_noise=20
    )
    result = models.train(model, aug, TINY_TRAIN)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert np.isfinite(result.history["loss"][0]) and 0 <= result.test_accuracy <= 1


# ---------------------------------------------------------------- retrain_rounds


@pytest.fixture(scope="module")
def uniform_run(small_cnn, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("retrain") / "uniform"
    before = [w.copy() for w in small_cnn.get_weights()]
    result = retrain.retrain_rounds(
        small_cnn, tiny_data, TINY_BACKWORK, rc(2), TINY_TRAIN, output_dir=out
    )
    return result, out, before


def test_rounds_bookkeeping(uniform_run, small_cnn, tiny_data):
    result, out, before = uniform_run
    assert not result.interrupted and result.rounds == 2 and result.resumed_rounds == 0
    assert [r.round for r in result.records] == [0, 1, 2]
    assert len(result.models) == len(result.backworked) == 3
    assert result.models[0] is small_cnn
    per_round = 2 * 3  # labels x examples
    assert [r.num_negatives for r in result.records] == [0, per_round, 2 * per_round]
    assert [len(r.old_negatives) for r in result.records] == [0, 1, 2]
    assert [o.round for o in result.records[2].old_negatives] == [0, 1]
    assert [r.train_size for r in result.records] == [
        len(tiny_data.x_train) + n + (20 if n else 0) for n in (0, per_round, 2 * per_round)
    ]
    assert result.records[0].train_seconds is None and result.records[1].train_seconds > 0
    assert result.records[0].old_mean_target_prob is None
    for r in result.records:
        assert 0 <= r.test_accuracy <= 1 and r.fgsm_eps == (0.1, 0.25)
        assert len(r.fgsm_accuracy) == 2 and all(0 <= a <= 1 for a in r.fgsm_accuracy)
        assert r.fooling.rows == 2 * 2 and r.fooling.budget == 6 and 0 <= r.fooling.rate <= 1
        assert (r.fooling.median_steps is None) == (r.fooling.rate == 0)
        assert r.fooling.median_steps is None or 0 <= r.fooling.median_steps <= 6
        assert 0.1 <= r.confidence_on_noise <= 1 and 0.1 <= r.confidence_on_zeros <= 1
        brief = r.brief()
        assert brief["fgsm_accuracy"] == {"0.1": r.fgsm_accuracy[0], "0.25": r.fgsm_accuracy[1]}
        assert brief["fooling_rate"] == r.fooling.rate
        assert 0 <= r.backwork_rows_at_cap <= 1 and r.backwork_steps <= 10
        assert r.backwork_max_num_steps == 10
        assert all(0 <= o.mean_target_prob <= o.max_target_prob <= 1 for o in r.old_negatives)
        assert all(o.count == per_round and o.mean_negative_prob is None for o in r.old_negatives)
        assert retrain.RoundRecord.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    # every round backworks a fresh batch (its own seed)
    assert not np.array_equal(result.backworked[0].images, result.backworked[1].images)
    for old, now in zip(before, small_cnn.get_weights()):
        np.testing.assert_array_equal(old, now)  # the input model is untouched
    assert all(m is not small_cnn for m in result.models[1:])
    summary = result.summary()
    assert summary["rounds"] == 2 and len(summary["records"]) == 3


def test_rounds_are_written_to_disk(uniform_run):
    result, out, _ = uniform_run
    state = json.loads((out / retrain.STATE_FILE).read_text())
    assert [r["round"] for r in state["records"]] == [0, 1, 2]
    assert not (out / "round_0" / "model.keras").exists()
    for r in (0, 1, 2):
        record = json.loads((out / f"round_{r}" / "record.json").read_text())
        assert record == json.loads(json.dumps(result.records[r].to_dict()))
        saved = bw.load_result(out / f"round_{r}" / "backwork.npz")
        np.testing.assert_array_equal(saved.images, result.backworked[r].images)
    for r in (1, 2):
        model = models.load_model(out / f"round_{r}" / "model.keras")
        for a, b in zip(model.get_weights(), result.models[r].get_weights()):
            np.testing.assert_array_equal(a, b)


class StopAfter(retrain.RetrainCallback):
    """Ctrl-C right after a round is finished."""

    def __init__(self, round_index):
        self.round_index = round_index
        self.seen = []

    def on_round_end(self, record, model, backworked):
        self.seen.append(record.round)
        if record.round == self.round_index:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_like_an_uninterrupted_one(
    uniform_run, small_cnn, tiny_data, tmp_path
):
    full, _, _ = uniform_run
    out = tmp_path / "resumed"
    stop = StopAfter(1)
    args = (small_cnn, tiny_data, TINY_BACKWORK)
    cut = retrain.retrain_rounds(
        *args, rc(2), TINY_TRAIN, output_dir=out, callbacks=[stop], initial=full.backworked[0]
    )
    assert cut.interrupted and stop.seen == [0, 1] and cut.rounds == 1
    state = json.loads((out / retrain.STATE_FILE).read_text())
    assert len(state["records"]) == 2 and not (out / "round_2").exists()

    resumed = retrain.retrain_rounds(*args, rc(2, resume=True), TINY_TRAIN, output_dir=out)
    assert not resumed.interrupted and resumed.resumed_rounds == 2 and resumed.rounds == 2
    for a, b in zip(full.records, resumed.records):
        da, db = a.to_dict(), b.to_dict()
        for key in ("seconds", "train_seconds", "backwork_seconds", "backwork_max_num_steps"):
            da.pop(key), db.pop(key)
        da["fooling"].pop("seconds"), db["fooling"].pop("seconds")
        assert da == db
    for a, b in zip(full.models[-1].get_weights(), resumed.models[-1].get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    again = retrain.retrain_rounds(*args, rc(2, resume=True), TINY_TRAIN, output_dir=out)
    assert again.resumed_rounds == 3 and again.records == resumed.records  # nothing to do


def test_resume_refuses_other_settings(uniform_run, small_cnn, tiny_data):
    _, out, _ = uniform_run
    with pytest.raises(ValueError, match="mode"):
        retrain.retrain_rounds(
            small_cnn, tiny_data, TINY_BACKWORK, rc(2, "extra_class", resume=True), TINY_TRAIN,
            output_dir=out,
        )  # fmt: skip


def test_extra_class_rounds_grow_once(small_cnn, tiny_data, uniform_run):
    initial = uniform_run[0].backworked[0]
    result = retrain.retrain_rounds(
        small_cnn, tiny_data, TINY_BACKWORK, rc(2, "extra_class"), TINY_TRAIN, initial=initial
    )
    assert [m.outputs[0].shape[-1] for m in result.models] == [10, 11, 11]
    assert result.records[0].backwork_max_num_steps is None  # round 0 was given
    assert result.backworked[0] is initial
    for r in result.records[1:]:
        assert all(0 <= o.mean_negative_prob <= 1 for o in r.old_negatives)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rounds": -1}, "rounds=-1"),
        ({"mode": "soft"}, "mode='soft'"),
        ({"fgsm_eps": -0.1}, "fgsm_eps=-0.1"),
        ({"fgsm_eps": (0.1, 1.5)}, "fgsm_eps=.0.1, 1.5."),
        ({"fgsm_eps": ()}, "fgsm_eps=()"),
        ({"fgsm_eps": float("nan")}, "fgsm_eps=nan"),
        ({"fooling_budget": 0}, "fooling_budget=0"),
        ({"fooling_examples": 1.5}, "fooling_examples=1.5"),
        ({"fooling_threshold": 1.0}, "fooling_threshold=1.0"),
        ({"num_zero": -2}, "num_zero=-2"),
        ({"epochs": 0}, "epochs=0"),
        ({"max_num_steps": 0}, "max_num_steps=0"),
    ],
)
def test_retrain_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        retrain.RetrainConfig(**kwargs)


def test_retrain_rounds_needs_a_folder_to_resume(small_cnn, tiny_data):
    with pytest.raises(ValueError, match="needs output_dir"):
        retrain.retrain_rounds(small_cnn, tiny_data, TINY_BACKWORK, rc(1, resume=True))


def test_round_configs_cap_the_steps_and_set_the_epochs():
    bwc, tc = retrain.RetrainConfig(epochs=3, max_num_steps=7).round_configs(
        TINY_BACKWORK, TINY_TRAIN
    )
    assert bwc.max_num_steps == 7 and tc.epochs == 3 and tc.batch_size == TINY_TRAIN.batch_size
    bwc, tc = retrain.RetrainConfig(max_num_steps=500).round_configs(TINY_BACKWORK, TINY_TRAIN)
    assert bwc.max_num_steps == TINY_BACKWORK.max_num_steps  # the smaller of the two
    assert rc(1).round_configs(TINY_BACKWORK, TINY_TRAIN) == (TINY_BACKWORK, TINY_TRAIN)


def test_retrain_rounds_rejects_a_model_of_other_classes(tiny_data, small_cnn):
    grown = retrain.grow_output_layer(small_cnn)
    with pytest.raises(ValueError, match="11 outputs"):
        retrain.retrain_rounds(grown, tiny_data, TINY_BACKWORK, rc(1))


def test_retrain_rounds_rejects_an_interrupted_initial_run(small_cnn, tiny_data, uniform_run):
    cut = dataclasses.replace(uniform_run[0].backworked[0], interrupted=True)
    with pytest.raises(ValueError, match="initial is an interrupted"):
        retrain.retrain_rounds(small_cnn, tiny_data, TINY_BACKWORK, rc(1), initial=cut)


@pytest.fixture(scope="module")
def control_run(small_cnn, tiny_data, uniform_run, tmp_path_factory):
    """One control round, resumed in an empty folder (which starts at round 0)."""
    out = tmp_path_factory.mktemp("retrain") / "control"
    result = retrain.retrain_rounds(
        small_cnn,
        tiny_data,
        TINY_BACKWORK,
        rc(1, "control", resume=True),
        TINY_TRAIN,
        initial=uniform_run[0].backworked[0],
        output_dir=out,
    )
    return result, out


def test_resume_in_an_empty_folder_starts_at_round_0(control_run):
    result, out = control_run
    assert result.rounds == 1 and result.resumed_rounds == 0 and not result.interrupted
    assert (out / "round_1" / "model.keras").is_file()


def test_control_rounds_add_nothing_and_train_like_the_others(control_run, tiny_data, uniform_run):
    result = control_run[0]
    assert result.mode == "control" and result.rounds == 1
    assert [r.train_size for r in result.records] == [len(tiny_data.x_train)] * 2
    assert result.records[1].num_negatives == 2 * 3  # measured on the old negatives, not added
    assert result.models[1].outputs[0].shape[-1] == 10
    # round 0 is the same model and the same fixed-seed measurement in every mode
    a, b = result.records[0].to_dict(), uniform_run[0].records[0].to_dict()
    for d in (a, b):
        d.pop("seconds"), d["fooling"].pop("seconds"), d.pop("backwork_max_num_steps")
        d.pop("backwork_seconds")
    assert a == b


def test_measure_fooling_counts_the_first_step_at_the_threshold(small_cnn, tiny_data):
    """The rate and median steps agree with a plain backwork run's per-step history."""
    settings = rc(0, fooling_budget=8, fooling_examples=3, fooling_seed=4, fooling_threshold=0.9)
    stats = retrain.measure_fooling(small_cnn, tiny_data, TINY_BACKWORK, settings)
    config = retrain.fooling_config(TINY_BACKWORK, settings)
    assert (config.num_examples, config.max_num_steps, config.seed) == (3, 8, 4)
    assert config.prob_cap_min == 0.9 and config.save_freq == 1 and config.tolerance == 0
    run = bw.backwork(small_cnn, tiny_data, dataclasses.replace(config, history_every=1))
    target = bw.target_probabilities(
        run.history_probs.reshape(-1, *run.history_probs.shape[2:]),
        np.tile(run.labels, len(run.history_steps)),
    ).reshape(len(run.history_steps), *run.target_probs.shape)
    reached = target >= 0.9
    first = np.where(reached.any(0), run.history_steps[reached.argmax(0)], -1)
    assert stats.rows == 6 and stats.budget == 8 and stats.threshold == 0.9
    assert stats.rate == pytest.approx(np.mean(first >= 0))
    if stats.rate:
        assert stats.median_steps == pytest.approx(np.median(first[first >= 0]))
    assert stats.mean_target_prob == pytest.approx(run.target_probs.mean(), abs=1e-6)
    easy = dataclasses.replace(settings, fooling_threshold=1e-6)
    easy = retrain.measure_fooling(small_cnn, tiny_data, TINY_BACKWORK, easy)
    assert easy.rate == 1.0 and easy.median_steps == 0  # every row starts above it


def test_compare_modes_and_its_figure_reload(uniform_run, control_run, tmp_path):
    from tfool import plots, report

    control = control_run[0]
    table = report.write_retrain_comparison(tmp_path, [uniform_run[0], control])
    assert set(table) == {"uniform", "control", "settings"}
    assert [r["round"] for r in table["uniform"]] == [0, 1, 2]
    assert table["settings"]["fooling_budget"] == 6 and table["settings"]["epochs_per_round"] == 1
    reloaded = json.loads((tmp_path / "retrain_modes.json").read_text())
    assert reloaded == json.loads(json.dumps(table))
    assert (tmp_path / "retrain_modes.png").stat().st_size > 0
    assert (tmp_path / "retrain_images.png").stat().st_size > 0
    fig = plots.retrain_comparison(reloaded)
    assert len(fig.axes) == 4 and len(fig.axes[0].lines) == 2  # one fooling line per mode
    plots.close(fig)
    with pytest.raises(ValueError, match="repeat a mode"):
        retrain.compare_modes([control, control])
    with pytest.raises(ValueError, match="empty"):
        retrain.compare_modes([])


def test_the_extra_class_name_differs_from_the_data_classes():
    assert retrain.negative_class_name(("cat", "dog")) == retrain.NEGATIVE_CLASS_NAME
    assert retrain.negative_class_name(("positive", "negative")) == "negative_"
    ds = marked_dataset()
    ds = dataclasses.replace(ds, class_names=("negative", "negative_", "other"))
    aug = retrain.augment_with_negatives(ds, marked_negatives(), "extra_class", 0, 0)
    assert aug.class_names == ("negative", "negative_", "other", "negative__")


def test_one_fooling_row_per_label_turns_the_batch_cost_off(small_cnn, tiny_data):
    """One row per label has no batch to keep diverse: measured, not refused."""
    one = retrain.fooling_config(TINY_BACKWORK, rc(0, fooling_examples=1))
    assert one.num_examples == 1 and one.batch_cost_coeff == 0.0
    two = retrain.fooling_config(TINY_BACKWORK, rc(0, fooling_examples=2))
    assert two.batch_cost_coeff == TINY_BACKWORK.batch_cost_coeff > 0
    settings = rc(0, fooling_examples=1, fooling_budget=2)
    stats = retrain.measure_fooling(small_cnn, tiny_data, TINY_BACKWORK, settings)
    assert stats.rows == len(TINY_BACKWORK.labels) and stats.budget == 2
