"""tfool.interrupts: SIGINT and SIGTERM delivered at safe points, writes they cannot cut."""

import os
import signal

import numpy as np
import pytest

from tfool import backwork as bw
from tfool import interrupts, io

SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.fixture(autouse=True)
def terminal_sigint():
    """Python's own SIGINT handler, as in a terminal (a shell's background job, such as a
    CI runner may start, inherits SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_ignored_signal_stays_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts.safe_points():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        assert not interrupts.requested()
        with interrupts.protected():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@pytest.mark.parametrize("signum", SIGNALS, ids=["sigint", "sigterm"])
def test_a_signal_waits_for_the_next_safe_point(signum):
    with interrupts.safe_points():
        os.kill(os.getpid(), signum)
        assert interrupts.requested() and interrupts.interrupted()
        with pytest.raises(KeyboardInterrupt, match="safe point"):
            interrupts.check()
        assert not interrupts.requested()
        interrupts.check()  # consumed: nothing more to raise
    assert signal.getsignal(signal.SIGTERM) is not interrupts._handler  # handlers restored


def test_a_second_signal_before_a_safe_point_stops_at_once():
    with interrupts.safe_points():
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt, match="second signal"):
            os.kill(os.getpid(), signal.SIGINT)


def test_outside_safe_points_check_does_nothing_and_ctrl_c_is_plain():
    interrupts.check()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)


def test_protected_writes_finish_and_the_signal_counts_after(tmp_path):
    with interrupts.safe_points():
        with interrupts.protected():
            os.kill(os.getpid(), signal.SIGTERM)
            assert not interrupts.requested()  # held back while writing
            io.write_json(tmp_path / "a.json", {"done": True})
        assert interrupts.requested()
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    assert io.read_json(tmp_path / "a.json") == {"done": True}


class SignalAt(bw.BackworkCallback):
    """Sends a signal to this process at a chosen point of a backwork run."""

    def __init__(self, signum, step):
        self.signum, self.step = signum, step

    def on_start(self, config, num_rows):
        if self.step is None:  # before the first step
            os.kill(os.getpid(), self.signum)

    def on_save(self, event):
        if event.step == self.step:
            os.kill(os.getpid(), self.signum)


#: Interrupted runs of the loop test: 10 in the suite (about 8 s here);
#: ``TFOOL_INTERRUPT_RUNS=50 pytest -k interrupt`` for the long check.
RUNS = int(os.environ.get("TFOOL_INTERRUPT_RUNS", "10"))


def test_interrupt_many_times_at_every_point(small_cnn, small_data, tmp_path):
    """``RUNS`` runs, each interrupted by SIGINT or SIGTERM before the first step, inside the
    first steps, or during the writes: every run ends at a safe point, keeps finite images
    of the right shape, and writes a complete, reloadable result."""
    config = bw.BackworkConfig(
        labels=(0, 1),
        num_examples=2,
        reference_size=10,
        max_num_steps=6,
        prob_cap_min=1.0,
        prob_cap_mean=1.0,
        jit_compile=False,
    )
    refs = bw.reference_set(small_cnn, small_data, config)
    points = [None, 0, 1, 3, "writes"]
    for i in range(RUNS):
        signum, point = SIGNALS[i % 2], points[i % len(points)]
        path = tmp_path / f"run{i % 3}.npz"
        with interrupts.safe_points():
            if point == "writes":
                result = bw.backwork(small_cnn, small_data, config, references=refs)
                with interrupts.protected():
                    os.kill(os.getpid(), signum)
                    io.write_npz(path, **bw.result_arrays(result))
                assert interrupts.requested()
                with pytest.raises(KeyboardInterrupt):
                    interrupts.check()
                assert not result.interrupted and result.steps == 6
            else:
                stop = SignalAt(signum, point)
                result = bw.backwork(
                    small_cnn, small_data, config, callbacks=[stop], references=refs
                )
                io.write_npz(path, **bw.result_arrays(result))
                stopped_at = 0 if point is None else point + 1  # the next safe point
                assert result.interrupted and result.steps == stopped_at, (i, point)
        assert result.images.shape == (2, 2, 28, 28, 1) and np.isfinite(result.images).all()
        again = bw.load_result(path)
        np.testing.assert_array_equal(again.images, result.images)
        assert again.interrupted == result.interrupted
