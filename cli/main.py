"""`hybrid`: check, routes, cost, diagram, ttl, pinned, lab, plan, cloud-init, status, preflight.

Every command that takes a stack accepts `--stack NAME` (stacks/Pulumi.NAME.yaml) or a path.
Errors a user can fix are printed one per line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from topology import TopologyError

# Each module has `register(subparsers)`; its commands set `func(args) -> int`.
MODULES = ("cli.stack", "cli.cost", "cli.diagram", "cli.ttl", "cli.pinned", "cli.lab", "cli.plan", "cli.cloudinit", "cli.status", "cli.preflight")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybrid", description="hybrid-cloud: home LAN + AWS + Azure over SoftEther, as code")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TopologyError as e:
        for line in e.problems:
            print(f"{e.source}: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `hybrid routes | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
