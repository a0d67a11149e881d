"""The runtime and the API emulator: service-account tokens in the bundle, refusals up front."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from orca import tags
from orca.aws.bundles import BundleStore
from orca.bundle import PodBundle
from tests.integration.runtime_fixtures import Burst, eventually

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CA = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"


def _pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"orca.research/instance-type": "m7i.large"}},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [{"key": tags.BURST_TAINT_KEY, "operator": "Exists"}],
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "60"]}],
            **spec,
        },
    }


def _service_account_pod(name: str) -> dict[str, Any]:
    """A pod as the ServiceAccount admission plugin leaves it: kube-api-access mounted."""
    pod = _pod(
        name,
        {
            "serviceAccountName": "trainer",
            "volumes": [
                {
                    "name": "kube-api-access-9fx2c",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {"fieldPath": "metadata.namespace"},
                                        }
                                    ]
                                }
                            },
                        ],
                    },
                }
            ],
        },
    )
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "kube-api-access-9fx2c", "mountPath": SA_DIR, "readOnly": True}
    ]
    return pod


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def _annotation(burst: Burst, name: str, key: str) -> str | None:
    pod = burst.pod("default", name) or {}
    return (pod.get("metadata", {}).get("annotations") or {}).get(key)


def test_the_service_account_volume_carries_a_pod_bound_token_that_outlives_the_deadline(
    burst: Burst,
) -> None:
    burst.start()
    burst.create(_service_account_pod("sa-waits"))

    # No service account yet: the pod waits, as on a kubelet, and says why.
    eventually(
        lambda: any(
            "ServiceAccount default/trainer not found" in e["message"]
            for e in burst.events("default", "sa-waits")
        ),
        what="a Warning naming the missing service account",
    )
    assert burst.phase("default", "sa-waits") == "Pending"
    assert burst.instances() == []

    burst.core.create_namespaced_service_account("default", {"metadata": {"name": "trainer"}})
    burst.core.create_namespaced_config_map(
        "default", {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": CA}}
    )
    instance_id = eventually(
        lambda: _annotation(burst, "sa-waits", tags.INSTANCE_ID_ANNOTATION),
        what="the pod launched once its service account exists",
    )

    pod = burst.pod("default", "sa-waits")
    assert pod is not None and instance_id
    uid = pod["metadata"]["uid"]
    store = BundleStore(burst.aws.s3, burst.settings.bundle_bucket)
    [stored] = burst.aws.s3.list_objects_v2(Bucket=store.bucket, Prefix=f"bundles/{uid}/")[
        "Contents"
    ]
    # One bundle, keyed for the one instance that may read it.
    arn = f"arn:aws:ec2:{burst.settings.region}:123456789012:instance/{instance_id}"
    assert stored["Key"] == store.key(uid, arn)
    bundle: PodBundle = store.get(uid, arn)
    files = {f.path: f for f in bundle.volumes["kube-api-access-9fx2c"]}
    assert sorted(files) == ["ca.crt", "namespace", "token"]
    assert files["ca.crt"].content().decode() == CA
    assert files["namespace"].content() == b"default"
    assert all(f.mode == 0o644 for f in files.values())
    claims = _claims(files["token"].content().decode())
    assert claims["sub"] == "system:serviceaccount:default:trainer"
    assert claims["kubernetes.io"]["pod"] == {
        "name": "sa-waits",
        "uid": pod["metadata"]["uid"],
    }
    deadline = datetime.fromisoformat(
        pod["metadata"]["annotations"][tags.DEADLINE_ANNOTATION].replace("Z", "+00:00")
    )
    assert claims["exp"] >= deadline.timestamp()


def test_a_host_path_pod_fails_up_front_naming_the_field_and_launches_nothing(
    burst: Burst,
) -> None:
    burst.start()
    spec = {"volumes": [{"name": "data", "hostPath": {"path": "/mnt/datasets"}}]}
    burst.create(_pod("host-path", spec))

    eventually(lambda: burst.phase("default", "host-path") == "Failed", what="Failed")

    pod = burst.pod("default", "host-path")
    assert pod is not None and pod["status"]["reason"] == "UnsupportedPodSpec"
    [warning] = [e for e in burst.events("default", "host-path") if e["type"] == "Warning"]
    assert warning["reason"] == "UnsupportedPodSpec"
    assert warning["message"].startswith("spec.volumes[0].hostPath is '/mnt/datasets'")
    assert burst.instances() == []
