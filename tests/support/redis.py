"""Real Redis Stack processes for tests: a private server on a free loopback port (AOF on), safe to pause or kill."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REDIS_SCRIPT = ROOT / "scripts" / "redis-stack.sh"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """Where the kernel starts handing out ports to outgoing connections (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_run(count: int, *, bus: bool = False, low: int = 20000) -> int:
    """The first of `count` consecutive free ports (and, with `bus`, their cluster bus ports at +10000), all below
    the ephemeral range: a node restarted after kill -9 must find its ports still free, and the suite's own client
    connections take ephemeral ports (one took a cluster bus port, 40884, between a kill and the restart)."""
    high = _ephemeral_low() - count - (10000 if bus else 0)
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high)
        ports = list(range(base, base + count))
        if bus:
            ports += [p + 10000 for p in ports]
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no run of free ports found")


def free_port() -> int:
    """A free loopback port below the ephemeral range (see `free_port_run`)."""
    return free_port_run(1)


class RedisServer:
    """A private Redis Stack on a free loopback port, with its own data dir (AOF on) — safe to pause or kill."""

    def __init__(self, port: int, data_dir: Path, tls_dir: Path | None = None) -> None:
        self.port = port
        self.data_dir = data_dir
        self.tls_dir = tls_dir  # TLS only, with the certificates in it (see redis-stack.sh REDIS_TLS_DIR)
        self.url = (f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tls_dir / 'ca.crt'}" if tls_dir
                    else f"redis://127.0.0.1:{port}/0")

    def _script(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        full = {**os.environ, "REDIS_PORT": str(self.port), "REDIS_DATA_DIR": str(self.data_dir),
                "REDIS_TLS_DIR": str(self.tls_dir or ""), **env}
        return subprocess.run(["bash", str(REDIS_SCRIPT), *args], env=full, check=check, capture_output=True,
                              text=True, timeout=300)

    def start(self, *, wait: bool = True, extra_args: str = "", **env: str) -> str:
        """Start (AOF on); `wait=False` returns while Redis is still loading its data (it answers LOADING).
        Returns what the script logged (stderr); `env` adds settings (REDIS_START_TIMEOUT...)."""
        return self._script("start", REDIS_START_WAIT="yes" if wait else "no", REDIS_EXTRA_ARGS=extra_args,
                            **env).stderr

    def status(self) -> tuple[int, str]:
        """`redis-stack.sh status`: its exit code (0 running, 3 stopped, 4 loading) and its line."""
        done = self._script("status", check=False)
        return done.returncode, done.stdout.strip()

    def stop(self) -> None:
        self._script("stop")

    @property
    def pid(self) -> int:
        return int((self.data_dir / "redis.pid").read_text().strip())

    def kill(self) -> None:
        """kill -9: the process dies without flushing anything (AOF writes precede replies, so none are lost)."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                state = Path(f"/proc/{pid}/stat").read_text().split()[2]
                if state == "Z":
                    break
            except (ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.02)
        (self.data_dir / "redis.pid").unlink(missing_ok=True)
