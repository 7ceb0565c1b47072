"""SIGINT and SIGTERM as requests to stop at the next safe point, not as tracebacks.

`StopRequests()` installs handlers for both signals while it is entered. The first signal
only records itself (`requested`); the training loop looks at it at the end of each step,
saves a checkpoint and raises `Stopped`, which the CLI turns into one line and exit code
128 + signal (130 for SIGINT, 143 for SIGTERM). A second signal, or one that arrives while
`deferring` is False (nothing left worth saving), raises `Stopped` at once; the CLI's
entry point holds a non-deferring one around every command, so no command ends in a
KeyboardInterrupt traceback.

Helper processes (math verifier workers, the code sandbox runner) run in their own
session, so a Ctrl-C at the terminal reaches only this process and they end when their
pipes close. Test: tests/test_resume.py (SIGINT and SIGTERM through a real process).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """The run ended on a signal; `message` is the one line the CLI prints.

    A BaseException, like KeyboardInterrupt, so that `except Exception` clean-up code lets it through."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


class StopRequests:
    """Records SIGINT / SIGTERM while entered; restores the previous handlers on exit."""

    def __init__(self, deferring: bool = True) -> None:
        self.requested: int | None = None     # the first signal received
        self.deferring = deferring
        self.on_immediate = "interrupted"     # what the line says when a signal cannot wait
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is not threading.main_thread():
            return self   # only the main thread may handle signals; elsewhere they keep their defaults
        for number in SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    @property
    def name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else ""

    @property
    def exit_code(self) -> int:
        return 128 + (self.requested or signal.SIGINT)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        again = self.requested is not None
        if not again:
            self.requested = number
        if again or not self.deferring:
            name = signal.Signals(number).name
            raise Stopped(f"{name}: {self.on_immediate}", 128 + number)
