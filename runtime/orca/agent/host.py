"""The machine the agent runs on: who it is, whether EC2 is reclaiming it, how it powers off.

On EC2 (:class:`Ec2Host`) identity comes from the instance metadata service
with IMDSv2 (a session token from a PUT, then GETs carrying it). The agent
runs on the host, so the launch template's hop limit of 1 is enough for it.
The hop limit only stops containers with a network namespace of their own:
pod containers share the host's (``--network host``), so the bootstrap's metadata
guard (:func:`orca.bootstrap.render_metadata_guard`) keeps them from the instance
role's credentials with a firewall rule on their cgroup instead.
Power-off is
``systemctl poweroff`` (``shutdown -h now`` where systemd is absent); the
instance's shutdown behaviour ``terminate`` turns that into a termination.

On the ECS-optimized AMIs the bootstrap runs the agent in a container (see
:mod:`orca.bootstrap`) with the host's network, so IMDS answers it as above, but
a container cannot power its host off. The bootstrap sets
``ORCA_AGENT_POWEROFF_BY_BOOTSTRAP=1`` there and powers off itself once the
agent's container exits; :meth:`Ec2Host.shutdown` then only logs the reason and
returns, so the agent's exit is what ends the instance.

Spot interruption notices: ``GET /latest/meta-data/spot/instance-action``
answers 404 until EC2 decides to reclaim a spot instance, then 200 with
``{"action": "terminate", "time": "2026-12-04T07:00:00Z"}``, about two minutes
ahead. :meth:`Host.spot_notice` returns that time, or None; trouble reaching
IMDS is logged and reads as no notice, so the agent keeps running its pod.

The local instance emulator runs this same agent with an
:class:`EmulatedHost`: it sets ``ORCA_AGENT_INSTANCE_ID``,
``ORCA_AGENT_INSTANCE_ARN`` and ``ORCA_AGENT_PRIVATE_IP`` from the local EC2,
and powering off means writing the reason to ``ORCA_AGENT_POWEROFF_FILE``,
which the emulator (playing the hypervisor) turns into an instance shut down
from inside. When the emulator is
told to interrupt a spot instance it writes IMDS's notice document to
``ORCA_AGENT_SPOT_NOTICE_FILE``, which stands for the metadata path. Only the
emulator sets these variables.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from orca.aws.model import instance_arn
from orca.bootstrap import POWEROFF_BY_BOOTSTRAP_VAR

log = logging.getLogger(__name__)

INSTANCE_ID_VAR = "ORCA_AGENT_INSTANCE_ID"
INSTANCE_ARN_VAR = "ORCA_AGENT_INSTANCE_ARN"
PRIVATE_IP_VAR = "ORCA_AGENT_PRIVATE_IP"
POWEROFF_FILE_VAR = "ORCA_AGENT_POWEROFF_FILE"
SPOT_NOTICE_FILE_VAR = "ORCA_AGENT_SPOT_NOTICE_FILE"

IMDS_URL = "http://169.254.169.254"
_TOKEN_TTL_SECONDS = 21600


class Host(Protocol):
    """What the agent needs from the machine it runs on."""

    emulated: bool

    def instance_id(self) -> str: ...

    def private_ip(self) -> str | None: ...

    def instance_arn(self) -> str:
        """What IAM calls this instance: the ARN its pod's bundle is stored under."""
        ...

    def shutdown(self, reason: str) -> None: ...

    def spot_notice(self) -> datetime | None:
        """When EC2 will interrupt this spot instance, if it has said so; None otherwise."""
        ...


class HostError(Exception):
    """The host could not tell who it is or could not power off."""


def parse_instance_action(body: str | bytes) -> datetime:
    """The time of a ``spot/instance-action`` document; ValueError if it is not one."""
    try:
        document = json.loads(body)
        when = datetime.fromisoformat(str(document["time"]).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a spot instance-action document: {body!r}") from e
    if when.tzinfo is None:
        raise ValueError(f"the instance-action time has no zone: {body!r}")
    return when


class Ec2Host:
    """A real EC2 instance, known through IMDSv2."""

    emulated = False

    def __init__(
        self, base_url: str = IMDS_URL, timeout: float = 2.0, *, bootstrap_powers_off: bool = False
    ) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self.bootstrap_powers_off = bootstrap_powers_off
        self._cache: dict[str, str] = {}
        self._notice_trouble = False

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
        return self._read(f"meta-data/{path}")

    def _read(self, path: str) -> str:
        if path in self._cache:
            return self._cache[path]
        try:
            request = urllib.request.Request(
                f"{self._base_url}/latest/{path}",
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

    def instance_arn(self) -> str:
        # The identity document names the account and region; the partition (aws,
        # aws-cn, aws-us-gov) has a metadata path of its own.
        try:
            identity = json.loads(self._read("dynamic/instance-identity/document"))
            account, region = str(identity["accountId"]), str(identity["region"])
        except (ValueError, KeyError, TypeError) as e:
            raise HostError(f"the instance identity document is not what EC2 serves: {e}") from e
        partition = self.metadata("services/partition")
        return instance_arn(partition, region, account, self.instance_id())

    def spot_notice(self) -> datetime | None:
        url = f"{self._base_url}/latest/meta-data/spot/instance-action"
        try:
            token = self._token()
        except (urllib.error.URLError, OSError) as e:
            self._trouble(f"no IMDSv2 token from {self._base_url}: {e}")
            return None
        try:
            request = urllib.request.Request(url, headers={"X-aws-ec2-metadata-token": token})
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                body = response.read()
            when = parse_instance_action(body)
        except urllib.error.HTTPError as e:
            # 404 is IMDS saying "no interruption scheduled", the usual answer.
            if e.code == 404:
                self._notice_trouble = False
                return None
            self._trouble(f"IMDS answered {e.code} for {url}")
            return None
        except (urllib.error.URLError, OSError, ValueError) as e:
            self._trouble(f"reading {url} failed: {e}")
            return None
        self._notice_trouble = False
        log.warning("EC2 is interrupting this spot instance at %s: %s", when.isoformat(), body)
        return when

    def _trouble(self, problem: str) -> None:
        # Once per spell of trouble: the agent asks every few seconds.
        if not self._notice_trouble:
            log.warning("%s; no spot notice is assumed until it answers", problem)
        self._notice_trouble = True

    def shutdown(self, reason: str) -> None:
        if self.bootstrap_powers_off:
            log.info(
                "leaving power-off to the bootstrap, which does it when the agent exits: %s", reason
            )
            return
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

    def __init__(
        self,
        instance_id: str,
        instance_arn: str,
        private_ip: str | None,
        poweroff_file: str,
        spot_notice_file: str | None = None,
    ) -> None:
        self._instance_id = instance_id
        self._instance_arn = instance_arn
        self._private_ip = private_ip
        self._poweroff_file = poweroff_file
        self._spot_notice_file = spot_notice_file

    def instance_id(self) -> str:
        return self._instance_id

    def private_ip(self) -> str | None:
        return self._private_ip

    def instance_arn(self) -> str:
        return self._instance_arn

    def spot_notice(self) -> datetime | None:
        if self._spot_notice_file is None:
            return None
        try:
            with open(self._spot_notice_file, "rb") as handle:
                body = handle.read()
        except FileNotFoundError:
            return None
        try:
            when = parse_instance_action(body)
        except ValueError as e:
            log.warning("%s: %s", self._spot_notice_file, e)
            return None
        log.warning("the emulator is interrupting this spot instance at %s", when.isoformat())
        return when

    def shutdown(self, reason: str) -> None:
        log.info("powering off: %s", reason)
        with open(self._poweroff_file, "w") as handle:
            handle.write(reason + "\n")


def host_from_environment(environ: Mapping[str, str] | None = None) -> Host:
    """The emulator's host when it set the variables, else the EC2 instance's IMDS."""
    env = os.environ if environ is None else environ
    instance_id = env.get(INSTANCE_ID_VAR)
    if not instance_id:
        return Ec2Host(bootstrap_powers_off=env.get(POWEROFF_BY_BOOTSTRAP_VAR) == "1")
    poweroff_file = env.get(POWEROFF_FILE_VAR)
    arn = env.get(INSTANCE_ARN_VAR)
    if not poweroff_file or not arn:
        raise HostError(
            f"{INSTANCE_ID_VAR} is set but {POWEROFF_FILE_VAR} or {INSTANCE_ARN_VAR} is not"
        )
    return EmulatedHost(
        instance_id,
        arn,
        env.get(PRIVATE_IP_VAR) or None,
        poweroff_file,
        env.get(SPOT_NOTICE_FILE_VAR) or None,
    )
