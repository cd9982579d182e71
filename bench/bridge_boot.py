"""Benchmark: a bridge VM's first boot, booted in the lab, per phase, at the smallest sizes' memory.

The lab's Debian 12 image (lab/image.py) boots as a machine (lab/vm.py) from the bridge's very
user data (the stack's `bridge_cloud_config`, with keys of this run), WITHOUT the lab's
prebuilt SoftEther: cloud-init runs the install script, which clones and builds the pinned
release as on a cloud VM. On one core (nspawn --cpu-affinity) and a memory limit per run (the
machine's cgroup), for Azure B1ls and AWS t4g.nano's 512 MiB. What differs from the VM:
- the source comes from $HYBRID_SOFTETHER_MIRROR (the offline mirror, bound into the machine
  read-only, a URL rewrite in its /etc/gitconfig): the lab's namespaces reach no GitHub;
- the build packages are in the image (no package mirror inside the lab); on a VM apt-get
  installs them first (measured apart by bench/bridge_bootstrap.py of earlier rounds: 21 s);
- no swap: the script's swap file needs a block device the machine does not have, and this
  host has none; /proc/meminfo is the host's, so the script does not even try;
- the limit counts the machine's processes only (the VM's kernel is outside it), so the run
  at the full 512 MiB is the optimistic end and the lower limits stand for a real VM's share.

First a boot with the prebuilt tree measures what the booted image itself uses (memory after
cloud-init is done). Per run: boot -> cloud-init's final stage (runcmd, the install script)
-> sshd open (installed: cloud-init opens it then) -> converged (the bridge's own spec, no
home server yet). Needs root and the mirror. Not a test.

    HYBRID_SOFTETHER_MIRROR=../shared/softether/upstream-mirror-5.2.5188.tar \
      python bench/bridge_boot.py [--memory 512,448,384] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from ipaddress import IPv4Interface
from pathlib import Path

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.node import BRIDGE_CONNECT_DEADLINE_S
from lab import image
from lab.node import Node, Testbed, netns_socket
from lab.proc import sh
from lab.softether_build import MIRROR_ENV
from lab.vm import VmNode
from softether.derive import derive, secret_names
from softether.session import Session
from softether.spec import SshTarget
from softether.transport import ssh_transport
from topology import load_stack, plan_routes
from topology.clouds import bridge_image

MIB = 1024 * 1024
ADDRESS = "198.51.100.2/24"
GITCONFIG = (
    "[url \"file:///srv/hybrid-mirror/\"]\n\tinsteadOf = https://github.com/\n"
    "[protocol \"file\"]\n\tallow = always\n"
)


def machine(bed: Testbed, name: str, *, prebuilt: bool, memory: int | None, mirror: Path | None) -> VmNode:
    """A bridge machine on the bed (not booted), its user data the stack's with this bed's keys."""
    site = load_stack("dev").network.sites[0]
    node = VmNode(
        name, "bridge", f"hc-{bed.run}-{name}", bed.root / name, IPv4Interface(ADDRESS),
        softether_root=bed.softether_root if prebuilt else None, image=image.image().root,
        made_from=bridge_image(site.cloud, site.bridge_size), memory_max=memory, cpus="0",
        binds=((mirror, "/srv/hybrid-mirror"),) if mirror is not None else (),
    )  # fmt: skip
    bed.attach(node)
    if mirror is not None:  # the lab's machines reach no GitHub: the offline mirror instead
        etc = node.vm.upper / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "gitconfig").write_text(GITCONFIG)
    return node


def ssh_open(op: Node, host: str) -> bool:
    with contextlib.suppress(OSError, TimeoutError):
        netns_socket(op.netns, host, 22, 1.0).close()
        return True
    return False


def run(bed: Testbed, op: Node, name: str, *, prebuilt: bool, memory: int | None, mirror: Path | None, timeout: float) -> dict[str, float | int | str]:
    node = machine(bed, name, prebuilt=prebuilt, memory=memory, mirror=mirror)
    t0 = time.time()
    node.start(bed.client_pub + "\n")
    vm = node.vm
    row: dict[str, float | int | str] = {}
    deadline = time.monotonic() + timeout
    peak = 0
    while time.monotonic() < deadline:
        peak = max(peak, vm.memory() or 0)
        final = vm.cloud_init().get("modules-final")
        if "runcmd" not in row and isinstance(final, dict) and final.get("start"):
            row["runcmd"] = float(final["start"]) - t0
        if ssh_open(op, node.host):
            row["sshd"] = time.time() - t0
            break
        if not vm.running:
            row["failed"] = "the machine stopped"
            break
        time.sleep(1.0)
    else:
        row["failed"] = f"sshd not open after {timeout:.0f} s"
    row["oom_kills"] = vm.oom_kills()
    row["peak_mib"] = round(peak / MIB)
    if "sshd" in row:
        net = load_stack("dev").network
        specs = derive(net, plan_routes(net), {n: f"bench{i}" for i, n in enumerate(secret_names(net))}, home_ready=False)
        target = SshTarget(
            host=node.host, host_key=node.host_key, private_key=SecretStr(bed.client_key),
            connect_deadline_s=BRIDGE_CONNECT_DEADLINE_S, refused_deadline_s=BRIDGE_CONNECT_DEADLINE_S,
        )  # fmt: skip
        transport = ssh_transport(target, lambda h, p, t: netns_socket(op.netns, h, p, t))
        try:
            Session(transport, specs.bridges[net.sites[0].name]).converge()
            row["converged"] = time.time() - t0
        finally:
            transport.close()
        row["memory_mib"] = round((vm.memory() or 0) / MIB)
        done = vm.cloud_init_done()
        if done is not None:
            row["cloud_init"] = done
    node.stop()
    del bed.nodes[node.name]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--memory", default="512,448,384", help="MiB limits of the machine, one run each")
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args()
    tar = os.environ.get(MIRROR_ENV)
    if not tar:
        print(f"set {MIRROR_ENV} to the offline mirror tar: the lab's machines reach no GitHub")
        return 2
    limits = [int(x) for x in args.memory.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="hc-boot-bench-", dir="/var/tmp") as tmp:
        mirror = Path(tmp) / "mirror"
        mirror.mkdir()
        sh("tar", "-C", str(mirror), "-xf", tar, timeout=120)
        with Testbed(Path(tmp) / "bed", source="upstream") as bed:
            op = Node("op", "bridge", f"hc-{bed.run}-op", bed.root / "op", IPv4Interface("198.51.100.9/24"))
            bed.attach(op)
            print(f"one core of {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; image {image.image().key}")
            base = run(bed, op, "base", prebuilt=True, memory=4096 * MIB, mirror=None, timeout=300)
            print(
                f"booted image with the build in it (the lab's boot): sshd open {base.get('sshd', 0):.1f} s, "
                f"cloud-init done {base.get('cloud_init', 0):.1f} s, converged {base.get('converged', 0):.1f} s, "
                f"the machine uses {base.get('memory_mib')} MiB (peak {base.get('peak_mib')} MiB)"
            )
            for i, limit in enumerate(limits):
                r = run(bed, op, f"b{i}", prebuilt=False, memory=limit * MIB, mirror=mirror, timeout=args.timeout)
                phases = ", ".join(f"{k} {r[k]:.0f} s" for k in ("runcmd", "sshd", "converged") if k in r)
                print(
                    f"{limit} MiB, 1 core, full build: {phases or r.get('failed')}; peak {r['peak_mib']} MiB, "
                    f"{r['oom_kills']} OOM kills" + (f"; {r['failed']}" if "failed" in r else "")
                )
    print(f"the bridges' SSH deadline (components/node.py): {BRIDGE_CONNECT_DEADLINE_S:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
