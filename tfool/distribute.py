"""tf.distribute strategies by name. Running compiled batch steps split across replicas
(``SplitBatch``, ``run_batch``, ``map_batches``) lives in ``tfool._tf`` and is re-exported
here."""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import logging
import os
import socket

import numpy as np
import tensorflow as tf

from tfool.config import setting

logger = logging.getLogger(__name__)

#: Names accepted by ``get_strategy`` (and ``--distribution_strategy``).
STRATEGY_NAMES = ("auto", "off", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
#: Seconds ``auto`` waits for a ``grpc://host:port`` TPU address to answer.
TPU_PROBE_SECONDS = 2.0


# ----------------------------------------------------------------------------------------
# What hardware is there
# ----------------------------------------------------------------------------------------


def _gpus() -> list[str]:
    """The logical GPU devices (initialises the TensorFlow runtime)."""
    return [d.name for d in tf.config.list_logical_devices("GPU")]


def _cpus() -> list[str]:
    """The logical CPU devices (several only when configured with
    ``tf.config.set_logical_device_configuration``)."""
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _physical_gpu_count() -> int:
    """Physical GPUs; unlike ``_gpus`` this leaves the runtime uninitialised."""
    return len(tf.config.list_physical_devices("GPU"))


def describe_devices() -> str:
    """A one-line list of the visible devices, for logs and error messages."""
    names = []
    for kind in ("TPU", "GPU", "CPU"):
        names += [d.name for d in tf.config.list_logical_devices(kind)]
    return ", ".join(names) if names else "no devices"


def _local_tpu_hint() -> bool:
    """Whether this host looks like a TPU VM: TPU devices, TPU device files with libtpu
    installed, or ``TPU_NAME`` set. Cheap: nothing is contacted."""
    if tf.config.list_physical_devices("TPU") or os.environ.get("TPU_NAME"):
        return True
    device_files = glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*")
    return bool(device_files) and importlib.util.find_spec("libtpu") is not None


def _probe(address: str, seconds: float) -> bool:
    """Whether ``grpc://host:port`` accepts a TCP connection within ``seconds``."""
    host, _, port = address.removeprefix("grpc://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=seconds):
            return True
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DistributionConfig:
    """Which ``tf.distribute`` strategy to run under (see ``get_strategy``).

    Attributes:
        name: The tf.distribute strategy of training, attacks and backworking: auto (a
            TPU when ``tpu_address`` is set or this is a TPU VM, else mirrored over the
            GPUs when there are several, else off), off (no distribution), one_device,
            mirrored (every local GPU, or every logical CPU without GPUs),
            multi_worker_mirrored (the cluster in the TF_CONFIG environment variable) or
            tpu. Missing hardware is an error.
        num_gpus: GPUs to use (per worker), an integer >= 0; 0 runs on the CPU; ``None``:
            every visible GPU. Not with ``name='off'``, not > 0 with ``name='tpu'``, at
            most 1 with ``name='one_device'``.
        tpu_address: TPU name or grpc://host:port address for ``name='tpu'`` or
            ``name='auto'``; ``None`` (or empty): $TPU_NAME when set, else the TPU attached
            to this VM.

    Raises:
        ValueError: an unknown name, a bad ``num_gpus``, or an option the strategy does
            not take.
    """

    name: str = setting("auto", choices=STRATEGY_NAMES, flag="distribution_strategy")
    num_gpus: int | None = None
    tpu_address: str | None = setting(None, flag="tpu")

    def __post_init__(self):
        name, num_gpus, tpu = self.name, self.num_gpus, self.tpu_address
        if name not in STRATEGY_NAMES:
            raise ValueError(
                f"distribution strategy {name!r} is unknown; expected one of {STRATEGY_NAMES}"
            )
        if num_gpus is not None and (
            isinstance(num_gpus, bool)
            or not isinstance(num_gpus, (int, np.integer))
            or num_gpus < 0
        ):
            raise ValueError(
                f"num_gpus={num_gpus!r} must be None (all visible GPUs) or an int >= 0"
            )
        if tpu and name not in ("tpu", "auto"):
            raise ValueError(f"tpu_address={tpu!r} only applies to strategies 'tpu' and 'auto'")
        if name == "off" and num_gpus is not None:
            raise ValueError(f"num_gpus={num_gpus} does not apply to strategy 'off' (use 'auto')")
        if name == "tpu" and num_gpus:
            raise ValueError(f"num_gpus={num_gpus} does not apply to the 'tpu' strategy")
        if name == "one_device" and num_gpus is not None and num_gpus > 1:
            raise ValueError(
                f"num_gpus={num_gpus} does not fit strategy 'one_device' (0: the CPU, 1: one "
                "GPU); use 'mirrored' for several GPUs"
            )
        if num_gpus is not None:
            object.__setattr__(self, "num_gpus", int(num_gpus))


def _first_gpus(num_gpus: int, strategy: str) -> list[str]:
    found = _gpus()
    if len(found) < num_gpus:
        raise RuntimeError(
            f"distribution strategy {strategy!r} asked for num_gpus={num_gpus} but "
            f"{len(found)} GPU(s) are visible (devices: {describe_devices()})"
        )
    return found[:num_gpus]


def _one_device(num_gpus: int | None) -> tf.distribute.Strategy:
    if num_gpus == 0:
        device = _cpus()[0]
    elif num_gpus == 1:
        device = _first_gpus(1, "one_device")[0]
    else:
        device = (_gpus() or _cpus())[0]
    return tf.distribute.OneDeviceStrategy(device)


def _mirrored(num_gpus: int | None) -> tf.distribute.Strategy:
    if num_gpus is None:
        devices = _gpus() or _cpus()
    elif num_gpus == 0:
        devices = _cpus()
    else:
        devices = _first_gpus(num_gpus, "mirrored")
    if len(devices) == 1:
        logger.warning("mirrored strategy over a single device (%s)", devices[0])
    return tf.distribute.MirroredStrategy(devices)


def cluster_from_tf_config(environ: dict | None = None) -> dict:
    """Parses and checks ``TF_CONFIG``, the cluster of a multi-worker run.

    Args:
        environ: The environment to read (default ``os.environ``).

    Returns:
        The parsed ``TF_CONFIG``: ``{"cluster": {"worker": [...], ...}, "task": {...}}``.

    Raises:
        RuntimeError: ``TF_CONFIG`` is missing, not JSON, or names no workers or no task.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    example = (
        '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    if not raw.strip():
        raise RuntimeError(
            "distribution strategy 'multi_worker_mirrored' needs the cluster in the TF_CONFIG "
            f"environment variable, which is not set; e.g. TF_CONFIG='{example}'"
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise RuntimeError(f"TF_CONFIG is not valid JSON ({err}): {raw!r}") from err
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not (cluster.get("worker") or cluster.get("chief")):
        raise RuntimeError(f"TF_CONFIG={raw!r} lists no workers; expected e.g. {example}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise RuntimeError(f"TF_CONFIG={raw!r} has no task type and index; expected e.g. {example}")
    members = cluster.get(task["type"]) or []
    if not 0 <= int(task["index"]) < len(members):
        raise RuntimeError(
            f"TF_CONFIG task {task['type']} #{task['index']} is not in its cluster {cluster}"
        )
    return config


def _multi_worker(num_gpus: int | None) -> tf.distribute.Strategy:
    cluster_from_tf_config()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if num_gpus is not None:
        found = _physical_gpu_count()
        if found < num_gpus:
            raise RuntimeError(
                f"distribution strategy 'multi_worker_mirrored' asked for num_gpus={num_gpus} "
                f"per worker but {found} GPU(s) are visible on this worker"
            )
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            resolver.cluster_spec(),
            task_type=resolver.task_type,
            task_id=resolver.task_id,
            num_accelerators={"GPU": num_gpus},
            rpc_layer=resolver.rpc_layer or "grpc",
        )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except (RuntimeError, ValueError) as err:
        raise RuntimeError(
            f"could not start the multi-worker strategy ({err}); create it before any other "
            "TensorFlow work, with the same TF_CONFIG cluster on every worker"
        ) from err


def _tpu(tpu_address: str | None) -> tf.distribute.Strategy:
    address = tpu_address or os.environ.get("TPU_NAME") or "local"
    if address.startswith("grpc://") and not _probe(address, TPU_PROBE_SECONDS):
        raise RuntimeError(
            f"no TPU answers at tpu_address={address!r} within {TPU_PROBE_SECONDS:g} s; "
            f"devices found: {describe_devices()}"
        )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        if address != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except Exception as err:  # the resolver raises many types when there is no TPU
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise RuntimeError(
            f"no TPU at tpu_address={address!r} ({type(err).__name__}: {first[:200]}); "
            f"devices found: {describe_devices()}"
        ) from err


def _auto(num_gpus: int | None, tpu_address: str | None) -> tuple[str, tf.distribute.Strategy]:
    if tpu_address:
        if tpu_address.startswith("grpc://") and not _probe(tpu_address, TPU_PROBE_SECONDS):
            raise RuntimeError(
                f"tpu_address={tpu_address!r} did not answer within {TPU_PROBE_SECONDS:g} s; "
                "drop the address to use the GPUs or the CPU"
            )
        return "tpu", _tpu(tpu_address)
    if num_gpus is None and _local_tpu_hint():
        return "tpu", _tpu(None)
    found = len(_gpus())
    wanted = found if num_gpus is None else num_gpus
    if wanted > found:
        _first_gpus(wanted, "auto")  # raises, naming what was found
    if wanted >= 2:
        return "mirrored", _mirrored(wanted)
    if num_gpus is not None:  # 0: the CPU even with a GPU; 1: one GPU
        return "one_device", _one_device(num_gpus)
    return "off", tf.distribute.get_strategy()


def get_strategy(
    name: str = "auto", num_gpus: int | None = None, tpu_address: str | None = None
) -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name.

    ``off``: the default strategy (no distribution). ``one_device``: one device, the first
    GPU if any (``num_gpus=0``: the CPU). ``mirrored``: one replica per local device, the
    first ``num_gpus`` GPUs (``None``: every GPU, or every logical CPU when there is no GPU;
    ``0``: the logical CPUs). ``multi_worker_mirrored``: every worker of the ``TF_CONFIG``
    cluster, ``num_gpus`` GPUs each; create it before any other TensorFlow work.
    ``tpu``: ``TPUClusterResolver(tpu_address)``; an empty address means ``$TPU_NAME``, else
    the TPU attached to this VM.
    ``auto``: a TPU when ``tpu_address`` is given or this is a TPU VM, else ``mirrored`` over
    the GPUs when there are several, else ``off``.

    Asking for hardware that is not there raises; it never falls back silently.

    Args:
        name: One of ``STRATEGY_NAMES``.
        num_gpus: GPUs to use (per worker); ``None``: every visible GPU.
        tpu_address: TPU name or ``grpc://host:port`` address; empty: ``$TPU_NAME``,
            else the local TPU.

    Returns:
        The strategy; build models and optimisers inside its ``scope()``.

    Raises:
        ValueError: an unknown name, a bad ``num_gpus``, or an option the strategy does
            not take.
        RuntimeError: fewer GPUs than asked for, no TPU, no (or a bad) ``TF_CONFIG``; the
            message names the devices that were found.
    """
    num_gpus = DistributionConfig(name, num_gpus, tpu_address).num_gpus  # checks them all
    if name == "auto":
        name, strategy = _auto(num_gpus, tpu_address)
    elif name == "off":
        strategy = tf.distribute.get_strategy()
    elif name == "one_device":
        strategy = _one_device(num_gpus)
    elif name == "mirrored":
        strategy = _mirrored(num_gpus)
    elif name == "multi_worker_mirrored":
        strategy = _multi_worker(num_gpus)
    else:
        strategy = _tpu(tpu_address)
    logger.info("distribution strategy %s: %s", name, describe(strategy))
    return strategy


def describe(strategy: tf.distribute.Strategy | None) -> str:
    """``"MirroredStrategy: 2 replicas on /job:localhost/.../CPU:0, ..."`` for logs."""
    if strategy is None:
        return "no strategy"
    try:
        devices = tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list
        devices = ()
    where = f" on {', '.join(devices)}" if devices else ""
    replicas = strategy.num_replicas_in_sync
    return f"{type(strategy).__name__}: {replicas} replica{'s' * (replicas != 1)}{where}"


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process should write shared outputs (model files, reports).

    Every process is the chief except the non-chief workers of a multi-worker strategy.
    """
    return strategy is None or bool(strategy.extended.should_checkpoint)
