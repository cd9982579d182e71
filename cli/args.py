"""Arguments shared by the subcommands."""

from __future__ import annotations

import argparse

from topology import Stack, load_stack


def add_stack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", nargs="?", help="a stack file (default: the --stack name from stacks/)"
    )
    parser.add_argument(
        "--stack", default="dev", help="stack name: stacks/Pulumi.NAME.yaml (default: dev)"
    )


def stack_ref(args: argparse.Namespace) -> str:
    return args.path or args.stack


def stack_of(args: argparse.Namespace) -> Stack:
    return load_stack(stack_ref(args))
