"""Quick checks at the real scale: full MNIST from ../shared/data/mnist (loading and a few
backworking steps with a tiny CNN, never full training); skipped when the folder is absent."""

from pathlib import Path

import keras
import numpy as np
import pytest

from tfool import backwork as bw
from tfool import data, models

FULL = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # MNIST's, per digit

pytestmark = pytest.mark.skipif(
    not (FULL / "train-images-idx3-ubyte.gz").exists(),
    reason=f"full MNIST is not at {FULL} (the shared data folder of this workplace)",
)


@pytest.fixture(scope="module")
def full():
    return data.load_mnist("idx", FULL)


def test_full_mnist_loads(full):
    assert full.x_train.shape == (60000, 28, 28, 1) and full.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(full.y_train).tolist() == COUNTS
    assert (
        full.x_train.dtype == np.float32 and 0.0 <= full.x_train.min() < full.x_train.max() <= 1.0
    )
    assert models.TrainConfig().epochs_for(len(full.x_train)) == models.AUTO_EPOCHS[0]


def test_every_training_image_is_a_reference_held_once(full):
    keras.utils.set_random_seed(0)
    model = models.build_mnist_cnn(conv_filters=(2, 4), fc_units=8, seed=0)
    config = bw.BackworkConfig(num_examples=2, max_num_steps=3, prob_cap_min=1.0)
    refs = bw.reference_set(model, full, config)
    assert refs.sizes == tuple(COUNTS)
    dims = 784 + 14 * 14 * 2 + 7 * 7 * 4 + 8  # inputs, conv0, conv1, fc
    assert refs.nbytes == 4 * 60000 * (dims + 4)  # float32 activations and norms, no padding
    res = bw.backwork(model, full, config, references=refs)
    assert res.steps == 3 and np.isfinite(res.cost).all()
    assert np.all(res.cost_terms["reference"] > 0)
