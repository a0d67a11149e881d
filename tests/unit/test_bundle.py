"""The pod bundle resolves env, volume files and pull credentials as a kubelet would."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from orca.aws.bundles import BundleStore
from orca.bundle import MissingReference, PodBundle, build_bundle
from orca.registry_auth import InvalidPullSecret
from tests.unit.helpers import pod

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = "s3cr3t-not-for-logs-0f9c"


def b64(text: str | bytes) -> str:
    return base64.b64encode(text if isinstance(text, bytes) else text.encode()).decode()


class FakeApi:
    """ConfigMaps, Secrets and service accounts of one namespace; records token requests."""

    def __init__(self, max_token_seconds: int | None = None) -> None:
        self.config_maps: dict[str, dict[str, Any]] = {
            "app": {"data": {"app.yaml": "steps: 5\n", "mode": "fast"}},
            "kube-root-ca.crt": {"data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}},
            "blobs": {"binaryData": {"weights.bin": b64(b"\x00\x01\xff")}},
        }
        self.secrets: dict[str, dict[str, Any]] = {
            "wandb": {"type": "Opaque", "data": {"api-key": b64(SECRET), "user": b64("ana")}},
        }
        self.accounts = {"default", "trainer"}
        self.token_requests: list[tuple[str, dict[str, Any]]] = []
        self.max_token_seconds = max_token_seconds

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.config_maps.get(name)

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.secrets.get(name)

    def request_token(
        self, namespace: str, service_account: str, spec: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        if service_account not in self.accounts:
            return None
        self.token_requests.append((service_account, dict(spec)))
        seconds = spec["expirationSeconds"]
        if self.max_token_seconds is not None:
            seconds = min(seconds, self.max_token_seconds)
        expires = (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        token = f"token-{service_account}-{len(self.token_requests)}"
        return {"token": token, "expirationTimestamp": expires}


def files(bundle: PodBundle, volume: str) -> dict[str, tuple[bytes, int]]:
    return {f.path: (f.content(), f.mode) for f in bundle.volumes[volume]}


def with_volumes(*volumes: dict[str, Any], **spec: Any) -> dict[str, Any]:
    made = pod(volumes=list(volumes), **spec)
    made["metadata"]["labels"] = {"team": "lhc", "app": "train"}
    return made


def test_a_configmap_volume_holds_every_key_with_the_default_mode() -> None:
    bundle = build_bundle(with_volumes({"name": "cfg", "configMap": {"name": "app"}}), FakeApi())

    assert files(bundle, "cfg") == {"app.yaml": (b"steps: 5\n", 0o644), "mode": (b"fast", 0o644)}


def test_items_pick_keys_and_paths_and_an_item_mode_overrides_default_mode() -> None:
    volume = {
        "name": "creds",
        "secret": {
            "secretName": "wandb",
            "defaultMode": 0o400,
            "items": [
                {"key": "api-key", "path": "wandb/key"},
                {"key": "user", "path": "user", "mode": 0o440},
            ],
        },
    }

    bundle = build_bundle(with_volumes(volume), FakeApi())

    assert files(bundle, "creds") == {
        "wandb/key": (SECRET.encode(), 0o400),
        "user": (b"ana", 0o440),
    }
    assert SECRET not in repr(bundle)


def test_binary_configmap_data_stays_binary() -> None:
    bundle = build_bundle(with_volumes({"name": "b", "configMap": {"name": "blobs"}}), FakeApi())

    assert files(bundle, "b") == {"weights.bin": (b"\x00\x01\xff", 0o644)}


def test_a_missing_configmap_or_key_keeps_the_pod_waiting_unless_optional() -> None:
    missing = with_volumes({"name": "x", "configMap": {"name": "absent"}})
    with pytest.raises(MissingReference, match="ConfigMap default/absent not found"):
        build_bundle(missing, FakeApi())

    key = {"name": "s", "secret": {"secretName": "wandb", "items": [{"key": "nope", "path": "n"}]}}
    with pytest.raises(MissingReference, match="key 'nope' in Secret default/wandb not found"):
        build_bundle(with_volumes(key), FakeApi())

    optional = with_volumes(
        {"name": "x", "configMap": {"name": "absent", "optional": True}},
        {"name": "s", "secret": {**key["secret"], "optional": True}},
    )
    bundle = build_bundle(optional, FakeApi())
    assert bundle.volumes == {"x": [], "s": []}


def test_downward_api_files_hold_pod_fields_and_resources_in_divisor_units() -> None:
    items = [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "team", "fieldRef": {"fieldPath": "metadata.labels['team']"}},
        {
            "path": "mem_mi",
            "resourceFieldRef": {
                "containerName": "c",
                "resource": "limits.memory",
                "divisor": "1Mi",
            },
        },
        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
        {
            "path": "cpu_req_m",
            "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1m"},
            "mode": 0o600,
        },
    ]
    containers = [
        {
            "name": "c",
            "image": "busybox",
            "resources": {"limits": {"memory": "1500Mi"}, "requests": {"cpu": "250m"}},
        }
    ]
    made = with_volumes({"name": "info", "downwardAPI": {"items": items}})
    made["spec"]["containers"] = containers

    bundle = build_bundle(made, FakeApi(), allocatable={"cpu": Decimal(16)})

    assert files(bundle, "info") == {
        "name": (b"p", 0o644),
        "labels": (b'app="train"\nteam="lhc"', 0o644),
        "team": (b"lhc", 0o644),
        "mem_mi": (b"1500", 0o644),
        # No CPU limit: the instance's capacity, as a kubelet uses node allocatable.
        "cpu": (b"16", 0o644),
        "cpu_req_m": (b"250", 0o600),
    }


def kube_api_access(expiration: int = 3607) -> dict[str, Any]:
    """The volume the ServiceAccount admission plugin adds to every pod."""
    return {
        "name": "kube-api-access-7x2kq",
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": expiration, "path": "token"}},
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
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def test_the_service_account_volume_gets_a_bound_token_outliving_the_pods_deadline() -> None:
    api = FakeApi()
    made = with_volumes(kube_api_access(), serviceAccountName="trainer")
    deadline = NOW + timedelta(hours=6)

    bundle = build_bundle(made, api, deadline=deadline, now=NOW)

    assert files(bundle, "kube-api-access-7x2kq") == {
        "token": (b"token-trainer-1", 0o644),
        "ca.crt": (b"-----BEGIN CERTIFICATE-----\n", 0o644),
        "namespace": (b"default", 0o644),
    }
    ((account, spec),) = api.token_requests
    assert account == "trainer"
    assert spec == {
        "audiences": [],
        # Six hours to the deadline and ten minutes' margin: the agent cannot refresh it.
        "expirationSeconds": 6 * 3600 + 600,
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": "p",
            "uid": "0b6f1c2e-0000-4000-8000-000000000001",
        },
    }


def test_a_projected_token_keeps_its_audience_and_a_longer_requested_lifetime() -> None:
    api = FakeApi()
    source = {"audience": "vault", "expirationSeconds": 86400, "path": "vault-token"}
    made = with_volumes(
        {"name": "v", "projected": {"sources": [{"serviceAccountToken": source}]}},
    )

    bundle = build_bundle(made, api, deadline=NOW + timedelta(hours=1), now=NOW)

    assert files(bundle, "v") == {"vault-token": (b"token-default-1", 0o644)}
    assert api.token_requests[0][1]["audiences"] == ["vault"]
    assert api.token_requests[0][1]["expirationSeconds"] == 86400


def test_a_token_capped_before_the_deadline_is_reported() -> None:
    warnings: list[str] = []
    made = with_volumes(kube_api_access())

    build_bundle(
        made,
        FakeApi(max_token_seconds=3600),
        deadline=NOW + timedelta(hours=6),
        now=NOW,
        warn=warnings.append,
    )

    assert warnings == [
        "The service account token of default expires at 2026-12-01T13:00:00Z, before the "
        "pod's deadline 2026-12-01T18:00:00+00:00: the API server caps token lifetimes, and "
        "ORCA cannot refresh a token on a burst instance"
    ]


def test_a_missing_service_account_keeps_the_pod_waiting() -> None:
    made = with_volumes(kube_api_access(), serviceAccountName="ghost")

    with pytest.raises(MissingReference, match="ServiceAccount default/ghost not found"):
        build_bundle(made, FakeApi())


def test_pull_secrets_of_both_types_become_registry_credentials_first_one_winning() -> None:
    api = FakeApi()
    config = {"auths": {"registry.example.edu": {"username": "robot", "password": "pw"}}}
    api.secrets["regcred"] = {
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(json.dumps(config))},
    }
    legacy = {
        "registry.example.edu": {"auth": b64("other:pw")},
        "https://index.docker.io/v1/": {"auth": b64("hub:pw")},
    }
    api.secrets["legacy"] = {
        "type": "kubernetes.io/dockercfg",
        "data": {".dockercfg": b64(json.dumps(legacy))},
    }
    made = pod(imagePullSecrets=[{"name": "regcred"}, {"name": "legacy"}])

    bundle = build_bundle(made, api)

    assert bundle.registry_credentials == {
        "registry.example.edu": {"auth": b64("robot:pw")},
        "https://index.docker.io/v1/": {"auth": b64("hub:pw")},
    }
    assert "robot" not in repr(bundle)


def test_a_pull_secret_of_another_type_is_named() -> None:
    made = pod(imagePullSecrets=[{"name": "wandb"}])

    with pytest.raises(InvalidPullSecret, match="imagePullSecret 'wandb' is of type 'Opaque'"):
        build_bundle(made, FakeApi())


def test_a_missing_pull_secret_keeps_the_pod_waiting() -> None:
    with pytest.raises(MissingReference, match="Secret default/regcred not found"):
        build_bundle(pod(imagePullSecrets=[{"name": "regcred"}]), FakeApi())


def test_a_bundle_round_trips_through_json() -> None:
    made = with_volumes({"name": "creds", "secret": {"secretName": "wandb"}})
    bundle = build_bundle(made, FakeApi())

    assert PodBundle.from_json(bundle.to_json()) == bundle


ARN = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"


def test_a_stored_bundle_takes_the_bucket_default_key_not_s3_managed_encryption() -> None:
    s3 = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    bundle = PodBundle(pod_uid="uid-1", namespace="lab", name="train", spec={})
    with Stubber(s3) as stub:
        # Exactly these parameters: naming aws:kms without the envelope's key id would make
        # S3 encrypt with its AWS managed key rather than the bucket's default key.
        stub.add_response(
            "put_object",
            {},
            {
                "Bucket": "orca-bundles",
                "Key": f"bundles/uid-1/{ARN}.json",
                "Body": ANY,
                "ContentType": "application/json",
            },
        )
        url = BundleStore(s3, "orca-bundles").put(bundle, ARN)

    assert url == f"s3://orca-bundles/bundles/uid-1/{ARN}.json"
