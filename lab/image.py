"""The lab's bridge VM image: a Debian 12 root that boots with systemd as PID 1.

Built once by mmdebstrap from the Debian archive and cached like the SoftEther build:
`$HYBRID_IMAGE_CACHE` (default /var/cache/hybrid-cloud/images) / `debian12-<hash>`, the hash
over everything that decides the image's contents (packages, the files written into it), so
another checkout or CI finds it. A booted lab machine (lab/vm.py) puts a writable layer of its
own over it; the image itself is never written.

What it holds is what a Debian 12 cloud image has that the bridge's boot uses (systemd,
sshd, cloud-init, iproute2, ping, nftables, sudo), plus what the lab needs because its
namespaces reach no package mirror (the README's "What is rehearsed" says it):
- the packages the install script would fetch (the build tools; Debian's SoftEther for
  `source: debian`), preinstalled, so the script's own `dpkg -s` check passes offline;
- an empty apt source list: `package_update` succeeds with nothing to fetch;
- cloud-init's datasource pinned to NoCloud (the seed the lab writes), its network stage
  off (the lab's namespace is the hypervisor's network, configured from outside);
- no SSH host keys and no machine id (a cloud image has none: the first boot makes them,
  or cloud-init writes the keys the user data gives), Debian's SoftEther units disabled (a
  cloud image has no SoftEther; the project's unit from the user data is the one that runs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from components.cloudinit import BUILD_PACKAGES, DEBIAN_PACKAGES

from .proc import LabError, sh
from .softether_build import locked

CACHE_ENV = "HYBRID_IMAGE_CACHE"
MIRROR_ENV = "HYBRID_DEBIAN_MIRROR"
DEFAULT_CACHE = Path("/var/cache/hybrid-cloud/images")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
BUILD_TIMEOUT_S = 1800.0
# What a Debian 12 cloud image has that a bridge's boot uses.
CLOUD_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "cloud-init", "sudo",
    "iproute2", "iputils-ping", "procps", "ca-certificates", "netbase", "nftables", "locales",
)  # fmt: skip
# Only the lab: what the install script would download, for a lab with no package mirror.
OFFLINE_PACKAGES = (*BUILD_PACKAGES, *DEBIAN_PACKAGES)
# Files written into the image (path -> content); part of the cache key.
FILES = {
    "etc/cloud/cloud.cfg.d/90-hybrid-lab.cfg": (
        "# hybrid-cloud lab: the seed in /var/lib/cloud/seed/nocloud; the network is the lab's.\n"
        "datasource_list: [NoCloud, None]\n"
        "network: {config: disabled}\n"
    ),
    "etc/apt/sources.list": "# hybrid-cloud lab: no package mirror inside the lab\n",
    "etc/machine-id": "",
    # cloud-init's locale module sets Debian's default, en_US.UTF-8: generated in the image.
    "etc/locale.gen": "en_US.UTF-8 UTF-8\n",
}
# Removed from the image after the packages are in (globs, relative to the root).
REMOVE = (
    "etc/ssh/ssh_host_*",
    "etc/apt/sources.list.d/*",
    "var/lib/dbus/machine-id",
    "etc/systemd/system/multi-user.target.wants/softether-*",
)
COMPLETE = "hybrid-image-complete"  # written last, after the atomic rename's content is whole


@dataclass(frozen=True)
class Image:
    root: Path
    key: str


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def image_key() -> str:
    """`debian12-<hash>` of everything that decides the image's contents."""
    parts = [
        SUITE,
        *CLOUD_PACKAGES,
        *OFFLINE_PACKAGES,
        *REMOVE,
        *(f"{k}={v}" for k, v in sorted(FILES.items())),
    ]
    return f"debian12-{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:12]}"


def cached() -> Image | None:
    """The image if it is built (nothing is built)."""
    key = image_key()
    root = cache_root() / key / "root"
    return Image(root, key) if (root / COMPLETE).exists() else None


def image(say: Callable[[str], None] = print) -> Image:
    """The cached image, built first if missing (one builder per key on the machine)."""
    got = cached()
    if got is not None:
        return got
    key = image_key()
    with locked(cache_root() / f".{key}.lock"):
        got = cached()
        if got is None:
            build(cache_root() / key, say)
            got = cached()
    if got is None:
        raise LabError(f"the lab's image build left nothing in {cache_root() / key}")
    return got


def build(target: Path, say: Callable[[str], None]) -> None:
    """mmdebstrap the image into a scratch directory, finish it, rename it to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    scratch.chmod(0o755)
    mirror = os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    say(f"building the lab's Debian 12 image into {target} from {mirror} (log: build.log)")
    t0 = time.monotonic()
    try:
        root = scratch / "root"
        log = scratch / "build.log"
        argv = [
            "mmdebstrap", "--variant=apt", "--mode=root", "--format=directory",
            f"--include={','.join((*CLOUD_PACKAGES, *OFFLINE_PACKAGES))}",
            SUITE, str(root), mirror,
        ]  # fmt: skip
        with log.open("w") as out:
            try:
                res = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired:
                raise LabError(
                    f"the lab's image: mmdebstrap not done within {BUILD_TIMEOUT_S:.0f} s"
                ) from None
        if res.returncode != 0:
            tail = log.read_text().strip().splitlines()[-5:]
            raise LabError(
                f"the lab's image: mmdebstrap exited {res.returncode}: {' / '.join(tail)}"
            )
        for pattern in REMOVE:
            for path in root.glob(pattern):
                path.unlink()
        for rel, content in FILES.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        sh("chroot", str(root), "locale-gen", timeout=300)
        (scratch / "build-seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
        (root / COMPLETE).write_text(f"{target.name}\n")
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    say(f"the lab's image is built ({time.monotonic() - t0:.0f} s)")


def main() -> int:
    """`python -m lab.image`: build (or find) the lab's image."""
    t0 = time.monotonic()
    try:
        got = image()
    except LabError as e:
        print(f"error: {e}")
        return 1
    print(f"the lab's image {got.key} in {got.root} ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
