"""Fixtures for ``kubectl logs`` end to end: a local kubelet PKI and a runtime serving logs.

- ``kubelet_pki``: a CA, the runtime's kubelet serving certificate and the API server's
  ``kube-apiserver-kubelet-client`` certificate, in the test's temporary directory.
- ``logs_burst``: like ``burst`` (its own emulator and department on the shared local AWS),
  with the emulator calling kubelets with the client certificate and the runtime's settings
  naming the serving certificate and the CA. ``logs_burst.start(kubelet_port=0)`` starts the
  runtime with its kubelet API on a free port.
- ``logs_kubeconfig``: a kubeconfig for that emulator, for kubectl.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from orca.aws.ec2 import Ec2
from orca.settings import Settings
from orca_local.certificates import KubeletPki, create_kubelet_pki
from orca_local.envelope import create_envelope
from orca_local.kube_api import KubeApiServer, KubeletTLS, write_kubeconfig
from tests.integration.aws_fixtures import REGION, local_clients
from tests.integration.runtime_fixtures import CLUSTER, Burst

_departments = itertools.count(1)


@pytest.fixture
def kubelet_pki(tmp_path: Path) -> KubeletPki:
    return create_kubelet_pki(tmp_path / "pki")


@pytest.fixture
def logs_kubeconfig(tmp_path: Path) -> Path:
    return tmp_path / "kubeconfig"


@pytest.fixture
def logs_burst(
    local_aws: Any,
    kubelet_pki: KubeletPki,
    logs_kubeconfig: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Burst]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": local_aws.url,
    }.items():
        monkeypatch.setenv(key, value)
    department = f"logs{next(_departments)}-{int(time.time() * 1000) % 100000}"
    aws = local_clients(local_aws.url)
    envelope = create_envelope(aws, department=department, cluster=CLUSTER, region=REGION)
    tls = KubeletTLS(
        str(kubelet_pki.apiserver_client_cert),
        str(kubelet_pki.apiserver_client_key),
        str(kubelet_pki.ca_cert),
    )
    with KubeApiServer("127.0.0.1", 0, kubelet_tls=tls, bookmark_interval=1.0) as kube:
        write_kubeconfig(logs_kubeconfig, kube.url)
        settings = Settings(
            department=department,
            cluster_name=CLUSTER,
            region=REGION,
            subnet_ids=envelope.subnet_ids,
            security_group_ids=[envelope.security_group_id],
            launch_templates=envelope.launch_templates,
            status_queue_url=envelope.status_queue_url,
            bundle_bucket=envelope.bundle_bucket,
            log_group=envelope.log_group,
            kubeconfig=logs_kubeconfig,
            instance_resync_seconds=0.5,
            gc_min_age_seconds=0,
            workers=2,
            report_poll_seconds=1,
            kubelet_tls_cert_file=kubelet_pki.kubelet_cert,
            kubelet_tls_key_file=kubelet_pki.kubelet_key,
            kubelet_client_ca_file=kubelet_pki.ca_cert,
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
