"""`python -m softether plan|apply --spec spec.json (--host H --host-key KEY --identity F | --local)`

Runs the reconciler by hand against one node. `plan` reads and prints the changes (exit 2 if
there are any, 0 if converged); `apply` converges and prints the diff it applied.
The spec file is a ServerSpec/BridgeSpec written with `to_json(reveal=True)`; keep it 0600.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import SecretStr, ValidationError

from topology import read_text_file

from .errors import SoftEtherError
from .session import Session
from .spec import BridgeSpec, ServerSpec, SshTarget, spec_from_json
from .transport import (
    LocalTransport,
    Transport,
    load_private_key,
    parse_public_key,
    ssh_transport,
)


class UsageError(Exception):
    """Bad input named by its option: one line, exit 2, before anything is contacted."""


def _read(path: Path, option: str) -> str:
    try:
        return read_text_file(path, f"{option} file {path}")
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def _spec(path: Path) -> ServerSpec | BridgeSpec:
    text = _read(path, "--spec")
    try:
        return spec_from_json(text)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UsageError(f"--spec {path}: not a node spec: {where}: {first['msg']}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m softether", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("action", choices=("plan", "apply"))
    p.add_argument("--spec", required=True, type=Path, help="node spec JSON (secrets revealed)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--host", help="SSH host of the node")
    where.add_argument("--local", action="store_true", help="run on this machine")
    p.add_argument("--port", type=int, default=22)
    p.add_argument("--user", default="root")
    p.add_argument("--host-key", help="pinned host key: 'ssh-ed25519 AAAA...'")
    p.add_argument("--host-key-file", type=Path, help="file holding the pinned host key line")
    p.add_argument("--identity", type=Path, help="private key file for SSH")
    p.add_argument("--connect-deadline", type=float, default=120.0)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


# SshTarget's fields by the option that gives them.
_TARGET_OPTIONS = {
    "host": "--host",
    "port": "--port",
    "user": "--user",
    "host_key": "--host-key",
    "private_key": "--identity",
    "connect_deadline_s": "--connect-deadline",
}


def _transport(a: argparse.Namespace) -> Transport:
    if a.local:
        return LocalTransport()
    option = "--host-key" if a.host_key else "--host-key-file"
    key = a.host_key or (_read(a.host_key_file, option).strip() if a.host_key_file else None)
    if not key or not a.identity:
        raise UsageError("--host needs --host-key (or --host-key-file) and --identity")
    try:
        parse_public_key(key)
    except Exception as e:  # paramiko and base64 raise several types for a malformed key
        raise UsageError(f"{option}: not a public key line '<type> <base64>': {e}") from None
    identity = _read(a.identity, "--identity")
    try:
        load_private_key(identity)
    except ValueError as e:
        raise UsageError(f"--identity {a.identity}: {e}") from None
    try:
        target = SshTarget(
            host=a.host,
            port=a.port,
            user=a.user,
            host_key=key,
            private_key=SecretStr(identity),
            connect_deadline_s=a.connect_deadline,
        )
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        option = _TARGET_OPTIONS.get(str(first["loc"][0]), str(first["loc"][0]))
        raise UsageError(f"{option}: {first['msg']}") from None
    return ssh_transport(target)


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(message)s")
    try:
        spec = _spec(a.spec)
        transport = _transport(a)
    except UsageError as e:
        print(f"python -m softether: {e}", file=sys.stderr)
        return 2
    session = Session(transport, spec)
    try:
        if a.action == "plan":
            lines = [session.mask(ln) for ln in session.compare().lines()]
            print("\n".join(lines) if lines else "converged: no changes")
            return 2 if lines else 0
        result = session.converge()
        print(result.diff if result.changed else "converged: no changes")
        print(
            f"{result.host}: {result.seconds:.1f} s, {result.vpncmd_sessions} vpncmd session(s)"
            + (", bridge restarted" if result.restarted else ""),
            file=sys.stderr,
        )
        return 0
    except SoftEtherError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        transport.close()


if __name__ == "__main__":
    sys.exit(main())
