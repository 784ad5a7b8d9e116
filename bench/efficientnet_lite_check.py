"""Which padding and which input normalisation reproduce EfficientNet-Lite0? Proof on photos.

Usage: python bench/efficientnet_lite_check.py [--out docs/results/efficientnet_lite0_check.json]

Kept for its published command; ``bench/imagenet_check.py --model efficientnet_lite0`` is
the same check (and runs it for efficientnet_lite1, efficientnet_lite2 and squeezenet1_1).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imagenet_check  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a == "--out" or a.startswith("--out=") for a in args):
        args += ["--out", "docs/results/efficientnet_lite0_check.json"]
    sys.argv = [sys.argv[0], "--model", "efficientnet_lite0", *args]
    imagenet_check.main()
