"""Runs the ``docker`` CLI for the agent: the only module that starts Docker processes.

The AMI ships the Docker CLI and daemon, not a Python SDK, so every operation
is one CLI call. :mod:`orca.agent.containers` decides the arguments; this
module runs them, keeps environment values off command lines (see
:meth:`DockerCli.create`), and turns ``docker inspect`` into
:class:`ContainerState`. ``DOCKER_HOST`` is passed as ``-H`` so that a pod's
own environment can never redirect the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from orca import tags
from orca.agent.containers import CreateInvocation

log = logging.getLogger(__name__)

_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


class DockerError(Exception):
    """A docker command failed; ``stderr`` is what the CLI said."""

    def __init__(self, message: str, *, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


@dataclass(frozen=True)
class ContainerState:
    """What ``docker inspect`` says about one container."""

    status: str  # created, running, exited, ...
    exit_code: int
    oom_killed: bool
    started_at: datetime | None
    finished_at: datetime | None
    error: str
    image_id: str


def parse_docker_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; Python keeps microseconds."""
    match = _DOCKER_TIME.match(text or "")
    if match is None or match.group(1).startswith("0001-"):
        return None
    seconds, fraction, zone = match.groups()
    stamp = seconds + (f".{fraction[:6].ljust(6, '0')}" if fraction else "")
    offset = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(stamp + offset).astimezone(UTC)


class DockerCli:
    """The docker CLI against one daemon (``host`` None is the CLI's default socket)."""

    def __init__(self, host: str | None = None, binary: str = "docker") -> None:
        self.host = host
        self.binary = binary

    def command(self, args: Sequence[str]) -> list[str]:
        return [self.binary, *(["-H", self.host] if self.host else []), *args]

    def run(
        self,
        args: Sequence[str],
        *,
        extra_env: Mapping[str, str] | None = None,
        check: bool = True,
        stdin: str | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **(extra_env or {})}
        argv = self.command(args)
        log.debug("docker %s", " ".join(args[:2]))
        try:
            result = subprocess.run(
                argv,
                env=env,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DockerError(f"docker {' '.join(args[:2])} could not run: {e}") from e
        if check and result.returncode != 0:
            said = result.stderr.strip().splitlines()
            raise DockerError(
                f"docker {' '.join(args[:2])} failed (exit {result.returncode}): "
                f"{said[-1] if said else 'no message'}",
                stderr=result.stderr,
            )
        return result

    def image_present(self, image: str) -> bool:
        return (
            self.run(["image", "inspect", "--format", "{{.Id}}", image], check=False).returncode
            == 0
        )

    def image_user(self, image: str) -> str:
        """The user the image runs as (``USER`` in its Dockerfile); empty means root."""
        result = self.run(["image", "inspect", "--format", "{{.Config.User}}", image])
        return result.stdout.strip()

    def pull(self, image: str, stop: threading.Event, config_dir: str | None = None) -> None:
        """``docker pull``; a set ``stop`` kills it (a deadline must not wait for a registry).

        ``config_dir`` is a Docker config directory holding the registry's credential: it
        reaches the CLI as ``DOCKER_CONFIG``, never on its command line.
        """
        env = {**os.environ, "DOCKER_CONFIG": config_dir} if config_dir else None
        process = subprocess.Popen(
            self.command(["pull", "--quiet", image]),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        while process.poll() is None:
            if stop.wait(0.2):
                process.kill()
        _, stderr = process.communicate()
        if process.returncode != 0:
            said = stderr.strip().splitlines()
            raise DockerError(
                f"pulling {image} failed: {said[-1] if said else 'interrupted'}", stderr=stderr
            )

    def create(self, invocation: CreateInvocation, env_file: str) -> None:
        """``docker create``; the env-file lines are written to ``env_file`` (0600) meanwhile."""
        try:
            if invocation.env_file_lines:
                fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write("\n".join(invocation.env_file_lines) + "\n")
            self.run(invocation.argv, extra_env=invocation.cli_env)
        finally:
            if os.path.exists(env_file):
                os.unlink(env_file)

    def start(self, name: str) -> None:
        self.run(["start", name])

    def wait(self, name: str) -> int:
        """Blocks until the container exits; its exit code."""
        result = self.run(["wait", name])
        return int(result.stdout.strip() or "-1")

    def inspect(self, name: str) -> ContainerState:
        result = self.run(["container", "inspect", name])
        data = json.loads(result.stdout)[0]
        state = data["State"]
        return ContainerState(
            status=str(state["Status"]),
            exit_code=int(state.get("ExitCode", 0)),
            oom_killed=bool(state.get("OOMKilled", False)),
            started_at=parse_docker_time(state.get("StartedAt")),
            finished_at=parse_docker_time(state.get("FinishedAt")),
            error=str(state.get("Error") or ""),
            image_id=str(data.get("Image") or ""),
        )

    def stop(self, name: str, grace_seconds: int) -> None:
        """SIGTERM, then SIGKILL after the grace period, as the kubelet does."""
        self.run(["stop", "-t", str(grace_seconds), name], check=False)

    def remove(self, name: str) -> None:
        self.run(["rm", "--force", "--volumes", name], check=False)

    def volume_create(self, argv: Sequence[str]) -> None:
        self.run(argv)

    def volume_mountpoint(self, name: str) -> str:
        result = self.run(["volume", "inspect", "--format", "{{.Mountpoint}}", name])
        return result.stdout.strip()

    def remove_pod(self, pod_uid: str) -> None:
        """Removes every container and volume labelled with the pod's UID."""
        selector = f"label={tags.POD_UID}={pod_uid}"
        ids = self.run(["ps", "--all", "--quiet", "--filter", selector], check=False).stdout
        if ids.split():
            self.run(["rm", "--force", "--volumes", *ids.split()], check=False)
        volumes = self.run(["volume", "ls", "--quiet", "--filter", selector], check=False).stdout
        if volumes.split():
            self.run(["volume", "rm", "--force", *volumes.split()], check=False)

    def follow_logs(self, name: str) -> subprocess.Popen[bytes]:
        """``docker logs --follow --timestamps``: stdout and stderr as the container wrote them."""
        return subprocess.Popen(
            self.command(["logs", "--follow", "--timestamps", name]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
