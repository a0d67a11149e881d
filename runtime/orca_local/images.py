"""Local container images for emulated instances, built from files: no registry is reachable.

Each image is a root filesystem made here and loaded with ``docker import``:
Debian's ``busybox-static`` (``/bin/busybox`` with a symlink per applet: sh,
printf, sha256sum, cat, sleep, ...), a minimal ``/etc/passwd`` and ``/etc/group``,
and the files under ``images/<name>/`` beside this module. The ``trainer`` image
adds ``/usr/local/bin/python``, a shell stand-in for ``python train.py`` that
prints a short training run, for pods whose images are PyTorch or NGC ones.

The emulator maps a pod's image to one of these with :data:`DEFAULT_IMAGE_MAP`
(first matching pattern wins) and tags the local image with the pod's image
reference, so the agent uses the pod's own image name and finds it present.
:func:`ensure_images` is idempotent and fast: an image whose inputs have not
changed (same digest label) is not rebuilt.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import logging
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BUSYBOX = Path("/bin/busybox")
IMAGE_FILES = Path(__file__).parent / "images"
DIGEST_LABEL = "orca.research/local-image-digest"

BUSYBOX_IMAGE = "orca-local/busybox:1.36"
TRAINER_IMAGE = "orca-local/trainer:1"

# Pod image pattern (fnmatch) -> local image; the first match wins.
DEFAULT_IMAGE_MAP: tuple[tuple[str, str], ...] = (
    ("*pytorch*", TRAINER_IMAGE),
    ("nvcr.io/*", TRAINER_IMAGE),
    ("*", BUSYBOX_IMAGE),
)

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


class ImageError(Exception):
    """A local image could not be built."""


@dataclass(frozen=True)
class LocalImage:
    name: str
    overlay: str | None  # directory under images/ with extra files


LOCAL_IMAGES = (LocalImage(BUSYBOX_IMAGE, None), LocalImage(TRAINER_IMAGE, "trainer"))


def local_image_for(
    image: str, image_map: Sequence[tuple[str, str]] = DEFAULT_IMAGE_MAP
) -> str | None:
    """The local image that stands for a pod's image, or None when nothing matches."""
    for pattern, local in image_map:
        if fnmatch.fnmatchcase(image, pattern):
            return local
    return None


def ensure_images(docker_host: str) -> list[str]:
    """Builds the local images that are missing or out of date; returns their names."""
    if not BUSYBOX.exists():
        raise ImageError(f"{BUSYBOX} is missing; install Debian's busybox-static package")
    applets = _applets()
    for image in LOCAL_IMAGES:
        digest = _digest(image, applets)
        if _current_digest(docker_host, image.name) == digest:
            log.debug("local image %s is up to date", image.name)
            continue
        started = time.monotonic()
        _import(docker_host, image.name, _rootfs(image, applets), digest)
        log.info("built local image %s in %.1fs", image.name, time.monotonic() - started)
    return [image.name for image in LOCAL_IMAGES]


def _applets() -> list[str]:
    result = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    return sorted(name for name in result.stdout.split() if name and name != "busybox")


def _overlay_files(image: LocalImage) -> list[Path]:
    if image.overlay is None:
        return []
    root = IMAGE_FILES / image.overlay
    return sorted(path for path in root.rglob("*") if path.is_file())


def _digest(image: LocalImage, applets: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(BUSYBOX.read_bytes())
    digest.update("\n".join(applets).encode())
    digest.update((_PASSWD + _GROUP).encode())
    for path in _overlay_files(image):
        digest.update(str(path.relative_to(IMAGE_FILES)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _current_digest(docker_host: str, name: str) -> str | None:
    result = subprocess.run(
        [
            "docker",
            "-H",
            docker_host,
            "image",
            "inspect",
            "--format",
            f'{{{{index .Config.Labels "{DIGEST_LABEL}"}}}}',
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _rootfs(image: LocalImage, applets: list[str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (
            ("bin", 0o755),
            ("etc", 0o755),
            ("root", 0o700),
            ("tmp", 0o1777),
            ("usr", 0o755),
            ("usr/local", 0o755),
            ("usr/local/bin", 0o755),
        ):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in applets:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
        for name, text in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        if image.overlay is not None:
            root = IMAGE_FILES / image.overlay
            for path in _overlay_files(image):
                tar.add(str(path), arcname=str(path.relative_to(root)))
    return buffer.getvalue()


def _import(docker_host: str, name: str, rootfs: bytes, digest: str) -> None:
    argv = [
        "docker",
        "-H",
        docker_host,
        "import",
        "--change",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        "--change",
        'CMD ["sh"]',
        "--change",
        f"LABEL {DIGEST_LABEL}={digest}",
        "-",
        name,
    ]
    result = subprocess.run(argv, input=rootfs, capture_output=True, check=False)
    if result.returncode != 0:
        raise ImageError(f"docker import of {name} failed: {result.stderr.decode().strip()}")
