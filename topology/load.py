"""Loading a stack: from a Pulumi stack file, or from the config Pulumi hands the program."""

from __future__ import annotations

import math
import os
import re
import stat
import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from .clouds import REGION_KEY
from .model import Stack, TtlHours
from .validate import problems

PROJECT = "hybrid-cloud"
STACKS_DIR = Path(__file__).resolve().parent.parent / "stacks"
MAX_FILE_BYTES = 1 << 20  # a stack file is a few KiB; anything this large is a mistake


class TopologyError(ValueError):
    """A stack that cannot be used; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "\n".join(problems))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line(err: Any) -> str:
    path, value = _path(err["loc"]), err.get("input")
    match err["type"]:
        case "missing":
            return f"{path}: missing"
        case "extra_forbidden":
            return f"{path}: unknown field"
        case _ if _is_private_key(value):
            return f"{path}: (value not shown: a private key) is invalid: {err['msg']}"
        case _:
            return f"{path}: {value!r} is invalid: {err['msg']}"


def parse_stack(
    config: Mapping[str, Any], source: str = "stack", regions: Mapping[str, str] | None = None
) -> Stack:
    """Validate `config` (keys without the `hybrid-cloud:` prefix); raise TopologyError.
    `regions`: the providers' regions by cloud (`provider_regions`), for the region and zone
    rules; None when the caller does not know them (those rules are then skipped)."""
    try:
        stack = Stack.model_validate(dict(config))
    except ValidationError as e:
        raise TopologyError(source, [_line(err) for err in e.errors(include_url=False)]) from None
    found = problems(stack, regions)
    if found:
        raise TopologyError(source, found)
    return stack


# Stack secrets the program reads itself through Pulumi's config (components/secrets.py),
# not part of the topology: a stack file holds them encrypted (`secure:`).
HOME_ADMIN_PASSWORD = "homeAdminPassword"
OPERATOR_KEY = "operatorKey"
SECRET_KEYS = (HOME_ADMIN_PASSWORD, OPERATOR_KEY)
# The home server's SSH host key as the user pins it (the model's `home_host_key`).
HOME_HOST_KEY = "homeHostKey"
# The providers' credentials, when a stack file holds them at all: the providers' docs say to
# set them with `pulumi config set --secret` (or to use the environment).
PROVIDER_SECRETS = (
    "aws:accessKey",
    "aws:secretKey",
    "aws:token",
    "azure-native:clientSecret",
    "azure-native:clientCertificatePassword",
)


def _is_secure(value: Any) -> bool:
    """A value `pulumi config set --secret` wrote: `{secure: <ciphertext>}`."""
    return isinstance(value, dict) and set(value) == {"secure"}


def _is_private_key(value: Any) -> bool:
    return isinstance(value, str) and "PRIVATE KEY-----" in value


def _private_keys(value: Any, path: str) -> Iterator[str]:
    """The paths under `value` of every string holding a PEM/OpenSSH private key."""
    if _is_private_key(value):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _private_keys(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _private_keys(v, f"{path}[{i}]")


def secret_problems(config: Mapping[str, Any]) -> list[str]:
    """A stack file's `config:` map against the secrets rules: a value that must be a secret
    and is not, a secret the program would read as plain (and show), a private key in plain
    text. No line shows the value."""
    prefix = f"{PROJECT}:"
    out: list[str] = []
    for key, value in config.items():
        name = key.removeprefix(prefix)
        if key.startswith(prefix) and name in SECRET_KEYS and not _is_secure(value):
            out.append(
                f"{name}: (value not shown) is plain text in the stack file, for everyone who reads"
                f" it: set it with pulumi config set --secret {key}"
            )
            # ... and checked as the program checks it (components/secrets.py).
            out += admin_password_problems(str(value)) if name == HOME_ADMIN_PASSWORD else []
        elif key in PROVIDER_SECRETS and not _is_secure(value):
            out.append(
                f"{key}: (value not shown) is a credential in plain text in the stack file: set it"
                f" with pulumi config set --secret {key}, or use the provider's environment variables"
            )
        elif key.startswith(prefix) and name not in SECRET_KEYS and _is_secure(value):
            out.append(
                f"{name}: is a secret (secure:), but the program reads it as plain configuration and"
                " would show its value in the preview and the outputs: set it without --secret"
            )
        else:
            out += [
                f"{p.removeprefix(prefix)}: (value not shown) holds a private key in plain text: the"
                " stack file, the preview and the outputs would show it"
                for p in _private_keys(value, key)
            ]
    return out
# The home server's admin password administers the whole server, and through hub DEFAULT the
# home LAN. SoftEther keeps it as an unsalted SHA-0 of the password alone (src/Cedar/Admin.c
# `HashAdminPassword`) in vpn_server.config and in every backup of it, a hash a GPU tries
# by the billions per second: it must hold against an offline search, not only against
# logins (which adminip.txt now keeps to the server itself). 100 bits is ~10^18 s at
# 10^12 guesses/s. The estimate (length x log2 of the character classes used) is what a
# random pick of that length would give: it refuses short, single-class and repetitive
# values, not a phrase a human made up, so generate it:
# openssl rand -base64 24 | tr -d '/+=' (about 32 letters and digits, ~190 bits).
ADMIN_PASSWORD_MIN_LENGTH = 20
ADMIN_PASSWORD_MIN_DISTINCT = 10
ADMIN_PASSWORD_MIN_BITS = 100
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
GENERATE_ADMIN_PASSWORD = "openssl rand -base64 24 | tr -d '/+='"


def admin_password_problems(value: str) -> list[str]:
    """Why `value` cannot be the home server's admin password: one line per problem, naming
    `homeAdminPassword` and never showing the value."""
    key = f"{HOME_ADMIN_PASSWORD}: (value not shown)"
    if not re.fullmatch(r"[^\s\"/-][^\s\"]*", value):
        return [
            f"{key} must be non-empty, not start with / or -, and hold no space or quote"
            " (vpncmd reads it as an argument)"
        ]
    pool = sum(len(c) for c in _CLASSES if any(ch in c for ch in value))
    pool += 33 if any(not any(ch in c for c in _CLASSES) for ch in value) else 0
    bits = len(value) * math.log2(pool)
    weak = []
    if len(value) < ADMIN_PASSWORD_MIN_LENGTH:
        weak.append(f"is shorter than {ADMIN_PASSWORD_MIN_LENGTH} characters")
    if len(set(value)) < ADMIN_PASSWORD_MIN_DISTINCT:
        weak.append(f"has fewer than {ADMIN_PASSWORD_MIN_DISTINCT} different characters")
    if bits < ADMIN_PASSWORD_MIN_BITS:
        weak.append(f"holds less than {ADMIN_PASSWORD_MIN_BITS} bits (length x character classes)")
    if not weak:
        return []
    return [f"{key} {', '.join(weak)}: too weak for the server's administration; generate one: {GENERATE_ADMIN_PASSWORD}"]


def project_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The project's own keys of a stack file's `config:` section, prefix removed (the
    `SECRET_KEYS`, which are no topology, left out)."""
    prefix = f"{PROJECT}:"
    return {
        k[len(prefix) :]: v
        for k, v in config.items()
        if k.startswith(prefix) and k[len(prefix) :] not in SECRET_KEYS
    }


def provider_regions(config: Mapping[str, Any]) -> dict[str, str]:
    """The providers' regions by cloud from a stack file's whole `config:` map."""
    return {cloud: str(config[key]) for cloud, key in REGION_KEY.items() if config.get(key)}


def stack_file(name_or_path: str) -> Path:
    """A stack name (`dev`) means `stacks/Pulumi.dev.yaml`; anything with a slash or .yaml is a path."""
    if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        return Path(name_or_path)
    return STACKS_DIR / f"Pulumi.{name_or_path}.yaml"


def read_text_file(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """A small regular UTF-8 text file, read without blocking and bounded in size; anything
    else (a device, a FIFO, a directory, binary data, a huge file) is one ValueError line."""
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to returns at once instead of waiting.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ValueError(f"cannot read the {what}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"cannot read the {what}: not a regular file")
        if st.st_size > limit:
            raise ValueError(f"the {what} is larger than {limit} bytes ({st.st_size})")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"the {what} is larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"the {what} is not UTF-8 text (byte {e.start})") from None


def _key_path(parents: tuple[str | int, ...]) -> str:
    """A YAML path in the stack file's spelling: `config` keys of this project without their
    prefix (`network.sites[0].name`), the others as written (`aws:region`)."""
    if parents[:1] == ("config",) and len(parents) > 1:
        return _path((str(parents[1]).removeprefix(f"{PROJECT}:"), *parents[2:]))
    return _path(parents)


def _duplicates(node: yaml.Node, parents: tuple[str | int, ...] = ()) -> Iterator[str]:
    """Every mapping key given twice in a composed YAML document: YAML requires unique keys;
    PyYAML keeps the last silently, Pulumi refuses the file."""
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            line = key.start_mark.line + 1
            if name in first:
                yield (
                    f"{_key_path((*parents, name))}: given twice (lines {first[name]} and {line});"
                    " a YAML key must be unique: remove one"
                )
            first.setdefault(name, line)
            yield from _duplicates(value, (*parents, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicates(item, (*parents, i))


def _stack_config(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The `config:` map of a stack file and the keys it gives twice; TopologyError when the
    file cannot be read or is not a stack file."""
    try:
        text = read_text_file(path, "stack file")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except ValueError as e:
        raise TopologyError(str(path), [str(e)]) from None
    except yaml.YAMLError as e:
        raise TopologyError(str(path), [f"not valid YAML: {str(e).splitlines()[0]}"]) from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise TopologyError(str(path), ["config: missing (a Pulumi stack file has a config: map)"])
    return config, list(_duplicates(node)) if node is not None else []


def read_stack_file(path: Path) -> dict[str, Any]:
    """The whole `config:` section of a stack file (all namespaces); TopologyError for a key
    given twice and for the secrets rules (`secret_problems`)."""
    config, twice = _stack_config(path)
    found = twice + secret_problems(config)
    if found:
        raise TopologyError(str(path), found)
    return config


TTL_HOURS = "ttlHours"


def read_ttl_hours(path: Path) -> float | None:
    """`hybrid-cloud:ttlHours` of a stack file, checked by the model's own rule for that one
    field: nothing else of the file needs to be valid (the TTL job judges every stack by it)."""
    config, twice = _stack_config(path)
    found = [line for line in twice if line.startswith(f"{TTL_HOURS}:")]
    if found:
        raise TopologyError(str(path), found)
    try:
        return TypeAdapter(TtlHours | None).validate_python(
            config.get(f"{PROJECT}:{TTL_HOURS}")
        )
    except ValidationError as e:
        raise TopologyError(
            str(path), [_line(err | {"loc": (TTL_HOURS,)}) for err in e.errors(include_url=False)]
        ) from None


def load_stack_config(name_or_path: str) -> tuple[Stack, dict[str, Any]]:
    """A stack file's validated stack and its whole `config:` map."""
    path = stack_file(name_or_path)
    config = read_stack_file(path)
    return parse_stack(project_config(config), str(path), provider_regions(config)), config


def load_stack(name_or_path: str) -> Stack:
    return load_stack_config(name_or_path)[0]
