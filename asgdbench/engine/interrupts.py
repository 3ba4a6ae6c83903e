"""A Ctrl-C during a run is never lost: remembered when something swallows it, raised again."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_INTERRUPTED = threading.Event()


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """Make sure a Ctrl-C during a run is never lost.

    Python raises KeyboardInterrupt wherever the main thread happens to be, and
    some places swallow it: a ctypes callback (LLVM's object cache calls one
    while numba compiles) prints "Exception ignored" and goes on. So the
    handler also remembers the interrupt, and the run raises it again at its
    next checkpoint (:func:`raise_if_interrupted`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # ignored (SIG_IGN) or default: leave it as it is
        yield
        return

    def remember(signum: int, frame: Any) -> None:
        _INTERRUPTED.set()
        previous(signum, frame)

    unraisable = sys.unraisablehook

    def quiet_about_interrupts(report: Any) -> None:
        """Drop the "Exception ignored" report of a swallowed interrupt: it is raised again."""
        if not (isinstance(report.exc_type, type) and issubclass(report.exc_type, KeyboardInterrupt)):
            unraisable(report)

    _INTERRUPTED.clear()
    signal.signal(signal.SIGINT, remember)
    sys.unraisablehook = quiet_about_interrupts
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = unraisable
        _INTERRUPTED.clear()


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block ends, then raise it: for a write that must finish whole.

    A finished run's line is written and synced inside such a block, so that a
    Ctrl-C arriving halfway through neither cuts the line off nor has it taken
    back; the interrupt is raised as soon as the line is safe. If the block fails
    (the disk is full), its error is raised instead: it stops the run as well, and
    says what was not saved.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return
    held: list[tuple[int, Any]] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        previous(*held[0])


def raise_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that something swallowed.

    Only in the main thread, whose run :func:`interrupts_kept` guards: a run in another
    thread (a test's, an in-process worker's) must not take the main thread's interrupt.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if _INTERRUPTED.is_set():
        _INTERRUPTED.clear()
        raise KeyboardInterrupt
