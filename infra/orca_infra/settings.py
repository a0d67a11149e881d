"""The runtime's settings, generated from the stack's outputs by one function.

:func:`runtime_settings` turns this stack's resources into the ``ORCA_*`` variables that
``orca run`` reads (nested keys joined with ``__``, lists and maps as JSON); the cluster
component puts them in the runtime's ConfigMap. The runtime's settings model,
``orca.settings.Settings``, is the one source of truth for what is accepted: the tests feed
this function's output to it. The pod's own IP (``ORCA_NODE_INTERNAL_IP``) is the only
setting that cannot be known here; the Deployment takes it from the downward API.
:func:`settings_checksum` is what the Deployment's pod template carries, so that a change of
settings restarts the runtime (a ConfigMap read through ``envFrom`` is read only at start).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from orca_infra.config import StackConfig

KUBELET_PORT = 10250
HEALTH_PORT = 8080
KUBELET_TLS_DIR = "/etc/orca/kubelet-tls"


def runtime_settings(
    config: StackConfig,
    *,
    subnet_ids: Sequence[str],
    security_group_id: str,
    launch_templates: Mapping[str, str],
    status_queue_url: str,
    bundle_bucket: str,
    log_group: str,
    ledger_table: str,
    reservation_group_arn: str | None = None,
) -> dict[str, str]:
    """The ``ORCA_*`` environment of the runtime for this stack."""
    settings = {
        "ORCA_DEPARTMENT": config.department,
        "ORCA_CLUSTER_NAME": config.cluster_name,
        "ORCA_REGION": config.region,
        "ORCA_SUBNET_IDS": json.dumps(list(subnet_ids)),
        "ORCA_SECURITY_GROUP_IDS": json.dumps([security_group_id]),
        "ORCA_LAUNCH_TEMPLATES": json.dumps(dict(launch_templates), sort_keys=True),
        "ORCA_STATUS_QUEUE_URL": status_queue_url,
        "ORCA_BUNDLE_BUCKET": bundle_bucket,
        "ORCA_LOG_GROUP": log_group,
        "ORCA_ALLOWED_INSTANCE_TYPES": json.dumps(list(config.allowed_instance_types)),
        # One pod is one instance, so the node's pod capacity is the instance ceiling.
        "ORCA_LIMITS__MAX_PODS": str(config.max_instances),
        "ORCA_LIMITS__GPUS": str(config.max_gpus),
        "ORCA_KUBELET_PORT": str(KUBELET_PORT),
        "ORCA_HEALTH_PORT": str(HEALTH_PORT),
        "ORCA_LOG_FORMAT": "json",
        # One image serves the runtime and the agent, which the instances' bootstrap runs
        # from it: the ECS-optimized AMIs have no Python the agent can run on.
        "ORCA_AGENT_IMAGE": config.runtime_image,
        # The budget the runtime holds before every launch, in the stack's cost ledger.
        "ORCA_BUDGET__LEDGER_TABLE": ledger_table,
        "ORCA_BUDGET__MONTHLY_USD": str(config.budget),
        "ORCA_BUDGET__NAMESPACE_SHARES": json.dumps(
            {name: str(share) for name, share in config.namespace_shares.items()}, sort_keys=True
        ),
        "ORCA_BUDGET__NAMESPACE_CAPS": json.dumps(
            {
                name: caps.model_dump(exclude_none=True)
                for name, caps in config.namespace_caps.items()
            },
            sort_keys=True,
        ),
        "ORCA_BUDGET__WHEN_REFUSED": config.budget_when_refused,
        "ORCA_BUDGET__OVER_LIMIT": config.budget_over_limit,
        "ORCA_BUDGET__HARD_CEILING_PERCENT": str(config.budget_hard_ceiling_percent),
    }
    if config.cost_center:
        settings["ORCA_COST_CENTER"] = config.cost_center
    if reservation_group_arn:
        # Pods ask for it with capacity-reservation: group; without reservations there is none.
        settings["ORCA_CAPACITY_RESERVATION_GROUP_ARN"] = reservation_group_arn
    if config.kubelet_tls:
        settings.update(
            {
                "ORCA_KUBELET_TLS_CERT_FILE": f"{KUBELET_TLS_DIR}/tls.crt",
                "ORCA_KUBELET_TLS_KEY_FILE": f"{KUBELET_TLS_DIR}/tls.key",
                "ORCA_KUBELET_CLIENT_CA_FILE": f"{KUBELET_TLS_DIR}/ca.crt",
            }
        )
    return settings


def settings_checksum(settings: Mapping[str, str]) -> str:
    """The SHA-256 of the settings, independent of key order: it changes when they do."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode()).hexdigest()
