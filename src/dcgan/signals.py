"""Stop requests by signal: SIGINT and SIGTERM ask a loop to stop after its step.

The loops (the trainer, the classic baselines) check a ``StopFlag`` between steps, so a stop
always lands on a whole step that can be checkpointed; ``on_signals`` installs a handler for a
block and puts the previous handlers back afterwards.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """A signal handler that records the first signal's name; a second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, signum, frame) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name


@contextmanager
def on_signals(handler: Callable, signals: tuple = STOP_SIGNALS) -> Iterator[None]:
    """``handler`` for ``signals`` inside the block; outside the main thread, signals are left alone."""
    try:
        previous = {s: signal.signal(s, handler) for s in signals}
    except ValueError:  # not the main thread: Python allows handlers there only
        previous = {}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
