"""Shared fixtures: offline mode, the embedded sample, a small trained CNN, scripts run on
two logical CPUs, and ``run_backwork.py`` and ``run_fgsm.py`` run in this process."""

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
from absl import flags  # noqa: E402
from tiny_runs import parse_flags  # noqa: E402

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


@pytest.fixture(scope="module")
def tiny_data(small_data):
    """200 training images: enough for labels 0 and 1, quick to train on."""
    return small_data.head(200, 100)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, small_cnn):
    """``small_cnn`` saved as a whole ``.keras`` model (where the run scripts look for it)."""
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    models.save_model(small_cnn, path)
    return path


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


def _script_flags(script, argv: list[str]) -> flags.FlagValues:
    """A run script's flags (``script.define_flags``), fresh, parsed from ``argv``."""
    return parse_flags(script.define_flags, *argv, prog=script.__name__)


@pytest.fixture()
def parse_backwork_flags(monkeypatch):
    """Parses a command line into fresh ``run_backwork.py`` flags and makes them the script's
    ``FLAGS`` for this test; returns the parser: ``argv -> FlagValues``."""
    import run_backwork

    def parse(argv: list[str]) -> flags.FlagValues:
        fv = _script_flags(run_backwork, argv)
        monkeypatch.setattr(run_backwork, "FLAGS", fv)
        return fv

    return parse


@pytest.fixture()
def backwork_main(parse_backwork_flags):
    """Runs ``run_backwork.py``'s main in this process on a command line, with fresh flags;
    returns the runner: ``argv -> exit status``."""
    import run_backwork

    def run(argv: list[str]) -> int:
        parse_backwork_flags(argv)
        return run_backwork._main_with_clear_errors(["run_backwork"])

    return run


@pytest.fixture()
def parse_fgsm_flags():
    """Parses a command line into fresh ``run_fgsm.py`` flags; returns the parser:
    ``argv -> FlagValues``."""
    import run_fgsm

    return lambda argv: _script_flags(run_fgsm, argv)


@pytest.fixture()
def fgsm_main(parse_fgsm_flags):
    """Runs ``run_fgsm.py``'s main in this process on a command line, with fresh flags;
    returns the runner: ``argv -> exit status``."""
    import run_fgsm

    return lambda argv: run_fgsm._main_with_clear_errors(["run_fgsm"], parse_fgsm_flags(argv))
