"""Tying a process's life to its parent's, and ending child process groups at once.

The Granian worker serves wlm and owns the local engines. When ``wlm serve`` (its
parent) is killed, even by SIGKILL, the worker must not start a graceful stop that
waits for open streams: it kills the engines' process groups, gives telemetry a short
flush and exits (``wlm.cli.app_factory`` wires this up with :func:`watch_parent`,
:class:`ProcessGroups`, which the local manager keeps for its engines).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["ProcessGroups", "die_with_parent", "watch_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies.

    The signal fires when the parent *thread* that forked us exits, so call this
    only in processes started from a long-lived thread. Returns False off Linux.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0)


def watch_parent(on_exit: Callable[[], None]) -> bool:
    """Call ``on_exit()`` on a daemon thread as soon as the parent process exits.

    Watches the parent through a pidfd (Linux 5.3+): it fires when the parent
    *process* ends (by any signal, SIGKILL included), whatever thread forked us, and
    needs no signal handler, so it works while the main thread is busy or blocked.
    If the parent is already gone, ``on_exit`` runs at once (on the thread).
    Returns False, and watches nothing, where pidfds are not available.
    """
    parent = os.getppid()
    try:
        pidfd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        return False

    def wait() -> None:
        try:
            # Opened after the parent died (and its pid maybe reused): we were
            # reparented already, so do not wait on whatever the pidfd names.
            if os.getppid() == parent:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)  # readable once the process exits
                poller.poll()
        finally:
            os.close(pidfd)
        on_exit()

    threading.Thread(target=wait, name="wlm-parent-watch", daemon=True).start()
    return True


class ProcessGroups:
    """Process groups of children that must never outlive this process (the engines).

    One per owner (the local manager); :meth:`kill_all` is safe from any thread.
    """

    def __init__(self) -> None:
        self._groups: set[int] = set()
        self._lock = threading.Lock()
        self._killed = False

    def track(self, pgid: int) -> None:
        """Remember a child's process group; killed at once if :meth:`kill_all` has run."""
        with self._lock:
            if not self._killed:
                self._groups.add(pgid)
                return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def forget(self, pgid: int) -> None:
        """Stop tracking ``pgid`` (call once its leader has been reaped)."""
        with self._lock:
            self._groups.discard(pgid)

    def kill_all(self) -> list[int]:
        """SIGKILL every tracked group, now and any tracked later; their ids.

        For a process about to exit without its usual clean-up (the parent died): it
        does not wait for the children.
        """
        with self._lock:
            self._killed = True
            groups = sorted(self._groups)
            self._groups.clear()
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        return groups
