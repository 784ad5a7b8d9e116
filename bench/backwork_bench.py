"""Benchmark: tfool's backworker against an eager port of the original broadcast program.

Both run in this one process on the same model, reference sets and initial images:

(a) ``tfool.backwork.backwork`` (matrix-product distances, compiled step), first on the
    ``--labels`` of the like-for-like comparison, then (``--all_labels``) on all ten labels
    in one joint batch;
(b) a straightforward eager port of the TensorFlow 0.x program, written here: one label at
    a time, every layer's distances built by broadcasting the ``N x B x D`` difference tensor
    ``(G[None] - R[:, None])**2`` (and ``B x B x D`` for the batch cost), softmax cost
    ``mean(1 - p)``, ``keras.optimizers.Adam`` on a ``tf.Variable`` input, no ``tf.function``.

Reference sets hold ``--ref_per_label`` images per label: the label's training images,
tiled (with a tiny seeded jitter on the copies) when there are fewer. Reported: seconds per
optimisation step and per image-step (warm-up steps excluded, convergence tests and
re-initialisation disabled) and the peak resident memory of each phase above the resident
memory just before it. Writes nothing unless ``--output`` names a JSON file.

Run from the repository root::

    python bench/backwork_bench.py                 # defaults: label 0, 6,000 refs, 20 steps
    python bench/backwork_bench.py --steps=5 --ref_per_label=2000 --output=/tmp/bench.json
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the tfool next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from tfool import backwork as bw  # noqa: E402
from tfool import costs, io, models  # noqa: E402
from tfool import data as tfool_data  # noqa: E402

try:
    import psutil
except ImportError:  # the `bench` extra is not installed: read /proc instead
    psutil = None

MB = 2**20
ALL_LABELS = tuple(range(10))


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the benchmark's flags on ``flag_values``."""
    flags.DEFINE_list(
        name="labels",
        default=["0"],
        help="Labels of the like-for-like comparison; the broadcast port runs them one at a "
        "time (keep it to one: it needs several GB per label).",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        name="all_labels",
        default=True,
        help="Also run tfool on all ten labels in one joint batch.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        name="broadcast",
        default=True,
        help="Run the eager broadcast port (turn off to time tfool alone).",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        name="profile",
        default=True,
        help="Break tfool's step time down (compute, host copies, the rest).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="profile_repeats",
        default=5,
        lower_bound=1,
        help="Timed calls of every profiled piece (after two untimed ones).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="num_examples",
        default=8,
        lower_bound=2,
        help="Images backworked per label (>= 2).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="ref_per_label",
        default=6000,
        lower_bound=1,
        help="Reference images per label (full MNIST has about 6,000).",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        name="jitter",
        default=0.01,
        lower_bound=0.0,
        help="Half-width of the uniform pixel noise added to tiled copies of the training "
        "images (0: exact copies).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="steps",
        default=20,
        lower_bound=1,
        help="Timed optimisation steps per run.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="warmup_steps",
        default=3,
        lower_bound=1,
        help="Untimed steps before the timed ones (tracing and compilation).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="chunk_size",
        default=0,
        lower_bound=0,
        help="tfool's chunk_size, reference rows per distance chunk (0: all at once).",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        name="jit_compile",
        default=True,
        help="Compile tfool's step with XLA.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="seed",
        default=0,
        help="Seed of the model weights, the jitter and the initial images.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        name="model_path",
        default=None,
        help="A trained .keras reference CNN to load; unset: a random-init one (timing does "
        "not depend on training).",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        name="data_source",
        default="sample",
        enum_values=["auto", "npz", "idx", "keras", "sample"],
        help="Where tfool.data.load_mnist reads MNIST from.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        name="data_dir",
        default=None,
        help="Directory of the MNIST files for npz/idx sources.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        name="sample_interval",
        default=0.005,
        lower_bound=0.0005,
        help="Seconds between two resident-memory samples.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        name="output",
        default=None,
        help="Write the figures to this JSON file (unset: print only).",
        flag_values=flag_values,
    )


# ----------------------------------------------------------------------------- memory


def _proc_status_kb(key: str) -> int | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def current_rss() -> int:
    """Resident set size of this process, in bytes."""
    if psutil is not None:
        return int(psutil.Process().memory_info().rss)
    kb = _proc_status_kb("VmRSS")
    return 0 if kb is None else kb * 1024


def _reset_kernel_peak() -> bool:
    """Resets the kernel's peak RSS (VmHWM) of this process; False where Linux refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status_kb("VmHWM") is not None
    except OSError:
        return False


class PeakMemory:
    """Peak resident memory of a block: a sampling thread, plus the kernel's VmHWM if resettable.

    Attributes:
        baseline: RSS just before the block (after a garbage collection), bytes.
        peak: Highest RSS seen inside the block, bytes.
        after: RSS after the block and a garbage collection, bytes.
    """

    def __init__(self, interval: float):
        self.interval = interval
        self.baseline = self.peak = self.after = 0
        self._stop = threading.Event()
        self._thread = None
        self._kernel = False

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        gc.collect()
        self.baseline = self.peak = current_rss()
        self._kernel = _reset_kernel_peak()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._kernel:
            self.peak = max(self.peak, _proc_status_kb("VmHWM") * 1024)
        gc.collect()
        self.after = current_rss()

    @property
    def kernel_peak(self) -> bool:
        """Whether the kernel's VmHWM was reset and read (exact peak), not only sampled."""
        return self._kernel

    @property
    def above_baseline(self) -> int:
        """Peak minus baseline, bytes."""
        return self.peak - self.baseline


# ----------------------------------------------------------------------------- data


def reference_dataset(
    data: tfool_data.Dataset, per_label: int, jitter: float, seed: int
) -> tfool_data.Dataset:
    """``data`` with exactly ``per_label`` training images per class, tiling when short.

    Tiled copies (not the originals) get uniform noise of half-width ``jitter``, clipped
    to [0, 1], so that no two reference rows are identical.
    """
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label in range(data.num_classes):
        x = data.train_of_class(label)
        reps = -(-per_label // len(x))
        tiled = np.concatenate([x] * reps)[:per_label].copy()
        if jitter > 0 and len(tiled) > len(x):
            noise = rng.uniform(-jitter, jitter, tiled[len(x) :].shape).astype(np.float32)
            tiled[len(x) :] = np.clip(tiled[len(x) :] + noise, 0.0, 1.0)
        xs.append(tiled)
        ys.append(np.full(per_label, label, np.int64))
    return tfool_data.Dataset(
        x_train=np.concatenate(xs),
        y_train=np.concatenate(ys),
        x_test=data.x_test[:1],
        y_test=data.y_test[:1],
        class_names=data.class_names,
        source=f"{data.source}, {per_label}/label (tiled)",
        name=data.name,
    )


def initial_images(label: int, num_examples: int, image_shape, seed: int) -> np.ndarray:
    """tfool's uniform initial images of one label (the same seeded draw)."""
    rng = np.random.default_rng([seed, int(label)])
    return rng.uniform(0.0, 1.0, size=(num_examples, *image_shape)).astype(np.float32)


# ----------------------------------------------------------------------------- runs


class _StepClock(bw.BackworkCallback):
    """Records the time of every save (one per step with ``save_freq=1``) and the costs."""

    def __init__(self):
        self.times: list[float] = []
        self.first_cost = None

    def on_save(self, event: bw.SaveEvent) -> None:
        self.times.append(time.perf_counter())
        if self.first_cost is None:
            self.first_cost = np.asarray(event.cost, np.float64)


def _step_seconds(times: list[float], warmup: int, steps: int) -> tuple[float, float]:
    """Median and mean of the ``steps`` intervals between saves after the warm-up.

    The median is the figure reported: other processes share the CPUs, and it is less
    sensitive than the mean to the steps they slowed down.
    """
    intervals = np.diff(np.asarray(times[warmup : warmup + steps + 1]))
    return float(np.median(intervals)), float(np.mean(intervals))


def run_tfool(model, data, labels, flag_values, name: str) -> dict:
    """Times ``tfool.backwork.backwork`` with convergence and re-initialisation disabled."""
    f = flag_values
    total = f.warmup_steps + f.steps
    config = bw.BackworkConfig(
        labels=tuple(labels),
        num_examples=f.num_examples,
        prob_cap_min=1.0,
        prob_cap_mean=1.0,
        min_num_steps=0,
        max_num_steps=total,
        num_mono_dec_saves=total + 2,  # the window never fills: no re-initialisation
        seed=f.seed,
        chunk_size=f.chunk_size or None,
        jit_compile=f.jit_compile,
    )
    clock = _StepClock()
    logging.info("%s: labels %s, %d steps", name, list(labels), total)
    with PeakMemory(f.sample_interval) as mem:
        start = time.perf_counter()
        result = bw.backwork(model, data, config, callbacks=[clock])
        wall = time.perf_counter() - start
    sec = _step_seconds(clock.times, f.warmup_steps, f.steps)
    rows = len(labels) * f.num_examples
    return _record(
        name, labels, rows, sec, mem, wall, clock.times[0] - start, clock.first_cost, result.steps
    )


def broadcast_backwork(
    act: keras.Model,
    refs: list[tf.Tensor],
    label: int,
    init: np.ndarray,
    num_steps: int,
    coeffs,
    reference_cost_coeff: float = 0.5,
    batch_cost_coeff: float = 0.5,
    learning_rate: float = 0.01,
) -> tuple[list[float], list[float]]:
    """The original program's optimisation, ported eagerly: broadcast distances, one label.

    The cost matches tfool's definition (per-example minimum at every layer, self-pairs
    excluded from the batch mean, distances floored) so the two can be cross-checked; only
    the way it is computed is the original's.

    Args:
        act: Activation model (``inputs, conv0, conv1, fc, softmax``).
        refs: Per non-softmax layer, the ``[N, D]`` reference activations of ``label``.
        label: The target label.
        init: ``[B, H, W, C]`` initial images.
        num_steps: Optimisation steps; ``num_steps + 1`` forward passes are timed.
        coeffs: Layer cost weights, softmax last.
        reference_cost_coeff: Weight of the reference terms.
        batch_cost_coeff: Weight of the batch terms.
        learning_rate: Adam's learning rate.

    Returns:
        ``(times, costs)``: after every forward pass (the save), its time and cost.
    """
    names = act.layer_names
    x = tf.Variable(init, name="broadcast_inputs")
    optimizer = keras.optimizers.Adam(learning_rate)
    b = init.shape[0]
    off_diag = 1.0 - tf.eye(b)
    floor = costs.DISTANCE_FLOOR
    times, cost_values = [], []
    for step in range(num_steps + 1):
        with tf.GradientTape() as tape:
            out = act(x, training=False)
            cost = 0.0
            for i, name in enumerate(names[:-1]):
                g = tf.reshape(out[name], [b, -1])
                d = tf.reduce_mean(tf.square(g[None] - refs[i][:, None]), axis=-1)  # [N, B]
                nearest = tf.maximum(tf.reduce_min(d, axis=0), floor)
                reference = 1.0 / tf.maximum(tf.reduce_mean(nearest), floor)
                pairs = tf.reduce_mean(tf.square(g[None] - g[:, None]), axis=-1)  # [B, B]
                mean_pair = tf.reduce_sum(pairs * off_diag) / tf.reduce_sum(off_diag)
                batch = 1.0 / tf.maximum(mean_pair, floor)
                cost += coeffs[i] * (reference_cost_coeff * reference + batch_cost_coeff * batch)
            probs = out[names[-1]]
            cost += coeffs[-1] * tf.reduce_mean(1.0 - probs[:, label])
        grad = tape.gradient(cost, x)
        probs.numpy()  # the save: the original fetched the probabilities every step
        cost_values.append(float(cost))
        times.append(time.perf_counter())
        if step < num_steps:
            optimizer.apply_gradients([(grad, x)])
    return times, cost_values


def run_broadcast(model, data, label: int, flag_values) -> dict:
    """Times the eager broadcast port on one label, reference activations included."""
    f = flag_values
    logging.info("broadcast eager port: label %d, %d steps", label, f.warmup_steps + f.steps)
    with PeakMemory(f.sample_interval) as mem:
        start = time.perf_counter()
        act = models.activation_model(model)
        refs, _ = bw.reference_activations(act, data, [label])
        refs = [tf.constant(r[0]) for r in refs]
        coeffs = costs.default_layer_cost_coeffs(len(act.layer_names))
        init = initial_images(label, f.num_examples, data.image_shape, f.seed)
        times, cost_values = broadcast_backwork(
            act, refs, label, init, f.warmup_steps + f.steps, coeffs
        )
        del refs
        wall = time.perf_counter() - start
    sec = _step_seconds(times, f.warmup_steps, f.steps)
    return _record(
        "broadcast eager port",
        [label],
        f.num_examples,
        sec,
        mem,
        wall,
        times[0] - start,
        np.asarray(cost_values[:1]),
        f.warmup_steps + f.steps,
    )


def _record(name, labels, rows, sec, mem: PeakMemory, wall, setup, first_cost, steps) -> dict:
    return {
        "run": name,
        "labels": [int(lbl) for lbl in labels],
        "images": int(rows),
        "s_per_step": sec[0],
        "s_per_step_mean": sec[1],
        "ms_per_image_step": 1e3 * sec[0] / rows,
        "peak_above_baseline_mb": mem.above_baseline / MB,
        "baseline_mb": mem.baseline / MB,
        "after_mb": mem.after / MB,
        "wall_s": float(wall),
        "until_first_step_s": float(setup),
        "steps": int(steps),
        "first_cost": [float(c) for c in np.ravel(first_cost)],
        "kernel_peak": mem.kernel_peak,
    }


# ----------------------------------------------------------------------------- profile


@tf.custom_gradient
def _nearest_sq_argmin_grad(gen, ref, ref_sq):
    """``min_n |gen - ref_n|^2`` whose gradient gathers the nearest row instead of a matmul."""
    gen_sq = tf.reduce_sum(tf.square(gen), axis=-1)
    dots = tf.linalg.matmul(gen, ref, transpose_b=True)
    d = gen_sq[..., None] + ref_sq[..., None, :] - 2.0 * dots
    idx = tf.argmin(d, axis=-1)

    def grad(upstream):
        nearest = tf.gather(ref, idx, batch_dims=1)
        return 2.0 * upstream[..., None] * (gen - nearest), None, None

    return tf.reduce_min(d, axis=-1), grad


def _interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of every function, timed round-robin so load drifts hit all.

    Every function is called twice first (tracing, compilation).
    """
    for fn in fns.values():
        fn()
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def profile_tfool(model, data, labels, flag_values) -> dict:
    """Seconds per call of the pieces of tfool's step, rebuilt here from tfool's public parts.

    ``compute`` is backwork's compiled forward + cost + gradient (``costs.total_cost``),
    with XLA on and off; ``apply`` a replica of its masked Adam update; ``host copies`` the
    per-step ``.numpy()`` copies of its loop; ``reference terms`` the reference distances
    alone, forward + gradient, with tfool's ``nearest_distance`` and with a gradient that
    gathers each row's nearest reference row instead of a matmul over all of them.
    """
    f = flag_values
    logging.info("profile: labels %s", list(labels))
    act = models.activation_model(model)
    names = act.layer_names
    coeffs = costs.default_layer_cost_coeffs(len(names))
    refs_np, norms_np = bw.reference_activations(act, data, labels)
    refs = [tf.constant(r) for r in refs_np]
    norms = [tf.constant(n) for n in norms_np]
    del refs_np, norms_np
    num_labels, per = len(labels), f.num_examples
    init = np.concatenate([initial_images(lbl, per, data.image_shape, f.seed) for lbl in labels])
    x = tf.Variable(init)
    adam_m, adam_v = tf.Variable(tf.zeros_like(init)), tf.Variable(tf.zeros_like(init))
    adam_t = tf.Variable(tf.zeros([len(init)]))
    row_mask = tf.ones([len(init)])
    labels_t = tf.constant(np.asarray(labels, np.int64))
    chunk = f.chunk_size or None
    jit = f.jit_compile

    def grouped(images):
        out = act(images, training=False)
        return [tf.reshape(out[n], (num_labels, per, -1)) for n in names]

    def cost_of(images):
        cost, terms = costs.total_cost(
            grouped(images), refs, norms, labels_t, coeffs, chunk_size=chunk
        )
        return tf.reduce_sum(cost), terms

    def gradient_of_cost():
        with tf.GradientTape() as tape:
            tape.watch(x)
            total, terms = cost_of(x)
        return tape.gradient(total, x), total, terms

    # One label at a time against per-label views of the stacked references (tf.unstack
    # along the first axis shares the buffer): no batched matmul over the label axis.
    label_refs = [tf.unstack(r) for r in refs]
    label_norms = [tf.unstack(n) for n in norms]

    def gradient_of_looped_cost():
        with tf.GradientTape() as tape:
            tape.watch(x)
            acts = grouped(x)
            total = 0.0
            for i in range(num_labels):
                cost, _ = costs.total_cost(
                    [a[i : i + 1] for a in acts],
                    [r[i][None] for r in label_refs],
                    [n[i][None] for n in label_norms],
                    labels_t[i : i + 1],
                    coeffs,
                    chunk_size=chunk,
                )
                total += tf.reduce_sum(cost)
        return tape.gradient(total, x)

    compute_xla = tf.function(gradient_of_cost, jit_compile=True)
    compute_plain = tf.function(gradient_of_cost, jit_compile=False)
    compute_looped = tf.function(gradient_of_looped_cost, jit_compile=False)

    @tf.function(jit_compile=jit)
    def forward_only():
        return cost_of(x)

    @tf.function(jit_compile=jit)
    def network_only():
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(grouped(x)[-1])
        return tape.gradient(total, x)

    @tf.function(jit_compile=jit)
    def apply(grad):  # backwork's masked Adam update (TF1 constants), rebuilt for timing
        mask = tf.reshape(row_mask, [-1, 1, 1, 1])
        adam_t.assign_add(row_mask)
        m_new = 0.9 * adam_m + 0.1 * grad
        v_new = 0.999 * adam_v + 0.001 * tf.square(grad)
        tb = tf.reshape(tf.maximum(adam_t, 1.0), tf.shape(mask))
        lr_t = 0.01 * tf.sqrt(1.0 - tf.pow(0.999, tb)) / (1.0 - tf.pow(0.9, tb))
        x_new = tf.clip_by_value(x - lr_t * m_new / (tf.sqrt(v_new) + 1e-8), 0.0, 1.0)
        keep = mask > 0
        x.assign(tf.where(keep, x_new, x))
        adam_m.assign(tf.where(keep, m_new, adam_m))
        adam_v.assign(tf.where(keep, v_new, adam_v))

    def reference_terms(nearest_fn):
        @tf.function(jit_compile=jit)
        def step(gens):
            with tf.GradientTape() as tape:
                tape.watch(gens)
                total = 0.0
                for g, r, n in zip(gens, refs, norms):
                    total += tf.reduce_sum(nearest_fn(g, r, n))
            return tape.gradient(total, gens)

        return step

    def argmin_nearest(g, r, n):
        dim = tf.cast(tf.shape(g)[-1], tf.float32)
        return tf.maximum(_nearest_sq_argmin_grad(g, r, n) / dim, costs.DISTANCE_FLOOR)

    gens = [tf.constant(g) for g in grouped(x)[:-1]]
    tfool_terms = reference_terms(lambda g, r, n: costs.nearest_distance(g, r, n, chunk))
    argmin_terms = reference_terms(argmin_nearest)
    grad_gap = max(
        float(tf.reduce_max(tf.abs(a - b)) / (tf.reduce_max(tf.abs(a)) + 1e-30))
        for a, b in zip(tfool_terms(gens), argmin_terms(gens))
    )
    grad, total, terms = compute_plain()
    looped_gap = float(
        tf.reduce_max(tf.abs(compute_looped() - grad)) / (tf.reduce_max(tf.abs(grad)) + 1e-30)
    )

    def host_copies():
        total.numpy()
        {k: v.numpy() for k, v in terms.items()}
        x.numpy().copy()

    seconds = _interleaved_medians(
        {
            "compute, XLA on": compute_xla,
            "compute, XLA off": compute_plain,
            "compute, labels looped, XLA off": compute_looped,
            "  forward + cost only": forward_only,
            "  network fwd + grad only": network_only,
            "apply (Adam update)": lambda: apply(grad),
            "host copies (.numpy())": host_copies,
            "reference terms, tfool": lambda: tfool_terms(gens),
            "reference terms, argmin grad": lambda: argmin_terms(gens),
        },
        f.profile_repeats,
    )
    return {
        "labels": [int(lbl) for lbl in labels],
        "seconds": seconds,
        "argmin_grad_max_rel_gap": grad_gap,
        "looped_grad_max_rel_gap": looped_gap,
        "reference_bytes": int(sum(r.shape.num_elements() * 4 for r in refs)),
        "jit_compile": bool(jit),
    }


# ----------------------------------------------------------------------------- report


def _environment() -> dict:
    load = os.getloadavg()
    return {
        "load_average_1_5_15": [round(v, 2) for v in load],
        "cpus": os.cpu_count(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "memory_sampler": "psutil" if psutil is not None else "/proc/self/status",
    }


def _shown(labels: list[int]) -> str:
    return ",".join(map(str, labels)) if len(labels) < 4 else f"{labels[0]}-{labels[-1]}"


def format_table(runs: list[dict]) -> str:
    """The runs as a fixed-width table."""
    header = (
        f"{'run':<30} {'labels':>7} {'imgs':>5} {'s/step':>8} {'ms/img-step':>12} "
        f"{'peak+MB':>9} {'base MB':>8} {'after MB':>9} {'to step0 s':>11}"
    )
    lines = [header, "-" * len(header)]
    for r in runs:
        shown = _shown(r["labels"])
        lines.append(
            f"{r['run']:<30} {shown:>7} {r['images']:>5} {r['s_per_step']:>8.3f} "
            f"{r['ms_per_image_step']:>12.2f} {r['peak_above_baseline_mb']:>9.0f} "
            f"{r['baseline_mb']:>8.0f} {r['after_mb']:>9.0f} {r['until_first_step_s']:>11.1f}"
        )
    return "\n".join(lines)


def format_profile(p: dict, step_s: float | None) -> str:
    """The profile as lines of text."""
    lines = [
        f"profile of one tfool step (median of interleaved calls), labels "
        f"{_shown(p['labels'])}, reference activations {p['reference_bytes'] / MB:.0f} MB, "
        f"XLA {'on' if p['jit_compile'] else 'off'} unless named:"
    ]
    lines += [f"  {name:<34} {1e3 * sec:9.1f} ms" for name, sec in p["seconds"].items()]
    if step_s is not None:
        lines.append(f"  {'backwork step, in its own run':<34} {1e3 * step_s:9.1f} ms")
    lines.append(
        f"  max relative gradient gap to tfool's: argmin-gather {p['argmin_grad_max_rel_gap']:.1e}, "
        f"labels looped {p['looped_grad_max_rel_gap']:.1e}"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    labels = [int(v) for v in f.labels]
    if any(not 0 <= lbl < 10 for lbl in labels) or len(set(labels)) != len(labels):
        raise app.UsageError(f"--labels={f.labels}: expected distinct digits 0-9")
    keras.utils.set_random_seed(f.seed)
    source = tfool_data.load_mnist(f.data_source, f.data_dir)
    data = reference_dataset(source, f.ref_per_label, f.jitter, f.seed)
    del source
    if f.model_path:
        model = models.load_model(f.model_path)
    else:
        model = models.build_mnist_cnn(seed=f.seed)
    env_before = _environment()
    logging.info("data: %s; load average %s", data.source, env_before["load_average_1_5_15"])

    runs = [run_tfool(model, data, labels, f, "tfool backwork")]
    if f.broadcast:
        for label in labels:
            runs.append(run_broadcast(model, data, label, f))
    if f.all_labels and tuple(labels) != ALL_LABELS:
        runs.append(run_tfool(model, data, ALL_LABELS, f, "tfool backwork, joint batch"))
    profile = None
    if f.profile:
        profile = profile_tfool(model, data, list(ALL_LABELS) if f.all_labels else labels, f)
    env_after = _environment()

    tfool_run = runs[0]
    summary = {}
    lines = [
        f"backworking benchmark: {f.ref_per_label} reference images per label ({data.source}), "
        f"{f.num_examples} images per label, {f.steps} timed steps after {f.warmup_steps} "
        f"warm-up, XLA {'on' if f.jit_compile else 'off'}, chunk_size {f.chunk_size or 'none'}",
        format_table(runs),
    ]
    broadcast_runs = [r for r in runs if r["run"].startswith("broadcast")]
    if broadcast_runs:
        b_sec = np.mean([r["ms_per_image_step"] for r in broadcast_runs])
        b_mem = max(r["peak_above_baseline_mb"] for r in broadcast_runs)
        summary = {
            "speedup_per_image_step": float(b_sec / tfool_run["ms_per_image_step"]),
            "memory_ratio": float(b_mem / max(tfool_run["peak_above_baseline_mb"], 1.0)),
            "first_cost_rel_gap": float(
                abs(broadcast_runs[0]["first_cost"][0] - tfool_run["first_cost"][0])
                / abs(tfool_run["first_cost"][0])
            ),
        }
        lines.append(
            f"broadcast / tfool, labels {labels}: {summary['speedup_per_image_step']:.1f}x "
            f"time per image-step, {summary['memory_ratio']:.1f}x peak memory "
            f"(target: >= 20x faster, tfool < 2048 MB); step-0 cost relative gap "
            f"{summary['first_cost_rel_gap']:.1e}"
        )
    if profile is not None:
        joint = [
            r for r in runs if r["labels"] == profile["labels"] and r["run"].startswith("tfool")
        ]
        lines.append(format_profile(profile, joint[0]["s_per_step"] if joint else None))
    lines.append(
        f"load average (1, 5, 15 min) before {env_before['load_average_1_5_15']}, after "
        f"{env_after['load_average_1_5_15']} on {env_after['cpus']} CPUs; peak memory from "
        f"{env_after['memory_sampler']} samples every {f.sample_interval * 1e3:.0f} ms"
        f"{' and VmHWM' if all(r['kernel_peak'] for r in runs) else ''}; TensorFlow may keep freed "
        "memory in its allocator, so 'after MB' can stay above 'base MB'"
    )
    print("\n".join(lines))
    if f.output:
        io.write_json(
            f.output,
            {
                "runs": runs,
                "summary": summary,
                "profile": profile,
                "environment": {"before": env_before, "after": env_after},
                "flags": {
                    flag.name: flag.value for flag in f.get_key_flags_for_module(sys.argv[0])
                },
            },
        )
        logging.info("wrote %s", f.output)


def run() -> None:
    """Entry point: defines the flags and runs ``main``."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
