"""Shared fixtures: offline mode, the embedded sample and a small trained CNN."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TFOOL_OFFLINE"] = "1"  # tests never download

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfool import data, models  # noqa: E402


@pytest.fixture(scope="session")
def mnist_sample():
    """The embedded MNIST sample (4,000 train / 1,000 test)."""
    return data.load_mnist(source="sample")


@pytest.fixture(scope="session")
def small_data(mnist_sample):
    """A 1,000-image subset of the sample, for quick training."""
    return mnist_sample.head(1000, 300)


@pytest.fixture(scope="session")
def small_cnn(small_data):
    """A small reference-topology CNN (8/16 filters, 64 units) trained for 2 epochs."""
    keras.utils.set_random_seed(0)
    model = models.build_mnist_cnn(conv_filters=(8, 16), fc_units=64, seed=0)
    result = models.train(
        model,
        small_data,
        models.TrainConfig(
            epochs=3, batch_size=50, learning_rate=3e-3, verbose=0, schedule="constant"
        ),
    )
    model.test_accuracy = result.test_accuracy
    return model


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


#: The preamble of a script run on two logical CPUs (set before TensorFlow starts).
TWO_CPUS = """
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""


@pytest.fixture()
def run_on_two_cpus(tmp_path):
    """Runs a script body in a fresh Python process whose one CPU is split into two logical
    devices (``/cpu:0``, ``/cpu:1``); returns the ``CompletedProcess``."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="2")

    def run(body: str) -> subprocess.CompletedProcess:
        script = TWO_CPUS + textwrap.dedent(body)
        return subprocess.run(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run
