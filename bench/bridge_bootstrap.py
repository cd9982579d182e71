"""Benchmark: a bridge VM's first-boot bootstrap, on ONE core, in a fresh Debian 12 root.

What cloud-init runs before sshd opens on a bridge (components/cloudinit.py): `apt-get
update` (package_update), then the install script: apt-get install of the build packages,
clone, pinned-commit check, submodules, build, install. Here: a minimal Debian 12 root made
by debootstrap (smaller than a cloud image, so more to install: conservative), entered with
chroot in a private mount namespace, pinned to one core with taskset (a B1ls has one vCPU),
packages from the Debian archive, SoftEther from HYBRID_SOFTETHER_MIRROR if set. Prints each
part's wall time; components/node.py derives BRIDGE_CONNECT_DEADLINE_S from the total.
The root is deleted at the end. Needs root. Not a test.

    python bench/bridge_bootstrap.py
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.cloudinit import INSTALL_SCRIPT, install_script
from lab.softether_build import MIRROR_ENV
from topology import SoftEtherOptions


def timed(argv: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> float:
    t0 = time.monotonic()
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"{shlex.join(argv[:6])}... exited {res.returncode}: {' / '.join(tail)}")
    return time.monotonic() - t0


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="hc-bootstrap-", dir="/var/tmp"))
    rows: list[tuple[str, str]] = []
    try:
        t = timed(["debootstrap", "--variant=minbase", "bookworm", str(root), "http://deb.debian.org/debian"])
        rows.append(("debootstrap (the image; not part of a boot)", f"{t:.0f} s"))
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        script = root / INSTALL_SCRIPT.lstrip("/")
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(install_script(SoftEtherOptions()))
        script.chmod(0o755)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
        if tar := os.environ.get(MIRROR_ENV):
            shutil.copy(tar, root / "mirror.tar")
            (root / "mirror").mkdir()
            timed(["tar", "-C", str(root / "mirror"), "-xf", str(root / "mirror.tar")])
            env |= {
                "GIT_CONFIG_COUNT": "2",
                "GIT_CONFIG_KEY_0": "url.file:///mirror/.insteadOf",
                "GIT_CONFIG_VALUE_0": "https://github.com/",
                "GIT_CONFIG_KEY_1": "protocol.file.allow",
                "GIT_CONFIG_VALUE_1": "always",
            }

        def in_root(command: str) -> list[str]:
            mounts = f"mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev"
            return [
                "unshare", "-m", "--propagation", "private", "sh", "-c",
                f"{mounts} && exec taskset -c 0 chroot {root} sh -c {shlex.quote(command)}",
            ]  # fmt: skip

        update = timed(in_root("apt-get -q update"), env)
        rows.append(("apt-get update (cloud-init package_update)", f"{update:.0f} s"))
        install = timed(in_root(INSTALL_SCRIPT), env)
        rows.append(("install script: packages, clone, build, install (1 core)", f"{install:.0f} s"))
        rows.append(("bootstrap total (before sshd opens)", f"{update + install:.0f} s"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    w = max(len(a) for a, _ in rows)
    print(f"one core of {os.cpu_count()} (shared machine), load {os.getloadavg()[0]:.1f}")
    for a, b in rows:
        print(f"{a:<{w}}  {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
