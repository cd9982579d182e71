"""`hybrid status --stack NAME --outputs FILE|-`: is the deployed network healthy right now?

Reads what `pulumi stack output --json --show-secrets` prints (or `hybrid lab outputs`),
probes every node at once (softether/health.py) and prints one report: text, `--json`, or
`--prometheus` (OpenMetrics text, for node_exporter's textfile collector). Exit 0 healthy,
1 degraded, 2 a node unreachable (3: the outputs or the key cannot be used).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from softether.failover.status import by_site
from softether.outputs import Outputs, OutputsError, parse_outputs

from .args import MAX_KEY_BYTES, read_input

if TYPE_CHECKING:  # the SSH stack (paramiko) loads when status runs, not for every `hybrid` command
    from softether.health import Report, SockFactory

DEFAULT_KEY = "~/.ssh/hybrid-cloud"
KEY_ENV = "HYBRID_OPERATOR_KEY"
MAX_COUNT = 10_000
MAX_OUTPUTS_BYTES = 4 << 20  # a stack's outputs are tens of KiB


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="health of a deployed stack: nodes, tunnels (by traffic), drift")
    p.add_argument("--stack", default="dev", help="the stack the outputs belong to (default: dev)")
    p.add_argument(
        "--outputs",
        required=True,
        metavar="FILE|-",
        help="what `pulumi stack output --json --show-secrets` printed (- reads stdin)",
    )
    p.add_argument(
        "--key",
        help=f"the operator's private key file (default: ${KEY_ENV}, the lab's key, {DEFAULT_KEY})",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable report")
    fmt.add_argument("--prometheus", action="store_true", help="OpenMetrics text (ends with # EOF)")
    p.add_argument("--watch", type=float, metavar="SECONDS", help="repeat every SECONDS")
    p.add_argument("--count", type=int, default=10, help="how many reports with --watch (default 10)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from softether.health import check

    try:
        outputs, key, sock = prepare(args)
    except OutputsError as e:
        for line in e.problems:
            print(f"hybrid status: {line}", file=sys.stderr)
        return 3
    rounds = args.count if args.watch is not None else 1
    code = 0
    for i in range(rounds):
        t0 = time.monotonic()
        report = check(outputs, key, sock)
        print_report(report, args, print)
        sys.stdout.flush()
        code = report.exit_code
        if args.watch is not None and i + 1 < rounds:
            time.sleep(max(0.0, args.watch - (time.monotonic() - t0)))
    return code


def prepare(args: argparse.Namespace) -> tuple[Outputs, str, SockFactory | None]:
    """Outputs, operator key and socket factory, or every problem with them (one line each)."""
    if args.watch is not None and not (0 < args.watch <= 86400):
        raise OutputsError([f"--watch: {args.watch} is not between 0 and 86400 seconds"])
    if not 1 <= args.count <= MAX_COUNT:
        raise OutputsError([f"--count: {args.count} is not between 1 and {MAX_COUNT}"])
    source = "stdin" if args.outputs == "-" else args.outputs
    try:
        text = read_input(args.outputs, "--outputs", MAX_OUTPUTS_BYTES)
    except ValueError as e:
        raise OutputsError([str(e)]) from None
    outputs = parse_outputs(text, source)
    if outputs.status.stack != args.stack:
        raise OutputsError(
            [f"--stack: {args.stack!r}, but the outputs are of stack {outputs.status.stack!r}"]
        )
    import paramiko

    from softether.transport import load_private_key, parse_public_key

    for site, node in outputs.status.nodes.items():
        if node.ssh.host_key is not None:
            try:
                parse_public_key(node.ssh.host_key)
            except (ValueError, paramiko.SSHException) as e:
                raise OutputsError(
                    [
                        f"{source}: status.nodes.{site}.ssh.hostKey: {node.ssh.host_key[:40]!r} "
                        f"is not a public key ({e})"
                    ]
                ) from None
    key_file = args.key or os.environ.get(KEY_ENV)
    field = "--key" if args.key else KEY_ENV if key_file else "key"
    if key_file is None:
        key_file = outputs.lab.operator_key_file if outputs.lab else DEFAULT_KEY
    path = str(Path(key_file).expanduser())
    try:
        key = read_input(path, field, MAX_KEY_BYTES)
    except ValueError as e:
        hint = " (the operator key: pulumi stack export --show-secrets, see README)"
        raise OutputsError([f"{e}{hint}"]) from None
    try:
        load_private_key(key)
    except (ValueError, paramiko.SSHException) as e:
        raise OutputsError([f"{field}: {path}: not a private key ({e})"]) from None
    sock: SockFactory | None = None
    if outputs.lab is not None:
        from lab.node import netns_socket

        ns = outputs.lab.operator_namespace
        if not Path(f"/run/netns/{ns}").exists():
            raise OutputsError([f"{source}: lab.operatorNamespace: {ns} does not exist (lab down?)"])
        sock = lambda host, port, timeout: netns_socket(ns, host, port, timeout)  # noqa: E731
    return outputs, key, sock


def print_report(report: Report, args: argparse.Namespace, say: Callable[[str], None]) -> None:
    if args.json:
        say(json.dumps(to_json(report), indent=2))
    elif args.prometheus:
        say(prometheus(report).rstrip("\n"))
    else:
        from softether.health import text_lines

        for line in text_lines(report):
            say(line)


# ---- formats ------------------------------------------------------------------------------
def to_json(report: Report) -> dict[str, Any]:
    return {
        "stack": report.stack,
        "status": report.verdict.lower(),
        "exitCode": report.exit_code,
        "seconds": round(report.seconds, 3),
        "nodes": {
            n.site: {
                "role": n.role,
                "host": n.host,
                "reachable": n.reachable,
                "error": n.error or None,
                "version": n.version or None,
                "uptimeSeconds": n.uptime_s,
                "cascades": {c.name: {"status": c.status, "established": c.established} for c in n.cascades},
                "pings": {
                    p.to: {
                        "address": p.address,
                        "up": p.up,
                        "sent": p.sent,
                        "received": p.received,
                        "loss": round(p.loss, 3),
                        "rttSeconds": p.rtt_s,
                    }
                    for p in n.pings
                },
                "drift": list(n.drift),
                "credentials": list(n.credentials),
                "seconds": round(n.seconds, 3),
                "sshConnections": n.ssh_connections,
                "sshFailedAttempts": n.ssh_failed_attempts,
                "problems": n.problems,
                "failover": dict(n.failover) or None,
            }
            for n in report.nodes
        },
    }


def _labels(**kv: str) -> str:
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in kv.items()) + "}"


def prometheus(report: Report) -> str:
    """OpenMetrics text: one family per metric, `# EOF` last."""
    fam: dict[str, tuple[str, str, str, list[str]]] = {}

    def gauge(
        name: str, text: str, labels: dict[str, str], value: float | None, unit: str = ""
    ) -> None:
        entry = fam.setdefault(name, ("gauge", text, unit, []))
        if value is not None:
            entry[3].append(f"{name}{_labels(**labels)} {value:g}")

    s = report.stack
    gauge("hybrid_status", "0 healthy, 1 degraded, 2 unreachable", {"stack": s}, report.exit_code)
    for n in report.nodes:
        node = {"stack": s, "node": n.site, "role": n.role}
        gauge("hybrid_node_up", "1 if SSH and SoftEther answered", node, int(n.reachable and not n.error))
        if n.version:
            info = fam.setdefault("hybrid_softether", ("info", "SoftEther version", "", []))
            info[3].append(f"hybrid_softether_info{_labels(**node, version=n.version)} 1")
        gauge("hybrid_node_uptime_seconds", "SoftEther uptime", node, n.uptime_s, "seconds")
        if n.reachable and not n.error:
            gauge("hybrid_node_drift_changes", "changes the reconciler would make", node, len(n.drift))
        for c in n.cascades:
            labels = {**node, "cascade": c.name}
            gauge("hybrid_cascade_established", "1 if SoftEther says Established", labels, int(c.established))
        for p in n.pings:
            labels = {**node, "target": p.to, "address": p.address}
            if p.to == "switch":
                gauge("hybrid_tunnel_up", "1 if the L3 switch answers across the tunnel", node, int(p.up))
                gauge("hybrid_tunnel_rtt_seconds", "RTT to the L3 switch", node, p.rtt_s, "seconds")
            gauge("hybrid_ping_up", "1 if the target answered a ping from the bridge", labels, int(p.up))
            gauge("hybrid_ping_loss_ratio", "ping loss from the bridge", labels, round(p.loss, 3))
            gauge("hybrid_ping_rtt_seconds", "ping RTT from the bridge", labels, p.rtt_s, "seconds")
    for site, f in by_site(n.failover for n in report.nodes).items():
        labels = _labels(stack=s, site=site)
        fam.setdefault("hybrid_failover", ("counter", "takeovers by a site's standby bridge", "", []))[3].append(
            f"hybrid_failover_total{labels} {f.failovers}"
        )
        gauge("hybrid_failover_last_seconds", "the last failover, first failed probe to routes claimed", {"stack": s, "site": site}, f.last_s, "seconds")
    out: list[str] = []
    for name, (kind, text, unit, samples) in fam.items():
        out.append(f"# TYPE {name} {kind}")
        if unit:
            out.append(f"# UNIT {name} {unit}")
        out.append(f"# HELP {name} {text}")
        out += samples
    return "\n".join([*out, "# EOF"]) + "\n"
