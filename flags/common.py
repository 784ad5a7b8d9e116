"""Common flags: output folder, seed, dataset, verbosity; the effective-flags file, and the
run scripts' shared error, logging and folder handling."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping

from absl import flags

from flags import distribution as distribution_flags
from flags import model as model_flags
from flags import spine
from tfool import data, io
from tfool.config import CommonConfig


def define_common_flags(
    flag_values: flags.FlagValues = flags.FLAGS, output_dir: str = "out"
) -> None:
    """Defines the flags of ``tfool.config.CommonConfig``: ``--output_dir``, ``--seed``,
    ``--dataset``, ``--data_source``, ``--data_dir``, ``--data_image_size``, ``--verbose``.

    ``--data_source=idx``, ``--dataset=arrays`` and ``--dataset=folder`` require
    ``--data_dir``; ``--data_image_size`` is only for ``--dataset=folder``.

    Args:
        flag_values: Where to define them (a fresh ``FlagValues`` in tests).
        output_dir: The default output folder of this run script.
    """
    spine.define_config_flags(CommonConfig, "", flag_values, defaults={"output_dir": output_dir})

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

    @flags.multi_flags_validator(["dataset", "data_image_size"], flag_values=flag_values)
    def _image_size_only_for_folder(values):
        if values["data_image_size"] and values["dataset"] != "folder":
            raise flags.ValidationError(
                f"--data_image_size applies only to --dataset=folder, not "
                f"--dataset={values['dataset']}"
            )
        return True


def common_config(flag_values: flags.FlagValues = flags.FLAGS) -> CommonConfig:
    """Converts the parsed common flags into a ``tfool.config.CommonConfig``."""
    return spine.config_from_flags(CommonConfig, "", flag_values)


def write_flags_file(
    flag_values: flags.FlagValues,
    output_dir: str,
    modules=None,
    name: str = "flags.cfg",
    data_source: str | None = None,
) -> str:
    """Writes the effective flags to ``<output_dir>/<name>`` (replayable with ``--flagfile``).

    ``--output_dir`` is written as a comment: a replay that does not name its own folder
    writes to the script's default folder instead of overwriting this run. With
    ``--data_source=auto``, ``data_source`` (the loaded ``Dataset.source``) is written
    instead, so a replay on another machine reads the same data.

    Args:
        flag_values: The parsed flags.
        output_dir: The run's output folder.
        modules: Module names whose flags to write (default: every flag defined by a module
            of our ``flags`` package or by the run scripts).
        name: The file name: each run script has its own (``flags.cfg``,
            ``fgsm_flags.cfg``), so one never replaces the other's.
        data_source: Where the data actually came from; recorded when it is one of
            ``tfool.data.SOURCES`` (not for ``--dataset=arrays`` or ``folder``).

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
            found = flag.name == "data_source" and flag.value == "auto"
            if found and data_source in data.SOURCES and data_source != "auto":
                lines.append(f"# --data_source=auto found {data_source}; a replay reads the same")
                lines.append(f"--data_source={data_source}")
                continue
            lines.append(flag.serialize())
    lines = [ln for ln in lines if ln]
    path = os.path.join(output_dir, name)
    io.write_text(path, "\n".join(lines) + "\n")
    return path


class OutputFolder:
    """A run script's hold on ``--output_dir`` (``claim_output_dir``): one folder, one run.

    Attributes:
        run: The library's ``tfool.io.RunFolder``: the lock, the record of every file
            written and the manifest; ``None`` in a worker of a multi-worker run other than
            the chief, which writes the chief's files without holding the folder.
    """

    def __init__(self, run: io.RunFolder | None, flag_values: flags.FlagValues, flags_file: str):
        self.run, self._flag_values, self._flags_file = run, flag_values, flags_file

    def start(self, data_source: str | None = None, keep: Iterable[str | os.PathLike] = ()) -> str:
        """Every check passed and the run starts writing: removes the files the earlier
        run's manifest lists (never those this run reads: the paths its flags name, their
        ``.json`` records and ``keep``), writes the manifest and the flags file.

        Args:
            data_source: The loaded data's ``Dataset.source``, for the flags file.
            keep: More paths the run reads (the model at its default path).

        Returns:
            The flags file's path.
        """
        if self.run is not None:
            self.run.start(self._flags_file, keep=[*_flag_paths(self._flag_values), *keep])
        return write_flags_file(
            self._flag_values,
            self._flag_values.output_dir,
            name=self._flags_file,
            data_source=data_source,
        )

    def done(self, status: int) -> int:
        """Records the exit status (0 finished, 130 interrupted, else failed); returns it."""
        return self.run.done(status) if self.run is not None else status


@contextlib.contextmanager
def claim_output_dir(
    flag_values: flags.FlagValues, script: str, flags_file: str = "flags.cfg"
) -> Iterator[OutputFolder]:
    """Takes ``--output_dir`` for this run for the ``with`` block, before any work.

    A folder another live run holds is refused (``ValueError`` naming ``--output_dir``, that
    run's pid and command, exit code 2); a lock left by a run that no longer exists is taken
    over with a warning. The lock is removed when the block ends, also after an error or
    Ctrl-C / SIGTERM, and the final manifest written once ``start()`` was called. In a
    multi-worker run (``--distribution_strategy=multi_worker_mirrored``) only the chief
    holds the folder: the other workers write the same files, into it or their own.

    Args:
        flag_values: The parsed flags.
        script: The run script, for the manifest (``run_backwork.py``).
        flags_file: The name of the script's flags file.

    Yields:
        The ``OutputFolder``; call ``start()`` once the checks have passed.
    """
    if _other_worker(flag_values):
        os.makedirs(flag_values.output_dir, exist_ok=True)
        yield OutputFolder(None, flag_values, flags_file)
        return
    with io.RunFolder(flag_values.output_dir, script, what="--output_dir") as run:
        yield OutputFolder(run, flag_values, flags_file)


def _other_worker(flag_values: flags.FlagValues, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a worker of a multi-worker run other than the chief (the
    ``chief`` task, else worker 0), as ``TF_CONFIG`` says; an unreadable ``TF_CONFIG``
    counts as the chief (the strategy refuses it with a clear error)."""
    if getattr(flag_values, "distribution_strategy", None) != "multi_worker_mirrored":
        return False
    try:
        config = json.loads((os.environ if environ is None else environ).get("TF_CONFIG", ""))
        task, cluster = config["task"], config["cluster"]
        kind, index = task["type"], int(task["index"])
        has_chief = bool(cluster.get("chief"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    if kind == "chief" or (kind == "worker" and index == 0 and not has_chief):
        return False
    return True


def _flag_paths(flag_values: flags.FlagValues) -> list[str]:
    """Every path the run's flags may name (their string values) and ``<path>.json``, the
    record a cached model keeps beside it; ``--output_dir`` itself excluded."""
    paths = []
    for name in flag_values:
        if name in ("output_dir", "flagfile"):
            continue
        value = flag_values[name].value
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item.strip():
                paths += [item, item + ".json"]
    return paths


#: What a run script reports in one line (exit code 2) instead of a traceback: bad input,
#: missing or damaged files, disk and permission errors, no network.
CLEAR_ERRORS = (ValueError, OSError, RuntimeError)


def run_with_clear_errors(
    main: Callable[[], int | None], flag_hints: Mapping[str, str] | None = None
) -> int:
    """Runs ``main()`` with Ctrl-C and SIGTERM delivered at safe points
    (``tfool.interrupts``), and turns a ``CLEAR_ERRORS`` exception into one logged line.

    The library's errors name its arguments (``weights=``, ``source=``, ``labels``);
    ``flag_hints`` maps such an argument (a regular expression: ``labels``,
    ``layer '[^']*' is not in``) to the flag that sets it, added to the line when the message
    names the argument as a word of its own (``labels`` but not ``--backwork_labels`` or
    ``num_labels``) and does not name that flag already.

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
        flags_named = sorted(
            {
                f
                for arg, f in (flag_hints or {}).items()
                if f not in message and _names(message, arg)
            }
        )
        hint = f" (flags: {', '.join(flags_named)})" if flags_named else ""
        logging.getLogger("tfool").error("error: %s%s", message.replace("\n", " "), hint)
        return 2


def _names(message: str, argument: str) -> bool:
    """Whether ``message`` names ``argument`` (a regular expression) as a word of its own."""
    end = r"(?![\w])" if re.search(r"\w$", argument) else ""
    return re.search(rf"(?<![\w-])(?:{argument}){end}", message) is not None


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
    define_common_flags(flag_values, output_dir=output_dir)
    model_flags.define_model_flags(flag_values)
    distribution_flags.define_distribution_flags(flag_values)
    for define in definers:
        define(flag_values)


def check_folders(flag_values: flags.FlagValues, output_names: Iterable[str] = ()) -> None:
    """Refuses, before any work, an output folder, model folder or TensorBoard folder that
    cannot be written (an existing file, a read-only or full file system, no permission),
    and a path the file system cannot hold: a name of ``--output_dir``, ``--model_path``
    (and its record ``<model_path>.json``), ``--tensorboard_dir`` or of the output files
    longer than the file system allows (``tfool.io.check_names``).

    Args:
        flag_values: The parsed flags.
        output_names: The names of the files the run writes in ``--output_dir``.

    Raises:
        ValueError: naming the flag and the path (or the name and its length).
    """
    output_dir = flag_values.output_dir
    names = [*output_names, io.LOCK_NAME, io.MANIFEST_NAME]
    io.check_names(output_dir, names, "--output_dir")
    io.check_writable_folder(output_dir, "--output_dir")
    model_path = getattr(flag_values, "model_path", None)
    if model_path and not os.path.exists(model_path):  # trained, then saved there
        folder, name = os.path.split(model_path)
        io.check_names(folder or ".", [name], "--model_path")
        io.check_names(folder or ".", [name + ".json"], "--model_path's record file")
        io.check_writable_folder(folder or ".", "--model_path's folder")
    tensorboard = getattr(flag_values, "tensorboard_dir", None)
    if tensorboard:
        io.check_names(tensorboard, [], "--tensorboard_dir")
        io.check_writable_folder(tensorboard, "--tensorboard_dir")
