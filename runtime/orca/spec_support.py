"""What of a pod's spec a burst instance can honour; the rest is refused before any launch.

The agent runs one pod on its own EC2 instance with Docker. Some pod fields ask for
things that instance does not have (the cluster's host paths and persistent volumes)
or that would hand the pod the instance itself (host PID and IPC namespaces,
privileged containers, extra capabilities). A kubelet would run them; ORCA refuses
them up front, as :class:`~orca.contract.Rejection` values naming the field, its
value and what to do, so the pod fails with a Warning Event instead of an instance
being paid for a pod that cannot start. Privilege is a department's choice
(``allow_privileged``), off unless its settings turn it on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from orca.rejections import Rejection
from orca.settings import Settings

REASON = "UnsupportedPodSpec"

# Volume types the runtime resolves into the pod's bundle or the agent creates itself.
SUPPORTED_VOLUMES = ("emptyDir", "configMap", "secret", "downwardAPI", "projected")
SUPPORTED_PROJECTIONS = ("configMap", "secret", "downwardAPI", "serviceAccountToken")
# Docker's default capability set (moby's oci/caps/defaults.go): adding one of these
# changes nothing, so it is not a privilege to refuse.
DOCKER_DEFAULT_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# Pod containers share the host's network, where a raw packet socket (NET_RAW) can reach
# instance metadata around the metadata guard's iptables rule, so the agent drops it
# (as Kubernetes' restricted pod security standard does) and adding it is a privilege.
WITHOUT_PRIVILEGE = DOCKER_DEFAULT_CAPABILITIES - {"NET_RAW"}
_VOLUME_ADVICE = (
    "emptyDir for scratch space, configMap, secret, downwardAPI or projected volumes; "
    "copy datasets in from S3 in an init container"
)
_PRIVILEGE_ADVICE = (
    "remove it, or ask the department's computing staff to set allow_privileged "
    "(ORCA_ALLOW_PRIVILEGED) if its pods need privilege on their instances"
)


def capability_name(name: str) -> str:
    """``CAP_SYS_ADMIN`` and ``SYS_ADMIN`` are one capability to Docker and Kubernetes."""
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def refusals(spec: Mapping[str, Any], settings: Settings) -> list[Rejection]:
    """Every field of ``spec`` the agent cannot honour, as rejections (empty: all fine)."""
    found = list(_volumes(spec))
    found += _host_namespaces(spec)
    found += _ephemeral_containers(spec)
    found += _sidecars(spec)
    if not settings.allow_privileged:
        found += _privilege(spec, settings.department)
    return found


def _refuse(field: str, value: str | None, problem: str, allowed: str) -> Rejection:
    return Rejection(field, value, problem, allowed, reason=REASON)


def _volumes(spec: Mapping[str, Any]) -> Iterator[Rejection]:
    for index, volume in enumerate(spec.get("volumes") or []):
        name = volume.get("name")
        kind = next((key for key in volume if key != "name"), None)
        field = f"spec.volumes[{index}]"
        if kind is None:
            continue
        if kind not in SUPPORTED_VOLUMES:
            yield _refuse(
                f"{field}.{kind}",
                _volume_value(volume[kind]),
                f"volume {name!r}: burst instances have no {kind} volumes (they are "
                "outside the cluster, with none of its nodes' disks or storage)",
                _VOLUME_ADVICE,
            )
            continue
        if kind == "emptyDir" and (volume[kind] or {}).get("medium") not in (None, "", "Memory"):
            medium = volume[kind]["medium"]
            yield _refuse(
                f"{field}.emptyDir.medium",
                str(medium),
                f"volume {name!r}: the agent provides disk and Memory emptyDir volumes only",
                'medium "" (the instance disk) or Memory',
            )
        if kind == "projected":
            for position, source in enumerate((volume[kind] or {}).get("sources") or []):
                for projection in source:
                    if projection not in SUPPORTED_PROJECTIONS:
                        yield _refuse(
                            f"{field}.projected.sources[{position}].{projection}",
                            None,
                            f"volume {name!r}: ORCA cannot project {projection} yet",
                            ", ".join(SUPPORTED_PROJECTIONS),
                        )


def _volume_value(source: Any) -> str | None:
    # The most telling value of a volume source: a host path, a claim name, a server.
    if not isinstance(source, Mapping):
        return None
    for key in ("path", "claimName", "server", "driver", "volumeID", "pdName"):
        if key in source:
            return str(source[key])
    return None


def _host_namespaces(spec: Mapping[str, Any]) -> Iterator[Rejection]:
    for field, namespace in (("hostPID", "process"), ("hostIPC", "IPC")):
        if spec.get(field):
            yield _refuse(
                f"spec.{field}",
                "true",
                f"the host's {namespace} namespace is the burst instance's, where the ORCA "
                "agent runs with the instance's credentials",
                "false or unset (the pod has its instance to itself; containers of the pod "
                "share the host network already)",
            )


def _ephemeral_containers(spec: Mapping[str, Any]) -> Iterator[Rejection]:
    ephemeral = spec.get("ephemeralContainers") or []
    if ephemeral:
        names = ", ".join(str(c.get("name")) for c in ephemeral)
        yield _refuse(
            "spec.ephemeralContainers",
            names,
            "the agent starts a pod's containers once, from its spec at launch, and "
            "cannot add debug containers to a running burst instance",
            "no ephemeral containers; kubectl debug --copy-to makes a debugging copy instead",
        )


def _sidecars(spec: Mapping[str, Any]) -> Iterator[Rejection]:
    # A native sidecar (an init container with restartPolicy Always) never exits; the agent
    # runs init containers to completion one by one, so the pod would never start.
    for index, container in enumerate(spec.get("initContainers") or []):
        if container.get("restartPolicy") == "Always":
            yield _refuse(
                f"spec.initContainers[{index}].restartPolicy",
                "Always",
                f"init container {container.get('name')!r} is a sidecar, which the ORCA agent "
                "does not run yet (it would wait for it to finish, and the pod would never "
                "start)",
                "run the sidecar as one of spec.containers, or remove its restartPolicy",
            )


def _privilege(spec: Mapping[str, Any], department: str) -> Iterator[Rejection]:
    for section in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(section) or []):
            context = container.get("securityContext") or {}
            field = f"spec.{section}[{index}].securityContext"
            name = container.get("name")
            if context.get("privileged"):
                yield _refuse(
                    f"{field}.privileged",
                    "true",
                    f"container {name!r}: the {department} department does not allow "
                    "privileged containers on its instances",
                    _PRIVILEGE_ADVICE,
                )
            added = (context.get("capabilities") or {}).get("add") or []
            extra = [c for c in added if capability_name(str(c)) not in WITHOUT_PRIVILEGE]
            if extra:
                yield _refuse(
                    f"{field}.capabilities.add",
                    ", ".join(str(c) for c in extra),
                    f"container {name!r}: the {department} department does not allow "
                    "capabilities beyond Docker's defaults, nor NET_RAW, on its instances",
                    _PRIVILEGE_ADVICE,
                )
