"""Builders shared by the unit tests: settings and pods as a user would write them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from orca.settings import Settings

# A copy of the shared test inputs, kept in step with them by test_cases_copy.py.
CASES = Path(__file__).resolve().parents[1] / "cases" / "pods"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "department": "physics",
        "cluster_name": "campus",
        "region": "us-east-1",
        "cost_center": "cc-4410",
        "subnet_ids": ["subnet-0a1b2c3d", "subnet-1a1b2c3d"],
        "security_group_ids": ["sg-0a1b2c3d4e5f60718"],
        "launch_templates": {
            "x86_64-gpu": "lt-0123456789abcdef0",
            "x86_64": "lt-0123456789abcdef1",
            "arm64": "lt-0123456789abcdef2",
        },
        "status_queue_url": "http://127.0.0.1:5000/123456789012/orca-physics-status",
        "bundle_bucket": "orca-physics-bundles",
        "log_group": "/orca/physics",
    }
    values.update(overrides)
    return Settings(**values)


def pod(
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "default",
            "uid": "0b6f1c2e-0000-4000-8000-000000000001",
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": containers or [{"name": "c", "image": "busybox", "command": ["true"]}],
            **spec,
        },
    }


def case_documents(filename: str) -> list[dict[str, Any]]:
    """The documents of one file in shared/cases/pods, each with a uid as the API adds."""
    with (CASES / filename).open() as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    for number, document in enumerate(documents):
        metadata = document.setdefault("metadata", {})
        metadata.setdefault("namespace", "default")
        metadata.setdefault("uid", f"00000000-0000-4000-8000-{number:012d}")
    return copy.deepcopy(documents)
