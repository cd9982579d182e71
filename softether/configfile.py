"""What SoftEther's own configuration file holds that vpncmd never shows: the password hashes
of a hub's users (`AuthPassword`) and of a cascade's login (`ClientAuth/HashedPassword`).

Both ends store the same value for the same password (SoftEther's `HashPassword`: SHA-0 of
the password and the upper-cased user name), so comparing them tells whether a cascade would
log in at its next reconnect, without knowing either password. Pure: the caller reads the
file (`hostos.config_path`). SoftEther writes the file at `Flush` (the converge ends with
one) and every 300 s: a change made by hand shows here only after that.
"""

from __future__ import annotations

from typing import Union

Block = dict[str, Union[str, "Block"]]


def parse(text: str) -> Block:
    """`declare NAME { ... }` blocks and `type NAME value` lines, nested as dicts."""
    root: Block = {}
    stack = [root]
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("declare "):
            pending = line[8:].strip()
        elif line == "{":
            child: Block = {}
            stack[-1][pending] = child
            stack.append(child)
        elif line == "}":
            if len(stack) > 1:
                stack.pop()
        elif line and not line.startswith("#"):
            parts = line.split(None, 2)
            if len(parts) == 3:
                stack[-1][parts[1]] = parts[2]
    return root


def _block(tree: Block, *path: str) -> Block:
    node: Block = tree
    for key in path:
        found = next((v for k, v in node.items() if k.lower() == key.lower()), None)
        if not isinstance(found, dict):
            return {}
        node = found
    return node


def _hubs(tree: Block) -> Block:
    return _block(_block(tree, "root") or tree, "VirtualHUB")


def user_hashes(tree: Block, hub: str) -> dict[str, str]:
    """Password hash by user name (lower case) of hub `hub`'s password users."""
    users = _block(_hubs(tree), hub, "SecurityAccountDatabase", "UserList")
    return {
        name.lower(): value
        for name, user in users.items()
        if isinstance(user, dict) and isinstance(value := user.get("AuthPassword"), str)
    }


def cascade_hashes(tree: Block, hub: str) -> dict[str, tuple[str, str]]:
    """(user name, password hash) by cascade name (lower case) of hub `hub`'s cascades."""
    out: dict[str, tuple[str, str]] = {}
    for link in _block(_hubs(tree), hub, "CascadeList").values():
        if not isinstance(link, dict):
            continue
        auth, option = _block(link, "ClientAuth"), _block(link, "ClientOption")
        name, user, hashed = option.get("AccountName"), auth.get("Username"), auth.get("HashedPassword")
        if isinstance(name, str) and isinstance(user, str) and isinstance(hashed, str):
            out[name.lower()] = (user, hashed)
    return out
