"""A throwaway PostgreSQL cluster for tests: Debian's ``postgresql`` binaries, ``initdb`` in
a temp dir, owned by an unprivileged user (the tests run as root and PostgreSQL refuses
root), listening on a free 127.0.0.1 port and on a unix socket inside the temp dir.

The cluster's superuser is that unprivileged user, reachable only through the socket
(trust); wlm connects over TCP as a password-authenticated role (scram-sha-256), as it
would in production. :meth:`PgCluster.create_database` gives each test its own database.
The server is stopped (and, if need be, killed) when the session ends.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

_USER = "wlmtest"
ROLE = "wlm"
PASSWORD = "wlm-test-pw-3f9a1c"  # a throwaway cluster's password


def pg_bindir() -> Path | None:
    """The directory of Debian's initdb/pg_ctl (newest version), or None when absent."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unprivileged_user() -> pwd.struct_passwd:
    """``wlmtest`` (a system user, created when missing), else ``nobody``."""
    try:
        return pwd.getpwnam(_USER)
    except KeyError:
        pass
    if os.geteuid() == 0 and shutil.which("useradd"):
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _USER],
            check=False,
            capture_output=True,
        )
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(_USER)
    return pwd.getpwnam("nobody")


class PgCluster:
    """One ``initdb`` cluster in a temp dir; :meth:`start`, :meth:`stop`, :meth:`destroy`."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="wlm-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.port = _free_port()
        self._databases = 0
        self._as_root = os.geteuid() == 0
        self._user = unprivileged_user() if self._as_root else pwd.getpwuid(os.geteuid())
        self.socket_dir.mkdir()
        if self._as_root:
            for path in (self.root, self.socket_dir):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text("unused-superuser-pw\n")
        if self._as_root:
            os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self._user.pw_name,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        atexit.register(self.destroy)

    # -- server ---------------------------------------------------------------------

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off "
            "-c max_connections=100 -c shared_buffers=32MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: like a crash; clients see their sockets close)."""
        if self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)
        pid = self._postmaster_pid()
        if pid is not None:  # pg_ctl gave up: do not let it outlive the tests
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def running(self) -> bool:
        pid = self._postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def destroy(self) -> None:
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ------------------------------------------------------------------

    def admin(self, dbname: str = "postgres") -> Any:
        """A superuser connection through the socket (autocommit)."""
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self._user.pw_name,
            dbname=dbname,
            autocommit=True,
        )

    def create_database(self) -> str:
        """A fresh database owned by the password role; its ``postgresql://`` URL."""
        self._databases += 1
        name = f"wlm_{self._databases}"
        with self.admin() as con:
            exists = con.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]).fetchone()
            if not exists:
                con.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
            con.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
        return self.url(name)

    def url(self, dbname: str) -> str:
        return f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{dbname}"

    # -- helpers --------------------------------------------------------------------

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        except (FileNotFoundError, PermissionError):
            return None
        return int(first) if first.strip().isdigit() else None

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        kwargs: dict[str, Any] = {}
        if self._as_root:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        done = subprocess.run(
            [str(self.bindir / tool), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": os.environ.get("PATH", ""), "LANG": "C", "LC_ALL": "C"},
            check=False,
            **kwargs,
        )
        if check and done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{tool} failed ({done.returncode}): {done.stderr}{done.stdout}\n{log}"
            )


def start_cluster() -> PgCluster:
    """A started cluster; raises LookupError when the binaries are missing."""
    bindir = pg_bindir()
    if bindir is None:
        raise LookupError(
            "PostgreSQL binaries not found (Debian: apt-get install postgresql; ./dev test does)"
        )
    cluster = PgCluster(bindir)
    cluster.start()
    return cluster


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)  # polling with a deadline
    return bool(predicate())
