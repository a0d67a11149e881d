"""Fixtures for the Pulumi program's tests: the example stacks run once per session."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.infra.harness import StackRun, run_stack, stack_file_config


@pytest.fixture(scope="session")
def physics() -> StackRun:
    return run_stack(stack_file_config("physics"), stack="physics")


@pytest.fixture(scope="session")
def biology() -> StackRun:
    return run_stack(stack_file_config("biology"), stack="biology")


@pytest.fixture(params=["physics", "biology"])
def example(request: pytest.FixtureRequest) -> StackRun:
    run: StackRun = request.getfixturevalue(request.param)
    return run


def physics_with(**changes: Any) -> dict[str, Any]:
    """The physics stack's config with ``orca:<key>`` changed (None removes the key)."""
    config = copy.deepcopy(stack_file_config("physics"))
    for key, value in changes.items():
        name = "aws:region" if key == "region" else f"orca:{key}"
        if value is None:
            config.pop(name, None)
        else:
            config[name] = value
    return config
