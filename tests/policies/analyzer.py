"""Start a policy pack as the Pulumi CLI does and talk to it over the analyzer protocol.

For a Python pack the CLI runs ``pulumi-analyzer-policy-python <engine> . -virtualenv=...``
with the pack's folder as the working directory; that shim runs
``<virtualenv>/bin/python -u -m pulumi.policy <engine> .``, which runs the pack's
``__main__.py``. The pack's ``PolicyPack`` serves the ``Analyzer`` gRPC service on a free
loopback port and prints the port on its first line of output. The CLI passes the stack's
config in ``PULUMI_CONFIG`` and the stack in ``PULUMI_PROJECT``/``PULUMI_STACK``/
``PULUMI_DRY_RUN``; nothing in a Python pack calls the engine back, so the engine address
here is a placeholder.

Then, as the engine: ``ConfigureStack``, ``GetAnalyzerInfo``, ``Configure`` (each policy's
enforcement level and config), ``Analyze`` for each resource (its inputs, with its provider)
and ``AnalyzeStack`` once (every resource's outputs, with the resources each property
depends on, as the engine sends them).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from tests.infra.harness import RecordedResource
from tests.policies.recording import Key, RecordedStack

POLICIES = Path(__file__).resolve().parents[2] / "policies"
PROJECT = "orca"
AWS_PROVIDER = "pulumi:providers:aws"
START_SECONDS = 30.0


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    message: str
    urn: str
    mandatory: bool


@dataclass(frozen=True)
class Item:
    """A resource as the engine shows it: its properties and its provider's, if any."""

    type: str
    name: str
    props: dict[str, Any]
    provider: dict[str, Any] | None = None
    # The resources (type, name) each property depends on: AnalyzeStack's propertyDependencies.
    dependencies: dict[str, list[Key]] = field(default_factory=dict)


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{type_}::{name}"


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(dict(value))
    return message


def items_from_run(
    recorded: RecordedStack | Iterable[RecordedResource], *, outputs: bool
) -> list[Item]:
    """The custom resources of a recorded run, with the aws provider attached to aws ones.

    Every ``aws:`` resource of the envelope uses its one explicit aws provider, so that
    provider's recorded inputs (``defaultTags`` among them) go with each of them. A
    :class:`RecordedStack` also gives each resource its property dependencies.
    """
    dependencies = recorded.property_dependencies if isinstance(recorded, RecordedStack) else {}
    every = recorded.resources if isinstance(recorded, RecordedStack) else recorded
    resources = [r for r in every if r.custom]
    provider = next((r.inputs for r in resources if r.type == AWS_PROVIDER), None)
    return [
        Item(
            r.type,
            r.name,
            dict(r.outputs if outputs else r.inputs),
            provider if r.type.startswith("aws:") else None,
            dict(dependencies.get((r.type, r.name), {})),
        )
        for r in resources
    ]


class Pack:
    """A running policy pack and a client of its analyzer service."""

    def __init__(self, name: str, stack: str, stub: analyzer_pb2_grpc.AnalyzerStub) -> None:
        self.name = name
        self.stack = stack
        self.stub = stub

    def info(self) -> analyzer_pb2.AnalyzerInfo:
        return self.stub.GetAnalyzerInfo(empty_pb2.Empty())

    def configure(self, config: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Every policy mandatory, with ``config[policy]`` as its properties (as the engine)."""
        config = config or {}
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for policy in self.info().policies:
            request.policyConfig[policy.name].CopyFrom(
                analyzer_pb2.PolicyConfig(
                    enforcementLevel=analyzer_pb2.MANDATORY,
                    properties=_struct(config.get(policy.name, {})),
                )
            )
        self.stub.Configure(request)

    def _provider(self, props: Mapping[str, Any]) -> analyzer_pb2.AnalyzerProviderResource:
        return analyzer_pb2.AnalyzerProviderResource(
            type=AWS_PROVIDER,
            name="aws",
            urn=urn(self.stack, AWS_PROVIDER, "aws"),
            properties=_struct(props),
        )

    def analyze(self, item: Item) -> list[Diagnostic]:
        request = analyzer_pb2.AnalyzeRequest(
            type=item.type,
            name=item.name,
            urn=urn(self.stack, item.type, item.name),
            properties=_struct(item.props),
        )
        if item.provider is not None:
            request.provider.CopyFrom(self._provider(item.provider))
        return _diagnostics(self.stub.Analyze(request))

    def analyze_each(self, items: Iterable[Item]) -> list[Diagnostic]:
        return [d for item in items for d in self.analyze(item)]

    def analyze_stack(self, items: Iterable[Item]) -> list[Diagnostic]:
        request = analyzer_pb2.AnalyzeStackRequest()
        for item in items:
            resource = analyzer_pb2.AnalyzerResource(
                type=item.type,
                name=item.name,
                urn=urn(self.stack, item.type, item.name),
                properties=_struct(item.props),
            )
            if item.provider is not None:
                resource.provider.CopyFrom(self._provider(item.provider))
            every: set[str] = set()
            for prop, keys in item.dependencies.items():
                urns = [urn(self.stack, t, n) for t, n in keys]
                resource.propertyDependencies[prop].urns.extend(urns)
                every.update(urns)
            resource.dependencies.extend(sorted(every))
            request.resources.append(resource)
        return _diagnostics(self.stub.AnalyzeStack(request))


def _diagnostics(response: analyzer_pb2.AnalyzeResponse) -> list[Diagnostic]:
    return [
        Diagnostic(d.policyName, d.message, d.urn, d.enforcementLevel == analyzer_pb2.MANDATORY)
        for d in response.diagnostics
    ]


def _read_port(process: subprocess.Popen[bytes], log: Path) -> int:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_SECONDS
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            raise RuntimeError(
                f"the policy pack printed no port within {START_SECONDS:.0f} s "
                f"(exit code {process.poll()}); its stderr:\n{log.read_text()}"
            )
        if selector.select(timeout=remaining):
            chunk = os.read(process.stdout.fileno(), 64)
            if not chunk and process.poll() is not None:
                continue
            line += chunk
    return int(line.split(b"\n", 1)[0])


@contextmanager
def running_pack(
    name: str,
    *,
    stack: str,
    stack_config: Mapping[str, Any],
    dry_run: bool = True,
    folder: Path | None = None,
) -> Iterator[Pack]:
    """Start ``policies/<name>`` (or the pack in ``folder``) as the CLI does for ``stack``."""
    env = {
        **os.environ,
        "PULUMI_CONFIG": json.dumps(
            {k: v if isinstance(v, str) else json.dumps(v) for k, v in stack_config.items()}
        ),
        "PULUMI_PROJECT": PROJECT,
        "PULUMI_STACK": stack,
        "PULUMI_DRY_RUN": "true" if dry_run else "false",
        "PULUMI_ORGANIZATION": "organization",
        "PYTHONWARNINGS": "error",
    }
    with tempfile.NamedTemporaryFile(prefix=f"policy-{name}-", suffix=".log") as log:
        process = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
            cwd=folder or POLICIES / name,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            port = _read_port(process, Path(log.name))
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=START_SECONDS)
                stub = analyzer_pb2_grpc.AnalyzerStub(channel)
                stub.ConfigureStack(
                    analyzer_pb2.AnalyzerStackConfigureRequest(
                        stack=stack, project=PROJECT, organization="organization", dry_run=dry_run
                    )
                )
                yield Pack(name, stack, stub)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
