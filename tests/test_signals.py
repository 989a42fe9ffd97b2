"""signals: a first SIGINT/SIGTERM asks the loop to stop; a second SIGINT aborts; handlers are put back."""

from __future__ import annotations

import os
import signal

import pytest

from dcgan.signals import StopFlag, on_signals


def test_the_first_signal_is_recorded_and_a_second_sigint_aborts():
    stop = StopFlag()
    previous = signal.getsignal(signal.SIGTERM)
    with on_signals(stop):
        assert signal.getsignal(signal.SIGTERM) is stop
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.reason == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert stop.reason == "SIGTERM"  # the first reason stays
    assert signal.getsignal(signal.SIGTERM) is previous
