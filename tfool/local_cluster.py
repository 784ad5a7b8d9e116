"""A script run in several processes at once, as a ``TF_CONFIG`` cluster on loopback ports.

Multi-worker strategies and logical devices must be set up before TensorFlow starts, so
the tests and benchmarks of distribution run their work in fresh processes: ``Workers``
starts them and collects the one-line JSON report each prints.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Workers:
    """A Python script running in ``num_workers`` processes at once.

    Several workers form a ``TF_CONFIG`` cluster on loopback ports; one worker gets no
    ``TF_CONFIG``. Every worker runs offline (``TFOOL_OFFLINE=1``) with TensorFlow's
    C++ log level 2. ``reports()`` waits for them and returns each one's ``RESULT``
    report (the last stdout line starting with ``RESULT ``, JSON).

    Args:
        script: The Python file each worker runs.
        args: Its command-line arguments.
        num_workers: How many processes.
    """

    def __init__(self, script: str | os.PathLike, args: list[str], num_workers: int = 1):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFOOL_OFFLINE="1")
        env.pop("TF_CONFIG", None)
        hosts = [f"localhost:{port}" for port in free_ports(num_workers)]
        self.procs = []
        for index in range(num_workers):
            if num_workers > 1:
                task = {"type": "worker", "index": index}
                env = dict(env, TF_CONFIG=json.dumps({"cluster": {"worker": hosts}, "task": task}))
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, str(script), *args],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )

    def reports(self, timeout: float = 300) -> list[dict]:
        """Each worker's report, in worker order.

        Raises:
            RuntimeError: a worker failed, timed out or printed no report (with its output).
        """
        reports, failures = [], []
        deadline = time.monotonic() + timeout
        for index, proc in enumerate(self.procs):
            try:
                output, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                for other in self.procs:
                    other.kill()
                output, _ = proc.communicate()
                failures.append(f"worker {index} timed out after {timeout:g} s:\n{output[-4000:]}")
                continue
            lines = [ln for ln in output.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                failures.append(f"worker {index} exit {proc.returncode}:\n{output[-4000:]}")
            else:
                reports.append(json.loads(lines[-1][len("RESULT ") :]))
        if failures:
            raise RuntimeError("\n".join(failures))
        return reports
