"""Command lines of tiny script runs, and fresh flag parsing, shared by the flag and script
tests."""

import os
import subprocess
import sys
from pathlib import Path

from absl import flags

ROOT = Path(__file__).resolve().parents[1]

#: A ``run_backwork.py`` run of seconds on the embedded sample (labels 0 and 7).
BACKWORK_ARGV = [
    "--data_source=sample",
    "--backwork_labels=0,7",
    "--backwork_num_examples=3",
    "--backwork_reference_size=40",
    "--backwork_max_num_steps=15",
    "--nobackwork_jit_compile",
]

#: Retraining rounds of seconds each (add ``--retrain_rounds``).
ROUNDS_ARGV = [
    "--retrain_epochs=1",
    "--retrain_fooling_budget=2",
    "--retrain_fooling_examples=2",
    "--retrain_num_zero=10",
    "--retrain_num_noise=10",
    "--retrain_max_num_steps=5",
]


def parse_flags(define, *args: str, prog: str = "prog") -> flags.FlagValues:
    """Fresh flags, defined by ``define(flag_values)``, parsed from the command line ``args``."""
    fv = flags.FlagValues()
    define(fv)
    fv([prog, *args])
    return fv


def run_backwork_process(args, **kw) -> subprocess.CompletedProcess:
    """``run_backwork.py`` on the command line ``args`` in a fresh process, offline, from the
    repository root (``kw`` goes to ``subprocess.run``)."""
    env = {**os.environ, "TFOOL_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, str(ROOT / "run_backwork.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        **kw,
    )
