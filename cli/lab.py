"""`hybrid lab up|status|test|down`: the stack's network on this machine (needs root)."""

from __future__ import annotations

import argparse
import os
import sys

from .args import add_stack, stack_ref


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="the whole network in network namespaces on this machine")
    cmds = p.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    for name, func, text in (
        ("up", up, "build the lab (or converge a running one) and print the connectivity matrix"),
        ("status", status, "what runs, cascade states, connectivity matrix"),
        ("test", test, "the blog's checks as PASS/FAIL lines; exit 1 on any failure"),
        ("down", down, "stop the lab's processes, delete its namespaces and state"),
        ("outputs", outputs, "the lab's outputs as JSON, shaped like `pulumi stack output`"),
    ):
        c = cmds.add_parser(name, help=text)
        add_stack(c)
        c.set_defaults(func=func)


def _root() -> bool:
    if os.geteuid() != 0:
        print("hybrid lab: needs root (network namespaces); run it with sudo", file=sys.stderr)
        return False
    return True


def up(args: argparse.Namespace) -> int:
    from lab.node import LabError
    from lab.up import up as lab_up
    from softether.session import SoftEtherError
    from softether.transport import TransportError

    if not _root():
        return 2
    try:
        report = lab_up(stack_ref(args))
    except (LabError, SoftEtherError, TransportError) as e:
        print(f"hybrid lab up: {e}", file=sys.stderr)
        print(
            "the lab is left as it is for inspection; tear down: hybrid lab down", file=sys.stderr
        )
        return 1
    return 0 if report.matrix_ok else 1


def status(args: argparse.Namespace) -> int:
    from lab.status import status as lab_status

    return lab_status(stack_ref(args)) if _root() else 2


def test(args: argparse.Namespace) -> int:
    from lab.checks import run_checks

    return run_checks(stack_ref(args)) if _root() else 2


def down(args: argparse.Namespace) -> int:
    from lab.down import down as lab_down

    return lab_down(stack_ref(args)) if _root() else 2


def outputs(args: argparse.Namespace) -> int:
    import json

    from lab.outputs import lab_outputs
    from lab.up import open_lab

    if not _root():
        return 2
    lab = open_lab(stack_ref(args))
    if not lab.state.path.exists():
        print(f"hybrid lab outputs: no lab for stack {stack_ref(args)}: hybrid lab up", file=sys.stderr)
        return 1
    print(json.dumps(lab_outputs(lab), indent=2))
    return 0
