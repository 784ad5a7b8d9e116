"""Attack throughput: tfool's FGSM and BIM against the forward+backward floor and peer libraries.

    python bench/attack_bench.py                        # reference CNN, 1,000 sample images
    python bench/attack_bench.py --steps=10 --repeats=5 --peers=cleverhans

Every contender attacks the same model, images, labels, batch size, eps and step count in
this one process. Every timed attack is paired with a floor run (one compiled forward and
backward pass over the same images) just before it, and the median of ``--repeats`` paired
ratios is reported (``x floor``: 1.0 means as fast as the raw passes it needs, one for FGSM
and ``--steps`` for BIM), which tames the noise of a shared machine; ``CPU x`` is the same
ratio in CPU seconds of this process, which other processes disturb less; images/s are the
best of the rounds. Peers (benchmark-only extras, ``pip install .[bench]``) are skipped
when not installed: cleverhans (its TF2 functions, eager as shipped and wrapped in
``tf.function``), the Adversarial Robustness Toolbox (``TensorFlowV2Classifier``) and
foolbox 3 (``TensorFlowModel``).
"""

from __future__ import annotations

import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import benchlib  # noqa: E402, F401  (puts the repository on the path)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from tfool import attacks, data, io, models  # noqa: E402

FLAGS = flags.FLAGS
PEERS = ("cleverhans", "art", "foolbox")
FLOOR = "floor (compiled fwd+bwd)"
KINDS = ("fgsm", "bim")


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines the benchmark's flags."""
    flags.DEFINE_string(
        "model_path",
        None,
        "A cached .keras classifier; unset: an untrained reference CNN "
        "(the weights do not change the cost).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "num_images",
        1000,
        "Test images of the embedded sample, 1..1000.",
        lower_bound=1,
        upper_bound=1000,
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "batch_size",
        500,
        "Images per batch for every contender, >= 1.",
        lower_bound=1,
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "eps", 0.1, "Attack size (L-infinity), > 0.", lower_bound=0.0, flag_values=flag_values
    )
    flags.DEFINE_integer(
        "steps", 10, "BIM iterations, >= 1.", lower_bound=1, flag_values=flag_values
    )
    flags.DEFINE_integer(
        "repeats",
        3,
        "Timed rounds; the best is kept, >= 1.",
        lower_bound=1,
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "peers",
        list(PEERS),
        "Peer libraries to try: " + ", ".join(PEERS) + ".",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "output",
        "out/bench/attack_bench.json",
        "Where to write the JSON results.",
        flag_values=flag_values,
    )


def _floor(model, x, y, batch_size):
    """The raw cost: one compiled forward and backward pass to the input, per batch."""

    @tf.function
    def grad(xb, yb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=model(xb))
        return tape.gradient(loss, xb)

    batches = [
        (tf.constant(x[i : i + batch_size]), tf.constant(y[i : i + batch_size]))
        for i in range(0, len(x), batch_size)
    ]

    def run():
        return np.concatenate([grad(xb, yb).numpy() for xb, yb in batches])

    return run


def _batched(fn, x, y, batch_size):
    def run():
        return np.concatenate(
            [
                np.asarray(fn(x[i : i + batch_size], y[i : i + batch_size]))
                for i in range(0, len(x), batch_size)
            ]
        )

    return run


def _cleverhans(model, x, y, eps, step, steps, batch_size):
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    def fgsm(xb, yb):
        return fast_gradient_method(model, xb, eps, np.inf, clip_min=0.0, clip_max=1.0, y=yb)

    def bim(xb, yb):
        return projected_gradient_descent(
            model,
            xb,
            eps,
            step,
            steps,
            np.inf,
            clip_min=0.0,
            clip_max=1.0,
            y=yb,
            rand_init=False,
            sanity_checks=False,
        )

    out = {}
    for tag, wrap in (("eager", lambda f: f), ("tf.function", tf.function)):
        f, b = wrap(fgsm), wrap(bim)
        out[f"cleverhans ({tag})"] = (
            _batched(lambda xb, yb, f=f: f(tf.constant(xb), tf.constant(yb)), x, y, batch_size),
            _batched(lambda xb, yb, b=b: b(tf.constant(xb), tf.constant(yb)), x, y, batch_size),
        )
    return out


def _art(model, x, y, eps, step, steps, batch_size):
    from art.attacks.evasion import BasicIterativeMethod, FastGradientMethod
    from art.estimators.classification import TensorFlowV2Classifier

    clf = TensorFlowV2Classifier(
        model=model,
        nb_classes=int(model.outputs[0].shape[-1]),
        input_shape=x.shape[1:],
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )
    fgsm = FastGradientMethod(clf, eps=eps, batch_size=batch_size)
    bim = BasicIterativeMethod(
        clf, eps=eps, eps_step=step, max_iter=steps, batch_size=batch_size, verbose=False
    )
    return {"ART": (lambda: fgsm.generate(x, y), lambda: bim.generate(x, y))}


def _foolbox(model, x, y, eps, step, steps, batch_size):
    import foolbox

    fmodel = foolbox.TensorFlowModel(model, bounds=(0.0, 1.0))
    fgsm = foolbox.attacks.FGSM()
    bim = foolbox.attacks.LinfBasicIterativeAttack(
        abs_stepsize=step, steps=steps, random_start=False
    )

    def run(attack):
        def one(xb, yb):
            return attack(fmodel, tf.constant(xb), tf.constant(yb), epsilons=eps)[1].numpy()

        return _batched(one, x, y, batch_size)

    return {"foolbox": (run(fgsm), run(bim))}


_PEER_BUILDERS = {"cleverhans": _cleverhans, "art": _art, "foolbox": _foolbox}


def _measure(run) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all threads of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _contenders(model, x, y, eps: float, step: float, steps: int, bs: int):
    """The floor, tfool and every peer of ``--peers`` that loads: ``{name: (fgsm, bim)}``,
    and ``{peer: why}`` for those skipped."""
    contenders = {
        FLOOR: (_floor(model, x, y, bs), None),
        "tfool": (
            lambda: attacks.fgsm(model, x, eps, y=y, batch_size=bs),
            lambda: attacks.bim(model, x, eps, y=y, step_size=step, steps=steps, batch_size=bs),
        ),
    }
    skipped = {}
    for peer in FLAGS.peers:
        try:
            contenders.update(_PEER_BUILDERS[peer](model, x, y, eps, step, steps, bs))
        except Exception as err:  # ImportError, or a peer that cannot handle the model
            skipped[peer] = f"{type(err).__name__}: {err}"
            logging.warning("skipping %s: %s", peer, skipped[peer])
    return contenders, skipped


def _warm_up(contenders: dict):
    """Traces every contender (the floor taken out of ``contenders``) and checks that they
    compute the same attack: the floor's run and ``{(name, kind): share of equal pixels}``."""
    floor_run = contenders.pop(FLOOR)[0]
    floor_run()
    reference = {"fgsm": contenders["tfool"][0](), "bim": contenders["tfool"][1]()}
    agreement = {}
    for name, runs in contenders.items():
        for kind, run in zip(KINDS, runs, strict=True):
            same = np.abs(np.asarray(run(), np.float32) - reference[kind]) <= 1e-5
            agreement[name, kind] = float(same.mean())
        logging.info("warmed up %s", name)
    return floor_run, agreement


def _time_rounds(contenders: dict, floor_run, keys, steps: int):
    """Times in rounds; every attack is paired with a floor run just before it, and its
    ratio to that floor (the floor's passes: 1 for FGSM, ``steps`` for BIM) is kept, so
    that the load of a shared machine hits both sides of each ratio alike."""
    best = {key: np.inf for key in keys}
    ratios = {key: [] for key in keys}
    cpu_ratios = {key: [] for key in keys}
    best_floor = np.inf
    for r in range(FLAGS.repeats):
        for name, runs in contenders.items():
            for kind, run in zip(KINDS, runs, strict=True):
                floor_s, floor_cpu = _measure(floor_run)
                seconds, cpu = _measure(run)
                passes = steps if kind == "bim" else 1
                best_floor = min(best_floor, floor_s)
                best[name, kind] = min(best[name, kind], seconds)
                ratios[name, kind].append(passes * floor_s / seconds)
                cpu_ratios[name, kind].append(passes * floor_cpu / cpu)
        logging.info("round %d/%d done", r + 1, FLAGS.repeats)
    return best, ratios, cpu_ratios, best_floor


def _print_table(rows: list[dict], skipped: dict, n: int, best_floor: float, header: str):
    """The console table of the contenders."""
    print(header)
    print(f"{FLOOR}: {n / best_floor:.1f} images/s (best of {FLAGS.repeats * 2 * len(rows)})")
    print(
        f"{'contender':26}{'FGSM img/s':>11}{'x floor':>9}{'CPU x':>7}{'BIM img/s':>11}"
        f"{'x floor':>9}{'CPU x':>7}{'same F/B':>13}"
    )
    for row in rows:
        print(
            f"{row['contender']:26}{row['fgsm_images_per_s']:11.1f}{row['fgsm_vs_floor']:9.2f}"
            f"{row['fgsm_cpu_vs_floor']:7.2f}{row['bim_images_per_s']:11.1f}"
            f"{row['bim_vs_floor']:9.2f}{row['bim_cpu_vs_floor']:7.2f}"
            f"{row['fgsm_agreement']:7.3f}/{row['bim_agreement']:.3f}"
        )
    for peer, why in skipped.items():
        print(f"skipped {peer}: {why}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    bad = sorted(set(FLAGS.peers) - set(PEERS))
    if bad:
        raise app.UsageError(f"--peers has unknown names {bad}; expected some of {list(PEERS)}")
    sample = data.load_mnist("sample")
    x = sample.x_test[: FLAGS.num_images]
    y = sample.y_test[: FLAGS.num_images].astype(np.int64)
    if FLAGS.model_path:
        model = models.load_model(FLAGS.model_path)
    else:
        model = models.build_mnist_cnn(seed=0)
    eps, steps, bs = FLAGS.eps, FLAGS.steps, FLAGS.batch_size
    step = min(2.5 * eps / steps, eps)  # cleverhans refuses steps larger than eps

    contenders, skipped = _contenders(model, x, y, eps, step, steps, bs)
    floor_run, agreement = _warm_up(contenders)
    best, ratios, cpu_ratios, best_floor = _time_rounds(contenders, floor_run, agreement, steps)

    n = len(x)
    rows = [
        dict(
            contender=name,
            fgsm_images_per_s=n / best[name, "fgsm"],
            fgsm_vs_floor=float(np.median(ratios[name, "fgsm"])),
            bim_images_per_s=n / best[name, "bim"],
            bim_vs_floor=float(np.median(ratios[name, "bim"])),
            fgsm_cpu_vs_floor=float(np.median(cpu_ratios[name, "fgsm"])),
            bim_cpu_vs_floor=float(np.median(cpu_ratios[name, "bim"])),
            fgsm_agreement=agreement[name, "fgsm"],
            bim_agreement=agreement[name, "bim"],
        )
        for name in contenders
    ]
    header = (
        f"{n} images, batch {bs}, eps {eps}, BIM {steps} steps of {step:g}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"tf {tf.__version__}, keras {keras.__version__}"
    )
    _print_table(rows, skipped, n, best_floor, header)
    io.write_json(
        FLAGS.output,
        dict(
            num_images=n,
            batch_size=bs,
            floor_images_per_s=n / best_floor,
            eps=eps,
            steps=steps,
            step_size=step,
            rows=rows,
            skipped=skipped,
            tensorflow=tf.__version__,
            keras=keras.__version__,
            cpus=os.cpu_count(),
            devices=[d.name for d in tf.config.list_logical_devices()],
        ),
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
