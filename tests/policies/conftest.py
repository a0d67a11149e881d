"""Fixtures: the example stacks recorded once, and each pack running once per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.harness import stack_file_config
from tests.policies.analyzer import Pack, running_pack
from tests.policies.recording import RecordedStack, record_stack

EXAMPLES = ("physics", "biology")


@pytest.fixture(scope="session")
def example_runs() -> dict[str, RecordedStack]:
    return {stack: record_stack(stack_file_config(stack), stack=stack) for stack in EXAMPLES}


def department_config(stack: str) -> dict[str, dict[str, Any]]:
    """What an institution would set in the department's policy group for this stack."""
    allowed = stack_file_config(stack)["orca:allowedInstanceTypes"]
    return {
        "ec2-launch-template-instance-type-allowed": {"allowedInstanceTypes": allowed},
        "ec2-capacity-reservation-instance-type-allowed": {"allowedInstanceTypes": allowed},
    }


@pytest.fixture(scope="session")
def cost_pack() -> Iterator[Pack]:
    with running_pack("cost", stack="example", stack_config=stack_file_config("physics")) as pack:
        yield pack


@pytest.fixture(scope="session")
def safety_pack() -> Iterator[Pack]:
    with running_pack("safety", stack="example", stack_config=stack_file_config("physics")) as p:
        yield p
