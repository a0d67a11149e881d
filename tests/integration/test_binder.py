"""The binder plays kube-scheduler: pods that fit a node get bound, others get told why.

Runs the binder in-process against the emulator, as the demo does with the ORCA virtual
node: tainted ``orca.research/burst-node=true:NoSchedule`` and labelled
``orca.research/provider=aws``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from orca_local.binder import Binder, failure_message, tolerates
from tests.integration.kube_helpers import eventually, ready_node, simple_pod

pytest_plugins = ["tests.integration.kube_fixtures"]
pytestmark = pytest.mark.integration

BURST_TOLERATION = client.V1Toleration(
    key="orca.research/burst-node", operator="Equal", value="true", effect="NoSchedule"
)


@pytest.fixture
def binder(api_client: client.ApiClient) -> Iterator[Binder]:
    running = Binder(api_client, resync_seconds=0.5).start()
    yield running
    running.stop()


def _orca_node() -> client.V1Node:
    return ready_node(
        "orca-physics",
        {"orca.research/provider": "aws", "orca.research/department": "physics"},
        taints=[client.V1Taint(key="orca.research/burst-node", value="true", effect="NoSchedule")],
    )


def _events_for(core: client.CoreV1Api, name: str) -> list[client.CoreV1Event]:
    return list(
        core.list_namespaced_event("default", field_selector=f"involvedObject.name={name}").items
    )


def test_pod_that_tolerates_the_taint_and_selects_the_node_is_bound(
    core: client.CoreV1Api, binder: Binder
) -> None:
    core.create_node(_orca_node())
    pod = simple_pod(
        "gpu-job", node_selector={"orca.research/provider": "aws"}, tolerations=[BURST_TOLERATION]
    )
    core.create_namespaced_pod("default", pod)

    bound = eventually(lambda: core.read_namespaced_pod("gpu-job", "default").spec.node_name)

    assert bound == "orca-physics"
    assert [e.reason for e in _events_for(core, "gpu-job")] == ["Scheduled"]


def test_pod_without_the_toleration_stays_pending_with_failed_scheduling(
    core: client.CoreV1Api, binder: Binder
) -> None:
    core.create_node(_orca_node())
    core.create_namespaced_pod(
        "default", simple_pod("plain", node_selector={"orca.research/provider": "aws"})
    )

    events = eventually(lambda: _events_for(core, "plain"))

    assert [(e.type, e.reason) for e in events] == [("Warning", "FailedScheduling")]
    assert events[0].message == (
        "0/1 nodes are available: 1 node(s) had untolerated taint {orca.research/burst-node: true}."
    )
    pod = core.read_namespaced_pod("plain", "default")
    assert pod.spec.node_name is None
    assert [(c.type, c.status, c.reason) for c in pod.status.conditions] == [
        ("PodScheduled", "False", "Unschedulable")
    ]


def test_pod_selecting_another_department_is_told_it_matches_no_node(
    core: client.CoreV1Api, binder: Binder
) -> None:
    core.create_node(_orca_node())
    pod = simple_pod(
        "bio", node_selector={"orca.research/department": "biology"}, tolerations=[BURST_TOLERATION]
    )
    core.create_namespaced_pod("default", pod)

    events = eventually(lambda: _events_for(core, "bio"))

    assert events[0].message == (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    )


def test_unschedulable_pod_is_bound_once_a_fitting_node_appears(
    core: client.CoreV1Api, binder: Binder
) -> None:
    pod = simple_pod(
        "early", node_selector={"orca.research/provider": "aws"}, tolerations=[BURST_TOLERATION]
    )
    core.create_namespaced_pod("default", pod)
    eventually(lambda: _events_for(core, "early"))

    core.create_node(_orca_node())

    assert eventually(lambda: core.read_namespaced_pod("early", "default").spec.node_name)


def test_required_node_affinity_is_honoured(core: client.CoreV1Api, binder: Binder) -> None:
    core.create_node(_orca_node())
    core.create_node(ready_node("local-1", {"orca.research/provider": "onprem"}))
    affinity = client.V1Affinity(
        node_affinity=client.V1NodeAffinity(
            required_during_scheduling_ignored_during_execution=client.V1NodeSelector(
                node_selector_terms=[
                    client.V1NodeSelectorTerm(
                        match_expressions=[
                            client.V1NodeSelectorRequirement(
                                key="orca.research/provider", operator="In", values=["aws"]
                            )
                        ]
                    )
                ]
            )
        )
    )
    core.create_namespaced_pod(
        "default", simple_pod("aff", affinity=affinity, tolerations=[BURST_TOLERATION])
    )

    assert eventually(lambda: core.read_namespaced_pod("aff", "default").spec.node_name) == (
        "orca-physics"
    )


def test_toleration_semantics_follow_kubernetes() -> None:
    taint = client.V1Taint(key="k", value="v", effect="NoSchedule")

    assert tolerates([client.V1Toleration(key="k", operator="Exists")], taint)
    assert tolerates([client.V1Toleration(operator="Exists")], taint)
    assert not tolerates([client.V1Toleration(key="k", operator="Equal", value="w")], taint)
    assert not tolerates(
        [client.V1Toleration(key="k", operator="Exists", effect="NoExecute")], taint
    )


def test_failure_message_counts_reasons_like_the_scheduler() -> None:
    message = failure_message(["b reason", "a reason", "b reason"], 3)

    assert message == "0/3 nodes are available: 1 a reason, 2 b reason."
