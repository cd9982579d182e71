"""The stack outputs `hybrid status` reads, in one shape for a Pulumi stack and for the lab.

`status` (a Pulumi secret: it holds the nodes' SoftEther specs, passwords included) names
every VPN node with its SSH address, pinned host key and spec, the L3 switch's transit
address and one host address per site to ping across the tunnels. The lab adds `lab`: the
namespace the operator stands in and its key file. The operator's private key is never an
output (see README, "The real-cloud path"): `hybrid status --key FILE` reads it.
Pure: the Pulumi program and the lab both build their outputs with `status_output`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .spec import spec_from_dict

STATUS = "status"
LAB = "lab"
MAX_PROBLEMS = 10  # lines; the last one counts the rest


class OutputsError(ValueError):
    """The outputs cannot be used; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class NodeSsh(_Model):
    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    host_key: str | None = Field(alias="hostKey")  # None: not pinned yet (the home server)


class NodeOutput(_Model):
    role: Literal["server", "bridge"]
    ssh: NodeSsh
    spec: dict[str, Any]  # softether.spec, secrets revealed
    # A bridge's address in its own site: the source of its pings to the other sites (their
    # route tables send the remote ranges, not the transit range, back through the bridges).
    private_address: IPv4Address | None = Field(default=None, alias="privateAddress")


class StatusOutput(_Model):
    stack: str
    switch: IPv4Address  # the L3 switch's transit address
    hosts: dict[str, IPv4Address]  # site -> an address to ping in it
    nodes: dict[str, NodeOutput] = Field(min_length=1)  # by site (the home site: its server)


class LabOutput(_Model):
    operator_namespace: str = Field(alias="operatorNamespace")
    operator_key_file: str = Field(alias="operatorKeyFile")


class Outputs(_Model):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)
    status: StatusOutput
    lab: LabOutput | None = None


def node_output(
    role: str,
    host: str,
    port: int,
    user: str,
    host_key: str | None,
    spec: Mapping[str, Any],
    private_address: IPv4Address | None = None,
) -> dict[str, Any]:
    ssh = {"host": host, "port": port, "user": user, "hostKey": host_key}
    out: dict[str, Any] = {"role": role, "ssh": ssh, "spec": dict(spec)}
    return out | ({"privateAddress": str(private_address)} if private_address else {})


def status_output(
    stack: str,
    switch: IPv4Address,
    hosts: Mapping[str, IPv4Address],
    nodes: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "stack": stack,
        "switch": str(switch),
        "hosts": {k: str(v) for k, v in hosts.items()},
        "nodes": dict(nodes),
    }


def parse_outputs(text: str, source: str) -> Outputs:
    """What `pulumi stack output --json --show-secrets` (or `hybrid lab outputs`) printed:
    the outputs with every node's spec valid, or an OutputsError of at most MAX_PROBLEMS
    lines (a spec's values are never shown: it holds the passwords)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise OutputsError([f"{source}: not JSON ({e.msg} at line {e.lineno})"]) from None
    except RecursionError:
        raise OutputsError([f"{source}: not JSON (nested too deeply)"]) from None
    if not isinstance(data, dict):
        raise OutputsError([f"{source}: not a JSON object of stack outputs"])
    value = data.get(STATUS)
    if value is None:
        raise OutputsError(
            [f"{source}: no '{STATUS}' output: deployed before `hybrid status` existed? pulumi up"]
        )
    if value == "[secret]":
        raise OutputsError(
            [f"{source}: {STATUS}: '[secret]': use pulumi stack output --json --show-secrets"]
        )
    try:
        outputs = Outputs.model_validate(data)
    except ValidationError as e:
        raise OutputsError(_capped(source, _lines(e, (), show=True))) from None
    problems: list[str] = []
    for site, node in outputs.status.nodes.items():
        try:
            spec_from_dict(node.spec)
        except ValidationError as e:
            problems += _lines(e, (STATUS, "nodes", site, "spec"), show=False)
    if problems:
        raise OutputsError(_capped(source, problems))
    return outputs


def _lines(e: ValidationError, prefix: tuple[str, ...], show: bool) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in (*prefix, *err['loc']))}: {err['msg']}"
        + (f" (got {repr(err['input'])[:80]})" if show and not isinstance(err["input"], dict) else "")
        for err in e.errors(include_url=False)
    ]


def _capped(source: str, problems: list[str]) -> list[str]:
    lines = [f"{source}: {p}" for p in problems]
    if len(lines) <= MAX_PROBLEMS:
        return lines
    rest = len(lines) - (MAX_PROBLEMS - 1)
    return [*lines[: MAX_PROBLEMS - 1], f"{source}: ... and {rest} more problems"]
