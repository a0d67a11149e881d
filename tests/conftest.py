"""Fixture modules for every test, registered here so pytest rewrites their asserts."""

pytest_plugins = [
    "tests.integration.aws_fixtures",
    "tests.integration.kube_fixtures",
    "tests.integration.docker_fixtures",
    "tests.integration.runtime_fixtures",
    "tests.integration.kubelet_fixtures",
    "tests.integration.agent_fixtures",
]
