"""The local instance emulator: boots the real ORCA agent for each instance of the local EC2.

On EC2 an instance boots its AMI and cloud-init runs the user data, whose
bootstrap starts ``orca agent``. Here :class:`InstanceEmulator` plays both the
hypervisor and the boot: it polls the local EC2 (moto) every half second for
ORCA's instances (tag ``orca.research/managed-by=orca``); for each new one
that is pending or running it reads the user data (DescribeInstanceAttribute),
parses the agent settings out of it with :func:`orca.bootstrap.parse_user_data`,
and starts the real agent as a subprocess (``python -m orca.agent --config
FILE``, what ``orca agent`` runs) with boto3 pointed at the local AWS and
``DOCKER_HOST`` at the local Docker daemon. The agent's own stderr (journald on
EC2) goes to ``<state-dir>/instances/<id>/agent.log``.

The agent learns who it is from ``ORCA_AGENT_INSTANCE_ID`` and
``ORCA_AGENT_PRIVATE_IP`` instead of IMDS, and powers off by writing
``ORCA_AGENT_POWEROFF_FILE``; when it has, the emulator shuts the instance down
"from inside" through the local AWS (its shutdown behaviour ``terminate`` makes
it ``terminated``). An instance terminated from outside (by the runtime) has its
agent killed and its containers removed within a second or two, as when the
hypervisor pulls the plug.

Spot interruptions: EC2 warns a spot instance about two minutes before it
reclaims it, through the instance metadata path ``spot/instance-action``. Here
:meth:`InstanceEmulator.interrupt_spot` writes that notice to the file named by
``ORCA_AGENT_SPOT_NOTICE_FILE``, which the agent's host reads in place of IMDS,
and once the notice's time has come, EC2 (the local AWS) reclaims the instance
if it is still running. A spot interruption can also be asked of the local AWS
(``LocalAwsControl.interrupt_spot_instance``), which is how a test or a person
interrupts an instance of an emulator in another process: the emulator picks up
the local AWS's notices on every poll.

Images: no registry is reachable, so before the agent starts, each image the
pod names is *emulated* by a local image (:mod:`orca_local.images`): the local
image is tagged with the pod's image reference (``docker tag
orca-local/busybox:1.36 public.ecr.aws/docker/library/busybox:1.36``), so the
agent runs the pod's own image name and finds it present, as on an AMI with a
warm image cache. Each mapping is logged ("image X is emulated by local image Y").
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orca
from orca import tags
from orca.agent.docker import DockerCli, DockerError
from orca.agent.host import (
    INSTANCE_ARN_VAR,
    INSTANCE_ID_VAR,
    POWEROFF_FILE_VAR,
    PRIVATE_IP_VAR,
    SPOT_NOTICE_FILE_VAR,
)
from orca.aws.bundles import BundleStore
from orca.aws.errors import AuthError, AwsError, NotFoundError, aws_call
from orca.aws.model import instance_arn
from orca.bootstrap import AgentConfig, parse_user_data
from orca.bundle import PodBundle
from orca_local.images import DEFAULT_IMAGE_MAP, ensure_images, local_image_for

if TYPE_CHECKING:
    from orca_local.aws import LocalAwsControl

log = logging.getLogger(__name__)

_BOOTING_STATES = ("pending", "running")
_ALL_STATES = ("pending", "running", "shutting-down", "stopping", "stopped", "terminated")
_FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# The runtime stores a pod's bundle right after RunInstances answers, which may be just
# after this emulator saw the instance; the images wait for it this long.
_BUNDLE_WAIT_SECONDS = 30.0

# An instance as one DescribeInstances saw it: state, private IP and ARN.
_Seen = tuple[str, str | None, str]
_GONE: _Seen = ("gone", None, "")


@dataclass
class EmulatedInstance:
    instance_id: str
    arn: str
    private_ip: str | None
    workdir: Path
    config: AgentConfig | None = None
    process: subprocess.Popen[bytes] | None = None
    killed: bool = False
    ended: bool = False  # the agent exited by itself
    booted_at: float = field(default_factory=time.monotonic)
    # When EC2 reclaims it, once it has been given a spot interruption notice.
    reclaim_at: datetime | None = None
    reclaimed: bool = False

    @property
    def poweroff_file(self) -> Path:
        return self.workdir / "poweroff"

    @property
    def agent_log(self) -> Path:
        return self.workdir / "agent.log"

    @property
    def spot_notice_file(self) -> Path:
        return self.workdir / "spot-instance-action"


class InstanceEmulator:
    """Runs the agent for every ORCA instance of the local EC2 (see the module docstring)."""

    def __init__(
        self,
        ec2_client: Any,
        s3_client: Any,
        *,
        endpoint_url: str,
        region: str,
        docker_host: str,
        state_dir: Path,
        image_map: Sequence[tuple[str, str]] = DEFAULT_IMAGE_MAP,
        power_off: Callable[[str], object] | None = None,
        poll_interval: float = 0.5,
        tag_filter: Mapping[str, str] | None = None,
        agent_log_level: str = "INFO",
    ) -> None:
        self._ec2 = ec2_client
        self._s3 = s3_client
        self.endpoint_url = endpoint_url
        self.region = region
        self.docker = DockerCli(docker_host)
        self.state_dir = state_dir
        self.image_map = image_map
        self._control = _control(endpoint_url)
        self._power_off = power_off or self._control.shutdown_from_inside
        self.poll_interval = poll_interval
        # Only instances with these tags (say, one department's) are booted here.
        self.tag_filter = dict(tag_filter or {})
        self.agent_log_level = agent_log_level
        self.instances: dict[str, EmulatedInstance] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> InstanceEmulator:
        ensure_images(self.docker.host or "")
        self._thread = threading.Thread(target=self._loop, name="instance-emulator", daemon=True)
        self._thread.start()
        log.info("instance emulator polling the local EC2 every %.1fs", self.poll_interval)
        return self

    def stop(self) -> None:
        """Stops polling and pulls the plug on every instance still running an agent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for instance_id, instance in list(self.instances.items()):
            if not (instance.killed or instance.ended):
                self._kill(instance_id, "the emulator stopped")

    def __enter__(self) -> InstanceEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll_once()
            # The loop outlives a bad poll (the local AWS restarting, say); the next one retries.
            except Exception:
                log.exception("polling the local EC2 failed; retrying")

    def poll_once(self) -> None:
        """One look at the local EC2: boot new instances, kill those that are gone."""
        states = self._instance_states()
        for instance_id, (state, private_ip, arn) in states.items():
            if state in _BOOTING_STATES and instance_id not in self.instances:
                instance = EmulatedInstance(
                    instance_id, arn, private_ip, self.state_dir / "instances" / instance_id
                )
                self.instances[instance_id] = instance
                threading.Thread(
                    target=self._boot, args=(instance,), name=f"boot-{instance_id}", daemon=True
                ).start()
        for instance_id, instance in list(self.instances.items()):
            state = states.get(instance_id, _GONE)[0]
            over = instance.killed or instance.ended
            if state not in _BOOTING_STATES and not over:
                self._kill(instance_id, f"instance is {state}")
        self._serve_spot_notices(states)

    def interrupt_spot(
        self, instance_id: str, warning: timedelta = timedelta(minutes=2)
    ) -> datetime:
        """EC2's spot interruption notice for an instance of this emulator: its agent reads
        it where it would read IMDS, and the instance is reclaimed at the notice's time."""
        # EC2 (the local AWS) decides; refused for an instance that is not spot.
        notice = self._control.interrupt_spot_instance(instance_id, warning.total_seconds())
        self._write_notice(instance_id, notice)
        return _parse_time(notice["time"])

    def _write_notice(self, instance_id: str, notice: dict[str, str]) -> None:
        instance = self.instances.get(instance_id)
        if instance is None:
            raise KeyError(f"{instance_id} is not an instance of this emulator")
        if instance.reclaim_at is not None:
            return
        instance.workdir.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: the agent never reads half a notice.
        partial = instance.spot_notice_file.with_suffix(".partial")
        partial.write_text(json.dumps(notice))
        partial.replace(instance.spot_notice_file)
        instance.reclaim_at = _parse_time(notice["time"])
        log.info("%s: spot interruption notice, reclaimed at %s", instance_id, notice["time"])

    def _serve_spot_notices(self, states: Mapping[str, _Seen]) -> None:
        """Notices asked of the local AWS reach their agents; due instances are reclaimed."""
        for instance_id, notice in self._control.spot_interruptions().items():
            instance = self.instances.get(instance_id)
            if instance is not None and instance.reclaim_at is None:
                self._write_notice(instance_id, notice)
        now = datetime.now(UTC)
        for instance_id, instance in list(self.instances.items()):
            due = instance.reclaim_at is not None and now >= instance.reclaim_at
            live = states.get(instance_id, _GONE)[0] in _BOOTING_STATES
            if due and live and not instance.reclaimed:
                instance.reclaimed = True
                state = self._control.reclaim_spot_instance(instance_id)
                log.info("%s: reclaimed by EC2 at its notice's time: now %s", instance_id, state)

    def _instance_states(self) -> dict[str, _Seen]:
        filters = [
            {"Name": f"tag:{tags.MANAGED_BY}", "Values": [tags.MANAGED_BY_VALUE]},
            {"Name": "instance-state-name", "Values": list(_ALL_STATES)},
            *({"Name": f"tag:{k}", "Values": [v]} for k, v in self.tag_filter.items()),
        ]
        states: dict[str, _Seen] = {}
        partition = self._ec2.meta.partition
        with aws_call("describing the local EC2's instances"):
            for page in self._ec2.get_paginator("describe_instances").paginate(Filters=filters):
                for reservation in page["Reservations"]:
                    for item in reservation["Instances"]:
                        arn = instance_arn(
                            partition, self.region, reservation["OwnerId"], item["InstanceId"]
                        )
                        states[item["InstanceId"]] = (
                            item["State"]["Name"],
                            item.get("PrivateIpAddress"),
                            arn,
                        )
        return states

    def _boot(self, instance: EmulatedInstance) -> None:
        instance_id = instance.instance_id
        try:
            config = self._read_config(instance_id)
        except (AwsError, ValueError) as e:
            log.warning(
                "%s booted without an ORCA bootstrap (%s); nothing runs on it", instance_id, e
            )
            return
        instance.config = config
        instance.workdir.mkdir(parents=True, exist_ok=True)
        config_file = instance.workdir / "agent.json"
        config_file.write_text(config.model_dump_json(by_alias=True, exclude_none=True))
        config_file.chmod(0o600)
        self._emulate_images(instance, config)

        with self._lock:
            if instance.killed or self._stop.is_set():
                return
            log.info("%s booted: running the agent for %s", instance_id, config.pod)
            with open(instance.agent_log, "ab") as agent_log:
                instance.process = subprocess.Popen(
                    [sys.executable, "-m", "orca.agent", "--config", str(config_file)],
                    env=self._agent_env(instance, config),
                    stdin=subprocess.DEVNULL,
                    stdout=agent_log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        code = instance.process.wait()
        self._after_agent(instance, code)

    def _read_config(self, instance_id: str) -> AgentConfig:
        with aws_call(f"reading the user data of {instance_id}"):
            answer = self._ec2.describe_instance_attribute(
                InstanceId=instance_id, Attribute="userData"
            )
        encoded = answer.get("UserData", {}).get("Value")
        if not encoded:
            raise ValueError("it has no user data")
        return parse_user_data(base64.b64decode(encoded).decode())

    def _emulate_images(self, instance: EmulatedInstance, config: AgentConfig) -> None:
        instance_id = instance.instance_id
        bundle = self._wait_for_bundle(instance, config)
        if bundle is None:
            return
        spec = bundle.spec
        images = {
            str(c["image"]) for c in [*(spec.get("initContainers") or []), *spec["containers"]]
        }
        for image in sorted(images):
            local = local_image_for(image, self.image_map)
            if local is None:
                log.warning(
                    "%s: no local image emulates %s; the agent will try to pull it",
                    instance_id,
                    image,
                )
                continue
            try:
                self.docker.run(["tag", local, image])
            except DockerError as e:
                log.warning("%s: tagging %s as %s failed: %s", instance_id, local, image, e)
                continue
            log.info("%s: image %s is emulated by local image %s", instance_id, image, local)

    def _wait_for_bundle(self, instance: EmulatedInstance, config: AgentConfig) -> PodBundle | None:
        store = BundleStore(self._s3, config.bundle_bucket)
        give_up = time.monotonic() + _BUNDLE_WAIT_SECONDS
        while True:
            try:
                return store.get(config.pod_uid, instance.arn)
            except AwsError as e:
                not_yet = isinstance(e, (NotFoundError, AuthError))
                if not_yet and time.monotonic() < give_up and not self._stop.wait(0.25):
                    continue
                log.warning(
                    "%s: bundle unreadable (%s); its images are not emulated",
                    instance.instance_id,
                    e,
                )
                return None

    def _agent_env(self, instance: EmulatedInstance, config: AgentConfig) -> dict[str, str]:
        runtime_dir = str(Path(orca.__file__).resolve().parents[1])
        python_path = os.pathsep.join(p for p in (runtime_dir, os.environ.get("PYTHONPATH")) if p)
        env = {
            key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "ORCA_"))
        }
        env.update(_FAKE_CREDENTIALS)
        env.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_DEFAULT_REGION": config.region,
                "DOCKER_HOST": self.docker.host or "",
                "PYTHONPATH": python_path,
                "ORCA_AGENT_LOG_LEVEL": self.agent_log_level,
                INSTANCE_ID_VAR: instance.instance_id,
                INSTANCE_ARN_VAR: instance.arn,
                PRIVATE_IP_VAR: instance.private_ip or "",
                POWEROFF_FILE_VAR: str(instance.poweroff_file),
                SPOT_NOTICE_FILE_VAR: str(instance.spot_notice_file),
            }
        )
        return env

    def _after_agent(self, instance: EmulatedInstance, code: int) -> None:
        instance_id = instance.instance_id
        if instance.killed:
            return
        instance.ended = True
        if instance.poweroff_file.exists():
            reason = instance.poweroff_file.read_text().strip()
            try:
                state = self._power_off(instance_id)
            except Exception as e:  # the local AWS may be gone while shutting down
                log.warning("%s: shutting down from inside failed: %s", instance_id, e)
                return
            log.info("%s powered off from inside (%s): now %s", instance_id, reason, state)
        else:
            log.warning(
                "%s: the agent exited with %d without powering off; the instance keeps running, "
                "as on EC2 (see %s)",
                instance_id,
                code,
                instance.agent_log,
            )

    def _kill(self, instance_id: str, why: str) -> None:
        """What the hypervisor does: the agent and its containers die at once."""
        instance = self.instances.get(instance_id)
        if instance is None:
            return
        with self._lock:
            instance.killed = True
            process = instance.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if instance.config is not None:
            self.docker.remove_pod(instance.config.pod_uid)
        log.info("%s: %s; agent and containers killed", instance_id, why)


def _control(endpoint_url: str) -> LocalAwsControl:
    from orca_local.aws import LocalAwsControl

    return LocalAwsControl(endpoint_url)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orca_local.instances",
        description="Run the ORCA agent for local EC2 instances.",
    )
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        required="AWS_ENDPOINT_URL" not in os.environ,
    )
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument("--docker-host", default=os.environ.get("DOCKER_HOST"))
    parser.add_argument("--state-dir", type=Path, default=Path(".local"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    for key, value in _FAKE_CREDENTIALS.items():
        os.environ.setdefault(key, value)

    from orca.aws.clients import AwsClients
    from orca_local.docker_daemon import DockerDaemon

    docker_host = args.docker_host or DockerDaemon(args.state_dir.resolve() / "docker").start()
    clients = AwsClients(args.region, endpoint_url=args.endpoint_url)
    emulator = InstanceEmulator(
        clients.ec2,
        clients.s3,
        endpoint_url=args.endpoint_url,
        region=args.region,
        docker_host=docker_host,
        state_dir=args.state_dir.resolve(),
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with emulator:
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
