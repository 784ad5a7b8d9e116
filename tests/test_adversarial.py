"""tfool.adversarial: the training attack, and models.train / retraining with it."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfool import attacks, models, retrain
from tfool.adversarial import AdversarialTraining
from tfool.backwork import BackworkConfig
from tfool.retrain import _store as retrain_store

ROOT = Path(__file__).resolve().parents[1]
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)


def _perturb(adversary, model, x, y, seed=(0, 0)):
    return adversary.perturb(
        model, LOSS, tf.constant(x), tf.constant(y), tf.constant(seed, tf.int64)
    ).numpy()


@pytest.mark.parametrize("steps", [1, 4])
def test_perturbation_stays_in_the_ball_and_raises_the_loss(small_cnn, small_data, steps):
    x, y = small_data.x_test[:64], small_data.y_test[:64]
    adversary = AdversarialTraining(eps=0.1, step_size=0.125 if steps == 1 else 0.03, steps=steps)
    adv = _perturb(adversary, small_cnn, x, y)
    assert adv.shape == x.shape and adv.dtype == np.float32
    assert np.abs(adv - x).max() <= 0.1 + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.abs(adv - x).max() > 0.09  # it moved to the edge of the ball somewhere
    clean = LOSS(y, small_cnn(x)).numpy().mean()
    attacked = LOSS(y, small_cnn(adv)).numpy().mean()
    assert attacked > clean + 0.1


def test_perturbation_is_seeded(small_cnn, small_data):
    x, y = small_data.x_test[:8], small_data.y_test[:8]
    adversary = AdversarialTraining(eps=0.2, step_size=0.05)
    a = _perturb(adversary, small_cnn, x, y, (3, 1))
    np.testing.assert_array_equal(a, _perturb(adversary, small_cnn, x, y, (3, 1)))
    assert not np.array_equal(a, _perturb(adversary, small_cnn, x, y, (3, 2)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eps": 0.0}, "eps=0.0 must be a positive number"),
        ({"eps": float("nan")}, "eps=nan"),
        ({"step_size": -0.1}, "step_size=-0.1"),
        ({"steps": 0}, "steps=0 must be an integer >= 1"),
        ({"steps": 1.5}, "steps=1.5"),
        ({"clip_min": 1.0, "clip_max": 1.0}, "clip_min=1.0 must be below clip_max=1.0"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdversarialTraining(**kwargs)


def test_describe_names_the_attack():
    assert AdversarialTraining().describe() == "FGSM from a random start, eps 0.3, step 0.375"
    assert AdversarialTraining(steps=7, step_size=0.1).describe().startswith("PGD-7 ")


def _copy(model):
    return retrain.copy_model(model)


def test_adversarial_training_is_seeded_and_is_not_clean_training(small_cnn, small_data):
    data = small_data.head(300, 50)
    config = models.TrainConfig(epochs=1, batch_size=50, verbose=0, seed=4)
    adversary = AdversarialTraining(eps=0.2, step_size=0.25)
    runs = []
    for kind in (adversary, adversary, None):
        model = _copy(small_cnn)
        models.train(model, data, config, adversary=kind)
        runs.append(model.get_weights())
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, c) for a, c in zip(runs[0], runs[2]))


def test_adversarial_training_buys_robustness(small_cnn, small_data):
    """Two epochs on 1,000 images: the PGD accuracy at eps 0.1 rises above the same
    model trained as long on clean images."""
    config = models.TrainConfig(epochs=2, batch_size=50, verbose=0, schedule="constant")
    x, y = small_data.x_test[:150], small_data.y_test[:150]
    accuracy = {}
    for name, adversary in (("clean", None), ("adversarial", AdversarialTraining(0.1, 0.125))):
        model = _copy(small_cnn)
        models.train(model, small_data, config, adversary=adversary)
        x_adv = attacks.pgd(model, x, 0.1, y, step_size=0.01, steps=20)
        accuracy[name] = float(np.mean(models.predict_classes(model, x_adv) == y))
    assert accuracy["adversarial"] > accuracy["clean"] + 0.08, accuracy


def test_retrain_config_adversarial_fields():
    config = retrain.RetrainConfig(mode="adversarial", epochs=1, adversarial_epochs=3)
    assert config.adversary() == AdversarialTraining(0.3, 0.375, 1)
    _, train = config.round_configs(BackworkConfig(), models.TrainConfig())
    assert train.epochs == 3
    other = retrain.RetrainConfig(mode="control", epochs=1, adversarial_epochs=3)
    assert other.adversary() is None
    assert other.round_configs(BackworkConfig(), models.TrainConfig())[1].epochs == 1
    with pytest.raises(ValueError, match="steps=0"):
        retrain.RetrainConfig(adversarial_steps=0)
    with pytest.raises(ValueError, match="adversarial_epochs=0"):
        retrain.RetrainConfig(adversarial_epochs=0)


def test_adversarial_settings_only_decide_the_adversarial_mode(small_cnn, small_data):
    """Folders of the other modes, written before the adversarial mode existed, still
    resume: their settings hold no adversarial field."""
    train = models.TrainConfig()
    for mode in ("uniform", "adversarial"):
        config = retrain.RetrainConfig(mode=mode)
        settings = retrain_store.round_settings(None, None, BackworkConfig(), train, config)
        keys = {k for k in settings if k.startswith("adversarial_")}
        assert keys == (
            {"adversarial_eps", "adversarial_step", "adversarial_steps"}  # epochs: in train
            if mode == "adversarial"
            else set()
        )


@pytest.mark.slow
def test_two_replicas_draw_their_own_starts(run_on_two_cpus):
    """Two logical CPUs (a fresh process): adversarial training runs under a mirrored
    strategy, and the two slices of a batch get different random starts."""
    proc = run_on_two_cpus(
        """
        from tfool import data, models
        from tfool.adversarial import AdversarialTraining
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        adversary = AdversarialTraining(eps=0.3, step_size=0.1)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
        with strategy.scope():
            model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                                      keras.layers.Dense(3)])
        x = tf.zeros((4, 6, 6, 1)) + 0.5
        y = tf.zeros((4,), tf.int64)
        seed = tf.constant([1, 2], tf.int64)
        fn = tf.function(lambda x, y, s: adversary.perturb(model, loss, x, y, s))
        out = strategy.experimental_local_results(strategy.run(fn, args=(x, y, seed)))
        assert not np.allclose(out[0].numpy(), out[1].numpy())
        one = fn(x, y, seed).numpy()
        assert np.array_equal(out[0].numpy(), one)  # replica 0 draws as one device does
        rng = np.random.default_rng(0)
        ds = data.Dataset(rng.uniform(size=(40, 6, 6, 1)).astype("float32"),
                          np.arange(40) % 3, np.zeros((6, 6, 6, 1), "float32"),
                          np.arange(6) % 3, ("a", "b", "c"), "synthetic", "tiny")
        result = models.train(model, ds, models.TrainConfig(epochs=1, batch_size=10,
                              verbose=0), strategy, adversary=adversary)
        assert np.isfinite(result.history["loss"][0])
        print("OK")
        """
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
