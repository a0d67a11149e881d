"""Tag and label names: the one place they are spelled.

Every instance and volume ORCA starts carries the tags below. AWS cost tools and
Budgets filter on the department's cost tags (``department``, ``cost-center``),
so those are plain keys; ORCA's own bookkeeping lives under ``orca.research/``.
"""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "orca.research/"

CLUSTER = PREFIX + "cluster"
DEPARTMENT = PREFIX + "department"
NODE = PREFIX + "node"
POD_UID = PREFIX + "pod-uid"
POD = PREFIX + "pod"
MANAGED_BY = PREFIX + "managed-by"
MANAGED_BY_VALUE = "orca"
ATTEMPT = PREFIX + "attempt"
NAME = "Name"

COST_DEPARTMENT = "department"
COST_CENTER = "cost-center"

# Node labels and the taint a pod must tolerate to burst.
PROVIDER_LABEL = PREFIX + "provider"
PROVIDER_VALUE = "aws"
DEPARTMENT_LABEL = PREFIX + "department"
BURST_TAINT_KEY = PREFIX + "burst-node"
BURST_TAINT_VALUE = "true"
BURST_TAINT_EFFECT = "NoSchedule"


def node_name(department: str) -> str:
    """The virtual node's name for a department."""
    return f"orca-{department}"


def instance_tags(
    *,
    cluster: str,
    department: str,
    pod_namespace: str,
    pod_name: str,
    pod_uid: str,
    attempt: int,
    cost_center: str | None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The full tag set for an instance and its volumes.

    ``extra`` holds the department's own tags from settings; ORCA's keys win
    over them so bookkeeping can never be overwritten by configuration.
    """
    tags = dict(extra or {})
    tags[COST_DEPARTMENT] = department
    if cost_center:
        tags[COST_CENTER] = cost_center
    tags.update(
        {
            CLUSTER: cluster,
            DEPARTMENT: department,
            NODE: node_name(department),
            POD_UID: pod_uid,
            POD: f"{pod_namespace}/{pod_name}",
            MANAGED_BY: MANAGED_BY_VALUE,
            ATTEMPT: str(attempt),
            # EC2 shows Name in the console; 256 characters is the tag-value limit.
            NAME: f"orca-{department}/{pod_namespace}/{pod_name}"[:256],
        }
    )
    return tags


def ownership_filter(*, cluster: str, department: str) -> dict[str, str]:
    """The tags that mark an instance as this runtime's to manage."""
    return {CLUSTER: cluster, DEPARTMENT: department, MANAGED_BY: MANAGED_BY_VALUE}


# ORCA's bookkeeping on the pod. The launch intent (attempt and client token) is
# written before RunInstances and the instance id after it, so a runtime that
# restarts between the two finds the intent and adopts instead of relaunching.
LAUNCH_ATTEMPT_ANNOTATION = PREFIX + "launch-attempt"
CLIENT_TOKEN_ANNOTATION = PREFIX + "client-token"
INSTANCE_ID_ANNOTATION = PREFIX + "instance-id"
REPORT_SEQUENCE_ANNOTATION = PREFIX + "report-sequence"
DEADLINE_ANNOTATION = PREFIX + "deadline"
# What the pod costs: the hourly price its instance is billed at (set at launch), and the
# cost accrued so far with the time it was computed (refreshed while it runs, final once
# the ledger has settled it).
PRICE_ANNOTATION = PREFIX + "price-usd-per-hour"
COST_ANNOTATION = PREFIX + "cost-usd"
COST_AS_OF_ANNOTATION = PREFIX + "cost-as-of"
COST_ANNOTATIONS = (PRICE_ANNOTATION, COST_ANNOTATION, COST_AS_OF_ANNOTATION)
