"""Benchmark: TCP throughput home host -> AWS host, side by side in one run (iperf3):

  (a) through the tunnels with SoftEther's stock settings (UDP acceleration on, 8 TCP
      connections per cascade),
  (b) through the tunnels with the project's defaults (`network.softether`: UDP acceleration
      off on the transit hub, 1 TCP connection per cascade),
  (c) a plain veth between the same two namespaces (the machine's limit; addresses from the
      benchmarking range 198.18.0.0/15, inside the namespaces only).

Goal with encryption on: (b) >= 1 Gbit/s and >= 1.2x (a). One lab in a directory of its own,
torn down at the end. Needs root. Not a test.

    python bench/lab_throughput.py [--seconds 5] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.down import down
from lab.layout import Host, Layout
from lab.netns import in_ns, run
from lab.state import remove_dirs
from lab.up import open_lab, up
from topology import read_stack_file, stack_file

ROOT = Path("/run/hybrid-lab-bench")
VETH = ("bench0", "bench1", "198.18.0.1/30", "198.18.0.2")


def quiet(_: str) -> None:
    pass


def iperf(src: str, dst_ns: str, address: str, seconds: int) -> float:
    """Gbit/s received by an iperf3 server in `dst_ns` from a client in `src`."""
    server = subprocess.Popen(
        in_ns(dst_ns, "iperf3", "-s", "-1", "-B", address),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):  # until the server listens (bounded)
            probe = subprocess.run(
                in_ns(dst_ns, "ss", "-ltn", "sport = :5201"),
                capture_output=True,
                text=True,
                check=False,
            )
            if "5201" in probe.stdout:
                break
            time.sleep(0.1)
        out = run(
            in_ns(src, "iperf3", "-c", address, "-t", str(seconds), "-J"), timeout=seconds + 30
        )
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        server.kill()
        server.wait(timeout=5)


def bench_stack(settings: dict[str, object], path: Path) -> Path:
    """A copy of the dev stack with `network.softether` replaced."""
    config = read_stack_file(stack_file("dev"))
    config["hybrid-cloud:network"]["softether"] = {
        **config["hybrid-cloud:network"].get("softether", {}),
        **settings,
    }
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return path


def hosts(layout: Layout) -> tuple[Host, Host]:
    home = layout.hosts[0]
    aws = next(h for h in layout.hosts if h.site == layout.sites[1])
    return home, aws


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    root = ROOT / secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="hc-bench-"))
    ref = str(work / "Pulumi.bench.yaml")
    results: dict[str, list[float]] = {"stock": [], "project": [], "veth": []}
    try:
        # Stock first, on a fresh lab: the hub then never had an ExtOption set.
        bench_stack({"udpAcceleration": True, "maxConnections": 8}, Path(ref))
        r = up(ref, say=quiet, root=root)
        layout = open_lab(ref, root).layout
        home, aws = hosts(layout)
        print(f"lab up {r.seconds:.1f} s; {home.site} {home.address} -> {aws.site} {aws.address}")
        assert r.matrix_ok, "the lab's matrix is not green"
        for _ in range(args.repeat):
            results["stock"].append(iperf(home.ns, aws.ns, str(aws.address), args.seconds))
        bench_stack({}, Path(ref))  # the project's defaults
        r = up(ref, say=quiet, root=root)
        assert r.matrix_ok, "the lab's matrix is not green after switching settings"
        for _ in range(args.repeat):
            results["project"].append(iperf(home.ns, aws.ns, str(aws.address), args.seconds))
        a, b, addr, peer = VETH
        run(
            [
                "ip",
                "link",
                "add",
                a,
                "netns",
                home.ns,
                "type",
                "veth",
                "peer",
                "name",
                b,
                "netns",
                aws.ns,
            ]
        )
        run(["ip", "-n", home.ns, "addr", "add", addr, "dev", a])
        run(["ip", "-n", aws.ns, "addr", "add", f"{peer}/30", "dev", b])
        run(["ip", "-n", home.ns, "link", "set", a, "up"])
        run(["ip", "-n", aws.ns, "link", "set", b, "up"])
        for _ in range(args.repeat):
            results["veth"].append(iperf(home.ns, aws.ns, peer, args.seconds))
    finally:
        down(ref, say=quiet, root=root)
        remove_dirs(root)
        shutil.rmtree(work, ignore_errors=True)
    best = {k: max(v) for k, v in results.items() if v}
    for k, v in results.items():
        print(f"{k:>8}: {' '.join(f'{x:.2f}' for x in v)} Gbit/s (best {best.get(k, 0):.2f})")
    if len(best) == 3:
        print(
            f"project/stock {best['project'] / best['stock']:.2f}x (goal >= 1.2x); "
            f"project {best['project']:.2f} Gbit/s (goal >= 1); "
            f"project/veth {best['project'] / best['veth']:.3f}; stock/veth {best['stock'] / best['veth']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
