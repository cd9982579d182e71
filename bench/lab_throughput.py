"""Benchmark: TCP throughput home host -> AWS host, side by side in one run (iperf3):

  (a) through the tunnels with SoftEther's stock settings (UDP acceleration on, 8 TCP
      connections per cascade),
  (b) through the tunnels with the project's defaults (`network.softether`: UDP acceleration
      off on the transit hub, 1 TCP connection per cascade),
  (c) a plain veth between the same two namespaces (the machine's limit; addresses from the
      benchmarking range 198.18.0.0/15, inside the namespaces only).

Goal with encryption on: (b) >= 1 Gbit/s and >= 1.2x (a). The (a) and (b) labs run side by
side and are measured in alternation; medians are compared. Both in a directory of their own,
torn down at the end. Needs root. Not a test.

    python bench/lab_throughput.py [--seconds 5] [--repeat 3] [--explore]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.down import down
from lab.lab import open_lab
from lab.layout import Host, Layout
from lab.proc import in_ns, run
from lab.state import remove_dirs
from lab.up import up
from topology import read_stack_file, stack_file

ROOT = Path("/run/hybrid-lab-bench")
VETH = ("bench0", "bench1", "198.18.0.1/30", "198.18.0.2")


def quiet(_: str) -> None:
    pass


def iperf(src: str, dst_ns: str, address: str, seconds: int) -> float:
    """Gbit/s received by an iperf3 server in `dst_ns` from a client in `src`."""
    return iperf_json(src, dst_ns, address, seconds)["end"]["sum_received"]["bits_per_second"] / 1e9


def iperf_json(src: str, dst_ns: str, address: str, seconds: int) -> dict[str, Any]:
    """iperf3's JSON report of a TCP run from `src` to a server in `dst_ns` at `address`."""
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
        return json.loads(out)
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


def veth(home: Host, aws: Host) -> str:
    """A plain veth between the two hosts' namespaces; returns the far end's address."""
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
    return peer


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--explore",
        action="store_true",
        help="also each project setting alone (UDP acceleration off; one TCP connection)",
    )
    args = ap.parse_args()
    # Labs side by side, measured in alternation, so a change of the machine's load hits all
    # alike.
    root = ROOT / secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="hc-bench-"))
    settings_of: dict[str, dict[str, object]] = {
        "stock": {"udpAcceleration": True, "maxConnections": 8},
        "project": {},
    }
    if args.explore:
        settings_of["udp-off"] = {"udpAcceleration": False, "maxConnections": 8}
        settings_of["1-tcp"] = {"udpAcceleration": True, "maxConnections": 1}
    variants = {k: (v, work / k / f"Pulumi.{k}.yaml") for k, v in settings_of.items()}
    results: dict[str, list[float]] = {k: [] for k in [*variants, "veth"]}
    pairs: dict[str, tuple[Host, Host]] = {}
    try:
        for name, (settings, path) in variants.items():
            path.parent.mkdir(parents=True)
            r = up(str(bench_stack(settings, path)), say=quiet, root=root)
            assert r.matrix_ok, f"the {name} lab's matrix is not green"
            pairs[name] = hosts(open_lab(str(path), root).layout)
            print(f"{name} lab up in {r.seconds:.1f} s")
        home, aws = pairs["project"]
        peer = veth(home, aws)
        print(
            f"{home.site} {home.address} -> {aws.site} {aws.address}, {args.repeat} x {args.seconds} s each"
        )
        for _ in range(args.repeat):
            for name in variants:
                h, a = pairs[name]
                results[name].append(iperf(h.ns, a.ns, str(a.address), args.seconds))
            results["veth"].append(iperf(home.ns, aws.ns, peer, args.seconds))
    finally:
        for _, path in variants.values():
            down(str(path), say=quiet, root=root)
        remove_dirs(root)
        shutil.rmtree(work, ignore_errors=True)
    best = {k: statistics.median(v) for k, v in results.items() if v}
    for k, v in results.items():
        print(f"{k:>8}: {' '.join(f'{x:.2f}' for x in v)} Gbit/s (median {best.get(k, 0):.2f})")
    if {"stock", "project", "veth"} <= set(best):
        print(
            f"project/stock {best['project'] / best['stock']:.2f}x (goal >= 1.2x); "
            f"project {best['project']:.2f} Gbit/s (goal >= 1); "
            f"project/veth {best['project'] / best['veth']:.3f}; stock/veth {best['stock'] / best['veth']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
