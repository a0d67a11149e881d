"""Runs one pod's containers: volumes, init containers in order, then the rest together.

:class:`PodRun` is the agent's kubelet for its single pod. It prepares the
pod's Docker volumes, runs each init container to completion (a failed one
ends the pod under ``restartPolicy: Never``, and is retried with back-off
otherwise), then supervises all containers at once until the restart policy
is done with them. :meth:`PodRun.stop` ends it early (deadline, node
shutdown): the pod is reported ``Failed`` with the reason, and every
container gets SIGTERM and ``terminationGracePeriodSeconds`` before SIGKILL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from orca.agent import containers, volumes
from orca.agent.containers import PodRef, RuntimeOptions
from orca.agent.docker import DockerCli, DockerError
from orca.agent.logship import LogSink
from orca.agent.registry import PullCredentials, ecr_client
from orca.agent.status import PodStatus, Snapshot
from orca.agent.supervisor import ContainerSupervisor, PodContext, Tuning
from orca.bundle import PodBundle
from orca.messages import PodPhase

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 30


class PodRun:
    def __init__(
        self,
        bundle: PodBundle,
        *,
        docker: DockerCli,
        logs: LogSink,
        publish: Callable[[Snapshot], None],
        options: RuntimeOptions,
        tuning: Tuning,
        ecr: Callable[[str], Any] = ecr_client,
    ) -> None:
        self.pod = PodRef(bundle.pod_uid, bundle.namespace, bundle.name)
        self.spec: dict[str, Any] = bundle.spec
        self.bundle = bundle
        self.directory = containers.pod_directory(self.pod, options)
        self.status = PodStatus.for_spec(self.spec, publish)
        self.ctx = PodContext(
            pod=self.pod,
            spec=self.spec,
            env=bundle.env,
            status=self.status,
            docker=docker,
            logs=logs,
            volumes=containers.plan_volumes(self.pod, self.spec, self.directory),
            options=options,
            tuning=tuning,
            credentials=PullCredentials(
                f"{self.directory}/docker", bundle.registry_credentials, ecr=ecr
            ),
        )
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod", daemon=True)

    @property
    def grace_seconds(self) -> int:
        grace = self.spec.get("terminationGracePeriodSeconds")
        return DEFAULT_GRACE_SECONDS if grace is None else int(grace)

    def start(self) -> None:
        self.status.on_change(self.status.snapshot())
        self._thread.start()

    def phase(self) -> PodPhase:
        return self.status.phase()

    def stop(self, reason: str, message: str, grace_seconds: int | None = None) -> None:
        """Ends the pod as Failed with ``reason``; containers get their grace period, or
        ``grace_seconds`` when the end cannot wait that long (a spot notice)."""
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        log.warning("stopping pod %s/%s: %s", self.pod.namespace, self.pod.name, message)
        self.status.stopping("Failed", reason, message)
        with self.ctx.start_lock:
            self.ctx.stopping.set()
        names = [*self.status.init, *self.status.main]
        stoppers = [
            threading.Thread(
                target=self.ctx.docker.stop,
                args=(containers.container_name(self.pod, name), grace),
                daemon=True,
            )
            for name in names
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(grace + 30)
        # The supervisors record the containers' real ends before the phase is sealed.
        self.finished.wait(10)
        self.status.force("Failed", reason, message)

    def cleanup(self) -> None:
        """Removes the pod's containers and volumes (after the final report)."""
        self.ctx.docker.remove_pod(self.pod.uid)
        volumes.remove_pod_directory(self.directory)

    def _run(self) -> None:
        try:
            if self._prepare():
                self._run_init_containers() and self._run_containers()
        # Whatever breaks, the pod must end in a report rather than hang the instance.
        except Exception as e:
            log.exception("running pod %s/%s failed", self.pod.namespace, self.pod.name)
            self.status.force("Failed", "AgentError", f"the ORCA agent failed: {e}")
        finally:
            self.finished.set()

    def _prepare(self) -> bool:
        """Creates the pod's volumes; False (pod Failed) if it asks for what cannot be had."""
        plan = self.ctx.volumes
        if plan.unsupported:
            self.status.force(
                "Failed",
                "UnsupportedVolume",
                f"volumes {', '.join(plan.unsupported)} cannot be provided on a burst "
                "instance; only emptyDir, configMap, secret, downwardAPI and projected can",
            )
            return False
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        try:
            volumes.make_pod_directory(self.directory)
            volumes.write_volumes(plan.files, self.bundle.volumes, fs_group)
        except (OSError, ValueError) as e:
            self.status.force("Failed", "VolumeError", f"writing the pod's volumes failed: {e}")
            return False
        try:
            mountpoints = {}
            for volume in plan.volumes.values():
                self.ctx.docker.volume_create(containers.volume_create_argv(self.pod, volume))
                mountpoints[volume.name] = self.ctx.docker.volume_mountpoint(volume.name)
        except DockerError as e:
            self.status.force("Failed", "VolumeError", f"creating the pod's volumes failed: {e}")
            return False
        self.ctx.volumes = replace(plan, mountpoints=mountpoints)

        inits = self.spec.get("initContainers") or []
        mains = self.spec.get("containers") or []
        try:
            self.ctx.gpus = {
                **containers.gpu_assignments(inits),
                **containers.gpu_assignments(mains),
            }
        except ValueError as e:
            self.status.force("Failed", "CreateContainerConfigError", str(e))
            return False
        if self.ctx.gpus and not self.ctx.options.gpus:
            log.warning(
                "this host has no GPUs: --gpus is left out for %s", ", ".join(self.ctx.gpus)
            )
        return True

    def _run_init_containers(self) -> bool:
        """True when every init container succeeded."""
        for spec in self.spec.get("initContainers") or []:
            name = str(spec["name"])
            ContainerSupervisor(self.ctx, spec, init=True).run()
            status = self.status.get(name)
            if status.state != "terminated" or status.exit_code != 0:
                return False
        return True

    def _run_containers(self) -> bool:
        supervisors = [
            ContainerSupervisor(self.ctx, spec, init=False)
            for spec in self.spec.get("containers") or []
        ]
        threads = [
            threading.Thread(target=s.run, name=f"container-{s.name}", daemon=True)
            for s in supervisors
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return True
