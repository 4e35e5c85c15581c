"""Process plumbing for the long-running commands: stop and reload signals.

``handle_signals`` blocks SIGTERM, SIGINT and SIGHUP in the calling thread *before* any other
thread starts (threads inherit the mask), and waits for them in one dedicated thread with
``sigwait``. A stop or reload request therefore never depends on which thread the kernel
picked, on the main thread's state, or on Python's deferred signal handlers.
``kill -USR1`` dumps every thread's stack (faulthandler) for "why is it stuck?".
"""

from __future__ import annotations

import faulthandler
import signal
import threading
from collections.abc import Callable

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
HANDLED = STOP_SIGNALS | {signal.SIGHUP}


def block_during_imports() -> None:
    """Block the handled signals in the main thread while modules load: threads that libraries
    start at import time (numpy's OpenBLAS pool, say) inherit the mask and can never take a
    SIGTERM meant for ``handle_signals``. Call ``unblock`` before running a short command."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)


def unblock() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)


def handle_signals(stop: threading.Event, on_reload: Callable[[], None] | None = None) -> None:
    """Call from the main thread before starting any thread of the command's own."""
    faulthandler.register(signal.SIGUSR1)
    wanted = set(STOP_SIGNALS) | ({signal.SIGHUP} if on_reload is not None else set())
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)

    def wait() -> None:
        while True:
            received = signal.sigwait(wanted)
            if received == signal.SIGHUP and on_reload is not None:
                on_reload()
            else:
                stop.set()

    threading.Thread(target=wait, name="signals", daemon=True).start()
