"""One container's life on the instance: pull, create, start, follow, wait, restart.

A :class:`ContainerSupervisor` does for one container what the kubelet's sync
loop does: it pulls the image per ``imagePullPolicy`` (``ErrImagePull`` then
``ImagePullBackOff`` while the registry fails), creates and starts the
container, ships its output, reads its end from ``docker inspect`` (exit code,
``OOMKilled``, start and finish times), and restarts it as ``restartPolicy``
says, after a back-off that starts at 10 s, doubles up to 5 minutes, and
resets once a run lasted 10 minutes (``CrashLoopBackOff`` meanwhile). Every
change goes to :class:`~orca.agent.status.PodStatus`, which reports it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orca.agent import containers
from orca.agent.containers import PodRef, RuntimeOptions, VolumePlan
from orca.agent.docker import DockerCli, DockerError
from orca.agent.logship import LogShipper, LogSink
from orca.agent.registry import PullCredentials
from orca.agent.status import PodStatus
from orca.aws.errors import AwsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuning:
    """Timings of the kubelet's that the agent copies; tests shorten them."""

    backoff_initial: float = 10.0
    backoff_cap: float = 300.0
    backoff_reset_after: float = 600.0
    log_flush_interval: float = 1.0


@dataclass
class PodContext:
    """What every supervisor of one pod shares."""

    pod: PodRef
    spec: Mapping[str, Any]
    env: Mapping[str, Mapping[str, str]]
    status: PodStatus
    docker: DockerCli
    logs: LogSink
    volumes: VolumePlan
    options: RuntimeOptions
    tuning: Tuning
    # Set when the pod is being stopped (deadline, SIGTERM): nothing starts after it.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Held while a container starts and while a stop begins, so no start slips past a stop.
    start_lock: threading.Lock = field(default_factory=threading.Lock)
    gpus: dict[str, str] = field(default_factory=dict)
    # Registry credentials for pulls; None: pull as the host's Docker is configured.
    credentials: PullCredentials | None = None


class ContainerSupervisor:
    def __init__(self, context: PodContext, container: Mapping[str, Any], *, init: bool) -> None:
        self.ctx = context
        self.spec = container
        self.init = init
        self.name = str(container["name"])
        self.docker_name = containers.container_name(context.pod, self.name)
        self._env = dict(context.env.get(self.name, _plain_env(container)))

    def run(self) -> None:
        """Runs the container until the restart policy is done with it or the pod stops."""
        backoff = self.ctx.tuning.backoff_initial
        while not self.ctx.stopping.is_set():
            if not self._ensure_image():
                return
            ran_for = self._run_once()
            if ran_for is None or not self._restarts():
                return
            if ran_for >= self.ctx.tuning.backoff_reset_after:
                backoff = self.ctx.tuning.backoff_initial
            status = self.ctx.status.get(self.name)
            log.info(
                "container %s exited %s; restarting in %.0fs (%s)",
                self.name,
                status.exit_code,
                backoff,
                self.ctx.status.restart_policy,
            )
            self.ctx.status.update(
                self.name,
                state="waiting",
                reason="CrashLoopBackOff",
                message=f"back-off {backoff:.0f}s restarting failed container={self.name} "
                f"pod={self.ctx.pod.name}_{self.ctx.pod.namespace}({self.ctx.pod.uid})",
                exit_code=None,
                started_at=None,
                finished_at=None,
            )
            if self.ctx.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.ctx.tuning.backoff_cap)
            self.ctx.status.update(self.name, restart_count=status.restart_count + 1)

    def _restarts(self) -> bool:
        status = self.ctx.status.get(self.name)
        return not status.final

    def _will_restart(self, exit_code: int) -> bool:
        policy = self.ctx.status.restart_policy
        if self.ctx.stopping.is_set() or policy == "Never":
            return False
        # Init containers that succeed are done whatever the policy; Always means retry.
        if policy == "OnFailure" or self.init:
            return exit_code != 0
        return True

    def _ensure_image(self) -> bool:
        """Pulls the image as imagePullPolicy says; False if the pod stopped meanwhile."""
        image = str(self.spec["image"])
        policy = containers.pull_policy(self.spec)
        backoff = self.ctx.tuning.backoff_initial
        while not self.ctx.stopping.is_set():
            present = self.ctx.docker.image_present(image)
            if present and (policy != "Always" or not self.ctx.options.registry):
                return True
            if policy == "Never":
                self._waiting(
                    "ErrImageNeverPull", f'image "{image}" is not present with pull policy of Never'
                )
            else:
                try:
                    log.info("pulling image %s for container %s", image, self.name)
                    credentials = self.ctx.credentials
                    config_dir = credentials.config_dir(image) if credentials else None
                    self.ctx.docker.pull(image, self.ctx.stopping, config_dir)
                    return not self.ctx.stopping.is_set()
                except (DockerError, AwsError) as e:
                    log.warning("%s; retrying in %.0fs", e, backoff)
                    self._waiting("ErrImagePull", str(e))
            if self.ctx.stopping.wait(backoff):
                return False
            if policy != "Never":
                self._waiting("ImagePullBackOff", f'Back-off pulling image "{image}"')
            backoff = min(backoff * 2, self.ctx.tuning.backoff_cap)
        return False

    def _waiting(self, reason: str, message: str | None = None) -> None:
        self.ctx.status.update(self.name, state="waiting", reason=reason, message=message)

    def _run_once(self) -> float | None:
        """One create-start-wait; seconds it ran, or None if it could not be created."""
        docker = self.ctx.docker
        docker.remove(self.docker_name)
        self._waiting("ContainerCreating")
        try:
            image_user = docker.image_user(str(self.spec["image"]))
            refused = containers.non_root_violation(self.ctx.spec, self.spec, image_user)
            if refused is not None:
                raise ValueError(refused)
            # The env file lives in a private (0700) directory only until the create.
            with tempfile.TemporaryDirectory(prefix="orca-env-") as private:
                env_file = os.path.join(private, "env")
                invocation = containers.create_invocation(
                    pod=self.ctx.pod,
                    spec=self.ctx.spec,
                    container=self.spec,
                    env=self._env,
                    volumes=self.ctx.volumes,
                    gpus=self.ctx.gpus.get(self.name),
                    env_file=env_file,
                    options=self.ctx.options,
                )
                docker.create(invocation, env_file)
        except (ValueError, DockerError) as e:
            log.error("container %s could not be created: %s", self.name, e)
            self.ctx.status.update(
                self.name, state="waiting", reason="CreateContainerConfigError", message=str(e)
            )
            self.ctx.status.force(
                "Failed", "CreateContainerConfigError", f"container {self.name}: {e}"
            )
            return None

        with self.ctx.start_lock:
            if self.ctx.stopping.is_set():
                return None
            try:
                docker.start(self.docker_name)
                start_error = None
            except DockerError as e:
                start_error = e
        if start_error is None:
            started = docker.inspect(self.docker_name)
            log.info("container %s started", self.name)
            self.ctx.status.update(
                self.name,
                state="running",
                reason=None,
                message=None,
                started_at=started.started_at,
                image_id=started.image_id,
            )
            shipper = LogShipper(
                docker,
                self.ctx.logs,
                container=self.docker_name,
                stream=self._stream(),
                flush_interval=self.ctx.tuning.log_flush_interval,
            )
            shipper.start()
            docker.wait(self.docker_name)
            # Lines reach CloudWatch before the report that the container ended.
            shipper.finish()

        end = docker.inspect(self.docker_name)
        exit_code = end.exit_code
        if start_error is not None:
            reason, message = "StartError", str(start_error)
            exit_code = exit_code or 128
        elif end.oom_killed:
            reason, message = "OOMKilled", None
        else:
            reason, message = ("Completed" if exit_code == 0 else "Error"), None
        restart = self._will_restart(exit_code)
        log.info("container %s terminated: %s, exit code %d", self.name, reason, exit_code)
        self.ctx.status.update(
            self.name,
            state="terminated",
            reason=reason,
            message=message,
            exit_code=exit_code,
            started_at=end.started_at,
            finished_at=end.finished_at,
            image_id=end.image_id,
            has_terminated=True,
            final=not restart,
        )
        if end.started_at and end.finished_at:
            return (end.finished_at - end.started_at).total_seconds()
        return 0.0

    def _stream(self) -> str:
        pod = self.ctx.pod
        stream = self.ctx.logs.stream_name(pod.namespace, pod.name, pod.uid, self.name)
        self.ctx.logs.ensure_stream(stream)
        return stream


def _plain_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The literal ``value`` env of a container, for bundles that carry no resolved env."""
    return {
        str(item["name"]): str(item.get("value", ""))
        for item in container.get("env") or []
        if "valueFrom" not in item
    }
