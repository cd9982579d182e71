"""Benchmark: the project's SoftEther path against the VPN a user would pick instead, side by side.

In one run, between the same two host namespaces (the lab's home host and its AWS host) over
the same internet namespace (the lab's `inet`), measured in alternation, medians of N repeats:

  project    the reference lab's tunnels with the project's settings (home host -> AWS host);
  stock      a second lab with SoftEther's stock settings (UDP acceleration on, 8 connections);
  ovpn-tcp   OpenVPN 2.6 site-to-site over TCP, AES-256-GCM, certificates pinned by
             fingerprint (`--peer-fingerprint`, no CA), `--dh none`;
  ovpn-udp   the same over UDP;
  veth       a plain veth between the two hosts (the machine's limit).

OpenVPN runs on two gateway namespaces of this benchmark's own, one beside each host: each has
a veth to its host and one into the lab's internet switch, like the lab's VPN nodes. Its
addresses come from the benchmarking range 198.18.0.0/15 and exist only inside namespaces.

Printed per variant: Gbit/s (iperf3, TCP), the ratio to the project's SoftEther, and the CPU
seconds the VPN processes used per gigabit carried (utime+stime from /proc/PID/stat; the
SoftEther processes of the two lab nodes on the path, or the two openvpn processes), since the
cloud bridges are the smallest VMs and CPU is what they lack. Needs root and Debian's openvpn.
Not a test. Everything it makes is torn down at the end.

    python bench/tunnel_peers.py [--seconds 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lab_throughput import bench_stack, hosts, iperf_json, quiet, veth
from lab.down import down
from lab.lab import open_lab
from lab.layout import SWITCH, Host
from lab.netns import delete
from lab.proc import in_ns, pids_in, run
from lab.state import remove_dirs
from lab.up import up

ROOT = Path("/run/hybrid-lab-bench")
TICK = os.sysconf("SC_CLK_TCK")
# 198.18.0.0/30 is the plain veth's (bench/lab_throughput.py).
HOME_SIDE = ("198.18.1.1/24", "198.18.1.2/24")  # gateway A, home host
AWS_SIDE = ("198.18.2.1/24", "198.18.2.2/24")  # gateway B, AWS host
PUBLIC = ("198.51.100.201/24", "198.51.100.202/24")  # A, B on the lab's internet
TUNNELS = {"ovpn-tcp": ("tcp", 1194, "tun0", "198.18.9.1", "198.18.9.2"),
           "ovpn-udp": ("udp", 1195, "tun1", "198.18.9.5", "198.18.9.6")}  # fmt: skip


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (and what they reaped), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def softether_pids(namespaces: list[str]) -> list[int]:
    return [
        p
        for ns in namespaces
        for p in pids_in(ns)
        if Path(f"/proc/{p}/comm").read_text().strip() in {"vpnserver", "vpnbridge"}
    ]


@dataclass
class Sample:
    gbps: float
    cpu_per_gbit: float


def measure(src: Host, dst: Host, address: str, seconds: int, pids: list[int]) -> Sample:
    before = cpu_seconds(pids)
    end = iperf_json(src.ns, dst.ns, address, seconds)["end"]
    used = cpu_seconds(pids) - before
    received = end["sum_received"]
    gigabits = received["bytes"] * 8 / 1e9
    return Sample(received["bits_per_second"] / 1e9, used / gigabits if pids else 0.0)


@dataclass
class OpenVpnPair:
    """Two gateway namespaces joined by OpenVPN over the lab's internet (TCP and UDP)."""

    prefix: str
    work: Path
    procs: list[subprocess.Popen[bytes]]

    @property
    def gw_a(self) -> str:
        return f"{self.prefix}-oa"

    @property
    def gw_b(self) -> str:
        return f"{self.prefix}-ob"

    def start(self, inet: str, home: Host, aws: Host) -> None:
        a, b = self.gw_a, self.gw_b
        for ns in (a, b):
            run(["ip", "netns", "add", ns])
            run(in_ns(ns, "ip", "link", "set", "lo", "up"))
            run(in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
        # Host side: gateway <-> host; internet side: gateway <-> the lab's internet switch.
        for gw, host, (gw_addr, host_addr), far in (
            (a, home, HOME_SIDE, "198.18.2.0/24"),
            (b, aws, AWS_SIDE, "198.18.1.0/24"),
        ):
            run(["ip", "link", "add", "lan", "netns", gw, "type", "veth", "peer", "name", "ovpn0", "netns", host.ns])  # fmt: skip
            run(in_ns(gw, "ip", "addr", "add", gw_addr, "dev", "lan"))
            run(in_ns(gw, "ip", "link", "set", "lan", "up"))
            run(in_ns(host.ns, "ip", "addr", "add", host_addr, "dev", "ovpn0"))
            run(in_ns(host.ns, "ip", "link", "set", "ovpn0", "up"))
            run(in_ns(host.ns, "ip", "route", "replace", far, "via", gw_addr.split("/")[0]))
        for gw, public in ((a, PUBLIC[0]), (b, PUBLIC[1])):
            end = f"ovp{gw[-1]}"
            run(["ip", "link", "add", "wan", "netns", gw, "type", "veth", "peer", "name", end, "netns", inet])  # fmt: skip
            run(in_ns(gw, "ip", "addr", "add", public, "dev", "wan"))
            run(in_ns(gw, "ip", "link", "set", "wan", "up"))
            run(in_ns(inet, "ip", "link", "set", end, "master", SWITCH, "up"))
        fingerprints = {gw: self.certificate(gw) for gw in (a, b)}
        for proto, port, tun, ip_a, ip_b in TUNNELS.values():
            # OpenVPN takes `--option value`, never `--option=value`.
            server = ["--proto", f"{proto}-server" if proto == "tcp" else proto, "--lport", str(port), "--tls-server", "--dh", "none"]  # fmt: skip
            client = ["--proto", f"{proto}-client" if proto == "tcp" else proto, "--remote", PUBLIC[0].split("/")[0], "--rport", str(port), "--nobind", "--tls-client"]  # fmt: skip
            for gw, role, local, remote, peer in (
                (a, server, ip_a, ip_b, b),
                (b, client, ip_b, ip_a, a),
            ):
                argv = [
                    "openvpn", "--dev", tun, "--dev-type", "tun", "--ifconfig", local, remote,
                    "--cert", str(self.work / f"{gw}.crt"), "--key", str(self.work / f"{gw}.key"),
                    "--peer-fingerprint", fingerprints[peer], "--data-ciphers", "AES-256-GCM",
                    "--verb", "1", *role,
                ]  # fmt: skip
                log = (self.work / f"{gw}-{tun}.log").open("wb")
                self.procs.append(subprocess.Popen(in_ns(gw, *argv), stdout=log, stderr=log))
        for _, _, tun, _, ip_b in TUNNELS.values():
            wait_ping(a, ip_b, f"OpenVPN {tun}", self.work)

    def certificate(self, gw: str) -> str:
        key, crt = self.work / f"{gw}.key", self.work / f"{gw}.crt"
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(crt), "-subj", f"/CN={gw}", "-days", "1"])  # fmt: skip
        out = run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(crt)])
        return out.strip().split("=", 1)[1]

    def route_via(self, variant: str) -> None:
        """Send the two hosts' traffic through this variant's tunnel."""
        _, _, tun, _, _ = TUNNELS[variant]
        run(in_ns(self.gw_a, "ip", "route", "replace", "198.18.2.0/24", "dev", tun))
        run(in_ns(self.gw_b, "ip", "route", "replace", "198.18.1.0/24", "dev", tun))

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        delete([self.gw_a, self.gw_b])


def wait_ping(ns: str, address: str, what: str, work: Path, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ok = subprocess.run(in_ns(ns, "ping", "-c1", "-W1", address), capture_output=True, check=False)
        if ok.returncode == 0:
            return
        time.sleep(0.5)
    logs = "\n".join(p.read_text()[-400:] for p in work.glob("*.log"))
    raise SystemExit(f"{what}: {address} does not answer within {seconds:.0f} s\n{logs}")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("openvpn") is None:
        raise SystemExit("openvpn is not installed (Debian package openvpn, in packages.apt)")
    root = ROOT / secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="hc-bench-"))
    stacks = {
        "project": work / "project" / "Pulumi.project.yaml",
        "stock": work / "stock" / "Pulumi.stock.yaml",
    }
    settings = {"project": {}, "stock": {"udpAcceleration": True, "maxConnections": 8}}
    ovpn = OpenVpnPair(f"hc-b{secrets.token_hex(2)}", work, [])
    results: dict[str, list[Sample]] = {}
    try:
        labs = {}
        for name, path in stacks.items():
            path.parent.mkdir(parents=True)
            r = up(str(bench_stack(settings[name], path)), say=quiet, root=root)
            if not r.matrix_ok:
                raise SystemExit(f"the {name} lab's matrix is not green")
            labs[name] = open_lab(str(path), root).layout
            print(f"{name} lab up in {r.seconds:.1f} s")
        home, aws = hosts(labs["project"])
        inet = next(n.name for n in labs["project"].namespaces if n.key == "inet")
        ovpn.start(inet, home, aws)
        peer = veth(home, aws)

        def softether(name: str) -> Callable[[], Sample]:
            h, a = hosts(labs[name])
            nodes = [n.ns for n in labs[name].nodes if n.site in (h.site, a.site)]
            return lambda: measure(h, a, str(a.address), args.seconds, softether_pids(nodes))

        def openvpn(name: str) -> Callable[[], Sample]:
            def run_it() -> Sample:
                ovpn.route_via(name)
                pids = [int(p) for gw in (ovpn.gw_a, ovpn.gw_b) for p in pids_in(gw)]
                return measure(home, aws, AWS_SIDE[1].split("/")[0], args.seconds, pids)

            return run_it

        variants = {
            "project": softether("project"),
            "stock": softether("stock"),
            "ovpn-tcp": openvpn("ovpn-tcp"),
            "ovpn-udp": openvpn("ovpn-udp"),
            "veth": lambda: measure(home, aws, peer, args.seconds, []),
        }
        results = {k: [] for k in variants}
        print(f"{home.site} {home.ns} -> {aws.site} {aws.ns}: {args.repeat} x {args.seconds} s each, in alternation")
        for _ in range(args.repeat):
            for name, fn in variants.items():
                results[name].append(fn())
    finally:
        ovpn.stop()
        for path in stacks.values():
            if path.exists():
                down(str(path), say=quiet, root=root)
        remove_dirs(root)
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    return 0


def medians(results: dict[str, list[Sample]]) -> tuple[dict[str, float], dict[str, float]]:
    """Per variant with samples: the median Gbit/s and the median CPU s per Gbit."""
    gbps = {k: statistics.median(s.gbps for s in v) for k, v in results.items() if v}
    cpu = {k: statistics.median(s.cpu_per_gbit for s in v) for k, v in results.items() if v}
    return gbps, cpu


def report(results: dict[str, list[Sample]]) -> None:
    gbps, cpu = medians(results)
    base = gbps.get("project") or 1.0
    print(f"{'variant':>9} {'Gbit/s':>7} {'x project':>9} {'CPU s/Gbit':>10}  samples")
    for k, v in results.items():
        cpu_text = f"{cpu[k]:10.2f}" if k != "veth" else f"{'-':>10}"
        print(f"{k:>9} {gbps[k]:7.2f} {gbps[k] / base:9.2f} {cpu_text}  {' '.join(f'{s.gbps:.2f}' for s in v)}")
    if {"project", "ovpn-tcp", "ovpn-udp"} <= set(gbps):
        print(
            f"goals: project/ovpn-tcp {gbps['project'] / gbps['ovpn-tcp']:.2f}x (>= 1.5), "
            f"project/ovpn-udp {gbps['project'] / gbps['ovpn-udp']:.2f}x (>= 1.0), "
            f"project {gbps['project']:.2f} Gbit/s (>= 0.6), CPU s/Gbit project {cpu['project']:.2f} "
            f"vs ovpn-tcp {cpu['ovpn-tcp']:.2f} / ovpn-udp {cpu['ovpn-udp']:.2f} (fewer)"
        )


if __name__ == "__main__":
    sys.exit(main())
