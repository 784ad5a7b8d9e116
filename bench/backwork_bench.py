"""Benchmark: one backworking step against the memory floor, at full MNIST scale.

One step of the backworker must read every reference activation at least once: the time
to stream them once is the floor. This script measures, in one process, on the same
reference set:

* ``floor``: a compiled pass reading every reference tensor once (``reduce_max``);
* ``step``: one step of ``tfool.backwork.backwork`` as a user runs it (forward, cost,
  gradient, Adam, host-side tests and history), timed between saves, convergence and
  re-initialisation off;
* the scaling of the step with the reference images per label (``--ref_sizes``) and with
  the images per label (``--examples``), each as a ratio to the floor of its reference set;
* the step with the references stored in float16 and bfloat16 (``--dtypes``);
* the long tail: the compiled step (cost, gradient, Adam) with 10, 9, ..., 1 labels still
  running, beside the floor of the running labels' references and the all-running step;
* the breakdown of one step: the model's forward/backward pass, the reference products
  (cost terms and their gradient on fixed activations), Adam, and the host work (the
  rest of a real step: convergence tests, history snapshots, callbacks).

The figures go to ``--output`` (JSON) and ``--plot`` (PNG). Timing does not depend on the
weights, so a fresh reference CNN is used unless ``--model_path`` names a trained one.

Run from the repository root (full MNIST from the shared folder)::

    python bench/backwork_bench.py
    python bench/backwork_bench.py --data_source=sample --ref_sizes=100,400 --examples=8,16
"""

from __future__ import annotations

import dataclasses
import time

import benchlib  # noqa: E402  (puts the repository on the path)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tfool import backwork as bw  # noqa: E402
from tfool import classifier, io, models  # noqa: E402
from tfool.backwork import _engine as bw_engine  # noqa: E402
from tfool.references import ReferenceSet  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the benchmark's flags on ``fv``."""
    benchlib.define_data_flags(fv, model=True)
    for name, default, help_text in (
        (
            "ref_sizes",
            ["600", "1500", "3000", "6000"],
            "Reference images per label for the scaling run.",
        ),
        ("examples", ["8", "16", "32", "64", "128"], "Images per label for the scaling run."),
        ("dtypes", ["float16", "bfloat16"], "Narrower reference storage types also timed."),
    ):
        flags.DEFINE_list(name, default, help_text, flag_values=fv)
    flags.DEFINE_bool(
        "only_default",
        False,
        "Only the default step, its breakdown and the long tail (no scaling runs).",
        flag_values=fv,
    )
    flags.DEFINE_integer("steps", 8, "Timed steps per measurement.", lower_bound=2, flag_values=fv)
    flags.DEFINE_integer("repeats", 5, "Timed floor passes.", lower_bound=1, flag_values=fv)
    flags.DEFINE_string(
        "output", "out/bench/backwork_bench.json", "JSON with every figure.", flag_values=fv
    )
    flags.DEFINE_string(
        "plot",
        "out/bench/backwork_scaling.png",
        "Figure of the scaling runs (empty: none).",
        flag_values=fv,
    )


class _Clock(bw.BackworkCallback):
    def __init__(self):
        self.times = []

    def on_save(self, event):
        self.times.append(time.perf_counter())


def step_seconds(model, data, config, refs, steps: int) -> float:
    """Median seconds per step of a real ``backwork`` run, compilation excluded."""
    clock = _Clock()
    run = dataclasses.replace(config, max_num_steps=steps + 2, prob_cap_min=1.0, reinit_below=1e-12)
    bw.backwork(model, data, run, callbacks=[clock], references=refs)
    gaps = np.diff(clock.times)[2:]  # the first saves include tracing
    return float(np.median(gaps))


def floor_seconds(refs: ReferenceSet, repeats: int) -> float:
    """Seconds to read every reference tensor once (compiled, best of ``repeats``)."""
    tensors = [t for layer in refs.activations for t in layer]

    @tf.function
    def stream():
        return tf.add_n([tf.cast(tf.reduce_max(t), tf.float32) for t in tensors])

    stream()
    return benchlib.best_seconds(lambda: stream().numpy(), repeats)


def _median_seconds(fn, steps: int, first: list | None = None) -> float:
    start = time.perf_counter()
    fn()
    if first is not None:
        first.append(time.perf_counter() - start)  # a trace, when the call made one
    fn()  # compiled and warm
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def engine_seconds(engine, active: np.ndarray, steps: int, first: list | None = None) -> float:
    """Median seconds of the compiled step (cost, gradient, Adam) with ``active`` labels;
    the first call's seconds are appended to ``first``."""
    rows = np.repeat(active, engine.per)

    def one():
        grad = engine.compute(active)[0]
        engine.apply(grad, rows)

    return _median_seconds(one, steps, first)


def long_tail(model, data, config, refs: ReferenceSet, steps: int, repeats: int) -> list:
    """The step with k = L, ..., 1 labels running (the last k), each beside the floor of
    the running labels' references, and the cost of each new trace (its first call less
    a compiled step)."""
    engine = bw_engine.engine_for(model, data, config, refs)
    num = len(config.labels)
    rows = []
    for k in range(num, 0, -1):
        active = np.zeros(num, bool)
        active[num - k :] = True
        traces, first = engine.traces, []
        step = engine_seconds(engine, active, steps, first)
        trace = first[0] - step if engine.traces > traces else None
        floor = floor_seconds(refs.for_labels(config.labels[num - k :]), repeats)
        rows.append({"running": k, "step_s": step, "floor_s": floor, "trace_s": trace})
        traced = f", new trace {trace:.2f} s" if trace is not None else ""
        print(
            f"  {k:2d}/{num} labels running: step {1e3 * step:6.1f} ms, floor of their "
            f"references {1e3 * floor:5.1f} ms, {step / rows[0]['step_s']:.2f}x the full "
            f"step{traced}"
        )
    print(f"  compiled step sizes: {engine.traces}")
    return rows


def loop_long_tail(model, data, config, refs: ReferenceSet) -> dict | None:
    """The real loop (host work included) with one label of ten running: every label but
    the middle one starts from the 8 test images the model is surest of (they converge at
    the first test), the middle one from noise; the median step with all running against
    the median with one running. Needs a trained model (``--model_path``)."""
    probs = models.predict_probabilities(model, data.x_test)
    labels = list(config.labels)
    slow = labels[len(labels) // 2]
    rng = np.random.default_rng(0)
    init = []
    for lbl in labels:
        if lbl == slow:
            shape = (config.num_examples, *data.image_shape)
            init.append(rng.uniform(0, 1, shape).astype(np.float32))
            continue
        idx = np.flatnonzero(data.y_test == lbl)
        init.append(data.x_test[idx[np.argsort(-probs[idx, lbl])][: config.num_examples]])
    clock, active = _Clock(), []

    class _Active(bw.BackworkCallback):
        def on_save(self, event):
            active.append(int(event.active.sum()))

    run = dataclasses.replace(config, max_num_steps=400)
    result = bw.backwork(
        model, data, run, callbacks=[clock, _Active()], initial_images=np.stack(init),
        references=refs,
    )  # fmt: skip
    gaps, running = np.diff(clock.times), np.array(active[1:])
    all_running, one_running = gaps[running == len(labels)][2:], gaps[running == 1][5:]
    if not len(all_running) or not len(one_running):
        print(f"  loop long tail: no clean split (label steps {result.label_steps.tolist()})")
        return None
    out = {
        "all_running_s": float(np.median(all_running)),
        "one_running_s": float(np.median(one_running)),
        "label_steps": result.label_steps.tolist(),
    }
    out["ratio"] = out["one_running_s"] / out["all_running_s"]
    print(
        f"  the real loop: all {len(labels)} running {1e3 * out['all_running_s']:.0f} ms a "
        f"step, one running {1e3 * out['one_running_s']:.1f} ms, {out['ratio']:.2f}x"
    )
    return out


def breakdown(model, data, config, refs: ReferenceSet, steps: int, full_step: float) -> dict:
    """The parts of one step with every label running, each timed alone."""
    from tfool import costs

    engine = bw_engine.engine_for(model, data, config, refs)
    act = classifier.activation_model(model, config.layer_names, from_logits=config.from_logits)
    names = act.layer_names
    x = tf.constant(engine.images())
    num, per = len(config.labels), config.num_examples

    @tf.function
    def forward_backward(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            out = act(images, training=False)
            total = tf.add_n([tf.reduce_sum(out[n]) for n in names])
        return tape.gradient(total, images)

    outs = act(x, training=False)
    grouped = [tf.reshape(outs[n], (num, per, *outs[n].shape[1:])) for n in names]
    coeffs = config.coeffs_for(len(names))
    labels = tf.constant(np.asarray(config.labels, np.int64))
    arrays = (list(refs.activations), list(refs.sq_norms))

    @tf.function
    def products(acts, refs_r, norms_r):
        with tf.GradientTape() as tape:
            tape.watch(acts)
            cost, _ = costs.total_cost(
                acts, refs_r, norms_r, labels, coeffs, transposed=refs.transposed
            )
            total = tf.reduce_sum(cost)  # inside the tape, so the gradient is taken
        return tape.gradient(total, acts)

    grad = engine.compute()[0]
    all_rows = tf.constant(np.arange(num * per), tf.int32)
    parts = {
        "forward_backward_s": _median_seconds(lambda: forward_backward(x), steps),
        "reference_products_s": _median_seconds(lambda: products(grouped, *arrays), steps),
        "adam_s": _median_seconds(lambda: engine._apply_rows(grad, all_rows), steps),
        "compiled_step_s": engine_seconds(engine, np.ones(num, bool), steps),
        "full_step_s": full_step,
    }
    parts["host_s"] = max(parts["full_step_s"] - parts["compiled_step_s"], 0.0)
    print(
        "  breakdown: "
        + ", ".join(f"{k[:-2].replace('_', ' ')} {1e3 * v:.1f} ms" for k, v in parts.items())
    )
    return parts


def truncated(refs: ReferenceSet, n: int) -> ReferenceSet:
    """The first ``n`` references of every label."""
    return dataclasses.replace(
        refs,
        activations=tuple(
            tuple(a[..., :n] if refs.transposed else a[:n] for a in layer)
            for layer in refs.activations
        ),
        sq_norms=tuple(tuple(s[:n] for s in layer) for layer in refs.sq_norms),
    )


def _default_run(model, ds, config, refs, results: dict) -> float:
    """The default step against its floor, its breakdown and the long tail; the floor."""
    floor = floor_seconds(refs, FLAGS.repeats)
    step = step_seconds(model, ds, config, refs, FLAGS.steps)
    per_image = step / (len(config.labels) * config.num_examples)
    print(
        f"default run (10 labels x 8, every training image): step {1e3 * step:.0f} ms "
        f"({1e3 * per_image:.1f} ms per image-step), floor {1e3 * floor:.0f} ms, "
        f"ratio {step / floor:.2f}"
    )
    results["default"] = {
        "step_s": step,
        "floor_s": floor,
        "ratio": step / floor,
        "per_image_step_s": per_image,
    }
    results["breakdown"] = breakdown(model, ds, config, refs, FLAGS.steps, step)
    print("long tail (the compiled step as labels finish):")
    tail = long_tail(model, ds, config, refs, FLAGS.steps, FLAGS.repeats)
    results["long_tail"] = tail
    results["one_of_all_ratio"] = tail[-1]["step_s"] / tail[0]["step_s"]
    print(f"  one label running / all running: {results['one_of_all_ratio']:.2f}x")
    if FLAGS.model_path:  # a trained model: nine labels can start converged
        results["loop_long_tail"] = loop_long_tail(model, ds, config, refs)
    return floor


def _by_reference_count(model, ds, config, refs) -> list[dict]:
    """The step and its floor with the first ``--ref_sizes`` references of each label."""
    by_refs = []
    for n in sorted(int(v) for v in FLAGS.ref_sizes):
        sub = truncated(refs, n)
        f = floor_seconds(sub, FLAGS.repeats)
        s = step_seconds(model, ds, config, sub, FLAGS.steps)
        by_refs.append(
            {"ref_per_label": min(n, max(refs.sizes)), "step_s": s, "floor_s": f, "ratio": s / f}
        )
        print(
            f"  refs/label {n:6d}: step {1e3 * s:7.1f} ms, floor {1e3 * f:6.1f} ms, "
            f"ratio {s / f:.2f}"
        )
        del sub
    return by_refs


def _by_examples(model, ds, config, refs, floor: float) -> list[dict]:
    """The step with ``--examples`` images per label, against the default floor."""
    by_examples = []
    for e in sorted(int(v) for v in FLAGS.examples):
        c = dataclasses.replace(config, num_examples=e)
        s = step_seconds(model, ds, c, refs, FLAGS.steps)
        by_examples.append(
            {
                "examples_per_label": e,
                "step_s": s,
                "ratio": s / floor,
                "per_image_step_s": s / (10 * e),
            }
        )
        print(
            f"  images/label {e:4d}: step {1e3 * s:7.1f} ms, ratio {s / floor:.2f}, "
            f"{1e3 * s / (10 * e):.2f} ms per image-step"
        )
    return by_examples


def _by_dtype(model, ds, config, floor: float) -> list[dict]:
    """The step with the references stored in each of ``--dtypes``."""
    by_dtype = []
    for dtype in FLAGS.dtypes:
        c = dataclasses.replace(config, reference_dtype=dtype)
        r = bw.reference_set(model, ds, c)
        f = floor_seconds(r, FLAGS.repeats)
        s = step_seconds(model, ds, c, r, FLAGS.steps)
        by_dtype.append(
            {
                "dtype": dtype,
                "reference_gb": r.nbytes / 1e9,
                "step_s": s,
                "floor_s": f,
                "ratio_to_float32_floor": s / floor,
            }
        )
        print(
            f"  {dtype:9s}: {r.nbytes / 1e9:.2f} GB, step {1e3 * s:.0f} ms, own floor "
            f"{1e3 * f:.0f} ms, {s / floor:.2f}x the float32 floor"
        )
        del r
    return by_dtype


def main(argv):
    del argv
    ds = benchlib.load_data(FLAGS)
    model = benchlib.load_model(FLAGS)
    config = bw.BackworkConfig()
    load = benchlib.load_average()
    print(f"data: {ds.source}, {len(ds.x_train)} train images; load average {load:.2f}")

    start = time.perf_counter()
    refs = bw.reference_set(model, ds, config)
    build_s = time.perf_counter() - start
    gb = refs.nbytes / 1e9
    print(f"reference set: {sum(refs.sizes)} images, {gb:.2f} GB, built in {build_s:.1f} s")
    results = {
        "data": ds.source,
        "train_images": len(ds.x_train),
        "reference_gb": gb,
        "reference_build_s": build_s,
        "load_average_start": load,
    }
    floor = _default_run(model, ds, config, refs, results)
    if FLAGS.only_default:
        results["load_average_end"] = benchlib.load_average()
        benchlib.write_results(FLAGS.output, results)
        return
    by_refs = results["by_reference_count"] = _by_reference_count(model, ds, config, refs)
    by_examples = results["by_examples"] = _by_examples(model, ds, config, refs, floor)
    del refs
    results["by_dtype"] = _by_dtype(model, ds, config, floor)
    results["load_average_end"] = benchlib.load_average()

    benchlib.write_results(FLAGS.output, results)
    if FLAGS.plot:
        from tfool import plots

        fig = plots.backwork_scaling(by_refs, by_examples)
        io.save_figure(fig, FLAGS.plot)
        plots.close(fig)
        print(f"wrote {FLAGS.plot}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
