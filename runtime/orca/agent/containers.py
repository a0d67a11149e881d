"""The Docker invocations for a pod: pure functions of the pod's spec, pinned by unit tests.

The instance's AMI (ECS-optimized AL2023, NVIDIA container toolkit on the GPU
variant) ships Docker, so the agent drives the ``docker`` CLI; this module only
says *what* to run, :mod:`orca.agent.docker` runs it. The mapping follows the
kubelet's:

- one pod per instance, so containers share the host's network namespace
  (``--network host``): the pod IP is the instance's private IP, and
  ``ports`` need no publishing; they run in the cgroup ``orcapods.slice``
  (``--cgroup-parent``), which the bootstrap's metadata guard keeps from IMDS;
- ``command`` replaces the image entrypoint (``--entrypoint`` takes the first
  element, the rest go before ``args``); ``args`` alone keep the entrypoint;
  ``$(VAR)`` references are expanded from the container's env as Kubernetes does;
- environment values never appear on a command line (``ps`` and logs show
  those): single-line values go through an ``--env-file`` the caller writes
  0600 and deletes after ``docker create``; values with a newline (which env
  files cannot hold) are passed as ``-e NAME`` with the value in the docker CLI
  process's own environment;
- ``limits.cpu`` -> ``--cpus``, ``limits.memory`` -> ``--memory`` with an equal
  ``--memory-swap`` (no swap, so exceeding the limit is an OOM kill, exit 137),
  ``nvidia.com/gpu`` -> ``--gpus``;
- ``emptyDir`` volumes are Docker volumes named per pod and mounted in each
  container that lists them (``medium: Memory`` makes a tmpfs-backed volume);
- ``configMap``, ``secret``, ``downwardAPI`` and ``projected`` volumes are directories
  the agent writes from the bundle under the pod's private directory on the host
  (:mod:`orca.agent.volumes`), bind-mounted read-only, as a kubelet always mounts them;
  ``subPath`` binds one file or subdirectory of them;
- ``privileged`` and ``capabilities`` (which the runtime refuses unless the department
  allows privilege) become ``--privileged``, ``--cap-add`` and ``--cap-drop``; NET_RAW
  is dropped unless a container adds it, since on the host's network a raw socket
  reaches instance metadata around the metadata guard.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orca import tags
from orca.agent import quantities
from orca.bootstrap import POD_SLICE

GPU_RESOURCE = "nvidia.com/gpu"
CONTAINER_LABEL = tags.PREFIX + "container"
# Docker's --ulimit defaults on the ECS AMI are low for training jobs; containerd under
# the kubelet gives 1048576 open files, and NCCL over EFA needs unlimited locked memory.
DEFAULT_ULIMITS = ("nofile=1048576:1048576", "memlock=-1:-1")
# Volumes whose files the runtime resolves into the bundle.
FILE_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")
# Per-pod host directories (volume files, Docker config) live on a tmpfs, readable by root
# only: they hold Secrets, which must not reach the instance's disk.
DEFAULT_POD_ROOT = "/run/orca/pods"
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


@dataclass(frozen=True)
class RuntimeOptions:
    """What the host's Docker can do; the emulator's hosts have no GPU and fixed rlimits."""

    ulimits: tuple[str, ...] = DEFAULT_ULIMITS
    gpus: bool = True
    # False where no registry answers and images are seeded (the emulator):
    # a present image is used even under imagePullPolicy Always.
    registry: bool = True
    # Docker refuses a --cpus above the host's CPU count. On EC2 the contract already
    # made the pod fit its instance; the emulator's host is smaller than the instances.
    host_cpus: int | None = None
    # Where each pod's private directory is made (one per pod UID).
    pod_root: str = DEFAULT_POD_ROOT
    # The cgroup every container joins, which the bootstrap's metadata guard refuses IMDS.
    cgroup_parent: str = POD_SLICE


@dataclass(frozen=True)
class PodRef:
    uid: str
    namespace: str
    name: str

    @property
    def short_uid(self) -> str:
        return self.uid.replace("-", "")[:8]


@dataclass(frozen=True)
class DockerVolume:
    """One pod volume as a Docker volume."""

    pod_volume: str
    name: str
    tmpfs_size: str | None = None
    tmpfs: bool = False


@dataclass(frozen=True)
class VolumePlan:
    volumes: dict[str, DockerVolume] = field(default_factory=dict)
    # Pod volume name -> its directory of files on the host (configMap, secret, ...).
    files: Mapping[str, str] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()
    # Docker volume name -> its directory on the host, for subPath mounts.
    mountpoints: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateInvocation:
    """``docker create`` for one container: arguments, env-file lines, and CLI environment."""

    argv: tuple[str, ...]
    env_file_lines: tuple[str, ...]
    cli_env: Mapping[str, str]


def container_name(pod: PodRef, container: str) -> str:
    return f"orca-{pod.short_uid}-{container}"


def volume_name(pod: PodRef, volume: str) -> str:
    return f"orca-{pod.short_uid}-{volume}"


def labels(pod: PodRef, container: str | None = None) -> list[str]:
    """``--label`` arguments; the pod-uid label lets a cleanup find everything of a pod."""
    args = [
        "--label",
        f"{tags.POD_UID}={pod.uid}",
        "--label",
        f"{tags.POD}={pod.namespace}/{pod.name}",
    ]
    if container is not None:
        args += ["--label", f"{CONTAINER_LABEL}={container}"]
    return args


def pull_policy(container: Mapping[str, Any]) -> str:
    """imagePullPolicy, defaulted as the API server does (Always for :latest or no tag)."""
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = str(container["image"])
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def pod_directory(pod: PodRef, options: RuntimeOptions) -> str:
    """The pod's private directory on the host (volume files, registry credentials)."""
    return f"{options.pod_root}/{pod.uid}"


def plan_volumes(pod: PodRef, spec: Mapping[str, Any], pod_dir: str | None = None) -> VolumePlan:
    """The Docker volumes and file directories for a pod's ``volumes``, and those that
    cannot be had here (the runtime refuses them; a bundle from elsewhere may not)."""
    pod_dir = pod_dir or pod_directory(pod, RuntimeOptions())
    volumes: dict[str, DockerVolume] = {}
    files: dict[str, str] = {}
    unsupported: list[str] = []
    for volume in spec.get("volumes") or []:
        name = str(volume["name"])
        if "emptyDir" in volume:
            empty_dir = volume["emptyDir"] or {}
            size = empty_dir.get("sizeLimit")
            volumes[name] = DockerVolume(
                pod_volume=name,
                name=volume_name(pod, name),
                tmpfs=empty_dir.get("medium") == "Memory",
                tmpfs_size=quantities.docker_bytes(size) if size is not None else None,
            )
        elif any(kind in volume for kind in FILE_VOLUMES):
            files[name] = f"{pod_dir}/volumes/{name}"
        else:
            kind = next((key for key in volume if key != "name"), "unknown")
            unsupported.append(f"{name} ({kind})")
    return VolumePlan(volumes=volumes, files=files, unsupported=tuple(unsupported))


def volume_create_argv(pod: PodRef, volume: DockerVolume) -> list[str]:
    argv = ["volume", "create", *labels(pod)]
    if volume.tmpfs:
        options = ["--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs"]
        if volume.tmpfs_size:
            options += ["--opt", f"o=size={volume.tmpfs_size}"]
        argv += options
    return [*argv, volume.name]


def gpu_assignments(containers: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The ``--gpus`` value of each container that asks for GPUs.

    Containers that run at the same time get disjoint devices, as the NVIDIA
    device plugin would give them; a container alone with GPUs gets a count.
    Init containers run one by one, so each list is assigned on its own.
    """
    wanted = {
        str(c["name"]): quantities.count(_limits(c).get(GPU_RESOURCE, 0))
        for c in containers
        if quantities.count(_limits(c).get(GPU_RESOURCE, 0)) > 0
    }
    if len(wanted) == 1:
        return {name: str(n) for name, n in wanted.items()}
    assigned: dict[str, str] = {}
    next_device = 0
    for name, n in wanted.items():
        devices = ",".join(str(d) for d in range(next_device, next_device + n))
        # The CLI parses --gpus as CSV, so a list of devices must be quoted.
        assigned[name] = f'"device={devices}"'
        next_device += n
    return assigned


def expand_references(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def _effective_context(spec: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    return {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}


def non_root_violation(
    spec: Mapping[str, Any], container: Mapping[str, Any], image_user: str
) -> str | None:
    """Why ``runAsNonRoot`` forbids this container, or None; ``image_user`` is the image's
    configured user (``docker image inspect``'s ``Config.User``, empty for root).

    As the kubelet decides: the container's runAsUser wins over the image; a user name that
    is not a number cannot be shown not to be root, so it is refused too.
    """
    context = _effective_context(spec, container)
    if not context.get("runAsNonRoot"):
        return None
    user = context.get("runAsUser")
    if user is not None:
        if int(user) == 0:
            return "container's runAsUser breaks non-root policy (runAsNonRoot with runAsUser 0)"
        return None
    name = image_user.split(":", 1)[0]
    if name in ("", "root", "0"):
        return "container has runAsNonRoot and image will run as root"
    if not name.isdigit():
        return (
            f"container has runAsNonRoot and image has non-numeric user ({name}), "
            "cannot verify user is non-root; set runAsUser to a number"
        )
    return None


def create_invocation(
    *,
    pod: PodRef,
    spec: Mapping[str, Any],
    container: Mapping[str, Any],
    env: Mapping[str, str],
    volumes: VolumePlan,
    gpus: str | None,
    env_file: str,
    options: RuntimeOptions,
) -> CreateInvocation:
    """``docker create`` arguments for one container of the pod (the values of env excluded)."""
    name = str(container["name"])
    argv = ["create", "--name", container_name(pod, name), "--network", "host"]
    argv += ["--cgroup-parent", options.cgroup_parent]
    argv += ["--pull", "never", *labels(pod, name)]
    for ulimit in options.ulimits:
        argv += ["--ulimit", ulimit]
    argv += _resource_args(container, gpus if options.gpus else None, options.host_cpus)
    argv += _security_args(spec, container)
    if container.get("workingDir"):
        argv += ["-w", str(container["workingDir"])]

    # Env values go to the env file or the CLI's environment, never to argv.
    file_lines = tuple(f"{k}={v}" for k, v in env.items() if "\n" not in v)
    cli_env = {k: v for k, v in env.items() if "\n" in v}
    if file_lines:
        argv += ["--env-file", env_file]
    for key in cli_env:
        argv += ["-e", key]

    for mount in container.get("volumeMounts") or []:
        argv += _mount_args(mount, volumes)

    command = [expand_references(str(c), env) for c in container.get("command") or []]
    args = [expand_references(str(a), env) for a in container.get("args") or []]
    if command:
        argv += ["--entrypoint", command[0]]
        args = command[1:] + args
    argv += [str(container["image"]), *args]
    return CreateInvocation(argv=tuple(argv), env_file_lines=file_lines, cli_env=cli_env)


def _limits(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return (container.get("resources") or {}).get("limits") or {}


def _resource_args(
    container: Mapping[str, Any], gpus: str | None, host_cpus: int | None
) -> list[str]:
    limits = _limits(container)
    args: list[str] = []
    if "cpu" in limits:
        args += ["--cpus", quantities.docker_cpus(limits["cpu"], host_cpus)]
    if "memory" in limits:
        memory = quantities.docker_bytes(limits["memory"])
        args += ["--memory", memory, "--memory-swap", memory]
    if gpus is not None:
        args += ["--gpus", gpus]
    return args


def _security_args(spec: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    # Container-level securityContext fields override the pod-level ones.
    pod_context = spec.get("securityContext") or {}
    context = _effective_context(spec, container)
    args: list[str] = []
    user = context.get("runAsUser")
    group = context.get("runAsGroup")
    if user is not None:
        args += ["--user", f"{user}:{group}" if group is not None else str(user)]
    elif group is not None:
        # Docker has no group-only form; uid 0 is what an image without USER runs as.
        args += ["--user", f"0:{group}"]
    # fsGroup and supplementalGroups are pod-level only: the container's process joins them,
    # as under a kubelet, so it can read volume files owned by the fsGroup.
    pod_groups = [pod_context.get("fsGroup"), *(pod_context.get("supplementalGroups") or [])]
    for extra in dict.fromkeys(g for g in pod_groups if g is not None):
        args += ["--group-add", str(extra)]
    if context.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        # What the kubelet sets for it: the kernel's no_new_privs, so setuid binaries and
        # file capabilities grant the process nothing.
        args += ["--security-opt", "no-new-privileges"]
    if context.get("privileged"):
        args.append("--privileged")
    capabilities = context.get("capabilities") or {}
    for option, key in (("--cap-add", "add"), ("--cap-drop", "drop")):
        for capability in capabilities.get(key) or []:
            args += [option, str(capability)]
    # On the host's network a raw socket reaches IMDS around the metadata guard's rule;
    # only a container that asks for NET_RAW (a privilege the runtime checked) keeps it.
    named = {str(c).upper().removeprefix("CAP_") for c in capabilities.get("add") or []}
    if not context.get("privileged") and "NET_RAW" not in named:
        args += ["--cap-drop", "NET_RAW"]
    return args


def _mount_args(mount: Mapping[str, Any], volumes: VolumePlan) -> list[str]:
    pod_volume = str(mount["name"])
    target = str(mount["mountPath"])
    sub_path = mount.get("subPath")
    if pod_volume in volumes.files:
        # Kubernetes mounts these read-only whatever the mount says (since 1.9.4).
        source = volumes.files[pod_volume] + (f"/{sub_path}" if sub_path else "")
        fields = ["type=bind", f"source={source}", f"target={target}", "readonly"]
        return ["--mount", ",".join(_csv_field(f) for f in fields)]
    volume = volumes.volumes.get(pod_volume)
    if volume is None:
        raise ValueError(f"volumeMount {pod_volume!r} names no volume this instance can provide")
    if sub_path:
        # Docker 20.10 has no volume-subpath option, so the subdirectory is bind-mounted.
        base = volumes.mountpoints.get(volume.name)
        if base is None:
            raise ValueError(f"subPath of volume {pod_volume!r} needs its mountpoint")
        fields = ["type=bind", f"source={base}/{sub_path}", f"target={target}"]
    else:
        fields = ["type=volume", f"source={volume.name}", f"target={target}"]
    if mount.get("readOnly"):
        fields.append("readonly")
    return ["--mount", ",".join(_csv_field(f) for f in fields)]


def _csv_field(text: str) -> str:
    # The CLI reads --mount as one CSV record.
    if "," in text or '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text
