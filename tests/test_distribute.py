"""Tests of tfool.distribute: strategy selection and its errors, split batches, and real
two-replica strategies (mirrored over two logical CPUs, two multi-worker processes)."""

import dataclasses
import json
import socket

import distributed_worker
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfool import _tf, distribute, local_cluster, models

# ----------------------------------------------------------------------------------------
# Selection logic, with the hardware mocked
# ----------------------------------------------------------------------------------------


class FakeStrategy:
    """Stands in for a strategy class; records how it was made."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.num_replicas_in_sync = len(args[0]) if args and isinstance(args[0], list) else 1
        self.extended = type("Extended", (), {"worker_devices": (), "should_checkpoint": True})


@pytest.fixture()
def hardware(monkeypatch):
    """Pretends ``gpus`` GPUs (and possibly a TPU VM); strategy classes are fakes."""

    def set_up(gpus=0, tpu_hint=False):
        names = [f"/device:GPU:{i}" for i in range(gpus)]
        monkeypatch.setattr(distribute, "_gpus", lambda: names)
        monkeypatch.setattr(distribute, "_physical_gpu_count", lambda: gpus)
        monkeypatch.setattr(distribute, "_local_tpu_hint", lambda: tpu_hint)
        monkeypatch.setattr(distribute, "describe_devices", lambda: ", ".join(names + ["CPU:0"]))
        monkeypatch.setattr(tf.distribute, "MirroredStrategy", FakeStrategy)
        monkeypatch.setattr(tf.distribute, "OneDeviceStrategy", FakeStrategy)
        monkeypatch.setattr(distribute, "_tpu", lambda address: FakeStrategy("tpu", address))

    return set_up


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="gpu"), "unknown"),
        (dict(name="mirrored", num_gpus=-1), "num_gpus=-1"),
        (dict(name="mirrored", num_gpus=1.5), "num_gpus=1.5"),
        (dict(name="mirrored", num_gpus=True), "num_gpus=True"),
        (dict(name="off", num_gpus=2), "does not apply to strategy 'off'"),
        (dict(name="mirrored", tpu_address="grpc://x:1"), "only applies"),
        (dict(name="tpu", num_gpus=2), "does not apply to the 'tpu'"),
        (dict(name="one_device", num_gpus=2), "use 'mirrored'"),
    ],
)
def test_bad_arguments_are_value_errors(hardware, kwargs, match):
    hardware(gpus=4)
    with pytest.raises(ValueError, match=match):
        distribute.get_strategy(**kwargs)


@pytest.mark.parametrize(
    "name, num_gpus, found",
    [
        ("mirrored", 2, 1),
        ("one_device", 1, 0),
        ("auto", 3, 1),
        ("multi_worker_mirrored", 2, 1),
    ],
)
def test_missing_gpus_are_errors_naming_what_was_found(
    hardware, monkeypatch, name, num_gpus, found
):
    hardware(gpus=found)
    tf_config = {"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    with pytest.raises(RuntimeError, match=f"num_gpus={num_gpus}.* {found} GPU") as err:
        distribute.get_strategy(name, num_gpus=num_gpus)
    if name != "multi_worker_mirrored":
        assert "CPU:0" in str(err.value)  # the devices that were found


def test_mirrored_takes_the_first_gpus(hardware):
    hardware(gpus=4)
    assert distribute.get_strategy("mirrored", num_gpus=2).args == (
        ["/device:GPU:0", "/device:GPU:1"],
    )
    assert len(distribute.get_strategy("mirrored").args[0]) == 4
    assert distribute.get_strategy("one_device").args == ("/device:GPU:0",)
    assert distribute.get_strategy("one_device", num_gpus=0).args[0].endswith("CPU:0")


@pytest.mark.parametrize(
    "gpus, tpu_hint, num_gpus, expected",
    [
        (0, False, None, "default"),
        (1, False, None, "default"),
        (2, False, None, ["/device:GPU:0", "/device:GPU:1"]),
        (4, False, 2, ["/device:GPU:0", "/device:GPU:1"]),
        (2, False, 1, "/device:GPU:0"),
        (2, False, 0, "CPU"),
        (2, True, None, "tpu"),
        (0, True, 0, "CPU"),  # an explicit num_gpus picks the CPU/GPU path
    ],
)
def test_auto_picks_tpu_then_several_gpus_then_the_default(
    hardware, gpus, tpu_hint, num_gpus, expected
):
    hardware(gpus=gpus, tpu_hint=tpu_hint)
    strategy = distribute.get_strategy("auto", num_gpus=num_gpus)
    if expected == "default":
        assert strategy is tf.distribute.get_strategy()
    elif expected == "tpu":
        assert strategy.args == ("tpu", None)
    elif expected == "CPU":
        assert "CPU:0" in strategy.args[0]
    else:
        assert strategy.args[0] == expected


def test_auto_with_a_tpu_address_is_a_tpu_request(hardware):
    hardware(gpus=2)
    assert distribute.get_strategy("auto", tpu_address="my-tpu").args == ("tpu", "my-tpu")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RuntimeError, match="did not answer"):
        distribute.get_strategy("auto", tpu_address=f"grpc://127.0.0.1:{port}")


def test_tpu_resolver_calls(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    calls = []

    class Resolver:
        def __init__(self, tpu):
            calls.append(("resolver", tpu))

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", Resolver)
    monkeypatch.setattr(
        tf.config, "experimental_connect_to_cluster", lambda r: calls.append("connect")
    )
    monkeypatch.setattr(
        tf.tpu.experimental, "initialize_tpu_system", lambda r: calls.append("initialize")
    )
    monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda r: ("strategy", r))
    monkeypatch.setattr(distribute, "describe", lambda s: "fake")
    assert distribute.get_strategy("tpu")[0] == "strategy"
    assert calls == [("resolver", "local"), "initialize"]  # local: nothing to connect to
    calls.clear()
    distribute.get_strategy("tpu", tpu_address="grpc://10.0.0.2:8470")
    assert calls == [("resolver", "grpc://10.0.0.2:8470"), "connect", "initialize"]
    calls.clear()
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    distribute.get_strategy("tpu")
    assert calls == [("resolver", "my-tpu"), "connect", "initialize"]


def test_no_tpu_here_is_a_runtime_error_naming_the_devices(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(RuntimeError, match="(?s)no TPU at tpu_address='local'.*found: .*CPU:0"):
        distribute.get_strategy("tpu")


def test_local_tpu_hint(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert not distribute._local_tpu_hint()  # this machine: no TPU devices or files
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    assert distribute._local_tpu_hint()


@pytest.mark.parametrize(
    "value, match",
    [
        ("", "not set"),
        ("{nope", "not valid JSON"),
        ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', "lists no workers"),
        ('{"cluster": {"worker": ["a:1"]}}', "no task type"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "not in"),
    ],
)
def test_bad_tf_config_is_a_runtime_error(monkeypatch, value, match):
    with pytest.raises(RuntimeError, match=match):
        distribute.cluster_from_tf_config({"TF_CONFIG": value})
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(RuntimeError, match=match):
        distribute.get_strategy("multi_worker_mirrored")


def test_good_tf_config_parses():
    config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert distribute.cluster_from_tf_config({"TF_CONFIG": json.dumps(config)}) == config


def test_real_single_device_strategies_and_their_descriptions():
    off = distribute.get_strategy("off")
    assert off is tf.distribute.get_strategy()
    assert distribute.describe(off) == "_DefaultDistributionStrategy: 1 replica"
    one = distribute.get_strategy("one_device")
    assert distribute.describe(one).startswith("OneDeviceStrategy: 1 replica on ")
    assert distribute.is_chief(one) and distribute.is_chief(None)
    assert distribute.describe(None) == "no strategy"


# ----------------------------------------------------------------------------------------
# Split batches (one process: one replica; several replicas run in the subprocess tests)
# ----------------------------------------------------------------------------------------


@tf.function
def _rows_step(x, y):
    return {"double": 2.0 * x, "sum": tf.reduce_sum(x, axis=1) + y}


def _strategies():
    return [None, tf.distribute.get_strategy(), tf.distribute.OneDeviceStrategy("/cpu:0")]


@pytest.mark.parametrize("index", range(3))
def test_run_batch_and_map_batches_keep_rows_in_order(index):
    strategy = _strategies()[index]
    x = np.arange(21, dtype=np.float32).reshape(7, 3)
    y = np.arange(7, dtype=np.float32)
    expected = {"double": 2 * x, "sum": x.sum(axis=1) + y}
    out = _tf.run_batch(_rows_step, (x, y), strategy)
    for key in expected:
        np.testing.assert_array_equal(out[key], expected[key])
    out = _tf.map_batches(_rows_step, [x, y], 3, strategy)
    for key in expected:
        np.testing.assert_array_equal(out[key], expected[key])


def test_replicated_arguments_are_passed_whole():
    table = np.arange(12, dtype=np.float32).reshape(6, 2)
    rows = np.array([5, 0, 3, 3, 1])
    pick = tf.function(lambda full, i: tf.gather(full, i))
    for strategy in _strategies():
        out = _tf.map_batches(pick, [table, rows], 2, strategy, replicated=[0])
        np.testing.assert_array_equal(out, table[rows])


class _Replicas:
    """Only what SplitBatch reads of a strategy before it runs anything."""

    def __init__(self, n):
        self.num_replicas_in_sync = n


@pytest.mark.parametrize("rows, replicas, per, padding", [(7, 2, 4, 1), (8, 2, 4, 0), (1, 3, 1, 2)])
def test_split_sizes(rows, replicas, per, padding):
    batch = _tf.SplitBatch(_Replicas(replicas), rows)
    assert (batch.per_replica, batch.padding) == (per, padding)
    assert batch.per_replica * replicas == rows + padding


def test_split_batch_errors():
    with pytest.raises(ValueError, match="num_rows=0"):
        _tf.SplitBatch(None, 0)
    with pytest.raises(ValueError, match="expected 3 rows"):
        _tf.SplitBatch(None, 3).split(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="different row counts"):
        _tf.run_batch(_rows_step, (np.zeros((3, 2)), np.zeros(2)))
    with pytest.raises(ValueError, match="at least one argument split"):
        _tf.run_batch(_rows_step, (np.zeros((3, 2)),), replicated=[0])
    with pytest.raises(ValueError, match="batch_size=0"):
        _tf.map_batches(_rows_step, [np.zeros((3, 2)), np.zeros(3)], 0)
    with pytest.raises(ValueError, match="no rows"):
        _tf.map_batches(_rows_step, [np.zeros((0, 2)), np.zeros(0)], 2)


def test_row_mask_and_total_without_a_strategy():
    batch = _tf.SplitBatch(None, 3)
    np.testing.assert_array_equal(batch.row_mask().numpy(), [1, 1, 1])
    assert batch.total(tf.constant(2.5)) == 2.5


# ----------------------------------------------------------------------------------------
# The training loop that runs under every strategy
# ----------------------------------------------------------------------------------------


def _tiny(seed=0):
    return models.build_mnist_cnn(conv_filters=(4,), fc_units=8, seed=seed)


def test_training_is_seeded_and_calls_callbacks(small_data):
    config = models.TrainConfig(epochs=2, batch_size=64, seed=5, verbose=0)
    data = dataclasses.replace(
        small_data, x_train=small_data.x_train[:300], y_train=small_data.y_train[:300]
    )

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.calls = []

        def on_epoch_end(self, epoch, logs=None):
            self.calls.append(("epoch", epoch, sorted(logs)))

        def on_train_batch_end(self, batch, logs=None):
            self.calls.append(("batch", batch))

    record = Record()
    first, second = _tiny(), _tiny()
    result = models.train(first, data, config, callbacks=[record])
    again = models.train(second, data, config)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert result.history == again.history and len(result.history["loss"]) == 2
    assert record.calls.count(("epoch", 1, ["accuracy", "loss"])) == 1
    assert sum(c[0] == "batch" for c in record.calls) == 2 * 5  # 300 rows in batches of 64
    other = models.train(_tiny(), data, models.TrainConfig(epochs=2, batch_size=64, seed=6))
    assert other.history != result.history  # another seed, another order


def test_training_stops_when_a_callback_asks(small_data):
    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    config = models.TrainConfig(epochs=3, batch_size=100, verbose=0)
    result = models.train(_tiny(), small_data, config, callbacks=[Stop()])
    assert result.epochs == 1 and len(result.history["loss"]) == 1


# ----------------------------------------------------------------------------------------
# Real two-replica strategies, each in fresh processes (tests/distributed_worker.py)
# ----------------------------------------------------------------------------------------

MIRRORED_CASES = tuple(distributed_worker.CASES)
#: The driver each process runs.
WORKER = distributed_worker.__file__
MULTI_WORKER_CASES = ("train", "fgsm", "backwork")
#: Backworked images after a few Adam steps: Adam's first steps are nearly sign(gradient),
#: so float-rounding differences in near-zero gradients move a pixel by up to the learning
#: rate times a small factor; every other backwork output is held to the common tolerance.
LOOSE = {("backwork", "images"): 1e-3}


def close_enough(diff: float, scale: float, case: str = "", name: str = "") -> bool:
    """Float tolerance: 1e-5 relative to the reference's largest value (at least 1)."""
    return diff <= LOOSE.get((case, name), 1e-5) * max(1.0, scale)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One mirrored process (2 logical CPUs, every case, reference included) and a
    2-worker TF_CONFIG cluster (training and FGSM), started together."""
    out = tmp_path_factory.mktemp("distributed")
    mirrored = local_cluster.Workers(
        WORKER, ["--strategy=mirrored", "--logical_cpus=2", f"--out={out}"]
    )
    cluster = local_cluster.Workers(
        WORKER,
        [
            "--strategy=multi_worker_mirrored",
            f"--cases={','.join(MULTI_WORKER_CASES)}",
            "--no_reference",
            f"--out={out}",
        ],
        num_workers=2,
    )
    return {"out": out, "mirrored": mirrored.reports()[0], "cluster": cluster.reports()}


@pytest.mark.slow
@pytest.mark.parametrize("case", MIRRORED_CASES)
def test_mirrored_two_replicas_match_one_device(runs, case):
    report = runs["mirrored"]
    assert report["replicas"] == 2 and report["strategy"].startswith("MirroredStrategy")
    outputs = report["cases"][case]
    assert outputs, case
    for name, d in outputs.items():
        assert d["max_abs_diff"] is not None, (case, name, d)  # same shape
        assert close_enough(d["max_abs_diff"], d["max_abs"], case, name), (case, name, d)
    if case == "train":  # the comparison is not vacuous: training moved the weights
        assert outputs["moved"]["max_abs"] > 1e-3
    if case == "fgsm":
        assert outputs["fgsm"]["max_abs"] > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("case", MULTI_WORKER_CASES)
def test_two_workers_match_one_device(runs, case):
    reports = runs["cluster"]
    assert [r["task"]["index"] for r in reports] == [0, 1]
    assert [r["chief"] for r in reports] == [True, False]
    assert all(r["replicas"] == 2 for r in reports)
    reference = distributed_worker.load_outputs(runs["out"], case, "reference")
    for index in (0, 1):
        got = distributed_worker.load_outputs(runs["out"], case, f"worker{index}")
        for name, d in distributed_worker.compare(reference, got).items():
            assert d["max_abs_diff"] is not None, (index, name, d)
            assert close_enough(d["max_abs_diff"], d["max_abs"], case, name), (index, name, d)


def test_an_unreachable_tpu_address_fails_fast_in_one_line():
    with pytest.raises(
        RuntimeError, match="no TPU answers at tpu_address='grpc://127.0.0.1:1'"
    ) as e:
        distribute.get_strategy("tpu", tpu_address="grpc://127.0.0.1:1")
    assert "\n" not in str(e.value)
