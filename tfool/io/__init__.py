"""Every file tfool writes: atomic writes of JSON, NPZ, CSV, text, figures and models (a
temporary file, then a rename); the record of what a run wrote; a run's hold on its
output folder.

The public names live here; the private submodules hold the atomic writers
(``_write``), the folder checks (``_folders``), the record of written files
(``_recording``), the lock (``_lock``) and the run folder with its manifest
(``_run_folder``).
"""

from tfool.io._folders import check_names, check_writable_folder
from tfool.io._lock import LOCK_NAME, FolderLock, LockHolder, lock_folder, this_process
from tfool.io._recording import Recording, recording
from tfool.io._run_folder import (
    MANIFEST_NAME,
    PROTECTED_FOLDERS,
    RunFolder,
    read_manifest,
    remove_listed,
)
from tfool.io._write import (
    atomic_path,
    read_json,
    save_figure,
    write_csv,
    write_json,
    write_npz,
    write_text,
    write_with,
)

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "PROTECTED_FOLDERS",
    "FolderLock",
    "LockHolder",
    "Recording",
    "RunFolder",
    "atomic_path",
    "check_names",
    "check_writable_folder",
    "lock_folder",
    "read_json",
    "read_manifest",
    "recording",
    "remove_listed",
    "save_figure",
    "this_process",
    "write_csv",
    "write_json",
    "write_npz",
    "write_text",
    "write_with",
]
