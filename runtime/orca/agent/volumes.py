"""The pod's private directory on the host: volume files from the bundle, made root-only.

Each configMap, secret, downwardAPI and projected volume becomes a directory of files
under ``<pod root>/<pod uid>/volumes/<volume>``, written with the modes the runtime
resolved, then bind-mounted read-only into the containers that mount it. The pod's
directory is 0700 and owned by root, so on the host only root reaches the Secrets in
it; the volume directories themselves are 0755, so a container running as another
user can list the volume it mounts. With the pod's ``fsGroup``, files belong to that
group and are group-readable, as the kubelet makes them (``SetVolumeOwnership``).

Paths come from the API server, which refuses absolute paths and ``..``; the agent
checks again, since it writes as root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from orca.volume_files import BundleFile

# Added to a file's mode when fsGroup is set, as the kubelet does for read-only volumes.
FS_GROUP_READ = 0o440


class UnsafeVolumePath(ValueError):
    """A volume file path that would leave the volume's directory."""


def make_pod_directory(path: str) -> Path:
    """The pod's root-only directory, created (with its parents) if missing."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    return directory


def write_volume(directory: str, files: Sequence[BundleFile], fs_group: int | None) -> None:
    """Write one volume's files into ``directory`` (created, and emptied if it existed)."""
    root = Path(directory)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, mode=0o755)
    os.chmod(root, 0o755)
    for file in files:
        target = _inside(root, file.path)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        mode = file.mode | (FS_GROUP_READ if fs_group is not None else 0)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        descriptor = os.open(target, flags, mode & 0o7777)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(file.content())
        # The umask may have narrowed the mode given to open.
        os.chmod(target, mode & 0o7777)
        if fs_group is not None:
            os.chown(target, -1, fs_group)


def write_volumes(
    directories: Mapping[str, str],
    contents: Mapping[str, Sequence[BundleFile]],
    fs_group: int | None = None,
) -> None:
    """Every file volume; one the bundle has no files for (an optional missing source) is
    an empty directory, as on a kubelet."""
    for name, directory in directories.items():
        write_volume(directory, contents.get(name, []), fs_group)


def remove_pod_directory(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _inside(root: Path, relative: str) -> Path:
    parts = Path(relative).parts
    if not relative or Path(relative).is_absolute() or ".." in parts:
        raise UnsafeVolumePath(f"volume file path {relative!r} must be relative, without '..'")
    return root.joinpath(*parts)
