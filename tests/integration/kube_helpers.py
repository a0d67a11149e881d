"""Helpers for tests against the Kubernetes API emulator: polling and small object builders."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

# Runs kubectl against the emulator (the ``kubectl`` fixture).
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        time.sleep(interval)


def ready_node(name: str, labels: dict[str, str] | None = None, **spec: Any) -> client.V1Node:
    """A Node with a Ready condition and room for 110 pods."""
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1NodeSpec(**spec),
        status=client.V1NodeStatus(
            conditions=[client.V1NodeCondition(type="Ready", status="True")],
            allocatable={"pods": "110", "cpu": "8", "memory": "32Gi"},
        ),
    )


def simple_pod(name: str, **spec: Any) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="busybox:1.36")], **spec
        ),
    )
