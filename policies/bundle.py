"""Build self-contained copies of the policy packs, for ``pulumi policy publish``.

In the repository a pack imports ``orca_policies`` from ``policies/`` and the runtime's
``orca`` package (its instance catalog prices reservations) from the repository's virtual
environment. ``pulumi policy publish <folder>`` uploads only the pack's folder, and Pulumi
Cloud hands that folder to every CLI that enforces the pack, which installs its
``requirements.txt`` into a fresh virtual environment. So each copy carries, next to its
``__main__.py``:

- ``orca_policies/``, the policies;
- the modules of ``orca`` the policies import (found by importing them) and the catalog's
  data, nothing else of the runtime;
- ``requirements.txt`` pinning what those import, at the versions installed here;
- a ``PulumiPolicy.yaml`` whose virtual environment is the pack's own ``venv``.

``make policy-packs`` runs ``python policies/bundle.py build/policy-packs``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from importlib import import_module, metadata
from pathlib import Path

POLICIES = Path(__file__).resolve().parent
PACKS = ("cost", "safety")
# What the policies import besides the standard library and the bundled code.
REQUIREMENTS = ("pulumi", "pulumi-policy", "botocore")
RUNTIME_PACKAGE = "orca"
RUNTIME_DATA = "data"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")

log = logging.getLogger(__name__)


def runtime_modules() -> list[Path]:
    """The files of the ``orca`` modules the policies import (package ``__init__`` included)."""
    sys.path.insert(0, str(POLICIES))
    for pack in PACKS:
        import_module(f"orca_policies.{pack}")
    found = []
    for name, module in sorted(sys.modules.items()):
        if name == RUNTIME_PACKAGE or name.startswith(f"{RUNTIME_PACKAGE}."):
            found.append(Path(str(module.__file__)))
    return found


def pack_settings(pack: str) -> str:
    """The pack's ``PulumiPolicy.yaml`` with its own virtual environment."""
    lines = (POLICIES / pack / "PulumiPolicy.yaml").read_text().splitlines()
    kept = [line for line in lines if not line.lstrip().startswith(("virtualenv:", "#"))]
    settings = "\n".join(kept) + "\n"
    return settings.replace("    toolchain: pip\n", "    toolchain: pip\n    virtualenv: venv\n")


def build(target: Path) -> list[Path]:
    """Write one self-contained copy per pack under ``target``; return their folders."""
    modules = runtime_modules()
    package_root = modules[0].parent if modules[0].name == "__init__.py" else None
    if package_root is None:
        raise RuntimeError(f"the {RUNTIME_PACKAGE} package itself was not imported")
    requirements = "".join(f"{name}=={metadata.version(name)}\n" for name in REQUIREMENTS)

    folders = []
    for pack in PACKS:
        folder = target / pack
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.copy2(POLICIES / pack / "__main__.py", folder / "__main__.py")
        (folder / "PulumiPolicy.yaml").write_text(pack_settings(pack))
        (folder / "requirements.txt").write_text(requirements)
        shutil.copytree(POLICIES / "orca_policies", folder / "orca_policies", ignore=IGNORED)

        runtime = folder / RUNTIME_PACKAGE
        for module in modules:
            destination = runtime / module.relative_to(package_root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(module, destination)
        shutil.copytree(package_root / RUNTIME_DATA, runtime / RUNTIME_DATA, ignore=IGNORED)
        folders.append(folder)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="where to write one folder per pack")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for folder in build(parser.parse_args().target):
        log.info("built %s: pulumi policy publish %s", folder, folder)


if __name__ == "__main__":
    main()
