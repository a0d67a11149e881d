"""The machine the agent runs on: who it is, and how it powers itself off.

On EC2 (:class:`Ec2Host`) identity comes from the instance metadata service
with IMDSv2 (a session token from a PUT, then GETs carrying it). The agent
runs on the host, so the launch template's hop limit of 1 is enough for it.
The hop limit only stops containers with a network namespace of their own:
pod containers share the host's (``--network host``), so keeping them from the
instance role's credentials needs a firewall rule on IMDS, not the hop limit.
Power-off is
``systemctl poweroff`` (``shutdown -h now`` where systemd is absent); the
instance's shutdown behaviour ``terminate`` turns that into a termination.

The local instance emulator runs this same agent with an
:class:`EmulatedHost`: it sets ``ORCA_AGENT_INSTANCE_ID`` and
``ORCA_AGENT_PRIVATE_IP`` from the local EC2, and powering off means writing
the reason to ``ORCA_AGENT_POWEROFF_FILE``, which the emulator (playing the
hypervisor) turns into an instance shut down from inside. Only the emulator
sets these variables.

Spot interruption notices are a later issue; :meth:`Host.spot_notice` is the
seam where the agent will poll for them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

log = logging.getLogger(__name__)

INSTANCE_ID_VAR = "ORCA_AGENT_INSTANCE_ID"
PRIVATE_IP_VAR = "ORCA_AGENT_PRIVATE_IP"
POWEROFF_FILE_VAR = "ORCA_AGENT_POWEROFF_FILE"

IMDS_URL = "http://169.254.169.254"
_TOKEN_TTL_SECONDS = 21600


class Host(Protocol):
    """What the agent needs from the machine it runs on."""

    emulated: bool

    def instance_id(self) -> str: ...

    def private_ip(self) -> str | None: ...

    def shutdown(self, reason: str) -> None: ...

    def spot_notice(self) -> datetime | None:
        """When EC2 will interrupt this spot instance, if it said so (not polled yet)."""
        ...


class HostError(Exception):
    """The host could not tell who it is or could not power off."""


class Ec2Host:
    """A real EC2 instance, known through IMDSv2."""

    emulated = False

    def __init__(self, base_url: str = IMDS_URL, timeout: float = 2.0) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._cache: dict[str, str] = {}

    def _token(self) -> str:
        request = urllib.request.Request(
            f"{self._base_url}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(_TOKEN_TTL_SECONDS)},
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            return str(response.read().decode())

    def metadata(self, path: str) -> str:
        """One metadata value, e.g. ``instance-id``; values that never change are cached."""
        if path in self._cache:
            return self._cache[path]
        try:
            request = urllib.request.Request(
                f"{self._base_url}/latest/meta-data/{path}",
                headers={"X-aws-ec2-metadata-token": self._token()},
            )
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                value = str(response.read().decode()).strip()
        except (urllib.error.URLError, OSError) as e:
            raise HostError(
                f"instance metadata {path!r} unreachable at {self._base_url}: {e}; "
                "is IMDSv2 enabled on the launch template?"
            ) from e
        self._cache[path] = value
        return value

    def instance_id(self) -> str:
        return self.metadata("instance-id")

    def private_ip(self) -> str | None:
        return self.metadata("local-ipv4")

    def spot_notice(self) -> datetime | None:
        return None

    def shutdown(self, reason: str) -> None:
        log.info("powering off: %s", reason)
        command = (
            ["systemctl", "poweroff"] if shutil.which("systemctl") else ["shutdown", "-h", "now"]
        )
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            raise HostError(f"{' '.join(command)} failed: {e}") from e


class EmulatedHost:
    """An instance of the local instance emulator (see the module docstring)."""

    emulated = True

    def __init__(self, instance_id: str, private_ip: str | None, poweroff_file: str) -> None:
        self._instance_id = instance_id
        self._private_ip = private_ip
        self._poweroff_file = poweroff_file

    def instance_id(self) -> str:
        return self._instance_id

    def private_ip(self) -> str | None:
        return self._private_ip

    def spot_notice(self) -> datetime | None:
        return None

    def shutdown(self, reason: str) -> None:
        log.info("powering off: %s", reason)
        with open(self._poweroff_file, "w") as handle:
            handle.write(reason + "\n")


def host_from_environment(environ: Mapping[str, str] | None = None) -> Host:
    """The emulator's host when it set the variables, else the EC2 instance's IMDS."""
    env = os.environ if environ is None else environ
    instance_id = env.get(INSTANCE_ID_VAR)
    if not instance_id:
        return Ec2Host()
    poweroff_file = env.get(POWEROFF_FILE_VAR)
    if not poweroff_file:
        raise HostError(f"{INSTANCE_ID_VAR} is set but {POWEROFF_FILE_VAR} is not")
    return EmulatedHost(instance_id, env.get(PRIVATE_IP_VAR) or None, poweroff_file)
