"""Common flags: output folder, seed, dataset, verbosity; and the effective-flags file."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping

from absl import flags

from tfool import data, io

DATA_SOURCES = data.SOURCES
DATASETS = data.DATASETS


@dataclasses.dataclass(frozen=True)
class CommonConfig:
    """The common settings of every run script.

    Attributes:
        output_dir: Folder that receives every output file of the run.
        seed: Seed of every random choice; an integer >= 0.
        dataset: A ``tfool.data.DATASETS`` name.
        data_source: Where MNIST / Fashion-MNIST come from (``tfool.data.SOURCES``).
        data_dir: Local MNIST files, the ``.npz`` file of ``arrays`` or the image folder of
            ``folder``; ``None``: none.
        verbosity: Console output: 0 quiet, 1 progress and summary, 2 also per-batch bars.
        image_size: ``(height, width)`` in pixels the images of ``dataset="folder"`` are
            resized to, both >= 1; ``None`` keeps the images' own size.
    """

    output_dir: str
    seed: int
    dataset: str
    data_source: str
    data_dir: str | None
    verbosity: int
    image_size: tuple[int, int] | None = None

    def __post_init__(self):
        size = self.image_size
        if size is not None and (len(size) != 2 or not all(v >= 1 for v in size)):
            raise ValueError(f"image_size={size!r} is not (height, width) with both >= 1")


def define_common_flags(
    flag_values: flags.FlagValues = flags.FLAGS, output_dir: str = "out"
) -> None:
    """Defines the common flags: output folder, seed, dataset, data source and verbosity.

    ``--output_dir``, ``--seed``, ``--dataset``, ``--data_source``, ``--data_dir``,
    ``--data_image_size``, ``--verbose``; ``--data_source=idx``, ``--dataset=arrays`` and
    ``--dataset=folder`` require ``--data_dir``; ``--data_image_size`` is only for
    ``--dataset=folder``.

    Args:
        flag_values: Where to define them (a fresh ``FlagValues`` in tests).
        output_dir: The default output folder of this run script.
    """
    flags.DEFINE_string(
        name="output_dir",
        default=output_dir,
        help="Folder that receives every output file of the run; created if missing.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="seed",
        default=0,
        lower_bound=0,
        help="Seed of every random choice (weights, shuffling, noise); an integer >= 0.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        name="dataset",
        default="mnist",
        enum_values=list(DATASETS),
        help=(
            "Which dataset to load: mnist or fashion_mnist (from --data_source), arrays (the "
            ".npz file given by --data_dir, holding x_train, y_train, x_test, y_test and "
            "optionally class_names; uint8 0..255 or float [0, 1] images [N, H, W(, C)]) or "
            "folder (--data_dir holds one subfolder of .png/.jpg/.jpeg/.bmp/.gif images per "
            "class, named after it; 20% of each class becomes the test split)."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        name="data_source",
        default="auto",
        enum_values=list(DATA_SOURCES),
        help=(
            "Where the data comes from: auto (a local copy, else the keras download, else "
            "the embedded sample), npz (mnist.npz in --data_dir or the keras cache), idx (the "
            "four IDX files in --data_dir), keras (download) or sample (embedded 4,000/1,000 "
            "MNIST sample). Ignored by --dataset=arrays and --dataset=folder."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        name="data_dir",
        default=None,
        help=(
            "Folder holding mnist.npz or the IDX files (optional for mnist and "
            "fashion_mnist); the .npz file of --dataset=arrays; the image folder of "
            "--dataset=folder."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        name="data_image_size",
        default=None,
        help=(
            "Only for --dataset=folder: HEIGHT,WIDTH in pixels (two integers >= 1) every "
            "image is resized to, bilinear; empty keeps the images' own size, which must then "
            "be the same for all."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="verbose",
        default=1,
        lower_bound=0,
        upper_bound=2,
        help="Console output: 0 quiet, 1 progress and summary, 2 also Keras' per-batch bars.",
        flag_values=flag_values,
    )

    @flags.validator(
        "output_dir",
        message="--output_dir is empty; expected a folder path",
        flag_values=flag_values,
    )
    def _output_dir_given(value):
        return bool(value and value.strip())

    @flags.multi_flags_validator(
        ["data_source", "data_dir"],
        message="--data_source=idx needs --data_dir, the folder with the four IDX files",
        flag_values=flag_values,
    )
    def _idx_needs_dir(values):
        return values["data_source"] != "idx" or bool(values["data_dir"])

    @flags.multi_flags_validator(["dataset", "data_dir"], flag_values=flag_values)
    def _own_data_needs_dir(values):
        dataset = values["dataset"]
        if dataset in data.DATA_DIR_NEEDED and not values["data_dir"]:
            raise flags.ValidationError(
                f"--dataset={dataset} needs --data_dir, {data.DATA_DIR_NEEDED[dataset]}"
            )
        return True

    @flags.validator(
        "data_image_size",
        message=(
            "--data_image_size must be HEIGHT,WIDTH: two integers >= 1 (e.g. 64,64), or "
            "empty to keep the images' own size"
        ),
        flag_values=flag_values,
    )
    def _image_size_positive(value):
        return not value or _image_size(value) is not None

    @flags.multi_flags_validator(["dataset", "data_image_size"], flag_values=flag_values)
    def _image_size_only_for_folder(values):
        if values["data_image_size"] and values["dataset"] != "folder":
            raise flags.ValidationError(
                f"--data_image_size applies only to --dataset=folder, not "
                f"--dataset={values['dataset']}"
            )
        return True


def _image_size(value: list[str] | None) -> tuple[int, int] | None:
    """``--data_image_size`` as ``(height, width)``; ``None`` when empty or not two
    integers >= 1."""
    if not value or len(value) != 2:
        return None
    try:
        size = tuple(int(v) for v in value)
    except ValueError:
        return None
    return size if all(v >= 1 for v in size) else None


def common_config(flag_values: flags.FlagValues = flags.FLAGS) -> CommonConfig:
    """Converts the parsed common flags into a ``CommonConfig``."""
    return CommonConfig(
        output_dir=flag_values.output_dir,
        seed=flag_values.seed,
        dataset=flag_values.dataset,
        data_source=flag_values.data_source,
        data_dir=flag_values.data_dir or None,
        verbosity=flag_values.verbose,
        image_size=_image_size(flag_values.data_image_size),
    )


def write_flags_file(flag_values: flags.FlagValues, output_dir: str, modules=None) -> str:
    """Writes the effective flags to ``<output_dir>/flags.cfg`` (replayable with ``--flagfile``).

    ``--output_dir`` is written as a comment: a replay that does not name its own folder
    writes to the script's default folder instead of overwriting this run.

    Args:
        flag_values: The parsed flags.
        output_dir: The run's output folder.
        modules: Module names whose flags to write (default: every flag defined by a module
            of our ``flags`` package or by the run scripts).

    Returns:
        The path written.
    """
    lines = []
    for module, module_flags in sorted(flag_values.flags_by_module_dict().items()):
        if modules is not None and module not in modules:
            continue
        if modules is None and not (module.startswith("flags.") or "run_" in module):
            continue
        for flag in sorted(module_flags, key=lambda f: f.name):
            if flag.name == "output_dir":  # a replay must not overwrite this run
                lines.append(f"# {flag.serialize()}  (this run; a replay writes where told)")
                continue
            lines.append(flag.serialize())
    lines = [ln for ln in lines if ln]
    path = os.path.join(output_dir, "flags.cfg")
    io.write_text(path, "\n".join(lines) + "\n")
    return path


#: What a run script reports in one line (exit code 2) instead of a traceback: bad input,
#: missing or damaged files, disk and permission errors, no network.
CLEAR_ERRORS = (ValueError, OSError, RuntimeError)


def run_with_clear_errors(
    main: Callable[[], int | None], flag_hints: Mapping[str, str] | None = None
) -> int:
    """Runs ``main()`` with Ctrl-C and SIGTERM delivered at safe points
    (``tfool.interrupts``), and turns a ``CLEAR_ERRORS`` exception into one logged line.

    The library's errors name its arguments (``weights=``, ``source=``); ``flag_hints``
    maps such an argument to the flag that sets it, added to the line when the message
    names the argument.

    Returns:
        ``main``'s exit status (``None`` counts as 0), 2 after an error, 130 after an
        interruption that ``main`` did not handle itself.
    """
    from tfool import interrupts

    try:
        with interrupts.safe_points():
            return main() or 0
    except KeyboardInterrupt:
        logging.getLogger("tfool").warning("interrupted before there was a result to keep")
        return 130
    except CLEAR_ERRORS as err:
        message = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.filename is not None and err.strerror:
            message = f"{err.strerror}: {err.filename}"  # no errno prefix
        flags_named = sorted({f for arg, f in (flag_hints or {}).items() if arg in message})
        hint = f" (flags: {', '.join(flags_named)})" if flags_named else ""
        logging.getLogger("tfool").error("error: %s%s", message.replace("\n", " "), hint)
        return 2


def setup_logging(verbosity: int) -> None:
    """The run scripts' one logging convention: ``HH:MM:SS message`` lines on stderr,
    progress (INFO) shown when ``verbosity`` > 0, warnings and errors always.

    Replaces absl's handler (and an earlier call's) on the root logger; other handlers
    (a test's log capture) stay.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler).__name__ == "ABSLHandler" or getattr(handler, "tfool", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.tfool = True
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbosity else logging.WARNING)


def define_script_flags(
    flag_values: flags.FlagValues, output_dir: str, *definers: Callable[[flags.FlagValues], None]
) -> None:
    """Defines a run script's flags: the common, model and distribution groups (the
    common group with the script's default ``output_dir``), then each of ``definers``."""
    from flags import distribution as distribution_flags
    from flags import model as model_flags

    define_common_flags(flag_values, output_dir=output_dir)
    model_flags.define_model_flags(flag_values)
    distribution_flags.define_distribution_flags(flag_values)
    for define in definers:
        define(flag_values)


def check_folders(flag_values: flags.FlagValues) -> None:
    """Refuses, before any work, an output folder, model folder or TensorBoard folder that
    cannot be written (an existing file, a read-only or full file system, no permission).

    Raises:
        ValueError: naming the flag and the path.
    """
    io.check_writable_folder(flag_values.output_dir, "--output_dir")
    model_path = getattr(flag_values, "model_path", None)
    if model_path and not os.path.exists(model_path):  # trained, then saved there
        io.check_writable_folder(os.path.dirname(model_path) or ".", "--model_path's folder")
    tensorboard = getattr(flag_values, "tensorboard_dir", None)
    if tensorboard:
        io.check_writable_folder(tensorboard, "--tensorboard_dir")
