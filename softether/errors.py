"""Every error of the softether package, under one root (napalm's shape: typed by phase).

`SoftEtherError` is the root: a caller that only reports catches it alone. Its text names
the node (`host`) and is already masked. Below it:
- `TransportError`: the node could not be reached or a command could not be run (SSH);
- `VpncmdError`: vpncmd's output, read by the pure parser (`vpncmd.split_output`), which knows
  no host; the session turns these into the session errors below, naming the node;
- the session's errors: a refused admin password, a timeout, a failed command, a node that
  does not converge, a bridge that does not operate or carry traffic.
"""

from __future__ import annotations

from collections.abc import Sequence


class SoftEtherError(Exception):
    """Root of this package's errors; `host` names the node ("" where none is known)."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"{host}: {message}" if host else message)


def _with_last_lines(text: str, last_lines: Sequence[str]) -> str:
    if last_lines:
        text += "\n  last output:\n" + "\n".join(f"    {ln}" for ln in last_lines)
    return text


# ---- transport ---------------------------------------------------------------------------
class TransportError(SoftEtherError):
    """A node could not be reached or a command could not be run. `host` names the node."""


class HostUnreachable(TransportError):
    pass


class HostKeyRefused(TransportError):
    """The host presented a key other than the pinned one."""

    def __init__(self, host: str, offered: str, pinned: str) -> None:
        self.offered = offered
        self.pinned = pinned
        super().__init__(
            host,
            f"host key refused: the host offered {offered}, the pinned key is {pinned}. "
            "If the host was legitimately re-created, pin its new key; otherwise do not connect.",
        )


class AuthFailed(TransportError):
    pass


# ---- vpncmd's output (the pure parser: no host) ------------------------------------------
class VpncmdError(SoftEtherError):
    """vpncmd's output says something went wrong before any command ran."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)


class OutputError(VpncmdError, ValueError):
    """vpncmd's output does not match the script it was given."""


class ConnectFailed(VpncmdError):
    """vpncmd could not talk to the server at all (e.g. error 1: not listening yet)."""

    def __init__(self, code: int, code_name: str, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(f"error {code} ({code_name}): {message}")


class AccessDenied(VpncmdError):
    """vpncmd refused the admin password (it would prompt again forever)."""

    def __init__(self) -> None:
        super().__init__("access denied")


# ---- the session -------------------------------------------------------------------------
class AccessDeniedError(SoftEtherError):
    pass


class VpncmdTimeoutError(SoftEtherError):
    pass


class CommandError(SoftEtherError):
    """A vpncmd command failed: which one (masked), its SoftEther error code and name."""

    def __init__(
        self,
        host: str,
        command: str,
        code: int,
        code_name: str,
        message: str,
        last_lines: Sequence[str],
    ) -> None:
        self.command = command
        self.code = code
        self.code_name = code_name
        self.last_lines = tuple(last_lines)
        text = f"{command} failed: error {code} ({code_name}) {message}".rstrip()
        super().__init__(host, _with_last_lines(text, last_lines))


class HostCommandError(SoftEtherError):
    def __init__(self, host: str, what: str, rc: int, last_lines: Sequence[str]) -> None:
        self.rc = rc
        self.last_lines = tuple(last_lines)
        super().__init__(host, _with_last_lines(f"{what} exited with {rc}", last_lines))


class NotConvergedError(SoftEtherError):
    def __init__(self, host: str, remaining: Sequence[str]) -> None:
        self.remaining = tuple(remaining)
        super().__init__(
            host, "not converged after apply; still to change:\n  " + "\n  ".join(remaining)
        )


class BridgeDeviceError(SoftEtherError):
    pass


class StateDirError(SoftEtherError):
    """The node's SoftEther configuration is not where the spec's `state_dir` says."""


class TrafficError(SoftEtherError):
    pass


class RotationError(SoftEtherError):
    """A rotation could not finish on this node; the message says what state it left (the
    previous credential in place where the other end refused the new one) and what to run."""
