"""The Kubernetes API emulator behaves like a real API server for the kubernetes client.

Each test starts the emulator on a free loopback port and talks to it with the official
client, asserting what a controller author would rely on: uids and resourceVersions, 409 and
410 semantics, watches, selectors, the status and binding subresources, graceful deletion and
the patch formats.
"""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.integration.kube_helpers import eventually, ready_node, simple_pod

pytest_plugins = ["tests.integration.kube_fixtures"]
pytestmark = pytest.mark.integration


def test_created_pod_gets_identity_and_server_defaults(core: client.CoreV1Api) -> None:
    pod = core.create_namespaced_pod("default", simple_pod("p1"))

    assert pod.metadata.uid and pod.metadata.creation_timestamp
    assert int(pod.metadata.resource_version) > 0
    assert pod.status.phase == "Pending"
    assert pod.status.qos_class == "BestEffort"
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.scheduler_name == "default-scheduler"
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.service_account_name == "default"
    assert pod.spec.containers[0].termination_message_path == "/dev/termination-log"
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"


def test_generate_name_creates_distinct_objects(core: client.CoreV1Api) -> None:
    meta = client.V1ObjectMeta(generate_name="cfg-")
    a = core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta))
    b = core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta))

    assert a.metadata.name.startswith("cfg-") and a.metadata.name != b.metadata.name


def test_creating_an_existing_name_is_409_already_exists(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))

    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", simple_pod("p1"))

    assert err.value.status == 409
    assert json.loads(err.value.body)["reason"] == "AlreadyExists"


def test_creating_in_a_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("biology", simple_pod("p1"))

    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'namespaces "biology" not found'


def test_put_with_stale_resource_version_is_409_conflict(core: client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"a": "1"})
    )
    stale = cm.metadata.resource_version
    cm.data = {"a": "2"}
    fresh = core.replace_namespaced_config_map("c", "default", cm)
    assert int(fresh.metadata.resource_version) > int(stale)

    cm.metadata.resource_version = stale
    cm.data = {"a": "3"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("c", "default", cm)

    body = json.loads(err.value.body)
    assert err.value.status == 409 and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    assert core.read_namespaced_config_map("c", "default").data == {"a": "2"}


def test_status_subresource_changes_only_status(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))
    pod = core.read_namespaced_pod("p1", "default")
    pod.status.phase = "Running"
    pod.spec.active_deadline_seconds = 60

    after = core.replace_namespaced_pod_status("p1", "default", pod)

    assert after.status.phase == "Running"
    assert after.spec.active_deadline_seconds is None


def test_main_resource_update_ignores_status(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))
    pod = core.read_namespaced_pod("p1", "default")
    pod.status.phase = "Succeeded"
    pod.metadata.labels = {"app": "x"}

    after = core.replace_namespaced_pod("p1", "default", pod)

    assert after.status.phase == "Pending"
    assert after.metadata.labels == {"app": "x"}


def test_watch_resumes_from_a_resource_version(core: client.CoreV1Api) -> None:
    start = core.list_namespaced_config_map("default").metadata.resource_version
    for name in ("a", "b"):
        core.create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name))
        )
    core.delete_namespaced_config_map("a", "default")

    w = watch.Watch()
    seen = []
    for event in w.stream(
        core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=2
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            w.stop()

    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]


def test_watch_from_a_version_older_than_the_window_is_410_gone(
    core: client.CoreV1Api,
) -> None:
    start = core.list_namespaced_config_map("default").metadata.resource_version
    for i in range(60):  # the fixture keeps a window of 50 events
        core.create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{i}"))
        )

    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=2
        ):
            pass

    assert err.value.status == 410
    assert "Expired" in str(err.value.reason)


def test_watch_sends_bookmarks_and_ends_at_its_timeout(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_pod("default").metadata.resource_version
    lines = core.list_namespaced_pod(
        "default",
        watch=True,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=2,
        _preload_content=False,
    )
    events = [json.loads(line) for line in lines.read().splitlines() if line]

    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_selectors_filter_lists(core: client.CoreV1Api) -> None:
    core.create_node(ready_node("n1"))
    for name, labels in (("a", {"app": "x", "tier": "gpu"}), ("b", {"app": "y"}), ("c", {})):
        pod = simple_pod(name)
        pod.metadata.labels = labels
        core.create_namespaced_pod("default", pod)
    core.create_namespaced_pod_binding(
        "c",
        "default",
        client.V1Binding(
            metadata=client.V1ObjectMeta(name="c"),
            target=client.V1ObjectReference(kind="Node", name="n1"),
        ),
        _preload_content=False,
    )

    def names(**kw: str) -> list[str]:
        return [p.metadata.name for p in core.list_namespaced_pod("default", **kw).items]

    assert names(label_selector="app=x") == ["a"]
    assert names(label_selector="app in (x,y),tier!=gpu") == ["b"]
    assert names(label_selector="!app") == ["c"]
    assert names(label_selector="tier") == ["a"]
    assert names(field_selector="spec.nodeName=") == ["a", "b"]
    assert names(field_selector="spec.nodeName=n1,status.phase=Pending") == ["c"]


def test_unsupported_field_selector_is_400(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as err:
        core.list_namespaced_pod("default", field_selector="spec.image=busybox")

    assert err.value.status == 400
    assert "field label not supported: spec.image" in err.value.body


def test_watch_applies_field_selectors(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", simple_pod("other"))
    core.create_namespaced_pod("default", simple_pod("mine"))

    w = watch.Watch()
    names = []
    for event in w.stream(
        core.list_namespaced_pod,
        "default",
        field_selector="metadata.name=mine",
        resource_version=rv,
        timeout_seconds=2,
    ):
        names.append(event["object"].metadata.name)
        w.stop()

    assert names == ["mine"]


def test_deleting_a_bound_pod_waits_for_its_kubelet(core: client.CoreV1Api) -> None:
    core.create_node(ready_node("n1"))
    core.create_namespaced_pod("default", simple_pod("p1", node_name="n1"))

    core.delete_namespaced_pod("p1", "default")
    marked = core.read_namespaced_pod("p1", "default")
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 30

    core.delete_namespaced_pod(
        "p1",
        "default",
        body=client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=marked.metadata.uid)
        ),
    )
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("p1", "default")
    assert err.value.status == 404


def test_deleting_an_unbound_pod_removes_it_at_once(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))

    core.delete_namespaced_pod("p1", "default")

    assert core.list_namespaced_pod("default").items == []


def test_delete_with_a_wrong_uid_precondition_is_409(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))

    with pytest.raises(ApiException) as err:
        core.delete_namespaced_pod(
            "p1",
            "default",
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid")),
        )

    assert err.value.status == 409


def test_finalizers_hold_an_object_until_removed(core: client.CoreV1Api) -> None:
    meta = client.V1ObjectMeta(name="c", finalizers=["orca.research/instance"])
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta))

    core.delete_namespaced_config_map("c", "default")
    held = core.read_namespaced_config_map("c", "default")
    assert held.metadata.deletion_timestamp is not None

    core.patch_namespaced_config_map("c", "default", {"metadata": {"finalizers": None}})
    assert core.list_namespaced_config_map("default").items == []


def test_binding_assigns_the_node_once(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))

    def bind(node: str) -> None:
        core.create_namespaced_pod_binding(
            "p1",
            "default",
            client.V1Binding(
                metadata=client.V1ObjectMeta(name="p1"),
                target=client.V1ObjectReference(kind="Node", name=node),
            ),
            _preload_content=False,
        )

    bind("n1")
    pod = core.read_namespaced_pod("p1", "default")
    assert pod.spec.node_name == "n1"
    assert [(c.type, c.status) for c in pod.status.conditions] == [("PodScheduled", "True")]
    with pytest.raises(ApiException) as err:
        bind("n2")
    assert err.value.status == 409


def test_strategic_merge_patch_merges_containers_by_name(core: client.CoreV1Api) -> None:
    pod = simple_pod("p1")
    pod.spec.containers.append(client.V1Container(name="side", image="busybox:1.36"))
    core.create_namespaced_pod("default", pod)

    patched = core.patch_namespaced_pod(
        "p1",
        "default",
        {
            "metadata": {"annotations": {"orca.research/instance-id": "i-123"}},
            "spec": {"containers": [{"name": "side", "image": "busybox:1.37"}]},
        },
    )

    assert [(c.name, c.image) for c in patched.spec.containers] == [
        ("main", "busybox:1.36"),
        ("side", "busybox:1.37"),
    ]
    assert patched.metadata.annotations == {"orca.research/instance-id": "i-123"}


def test_status_patch_merges_conditions_by_type(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", simple_pod("p1"))
    conditions = [{"type": "PodScheduled", "status": "True"}]
    core.patch_namespaced_pod_status("p1", "default", {"status": {"conditions": conditions}})

    ready = [{"type": "Ready", "status": "False", "reason": "Launching"}]
    pod = core.patch_namespaced_pod_status("p1", "default", {"status": {"conditions": ready}})

    assert [c.type for c in pod.status.conditions] == ["PodScheduled", "Ready"]


def test_merge_and_json_patches_apply(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(
        "default",
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"a": "1", "b": "2"}),
    )

    api_client.set_default_header("Content-Type", "application/merge-patch+json")
    core.patch_namespaced_config_map("c", "default", {"data": {"a": None, "c": "3"}})
    api_client.set_default_header("Content-Type", "application/json-patch+json")
    core.patch_namespaced_config_map(
        "c", "default", [{"op": "replace", "path": "/data/b", "value": "20"}]
    )

    assert core.read_namespaced_config_map("c", "default").data == {"b": "20", "c": "3"}


def test_secret_string_data_is_stored_as_base64_data(core: client.CoreV1Api) -> None:
    core.create_namespaced_secret(
        "default",
        client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"k": "v4lue"}),
    )

    secret = core.read_namespaced_secret("s", "default")

    assert secret.type == "Opaque" and secret.string_data is None
    assert base64.b64decode(secret.data["k"]) == b"v4lue"


def test_leases_support_put_with_conflict_detection(api_client: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api_client)
    lease = leases.create_namespaced_lease(
        "kube-node-lease",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="orca-physics"),
            spec=client.V1LeaseSpec(holder_identity="orca-physics"),
        ),
    )
    lease.spec.lease_duration_seconds = 40
    leases.replace_namespaced_lease("orca-physics", "kube-node-lease", lease)

    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease("orca-physics", "kube-node-lease", lease)
    assert err.value.status == 409


def test_deleting_a_namespace_removes_its_objects(core: client.CoreV1Api) -> None:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="biology")))
    core.create_namespaced_pod("biology", simple_pod("p1"))

    core.delete_namespace("biology")

    assert core.list_pod_for_all_namespaces().items == []
    eventually(lambda: "biology" not in [n.metadata.name for n in core.list_namespace().items])
