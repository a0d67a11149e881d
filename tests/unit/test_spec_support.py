"""Pod spec fields a burst instance cannot honour are refused up front, each with its fix."""

from __future__ import annotations

from typing import Any

import pytest

from orca.catalog import Catalog
from orca.contract import ContractError, resolve_launch
from orca.spec_support import REASON
from tests.unit.helpers import pod, settings

CPU = {"orca.research/instance-type": "c7i.4xlarge"}


def refused(
    spec: dict[str, Any], containers: list[dict[str, Any]] | None = None, **overrides: Any
) -> list[str]:
    with pytest.raises(ContractError) as caught:
        resolve_launch(
            pod(CPU, containers, **spec), settings(**overrides), Catalog.shipped(), ["us-east-1a"]
        )
    assert {r.reason for r in caught.value.rejections} == {REASON}
    return [r.message() for r in caught.value.rejections]


def test_a_hostpath_volume_is_refused_naming_the_field_the_path_and_the_alternatives() -> None:
    messages = refused({"volumes": [{"name": "data", "hostPath": {"path": "/mnt/data"}}]})

    assert messages == [
        "spec.volumes[0].hostPath is '/mnt/data': volume 'data': burst instances have no "
        "hostPath volumes (they are outside the cluster, with none of its nodes' disks or "
        "storage). Allowed: emptyDir for scratch space, configMap, secret, downwardAPI or "
        "projected volumes; copy datasets in from S3 in an init container."
    ]


def test_a_persistent_volume_claim_is_refused_naming_the_claim() -> None:
    volumes = [
        {"name": "scratch", "emptyDir": {}},
        {"name": "results", "persistentVolumeClaim": {"claimName": "results-pvc"}},
    ]

    (message,) = refused({"volumes": volumes})

    assert message.startswith(
        "spec.volumes[1].persistentVolumeClaim is 'results-pvc': volume 'results': burst "
        "instances have no persistentVolumeClaim volumes"
    )


def test_projections_other_than_the_four_supported_are_refused() -> None:
    projected = {"sources": [{"clusterTrustBundle": {"name": "b", "path": "ca.pem"}}]}

    (message,) = refused({"volumes": [{"name": "trust", "projected": projected}]})

    assert message == (
        "spec.volumes[0].projected.sources[0].clusterTrustBundle is not set: volume 'trust': "
        "ORCA cannot project clusterTrustBundle yet. Allowed: configMap, secret, downwardAPI, "
        "serviceAccountToken."
    )


@pytest.mark.parametrize(("field", "namespace"), [("hostPID", "process"), ("hostIPC", "IPC")])
def test_host_namespaces_are_refused(field: str, namespace: str) -> None:
    (message,) = refused({field: True})

    assert message == (
        f"spec.{field} is 'true': the host's {namespace} namespace is the burst instance's, "
        "where the ORCA agent runs with the instance's credentials. Allowed: false or unset "
        "(the pod has its instance to itself; containers of the pod share the host network "
        "already)."
    )


def test_ephemeral_containers_are_refused() -> None:
    (message,) = refused({"ephemeralContainers": [{"name": "debugger", "image": "busybox"}]})

    assert message.startswith("spec.ephemeralContainers is 'debugger': the agent starts")
    assert message.endswith("kubectl debug --copy-to makes a debugging copy instead.")


def test_sidecar_init_containers_are_refused_rather_than_left_blocking_the_pod() -> None:
    spec = {
        "initContainers": [
            {"name": "setup", "image": "busybox"},
            {"name": "proxy", "image": "envoy", "restartPolicy": "Always"},
        ]
    }

    (message,) = refused(spec)

    assert message.startswith(
        "spec.initContainers[1].restartPolicy is 'Always': init container 'proxy' is a sidecar"
    )
    assert message.endswith(
        "Allowed: run the sidecar as one of spec.containers, or remove its restartPolicy."
    )


def test_privileged_containers_are_refused_unless_the_department_allows_them() -> None:
    containers = [
        {"name": "c", "image": "busybox", "securityContext": {"privileged": True}},
    ]

    (message,) = refused({}, containers)

    assert message == (
        "spec.containers[0].securityContext.privileged is 'true': container 'c': the physics "
        "department does not allow privileged containers on its instances. Allowed: remove "
        "it, or ask the department's computing staff to set allow_privileged "
        "(ORCA_ALLOW_PRIVILEGED) if its pods need privilege on their instances."
    )
    allowed = resolve_launch(
        pod(CPU, containers), settings(allow_privileged=True), Catalog.shipped(), ["us-east-1a"]
    )
    assert allowed.instance_type.name == "c7i.4xlarge"


def test_added_capabilities_beyond_dockers_defaults_are_refused() -> None:
    context = {"capabilities": {"add": ["NET_BIND_SERVICE", "CAP_SYS_ADMIN", "NET_ADMIN"]}}
    init = {"name": "setup", "image": "busybox", "securityContext": context}

    (message,) = refused({"initContainers": [init]})

    assert message.startswith(
        "spec.initContainers[0].securityContext.capabilities.add is 'CAP_SYS_ADMIN, NET_ADMIN': "
        "container 'setup': the physics department does not allow capabilities beyond "
        "Docker's defaults"
    )


def test_net_raw_is_a_privilege_since_raw_sockets_reach_metadata_on_the_host_network() -> None:
    context = {"capabilities": {"add": ["NET_RAW"]}}
    containers = [{"name": "ping", "image": "busybox", "securityContext": context}]

    (message,) = refused({}, containers)

    assert message.startswith("spec.containers[0].securityContext.capabilities.add is 'NET_RAW'")
    assert "nor NET_RAW" in message


def test_supported_volumes_and_default_capabilities_pass() -> None:
    volumes = [
        {"name": "a", "emptyDir": {"medium": "Memory"}},
        {"name": "b", "configMap": {"name": "c"}},
        {"name": "c", "secret": {"secretName": "s"}},
        {"name": "d", "downwardAPI": {"items": []}},
        {"name": "e", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
    ]
    context = {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}
    containers = [{"name": "c", "image": "busybox", "securityContext": context}]

    spec = resolve_launch(
        pod(CPU, containers, volumes=volumes), settings(), Catalog.shipped(), ["us-east-1a"]
    )

    assert spec.instance_type.name == "c7i.4xlarge"
