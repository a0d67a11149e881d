"""Fixtures that run the real ORCA runtime against the loopback stand-ins.

Each test gets its own Kubernetes API emulator (in-process, so state is fresh)
and its own department, so its node, envelope, queue and instances are its
own; the local AWS process is shared by the session. The runtime is built by
the same ``build_runtime`` as ``orca run`` and started in-process.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from orca import tags
from orca.aws.clients import AwsClients
from orca.aws.ec2 import Ec2
from orca.aws.model import Instance
from orca.runtime import Runtime, build_runtime
from orca.settings import BudgetSettings, Settings
from orca_local.envelope import Envelope, create_envelope
from orca_local.instances import InstanceEmulator
from orca_local.kube_api import KubeApiServer, write_kubeconfig
from tests.integration.aws_fixtures import REGION, local_clients

CASES = Path(__file__).resolve().parents[1] / "cases" / "pods"
CLUSTER = "campus"
_departments = itertools.count(1)


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def case(filename: str) -> list[dict[str, Any]]:
    with (CASES / filename).open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


@dataclass
class Burst:
    """One department's runtime and everything around it, as a test sees them."""

    settings: Settings
    envelope: Envelope
    aws: AwsClients
    core: client.CoreV1Api
    kube_url: str
    runtime: Runtime | None = None
    started: list[Runtime] = field(default_factory=list)

    @property
    def node(self) -> str:
        return self.settings.node_name

    def start(self, **overrides: Any) -> Runtime:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        self.runtime = build_runtime(settings, aws=self.aws)
        self.runtime.start()
        self.started.append(self.runtime)
        return self.runtime

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None

    def ensure_namespace(self, name: str) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": name}})
        except client.ApiException as e:
            if e.status != 409:
                raise

    def create(self, pod: dict[str, Any], bind: bool = True) -> dict[str, Any]:
        """Create ``pod`` (a manifest), bound to this department's node as the scheduler would."""
        namespace = pod["metadata"].get("namespace", "default")
        self.ensure_namespace(namespace)
        if bind:
            pod = {**pod, "spec": {**pod["spec"], "nodeName": self.node}}
        created = self.core.create_namespaced_pod(namespace, pod, _preload_content=False)
        return yaml.safe_load(created.data)  # type: ignore[no-any-return]

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = self.core.read_namespaced_pod(name, namespace, _preload_content=False)
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise
        return yaml.safe_load(response.data)  # type: ignore[no-any-return]

    def stored(self, namespace: str, name: str) -> dict[str, Any]:
        """The pod as the API server has it; it must exist."""
        found = self.pod(namespace, name)
        assert found is not None, f"pod {namespace}/{name} does not exist"
        return found

    def phase(self, namespace: str, name: str) -> str | None:
        pod = self.pod(namespace, name)
        return None if pod is None else (pod.get("status") or {}).get("phase")

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        response = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}", _preload_content=False
        )
        events = yaml.safe_load(response.data)["items"]
        # The API lists by name; the order things happened is the resourceVersion's.
        return sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))

    def instances(self, pod_uid: str | None = None) -> list[Instance]:
        """Every instance of this department in EC2, terminated ones included."""
        found = self.aws.ec2.describe_instances(
            Filters=[
                {"Name": f"tag:{tags.DEPARTMENT}", "Values": [self.settings.department]},
                *([{"Name": f"tag:{tags.POD_UID}", "Values": [pod_uid]}] if pod_uid else []),
            ]
        )
        from orca.aws.ec2 import instance_from_api

        return [
            instance_from_api(raw)
            for reservation in found["Reservations"]
            for raw in reservation["Instances"]
        ]


@pytest.fixture
def burst(local_aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Burst]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": local_aws.url,
    }.items():
        monkeypatch.setenv(key, value)
    department = f"dept{next(_departments)}-{int(time.time() * 1000) % 100000}"
    aws = local_clients(local_aws.url)
    envelope = create_envelope(aws, department=department, cluster=CLUSTER, region=REGION)
    with KubeApiServer("127.0.0.1", 0, watch_window=200, bookmark_interval=1.0) as kube:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        settings = Settings(
            department=department,
            cluster_name=CLUSTER,
            region=REGION,
            cost_center="cc-test",
            subnet_ids=envelope.subnet_ids,
            security_group_ids=[envelope.security_group_id],
            launch_templates=envelope.launch_templates,
            status_queue_url=envelope.status_queue_url,
            bundle_bucket=envelope.bundle_bucket,
            log_group=envelope.log_group,
            kubeconfig=kubeconfig,
            instance_resync_seconds=0.5,
            gc_min_age_seconds=0,
            gc_holds_seconds=1,
            workers=4,
            report_poll_seconds=1,
            capacity_retry_seconds=1,
            health_port=0,
            budget=BudgetSettings(
                ledger_table=envelope.ledger_table,
                monthly_usd=envelope.budget_usd,
                retry_seconds=5,
                check_seconds=1,
            ),
        )
        configuration = client.Configuration()
        configuration.host = kube.url
        api = client.ApiClient(configuration)
        burst = Burst(settings, envelope, aws, client.CoreV1Api(api), kube.url)
        try:
            yield burst
        finally:
            for runtime in burst.started:
                runtime.stop()
            live = [i.instance_id for i in burst.instances() if i.live]
            if live:
                Ec2(aws.ec2).terminate(live)
            api.close()
            aws.close()


def as_pod(manifest: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The pod a Job's template describes (no Job controller runs in the emulator)."""
    if manifest["kind"] == "Pod":
        return manifest
    template = manifest["spec"]["template"]
    spec = dict(template["spec"])
    if "activeDeadlineSeconds" in manifest["spec"]:
        spec["activeDeadlineSeconds"] = manifest["spec"]["activeDeadlineSeconds"]
    metadata = {
        **template.get("metadata", {}),
        "name": name or f"{manifest['metadata']['name']}-x7k2p",
        "namespace": manifest["metadata"].get("namespace", "default"),
        "labels": {"job-name": manifest["metadata"]["name"]},
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


@pytest.fixture
def burst_emulator(
    burst: Burst, docker_host: str, local_aws: Any, tmp_path: Path
) -> Iterator[InstanceEmulator]:
    """The instance emulator for the department's instances: each runs the real agent."""
    emulator = InstanceEmulator(
        burst.aws.ec2,
        burst.aws.s3,
        endpoint_url=local_aws.url,
        region=burst.settings.region,
        docker_host=docker_host,
        state_dir=tmp_path / "instances",
        poll_interval=0.2,
        tag_filter={tags.DEPARTMENT: burst.settings.department},
    )
    with emulator:
        yield emulator
