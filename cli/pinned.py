"""`hybrid pinned`: is the home server's pinned config in the committed stack file? (preview.yml)

`pulumi config set` writes `homeHostKey` and `homeAdminPassword` into the local stack file; a
pull request's preview runs from the committed one. Without them the program leaves the home
server out, so against a deployed stack that configures it the preview shows the home node
deleted and its stand-in password created: this command says so instead, in one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from topology import stack_file
from topology.load import HOME_ADMIN_PASSWORD, HOME_HOST_KEY, PROJECT, read_stack_file

from .args import add_stack, stack_ref

PINNED = (HOME_HOST_KEY, HOME_ADMIN_PASSWORD)


def missing(config: dict[str, object]) -> list[str]:
    return [k for k in PINNED if f"{PROJECT}:{k}" not in config]


def home_deployed(outputs: object) -> bool:
    """The deployed stack configures the home server: its `pending` output is empty."""
    return isinstance(outputs, dict) and outputs.get("pending") == []


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pinned", help="is the home server's pinned config in the committed stack file?")
    add_stack(p)
    p.add_argument(
        "--outputs",
        required=True,
        metavar="FILE|-",
        help="`pulumi stack output --json` of the deployed stack ({} when there is none; - reads stdin)",
    )
    p.set_defaults(func=pinned)


def pinned(args: argparse.Namespace) -> int:
    """Exit 0 silent when both are committed; 0 with a line when the stack does not configure
    the home server yet; 1 with a line when it does and the file lacks them (the preview
    would delete the home node)."""
    path = stack_file(stack_ref(args))
    absent = missing(read_stack_file(path))
    if not absent:
        return 0
    text = sys.stdin.read() if args.outputs == "-" else Path(args.outputs).read_text()
    try:
        outputs = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        print(f"--outputs: not JSON: {e.msg} (line {e.lineno})", file=sys.stderr)
        return 2
    keys = " and ".join(f"{PROJECT}:{k}" for k in absent)
    if home_deployed(outputs):
        print(
            f"{path} lacks {keys}, but the deployed stack configures the home server: this preview"
            " would show the home node deleted and a stand-in admin password created. Commit the"
            " stack file as `pulumi config set` left it (homeAdminPassword is stored encrypted)."
        )
        return 1
    print(f"{path} lacks {keys}: this preview leaves the home server out (the stack does not configure it yet)")
    return 0
