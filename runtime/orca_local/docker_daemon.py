"""A private Docker daemon for the local instance emulator: Debian's ``dockerd``, run as root.

Everything the daemon keeps lives under one state directory (``data``, ``exec``,
``docker.pid``, ``docker.sock``, ``dockerd.log``), so it never touches a
system Docker and is removed with the directory. Pod containers use the host's
network (one pod per instance, as on EC2), so the daemon needs no bridge and no
NAT rules: ``--bridge none --iptables=false``.

``python -m orca_local.docker_daemon start --state-dir DIR`` starts it (or finds
it running) and prints the ``DOCKER_HOST`` to use; ``stop`` stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DOCKERD = "/usr/sbin/dockerd"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0


class DockerDaemonError(Exception):
    """The daemon did not start or stop."""


def answers(docker_host: str) -> bool:
    """True when the daemon at ``docker_host`` answers ``docker version``."""
    try:
        result = subprocess.run(
            ["docker", "-H", docker_host, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@dataclass
class DockerDaemon:
    state_dir: Path
    # The daemon when this process started it, so that stopping it also reaps it.
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.state_dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "docker.pid"

    @property
    def logfile(self) -> Path:
        return self.state_dir / "dockerd.log"

    def answers(self) -> bool:
        """True when ``docker version`` gets an answer from this daemon."""
        return self.socket.exists() and answers(self.docker_host)

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def start(self, timeout: float = _START_TIMEOUT) -> str:
        """Starts dockerd unless it answers already; returns its DOCKER_HOST."""
        if self.answers():
            log.info("dockerd already answers at %s", self.docker_host)
            return self.docker_host
        if os.geteuid() != 0:
            raise DockerDaemonError("dockerd needs root; run this as root (sudo)")
        if not Path(DOCKERD).exists():
            raise DockerDaemonError(f"{DOCKERD} is missing; install Debian's docker.io package")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            DOCKERD,
            "--data-root",
            str(self.state_dir / "data"),
            "--exec-root",
            str(self.state_dir / "exec"),
            "--pidfile",
            str(self.pidfile),
            "-H",
            self.docker_host,
            "--bridge",
            "none",
            "--iptables=false",
            "--ip-masq=false",
        ]
        with open(self.logfile, "ab") as logfile:
            process = subprocess.Popen(
                argv,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DockerDaemonError(
                    f"dockerd exited with {process.returncode}; see {self.logfile}"
                )
            if self.answers():
                log.info("dockerd (pid %d) answers at %s", process.pid, self.docker_host)
                self._process = process
                return self.docker_host
            time.sleep(0.2)
        process.terminate()
        raise DockerDaemonError(f"dockerd did not answer within {timeout:.0f}s; see {self.logfile}")

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """SIGTERM to dockerd, then waits for it (and its containerd) to exit."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        if self._process is not None:
            # Started here: wait() also reaps it, so no zombie is left behind.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout)
            if self._process.returncode is not None:
                self._process = None
        while time.monotonic() < deadline:
            if not _alive(pid):
                log.info("dockerd (pid %d) stopped", pid)
                self._unmount_leftovers()
                return
            time.sleep(0.1)
        raise DockerDaemonError(f"dockerd (pid {pid}) still runs {timeout:.0f}s after SIGTERM")

    def _unmount_leftovers(self) -> None:
        # dockerd leaves exec/netns/default (an nsfs mount) behind, and a mount
        # point cannot be deleted: the state directory could not be removed.
        root = str(self.state_dir.resolve()) + "/"
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(root)]
        for point in sorted(points, reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orca_local.docker_daemon")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--state-dir", type=Path, default=Path(".local/docker"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    daemon = DockerDaemon(args.state_dir.resolve())
    try:
        if args.action == "start":
            sys.stdout.write(daemon.start() + "\n")
        else:
            daemon.stop()
    except DockerDaemonError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
