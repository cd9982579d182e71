"""`hybrid lab up|status|test|down`: the stack's network on this machine (needs root).

Every failure is one line on stderr and a non-zero exit. Ctrl-C (or `hybrid lab down` from
elsewhere) stops `lab up` at once: it says what it left behind and how to remove it, exit 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

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
        if name == "up":
            c.add_argument(
                "--no-boot",
                dest="boot",
                action="store_false",
                help="a new lab's bridges as plain SoftEther processes, not booted machines (faster;"
                " no systemd, no cloud-init: see the README)",
            )


def _root() -> bool:
    if os.geteuid() != 0:
        print("hybrid lab: needs root (network namespaces); run it with sudo", file=sys.stderr)
        return False
    return True


def _down_command(args: argparse.Namespace) -> str:
    return "hybrid lab down" + (
        f" {args.path}" if args.path else (f" --stack {args.stack}" if args.stack != "dev" else "")
    )


def _left_behind(directory: Path) -> str:
    """What the record says exists (namespaces, live processes), without touching anything."""
    from lab import proc
    from lab.state import LabState, RecordError

    try:
        st = LabState.load(directory)
    except RecordError:
        return f"a lab with an unreadable record in {directory}"
    if st is None:
        return "nothing recorded"
    ns = sum(proc.exists(n) for n in st.namespaces)
    procs = sum(st.live(name) is not None for name in st.pids)
    return f"{ns} namespaces and {procs} processes of lab {st.lab_id} (record in {directory})"


def _on_interrupt(
    args: argparse.Namespace, directory: Path
) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        # Straight out, without waiting for the worker threads (a converge can take seconds):
        # every process the lab started runs in a session of its own and is recorded (or in
        # the lab's namespaces, or marked), so `lab down` removes it; the kernel drops the lock.
        # os.write: a worker thread may hold sys.stderr's lock (a log line) right now.
        what = "interrupted" if signum == signal.SIGINT else f"stopped by signal {signum}"
        line = (
            f"hybrid lab up: {what}; left: {_left_behind(directory)}; "
            f"remove it with: {_down_command(args)}\n"
        )
        os.write(2, line.encode())
        os._exit(130 if signum == signal.SIGINT else 128 + signum)

    return handler


def _one_line(cmd: str, run: Callable[[], int]) -> int:
    """Run a lab command; a LabError (busy, unreadable record, failed step) is one line."""
    from lab.proc import LabError
    from softether.errors import SoftEtherError

    try:
        return run()
    except (LabError, SoftEtherError) as e:
        print(f"hybrid lab {cmd}: {e}", file=sys.stderr)
        return 1


def up(args: argparse.Namespace) -> int:
    from lab.proc import LabError
    from lab.state import LabBusy, RecordError, lab_dir
    from lab.up import up as lab_up
    from softether.errors import SoftEtherError

    if not _root():
        return 2
    handler = _on_interrupt(args, lab_dir(stack_ref(args)))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    try:
        report = lab_up(stack_ref(args), boot=None if args.boot else False)
    except (LabBusy, RecordError) as e:
        print(f"hybrid lab up: {e}", file=sys.stderr)
        return 1
    except (LabError, SoftEtherError) as e:
        *lines, last = f"hybrid lab up: {e}".splitlines()
        hint = f" (the lab is left as it is for inspection; tear down: {_down_command(args)})"
        print("\n".join([*lines, last + hint]), file=sys.stderr)
        return 1
    return 0 if report.matrix_ok else 1


def status(args: argparse.Namespace) -> int:
    from lab.state import lab_dir, operation
    from lab.status import status as lab_status

    def run() -> int:
        with operation(lab_dir(stack_ref(args)), "lab status", create=False):
            return lab_status(stack_ref(args))

    return _one_line("status", run) if _root() else 2


def test(args: argparse.Namespace) -> int:
    from lab.checks import run_checks

    return _one_line("test", lambda: run_checks(stack_ref(args))) if _root() else 2


def down(args: argparse.Namespace) -> int:
    from lab.down import down as lab_down

    return _one_line("down", lambda: lab_down(stack_ref(args))) if _root() else 2


def outputs(args: argparse.Namespace) -> int:
    import json

    from lab.lab import open_lab
    from lab.outputs import lab_outputs

    def run() -> int:
        lab = open_lab(stack_ref(args))
        if not lab.state.path.exists():
            print(
                f"hybrid lab outputs: no lab for stack {stack_ref(args)}: hybrid lab up",
                file=sys.stderr,
            )
            return 1
        print(json.dumps(lab_outputs(lab), indent=2))
        return 0

    return _one_line("outputs", run) if _root() else 2
