"""A MariaDB server of the test's own (its own data folder and port), which a drill may stop and start without
touching the shared server the rest of the suite uses."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateMariaDB:
    def __init__(self, folder: Path, database: str = "drill") -> None:
        self.folder = folder
        self.port = _free_port()
        self.database = database
        self._process: subprocess.Popen[bytes] | None = None
        self._started = False
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}/{self.database}?charset=utf8mb4"

    def start(self) -> PrivateMariaDB:
        data = self.folder / "data"
        if not data.exists():
            subprocess.run(
                [
                    shutil.which("mariadb-install-db") or "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={data}",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                check=True,
                capture_output=True,
            )
        # A first start may find its port taken meanwhile by another process of the suite (the port was free when
        # chosen): it takes another. A restart keeps its port, which the service's URL names.
        for _ in range(1 if self._started else 3):
            if self._serve():
                break
            if not self._started:
                self.port = _free_port()
        else:
            raise RuntimeError(f"the private MariaDB did not come up; see {self.folder / 'server.log'}")
        self._started = True
        self._sql(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        return self

    def _serve(self) -> bool:
        """Start the server on this port and wait until it answers; False (and no process) if it exits first."""
        data = self.folder / "data"
        log = (self.folder / "server.log").open("ab")
        self._process = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={data}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.folder / 'mysqld.sock'}",
                f"--pid-file={self.folder / 'mysqld.pid'}",
                "--user=root",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=128M",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        for _ in range(300):
            if self._process.poll() is not None:  # it gave up (its port taken, say): nothing will answer
                self._process = None
                return False
            if self._answers():
                return True
            time.sleep(0.1)
        raise RuntimeError(f"the private MariaDB did not answer; see {self.folder / 'server.log'}")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as a restart by an operator or a package upgrade does."""
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(60)
            self._process = None

    def restart(self, down_s: float = 2.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def _answers(self) -> bool:
        try:
            return self._sql("SELECT 1", check=False, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:  # something else listens on the port and never speaks MariaDB
            return False

    def _sql(self, statement: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["mariadb", "--protocol=tcp", "--connect-timeout=2", "-h", "127.0.0.1", "-P", str(self.port), "-u", "root"]
            + ["-e", statement],
            check=check,
            capture_output=True,
            timeout=timeout,
        )
