"""Which padding and which input normalisation reproduce EfficientNet-Lite0? Proof on photos.

Run from the repository root::

    python bench/efficientnet_lite_check.py [--out=docs/results/efficientnet_lite0_check.json]

Kept for its published command; ``bench/imagenet_check.py --model=efficientnet_lite0`` is
the same check (and runs it for efficientnet_lite1, efficientnet_lite2 and squeezenet1_1):
this script is that one with ``--model`` defaulting to efficientnet_lite0 and ``--out`` to
the file above.
"""

from __future__ import annotations

import benchlib  # noqa: F401  (puts the repository on the path)
import imagenet_check
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines ``bench/imagenet_check.py``'s flags on ``fv``, with this check's defaults."""
    imagenet_check.define_flags(fv)
    fv.set_default("model", "efficientnet_lite0")
    fv.set_default("out", "docs/results/efficientnet_lite0_check.json")


def main(argv) -> None:
    imagenet_check.main(argv)


if __name__ == "__main__":
    define_flags()
    app.run(main)
