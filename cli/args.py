"""Arguments shared by the subcommands."""

from __future__ import annotations

import argparse
import sys

from topology import Stack, load_stack

MAX_KEY_BYTES = 64 << 10  # an operator's private key file is a few KiB


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


def read_input(name: str, field: str, limit: int) -> str:
    """The UTF-8 text of file `name` (`-`: stdin), at most `limit` bytes. Anything else (no
    such file, a directory, binary data, more than `limit`: /dev/zero ends at once) is one
    ValueError line naming `field` and `name`, never the content."""
    try:
        if name == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(name, "rb") as f:
                data = f.read(limit + 1)
    except OSError as e:
        raise ValueError(f"{field}: {name}: {e.strerror}") from None
    if len(data) > limit:
        raise ValueError(f"{field}: {name}: larger than {limit} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise ValueError(f"{field}: {name}: not UTF-8 text (byte {e.start})") from None
