"""Loading a stack: from a Pulumi stack file, or from the config Pulumi hands the program."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .model import REGION_KEY, Stack
from .validate import problems

PROJECT = "hybrid-cloud"
STACKS_DIR = Path(__file__).resolve().parent.parent / "stacks"


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
        case _:
            return f"{path}: {value!r} is invalid: {err['msg']}"


def parse_stack(
    config: Mapping[str, Any], source: str = "stack", regions: Mapping[str, str] | None = None
) -> Stack:
    """Validate `config` (keys without the `hybrid-cloud:` prefix); raise TopologyError.
    `regions`: the providers' regions by cloud (`provider_regions`), for the zone checks."""
    try:
        stack = Stack.model_validate(dict(config))
    except ValidationError as e:
        raise TopologyError(source, [_line(err) for err in e.errors(include_url=False)]) from None
    found = problems(stack, regions or {})
    if found:
        raise TopologyError(source, found)
    return stack


# Stack secrets the program reads itself through Pulumi's config (components/secrets.py),
# not part of the topology: a stack file holds them encrypted (`secure:`).
HOME_ADMIN_PASSWORD = "homeAdminPassword"
SECRET_KEYS = (HOME_ADMIN_PASSWORD,)


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


def read_stack_file(path: Path) -> dict[str, Any]:
    """The whole `config:` section of a stack file (all namespaces)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise TopologyError(str(path), [f"cannot read the stack file: {e.strerror}"]) from None
    except yaml.YAMLError as e:
        raise TopologyError(str(path), [f"not valid YAML: {str(e).splitlines()[0]}"]) from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise TopologyError(str(path), ["config: missing (a Pulumi stack file has a config: map)"])
    return config


def load_stack(name_or_path: str) -> Stack:
    path = stack_file(name_or_path)
    config = read_stack_file(path)
    return parse_stack(project_config(config), str(path), provider_regions(config))
