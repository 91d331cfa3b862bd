"""One engine child process: spawn it, collect its output, wait until it serves, stop it.

Children never outlive wlm:
- each runs in its own session/process group (``start_new_session``), so a stop
  reaches anything it forked and a Ctrl-C in wlm's terminal does not hit it first;
- ``PR_SET_PDEATHSIG`` (set between fork and exec) kills it when wlm dies, even by
  SIGKILL. Linux delivers that signal when the *thread* that forked the child exits,
  so :meth:`EngineProcess.spawn` must run on the event loop's thread (it does:
  ``asyncio.create_subprocess_exec`` forks there), never in a short-lived worker;
- its process group is tracked (a ``wlm.lifeline.ProcessGroups``) until it is reaped, so
  when ``wlm serve`` dies the worker kills every engine's group at once instead of
  waiting for its open streams (``wlm.cli.app_factory``; docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from wlm.errors import GatewayError
from wlm.lifeline import ProcessGroups
from wlm.local.engines import HOST, EngineCommand
from wlm.local.logbuffer import LogBuffer, engine_reason
from wlm.transport import Transport, UpstreamRequest

__all__ = ["EngineProcess", "EngineStartError"]

_PR_SET_PDEATHSIG = 1
_TAIL_LINES = 6
_HEALTH_INTERVAL_S = 0.05


class EngineStartError(Exception):
    """The engine did not come up; ``reason`` is the engine's own words, ``tail`` its last lines."""

    def __init__(self, reason: str, tail: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tail = tail


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that ties the child's life to this process (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: keep it tiny
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def engine_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """wlm's environment without its keys: an engine needs none, and a verbose one or a
    crash report should have none to show."""
    return {
        name: value
        for name, value in environ.items()
        if not name.endswith(("_API_KEY", "_API_KEYS"))
        and name not in ("WLM_ADMIN_KEY", "WLM_CLI_KEY")
    }


class EngineProcess:
    """A running engine child; its stdout and stderr lines go to ``logs``."""

    def __init__(
        self,
        command: EngineCommand,
        process: asyncio.subprocess.Process,
        logs: LogBuffer,
        groups: ProcessGroups,
    ):
        self.command = command
        self.process = process
        self._groups = groups
        self.logs = logs
        self.pid: int = process.pid
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.base_url: str | None = None
        self._run_lines: deque[str] = deque(maxlen=200)  # this run only, for error reasons
        self._address: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._readers = [
            asyncio.create_task(self._read(process.stdout, parse_address=command.port == 0)),
            asyncio.create_task(self._read(process.stderr, parse_address=False)),
        ]

    @classmethod
    async def spawn(
        cls, command: EngineCommand, logs: LogBuffer, groups: ProcessGroups
    ) -> EngineProcess:
        """Start ``command`` (on the event loop's thread; see the module docstring).

        Raises :class:`EngineStartError` when the program cannot be executed.
        """
        logs.append(f"wlm: starting {command.kind}: {command.display}")
        try:
            process = await asyncio.create_subprocess_exec(
                *command.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**engine_environment(os.environ), **dict(command.env)},
                start_new_session=True,
                preexec_fn=_die_with_parent(),
                limit=1 << 20,
            )
        except OSError as exc:
            reason = f"cannot run {command.argv[0]}: {exc.strerror or exc}"
            logs.append(f"wlm: {reason}")
            raise EngineStartError(reason, []) from None
        groups.track(process.pid)  # start_new_session: its pid is its process group
        return cls(command, process, logs, groups)

    @property
    def port(self) -> int | None:
        if self.base_url is None:
            return self.command.port or None
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def has_exited(self) -> bool:
        """True once the child has exited, even before the event loop has reaped it.

        Cheap (one non-blocking syscall): called on every request. ``WNOWAIT`` leaves
        the exit status for the loop's child watcher, which still records why it died.
        """
        if self.process.returncode is not None:
            return True
        if not hasattr(os, "waitid"):
            return False
        try:
            found = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped already; returncode is set on the next loop pass
            return True
        return found is not None

    async def _read(self, stream: asyncio.StreamReader | None, parse_address: bool) -> None:
        if stream is None:
            return
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: take what is buffered
                raw = await stream.read(1 << 20)
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if parse_address and not self._address.done() and line.startswith("{"):
                with contextlib.suppress(ValueError, AttributeError):
                    address = json.loads(line).get("address")
                    if isinstance(address, str):
                        self._address.set_result(address.rstrip("/"))
                        continue
            self._run_lines.append(line)
            self.logs.append(line)

    async def wait(self) -> int:
        """Wait for the child to exit and for its output to be fully read; the exit code."""
        code = await self.process.wait()
        self._groups.forget(self.pid)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*self._readers, return_exceptions=True)
        return code

    def failure(self, what: str) -> EngineStartError:
        """An :class:`EngineStartError` for ``what`` went wrong, with the engine's reason."""
        lines = list(self._run_lines)
        reason = engine_reason(lines)
        tail = lines[-_TAIL_LINES:]
        return EngineStartError(f"{what}: {reason}" if reason else what, tail)

    def exit_reason(self, code: int) -> str:
        """Why a running engine ended by itself: its exit status and last error line, if any."""
        if code < 0:
            try:
                status = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                status = f"killed by signal {-code}"
        else:
            status = f"exited with code {code}"
        # Only the last lines: an old request error is not why it died now.
        reason = engine_reason(list(self._run_lines)[-20:], last_line_fallback=False)
        return f"engine {status} unexpectedly" + (f": {reason}" if reason else "")

    async def wait_ready(self, timeout_s: float, transport: Transport) -> str:
        """Wait until the engine answers ``GET /health`` with 200; its base URL.

        Raises :class:`EngineStartError` when the child exits first or ``timeout_s`` passes
        (the child is then killed).
        """
        exited: asyncio.Future[int] = asyncio.ensure_future(self.wait())
        try:
            async with asyncio.timeout(timeout_s):
                if self.command.port == 0:
                    either: set[asyncio.Future[Any]] = {self._address, exited}
                    done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                    if self._address not in done:
                        raise self.failure(f"engine exited with code {exited.result()}")
                    self.base_url = self._address.result()
                else:
                    self.base_url = f"http://{HOST}:{self.command.port}"
                while not await self._healthy(transport):
                    if exited.done():
                        raise self.failure(f"engine exited with code {exited.result()}")
                    await asyncio.wait({exited}, timeout=_HEALTH_INTERVAL_S)
        except TimeoutError:
            await self.kill()
            raise self.failure(f"engine not ready after {timeout_s:g} s") from None
        except BaseException:
            await self.kill()
            raise
        finally:
            if not exited.done():
                exited.cancel()
        return self.base_url

    async def _healthy(self, transport: Transport) -> bool:
        request = UpstreamRequest("GET", f"{self.base_url}/health", {}, timeout_s=2.0)
        try:
            response = await transport.send(request)
        except GatewayError:
            return False
        try:
            await response.read()
        except GatewayError:
            return False
        finally:
            response.release()
        return response.status == 200

    def _signal(self, signum: int) -> None:
        if self.process.returncode is not None:
            self._groups.forget(self.pid)
            return  # reaped: the pid may belong to someone else now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    async def stop(self, grace_s: float) -> int:
        """SIGTERM the process group, SIGKILL after ``grace_s``; the exit code."""
        self._signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace_s):
                return await self.wait()
        except TimeoutError:
            self.logs.append(f"wlm: engine ignored SIGTERM for {grace_s:g} s, killing it")
            return await self.kill()

    async def kill(self) -> int:
        """SIGKILL the process group and wait for the exit."""
        self._signal(signal.SIGKILL)
        return await self.wait()

    def rss_bytes(self) -> int | None:
        """Resident memory of the engine (None once it is gone)."""
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return None
