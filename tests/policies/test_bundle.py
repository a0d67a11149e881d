"""The copies built for ``pulumi policy publish`` run on their own, as the CLI runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.harness import stack_file_config
from tests.policies.analyzer import POLICIES, items_from_run, running_pack
from tests.policies.conftest import department_config
from tests.policies.recording import RecordedStack

REPOSITORY = POLICIES.parent
# Lists every module the pack's policies load that comes from the repository's own folders.
FROM_THE_REPOSITORY = f"""
import sys
sys.path.insert(0, ".")
import orca_policies.cost, orca_policies.safety
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None) or ""
    if path.startswith({str(REPOSITORY)!r}) and "/.venv/" not in path:
        print(path)
"""


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("policy-packs")
    subprocess.run(
        [sys.executable, str(POLICIES / "bundle.py"), str(target)], check=True, capture_output=True
    )
    return target


@pytest.mark.parametrize("pack", ["cost", "safety"])
def test_bundled_pack_imports_nothing_from_the_repository(bundled: Path, pack: str) -> None:
    # Isolated mode: neither the repository's folders nor PYTHONPATH are on the path.
    result = subprocess.run(
        [sys.executable, "-I", "-c", FROM_THE_REPOSITORY],
        cwd=bundled / pack,
        check=True,
        capture_output=True,
        text=True,
    )

    assert result.stdout == ""
    assert "virtualenv: venv" in (bundled / pack / "PulumiPolicy.yaml").read_text()
    assert "pulumi-policy==" in (bundled / pack / "requirements.txt").read_text()


@pytest.mark.parametrize("pack", ["cost", "safety"])
def test_bundled_pack_passes_the_biology_example_and_refuses_a_bad_stack(
    bundled: Path, pack: str, example_runs: dict[str, RecordedStack]
) -> None:
    biology = example_runs["biology"]
    with running_pack(
        pack, stack="example", stack_config=stack_file_config("biology"), folder=bundled / pack
    ) as running:
        running.configure(department_config("biology"))
        inputs = items_from_run(biology, outputs=False)
        outputs = items_from_run(biology, outputs=True)

        assert running.analyze_each(inputs) + running.analyze_stack(outputs) == []
        budgetless = [i for i in outputs if i.type != "aws:budgets/budget:Budget"]
        found = running.analyze_stack(budgetless) if pack == "cost" else []
        assert pack == "safety" or [d.policy for d in found] == [
            "budgets-budget-monthly-department"
        ]
