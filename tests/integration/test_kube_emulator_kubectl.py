"""kubectl works against the Kubernetes API emulator as it does against a real cluster.

Runs the real ``kubectl`` (from the venv) with a kubeconfig for the emulator: discovery,
server-side printed tables, client-side and server-side apply of the example pods, describe
with Events, annotate and label, delete (which waits for the object to go), and logs
proxied to a kubelet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client

from tests.integration.kube_helpers import Kubectl, ready_node, simple_pod

pytest_plugins = ["tests.integration.kube_fixtures"]
pytestmark = pytest.mark.integration

CASES = Path(__file__).resolve().parents[1] / "cases" / "pods"


def _virtual_node(kubelet_port: int = 10250) -> client.V1Node:
    node = ready_node(
        "orca-physics",
        {"orca.research/provider": "aws", "kubernetes.io/role": "agent"},
        taints=[client.V1Taint(key="orca.research/burst-node", value="true", effect="NoSchedule")],
    )
    node.status.node_info = client.V1NodeSystemInfo(
        architecture="amd64",
        boot_id="",
        container_runtime_version="orca://0.1.0",
        kernel_version="",
        kube_proxy_version="",
        kubelet_version="v1.37.1-orca",
        machine_id="",
        operating_system="linux",
        os_image="ORCA virtual node",
        system_uuid="",
    )
    node.status.addresses = [client.V1NodeAddress(type="InternalIP", address="127.0.0.1")]
    node.status.daemon_endpoints = client.V1NodeDaemonEndpoints(
        kubelet_endpoint=client.V1DaemonEndpoint(port=kubelet_port)
    )
    return node


def test_get_nodes_shows_status_roles_and_version(core: client.CoreV1Api, kubectl: Kubectl) -> None:
    core.create_node(_virtual_node())

    out = kubectl("get", "nodes").stdout.splitlines()

    assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert out[1].split()[:3] == ["orca-physics", "Ready", "agent"]
    assert out[1].split()[-1] == "v1.37.1-orca"


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.glob("*.yaml")))
def test_apply_creates_each_example_case(case: str, kubectl: Kubectl) -> None:
    kubectl(
        "apply", "-f", "-", stdin="apiVersion: v1\nkind: Namespace\nmetadata: {name: biology}\n"
    )

    created = kubectl("apply", "-f", str(CASES / case)).stdout
    again = kubectl("apply", "-f", str(CASES / case)).stdout

    assert "created" in created
    assert "created" not in again


def test_get_pods_wide_shows_status_and_node(core: client.CoreV1Api, kubectl: Kubectl) -> None:
    core.create_node(_virtual_node())
    core.create_namespaced_pod("default", simple_pod("waiting"))
    core.create_namespaced_pod("default", simple_pod("done", node_name="orca-physics"))
    core.patch_namespaced_pod_status(
        "done",
        "default",
        {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": "main",
                        "image": "busybox:1.36",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    }
                ],
            }
        },
    )

    rows = {
        line.split()[1]: line.split()
        for line in kubectl("get", "pods", "-A", "-o", "wide").stdout.splitlines()[1:]
    }

    assert rows["waiting"][2:4] == ["0/1", "Pending"]
    assert rows["done"][3] == "Completed"
    assert rows["done"][7] == "orca-physics"


def test_get_pod_yaml_and_json_show_the_stored_object(
    core: client.CoreV1Api, kubectl: Kubectl
) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))

    pod = json.loads(kubectl("get", "pod", "p1", "-o", "json").stdout)

    assert pod["metadata"]["uid"] == core.read_namespaced_pod("p1", "default").metadata.uid
    assert "restartPolicy: Always" in kubectl("get", "pod", "p1", "-o", "yaml").stdout


def test_describe_pod_lists_its_events(core: client.CoreV1Api, kubectl: Kubectl) -> None:
    pod = core.create_namespaced_pod("default", simple_pod("p1"))
    core.create_namespaced_event(
        "default",
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="p1.launch"),
            involved_object=client.V1ObjectReference(
                kind="Pod", name="p1", namespace="default", uid=pod.metadata.uid
            ),
            reason="InvalidInstanceType",
            message="orca.research/instance-type p9.96xlarge is not an EC2 instance type",
            type="Warning",
            source=client.V1EventSource(component="orca"),
            count=1,
        ),
    )

    described = kubectl("describe", "pod", "p1").stdout
    events = kubectl("get", "events").stdout

    assert "InvalidInstanceType" in described and "p9.96xlarge" in described
    assert "pod/p1" in events and "Warning" in events


def test_annotate_and_label_patch_the_pod(core: client.CoreV1Api, kubectl: Kubectl) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))

    kubectl("annotate", "pod", "p1", "orca.research/launch-type=spot")
    kubectl("label", "pod", "p1", "team=physics")
    kubectl("label", "pod", "p1", "team-")

    meta = core.read_namespaced_pod("p1", "default").metadata
    assert meta.annotations == {"orca.research/launch-type": "spot"}
    assert not meta.labels


def test_server_side_apply_creates_then_merges(core: client.CoreV1Api, kubectl: Kubectl) -> None:
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1'}\n"
    kubectl("apply", "--server-side", "-f", "-", stdin=manifest)
    kubectl("apply", "--server-side", "-f", "-", stdin=manifest.replace("'1'", "'2'"))

    assert core.read_namespaced_config_map("c", "default").data == {"a": "2"}


def test_delete_waits_for_the_pod_to_go(core: client.CoreV1Api, kubectl: Kubectl) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))

    out = kubectl("delete", "pod", "p1").stdout

    assert 'pod "p1" deleted' in out
    assert core.list_namespaced_pod("default").items == []


def test_logs_are_proxied_to_the_nodes_kubelet(
    core: client.CoreV1Api, kubectl: Kubectl, fake_kubelet: int
) -> None:
    core.create_node(_virtual_node(fake_kubelet))
    core.create_namespaced_pod("default", simple_pod("p1", node_name="orca-physics"))

    out = kubectl("logs", "p1", "--tail=5", "--timestamps").stdout

    assert out.startswith("logs of default/p1/main query=")
    assert "tailLines=5" in out and "timestamps=true" in out


def test_logs_of_an_unscheduled_pod_say_why(core: client.CoreV1Api, kubectl: Kubectl) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))

    result = kubectl("logs", "p1", check=False)

    assert result.returncode != 0
    assert "does not have a host assigned" in result.stderr
