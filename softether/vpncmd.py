"""vpncmd as a text protocol: rendering commands and scripts, masking secrets, splitting the
output of an `/IN` script per command, error codes, and `/CSV` tables.

Pure: no I/O. Command names stay verbatim so they can be found in SoftEther's manual.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import SecretStr

from .errors import AccessDenied, ConnectFailed, OutputError

MASK = "***"

# Commands that only read. Everything else is treated as mutating (the re-run test asserts that
# a converged node receives none).
READ_ONLY = frozenset(
    {
        "Hub",  # selects the hub of the session; changes nothing on the server
        "HubList",
        "UserList",
        "UserGet",
        "StatusGet",
        "ExtOptionList",
        "BridgeList",
        "BridgeDeviceList",
        "CascadeList",
        "CascadeGet",
        "CascadeStatusGet",
        "RouterList",
        "RouterIfList",
        "RouterTableList",
        "ListenerList",
        "SessionList",
        "ProtoOptionsGet",
        "IPsecGet",
        "VpnAzureGetStatus",
        "VpnOverIcmpDnsGet",
        "ServerInfoGet",
        "ServerStatusGet",
        "ServerCertGet",  # writes the certificate into vpncmd's own working directory
    }
)

# SoftEther error codes (vpncmd's exit status and "Error occurred. (Error code: N)"), named as
# in SoftEther's sources; the ones this package meets, verified on 5.01.9674.
ERROR_NAMES: Mapping[int, str] = {
    0: "ERR_NO_ERROR",
    1: "ERR_CONNECT_FAILED",
    2: "ERR_SERVER_IS_NOT_VPN",
    3: "ERR_DISCONNECTED",
    4: "ERR_PROTOCOL_ERROR",
    7: "ERR_AUTHTYPE_NOT_SUPPORTED",
    8: "ERR_HUB_NOT_FOUND",
    9: "ERR_AUTH_FAILED",
    10: "ERR_HUB_STOPPING",
    11: "ERR_SESSION_REMOVED",
    12: "ERR_ACCESS_DENIED",
    13: "ERR_SESSION_TIMEOUT",
    23: "ERR_INTERNAL_ERROR",
    29: "ERR_OBJECT_NOT_FOUND",
    33: "ERR_NOT_SUPPORTED",
    38: "ERR_INVALID_PARAMETER",
    53: "ERR_LISTENER_NOT_FOUND",
    54: "ERR_LISTENER_ALREADY_EXISTS",
    57: "ERR_HUB_ALREADY_EXISTS",
    59: "ERR_LINK_ALREADY_EXISTS",
    66: "ERR_USER_ALREADY_EXISTS",
    92: "ERR_LAYER3_SW_EXISTS",
    95: "ERR_LAYER3_SW_RUNNING",
    97: "ERR_LAYER3_IF_EXISTS",
    98: "ERR_LAYER3_TBL_ADD_FAILED",
    117: "ERR_UNKNOWN_COMMAND",
}

# Pseudo-codes for outcomes vpncmd reports without a number.
UNKNOWN_COMMAND = 117
NO_HUB_SELECTED = -2


def error_name(code: int) -> str:
    if code == NO_HUB_SELECTED:
        return "NO_HUB_SELECTED"
    return ERROR_NAMES.get(code, f"ERR_{code}")


@dataclass(frozen=True)
class SecretArg:
    """A secret argument: `/PASSWORD:...` masked as `/PASSWORD:***` (no switch: `***`)."""

    value: SecretStr
    switch: str = ""

    def reveal(self) -> str:
        secret = self.value.get_secret_value()
        return f"{self.switch}:{secret}" if self.switch else secret

    def __str__(self) -> str:
        return f"{self.switch}:{MASK}" if self.switch else MASK


@dataclass(frozen=True)
class FileIn:
    """A file the command reads (e.g. `/LOADCERT:`): uploaded into the session's private
    directory, which is vpncmd's working directory (vpncmd takes a leading "/" for a switch,
    so paths are relative)."""

    name: str
    content: str
    switch: str = ""

    def __str__(self) -> str:
        return f"{self.switch}:{self.name}" if self.switch else self.name


@dataclass(frozen=True)
class FileOut:
    """A file the command writes (e.g. `ServerCertGet server.pem`); read back after the run."""

    name: str
    switch: str = ""

    def __str__(self) -> str:
        return f"{self.switch}:{self.name}" if self.switch else self.name


Arg = str | SecretArg | FileIn | FileOut


@dataclass(frozen=True)
class Command:
    """One vpncmd command line: `name` verbatim, arguments possibly secret, hub context.

    `hub` is the hub the command runs in (`Hub NAME` is emitted before it); None means
    server-wide (`Hub` with no name unselects).
    """

    name: str
    args: tuple[Arg, ...] = ()
    hub: str | None = None

    @property
    def mutating(self) -> bool:
        return self.name not in READ_ONLY

    def render(self) -> str:
        """The line for the /IN script (secrets revealed: the script file is 0600)."""
        args = (a.reveal() if isinstance(a, SecretArg) else str(a) for a in self.args)
        return " ".join([self.name, *args])

    def masked(self) -> str:
        return " ".join([self.name, *(str(a) for a in self.args)])

    def __str__(self) -> str:
        where = f"[{self.hub}] " if self.hub else ""
        return where + self.masked()

    @property
    def files_in(self) -> tuple[FileIn, ...]:
        return tuple(a for a in self.args if isinstance(a, FileIn))

    @property
    def files_out(self) -> tuple[FileOut, ...]:
        return tuple(a for a in self.args if isinstance(a, FileOut))


def script(commands: Sequence[Command], *, masked: bool = False) -> list[str]:
    """The /IN script lines: hub selections inserted where the context changes.

    A hub is selected only from the unselected state (`Hub`, then `Hub NAME`): if selecting
    NAME fails, vpncmd keeps the previous selection, and the commands meant for NAME would
    otherwise run in another hub. Unselected, they fail harmlessly instead.
    `masked=True` gives the same lines with secrets masked (for logs and records).
    """
    lines: list[str] = []
    current: str | None = None
    for c in commands:
        if c.name == "Hub":
            raise ValueError("select hubs through Command.hub, not a Hub command")
        if c.hub != current:
            if current is not None:
                lines.append("Hub")
            if c.hub is not None:
                lines.append(f"Hub {c.hub}")
            current = c.hub
        lines.append(c.masked() if masked else c.render())
    return lines


def pair(commands: Sequence[Command], replies: Sequence[Reply]) -> list[tuple[Command, Reply]]:
    """Match replies of a `script(commands)` run to the commands (hub selections consumed).

    A command whose hub could not be selected gets ERR_HUB_NOT_FOUND (its own reply only
    says that no hub is selected).
    """
    out: list[tuple[Command, Reply]] = []
    it = iter(replies)
    current: str | None = None
    hub_ok = True
    for c in commands:
        if c.hub != current:
            if current is not None:
                next(it)  # "Hub": unselect
            hub_ok = True
            if c.hub is not None:
                hub_ok = next(it).ok
            current = c.hub
        r = next(it)
        if not hub_ok:
            r = Reply(line=r.line, output=(), code=8, message=f"hub {c.hub} not found")
        out.append((c, r))
    return out


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in `text` (longest first, so no secret leaks in part)."""
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(s, MASK)
    return text


# vpncmd echoes each script line after its prompt: `VPN Server>Cmd` or `VPN Server/HUB>Cmd`
# (a VPN Bridge prompts "VPN Server" too).
PROMPT = re.compile(r"^VPN (?:Server|Bridge)(?:/[^>]*)?>(.*)$")
_ERROR = re.compile(r"^Error occurred\. \(Error code: (\d+)\)")
_NOT_FOUND = re.compile(r'^"[^"]*": Command not found\.')
_NEED_HUB = "Before executing this command, first select the Virtual Hub"
ACCESS_DENIED_TEXT = "Access has been denied."


@dataclass(frozen=True)
class Reply:
    """The output of one command of a script."""

    line: str  # the script line as run (may contain secrets: never print it, use Command)
    output: tuple[str, ...]
    code: int = 0
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class ScriptOutput:
    password_prompted: bool
    replies: tuple[Reply, ...]
    preamble: tuple[str, ...] = field(default=())


def split_output(text: str, lines: Sequence[str]) -> ScriptOutput:
    """Split the stdout of `vpncmd ... /IN:script` into one Reply per script line.

    vpncmd does not stop at a failing command and exits with the status of the last one, so
    each command's status is read from its own output.
    """
    out = text.replace("\r\n", "\n").split("\n")
    preamble: list[str] = []
    chunks: list[tuple[str, list[str]]] = []
    for raw in out:
        m = PROMPT.match(raw)
        if m and len(chunks) < len(lines) and m.group(1).strip() == lines[len(chunks)].strip():
            chunks.append((m.group(1), []))
        elif chunks:
            chunks[-1][1].append(raw)
        else:
            preamble.append(raw)
    prompted = any(p.startswith("Password:") for p in preamble)
    if any(ACCESS_DENIED_TEXT in p for p in preamble):
        raise AccessDenied()
    if not chunks:
        code, message = _status(preamble)
        if code:
            raise ConnectFailed(code, error_name(code), message)
    if len(chunks) != len(lines):
        raise OutputError(f"vpncmd ran {len(chunks)} of {len(lines)} script lines")
    replies = []
    for line, body in chunks:
        while body and not body[-1].strip():
            body.pop()
        code, message = _status(body)
        replies.append(Reply(line=line, output=tuple(body), code=code, message=message))
    return ScriptOutput(prompted, tuple(replies), tuple(preamble))


def _status(body: Sequence[str]) -> tuple[int, str]:
    for i, ln in enumerate(body):
        m = _ERROR.match(ln)
        if m:
            msg = body[i + 1].strip() if i + 1 < len(body) else ""
            return int(m.group(1)), msg
        if _NOT_FOUND.match(ln):
            return UNKNOWN_COMMAND, ln.strip()
        if ln.startswith(_NEED_HUB):
            return NO_HUB_SELECTED, ln.strip()
    return 0, ""


# ---- /CSV tables -------------------------------------------------------------------------
# Column titles come from SoftEther's string table and may be localised: every title this
# package reads is mapped to a key here, in one place.
HEADERS: Mapping[str, str] = {
    # HubList
    "Virtual Hub Name": "hub",
    "Virtual Hub": "hub",  # CascadeList (always empty there)
    "Status": "status",
    # UserList
    "User Name": "name",
    "Description": "note",
    # BridgeList
    "Network Adapter or Tap Device Name": "device",
    # CascadeList
    "Setting Name": "name",
    "Destination VPN Server": "server",
    "Established at": "established",
    # RouterList / RouterIfList / RouterTableList
    "Layer 3 Switch Name": "name",
    "Running Status": "running",
    "IP Address": "ip",
    "Subnet Mask": "mask",
    "Network Address": "network",
    "Gateway Address": "gateway",
    "Metric": "metric",
    # ListenerList
    "Port Number": "port",
    # ProtoOptionsGet
    "Name": "name",
    "Value": "value",
    # Item,Value tables (CascadeGet, StatusGet, IPsecGet, ...)
    "Item": "item",
}

# Row titles of Item,Value tables that this package reads.
ITEMS: Mapping[str, str] = {
    "Destination VPN Server Host Name": "server",
    "Destination VPN Server Port Number": "port",
    "Destination VPN Server Virtual Hub Name": "remote_hub",
    "User Name": "username",
    "Number of TCP Connections to Use in VPN Communication": "max_tcp",
    "Verify Server Certificate": "verify_cert",
    "Data Compression": "compress",
    "Registered Server Individual Certificate": "server_cert",
    "SecureNAT": "securenat",
    "Status": "status",  # StatusGet: Online | Offline
    "L2TP over IPsec Server Function Enabled": "l2tp_ipsec",
    "Raw L2TP Server Function Enabled": "l2tp_raw",
    "EtherIP / L2TPv3 over IPsec Server Function Enabled": "etherip",
    "IPsec Pre-Shared Key String": "psk",
    "Name of Default Virtual Hub": "default_hub",
    "VPN Azure Function is Enabled": "vpn_azure",
    "VPN over ICMP Server Enabled": "vpn_over_icmp",
    "VPN over DNS Server Enabled": "vpn_over_dns",
}


def table(output: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a /CSV list, keyed by HEADERS (unknown titles keep their own text)."""
    lines = _csv_lines(output)
    if not lines:
        return []
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    keys = [HEADERS.get(h, h) for h in rows[0]]
    return [dict(zip(keys, r, strict=False)) for r in rows[1:] if r]


def items(output: Sequence[str]) -> dict[str, str]:
    """An Item,Value /CSV table as {key: value}, keyed by ITEMS (first occurrence wins)."""
    out: dict[str, str] = {}
    for row in table(output):
        key = ITEMS.get(row.get("item", ""), row.get("item", ""))
        out.setdefault(key, row.get("value", ""))
    return out


def _csv_lines(output: Sequence[str]) -> list[str]:
    # CascadeGet appends a blank line and a second table (the policy); keep the first.
    lines: list[str] = []
    for ln in output:
        if not ln.strip():
            if lines:
                break
            continue
        lines.append(ln)
    return lines


def number(text: str) -> int:
    """`"21,246"`, `"1,234 bytes"`, `8` -> int."""
    m = re.match(r"^\s*([\d,]+)", text)
    if not m:
        raise ValueError(f"not a number: {text!r}")
    return int(m.group(1).replace(",", ""))


def yes(text: str) -> bool:
    return text.strip().lower() in {"yes", "true", "enabled", "enable", "1"}
