"""Where an ImageNet classifier's weights come from: the keras cache, a download, a file."""

from __future__ import annotations

import os
from pathlib import Path

from tfool.imagenet._architectures import architecture
from tfool.imagenet._spec import Architecture


def keras_cache_paths(name: str) -> tuple[Path, ...]:
    """Where keras looks for (and caches) the ImageNet weights of architecture ``name``."""
    arch = architecture(name)
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    dirs = [Path(home)]
    tmp = Path("/tmp/.keras")
    if tmp not in dirs:
        dirs.append(tmp)  # keras' fallback when the home folder is read-only
    return tuple(d / "models" / arch.weights_file for d in dirs)


def cached_weights(name: str) -> Path | None:
    """The cached ImageNet weights file of ``name``, or ``None`` when keras has none yet."""
    return next((p for p in keras_cache_paths(name) if p.is_file()), None)


def imagenet_weights(name: str, arch: Architecture) -> Path | None:
    """Makes the ImageNet weights of ``name`` available before the network is built.

    Not cached yet: keras' networks check that the download host answers (keras downloads
    while building), tfool's own convert their offline weights into the cache once.

    Returns:
        The cached file to load into the built network, or ``None`` when the network loads
        its ImageNet weights itself (keras').

    Raises:
        ConnectionError, FileNotFoundError: the weights are neither cached nor obtainable
            (the message says how to supply them).
    """
    network = arch.network
    if cached_weights(name) is None:
        network.provide(name, keras_cache_paths(name), arch.weights_url)
    return cached_weights(name) if network.loads_cache else None


def weights_source(
    weights: str | os.PathLike | None, suffixes: tuple[str, ...]
) -> tuple[str, str | Path | None]:
    """``(kind, source)`` of a ``weights`` argument: ``("none", None)``,
    ``("imagenet", "imagenet")``, ``("keras", path)`` or ``("h5", path)``; ``suffixes``: the
    weights file suffixes the architecture takes besides ``.h5`` and ``.keras``."""
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return "none", None
    if isinstance(weights, str) and weights == "imagenet":
        return "imagenet", "imagenet"
    source = Path(weights)
    if not source.is_file():
        raise FileNotFoundError(
            f"weights={str(weights)!r}: no such file; expected 'imagenet', 'none' or the path "
            "of a .h5 / .weights.h5 weights file or a .keras model"
        )
    if source.suffix not in (".h5", ".keras", *suffixes):
        also = "".join(f", {x}" for x in suffixes)
        raise ValueError(
            f"weights={str(weights)!r} must end in .h5, .weights.h5{also} or .keras (or be "
            "'imagenet' or 'none')"
        )
    return ("keras" if source.suffix == ".keras" else "h5"), source
