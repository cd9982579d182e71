"""Rotation as a stack change (`hybrid-cloud:rotation`), under the mocks: a new counter of a
kind replaces exactly that kind's generated secrets (pulumi-random `keepers`) and changes
exactly the node specs that use them; the certificate counter gives the home server a new
certificate, which every bridge then pins."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.offline import ProgramRun, plain, run_program
from components.secrets import password_name
from softether.derive import secret_kind, secret_names
from tests.components.conftest import DEV, HOME_ADMIN, OPERATOR, PINNED, program_run
from topology import TopologyError

NODE = "pulumi-python:dynamic/softether:SoftEtherNode"
PASSWORD = "random:index/randomPassword:RandomPassword"
KINDS = ("cascade", "admin", "hub", "certificate")


def rotated(**counters: int) -> ProgramRun:
    config = PINNED | {"hybrid-cloud:rotation": json.dumps(counters)}
    return run_program(DEV, config=config, secrets=HOME_ADMIN | OPERATOR)


def passwords(run: ProgramRun) -> dict[str, str]:
    generated = {r.name: r.outputs["result"] for r in run.of_type(PASSWORD)}
    names = (password_name("secrets", n) for n in secret_names(run.stack.network))
    return {n: generated[p] for n, p in zip(secret_names(run.stack.network), names, strict=True) if p in generated}


def specs(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {r.name: plain(r.inputs["spec"]) for r in run.of_type(NODE)}


@pytest.mark.parametrize("kind", ["cascade", "admin", "hub"])
def test_rotation_bump_replaces_exactly_the_secrets_of_its_kind(kind: str) -> None:
    before, after = program_run(DEV), rotated(**{kind: 1})
    net = before.stack.network
    old, new = passwords(before), passwords(after)
    assert old.keys() == new.keys()
    changed = {n for n in old if old[n] != new[n]}
    assert changed == {n for n in old if secret_kind(net, n) == kind}
    assert changed  # every kind has generated secrets in the reference stack
    # ... through the keepers, which pulumi-random replaces a password for.
    for n in changed:
        assert after.one(PASSWORD, password_name("secrets", n)).inputs["keepers"] == {"rotation": "1"}


@pytest.mark.parametrize(
    ("kind", "nodes"),
    [
        ("cascade", {"home-softether", "Hybrid-VPC-bridge-softether", "Hybrid-VNet-bridge-softether"}),
        ("admin", {"Hybrid-VPC-bridge-softether", "Hybrid-VNet-bridge-softether"}),
        ("hub", {"home-softether"}),
        # The server's new certificate, then every bridge's pin of it.
        ("certificate", {"home-softether", "Hybrid-VPC-bridge-softether", "Hybrid-VNet-bridge-softether"}),
    ],
)
def test_rotation_bump_changes_exactly_the_node_specs_that_use_it(kind: str, nodes: set[str]) -> None:
    old, new = specs(program_run(DEV)), specs(rotated(**{kind: 1}))
    assert {n for n in old if old[n] != new[n]} == nodes


def test_certificate_rotation_makes_the_server_regenerate_and_the_bridges_pin_the_new_one() -> None:
    before, after = program_run(DEV), rotated(certificate=2)
    home_old = before.one(NODE, "home-softether")
    home_new = after.one(NODE, "home-softether")
    assert plain(home_new.inputs["spec"])["certificate_rotation"] == 2
    assert home_new.outputs["certificate"] != home_old.outputs["certificate"]
    for site in ("Hybrid-VPC", "Hybrid-VNet"):
        cascade = plain(after.one(NODE, f"{site}-bridge-softether").inputs["spec"])["hubs"][0]["cascades"][0]
        assert cascade["server_cert"] == home_new.outputs["certificate"]


def test_no_rotation_sets_no_keepers_so_older_stacks_keep_their_passwords() -> None:
    run = program_run(DEV)
    assert run.stack.rotation.model_dump() == dict.fromkeys(KINDS, 0)
    assert all(not r.inputs.get("keepers") for r in run.of_type(PASSWORD))


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ({"cascade": -1}, "rotation.cascade: -1 is invalid: Input should be greater than or equal to 0"),
        ({"cascade": True}, "rotation.cascade: True is invalid: Value error, a counter (0, 1, 2, ...), not true or false"),
        ({"pin": 1}, "rotation.pin: unknown field"),
        ({"hub": "soon"}, "rotation.hub: 'soon' is invalid: Input should be a valid integer"),
    ],
)
def test_bad_rotation_value_is_one_line_naming_field_and_value(value: dict[str, Any], line: str) -> None:
    with pytest.raises(TopologyError) as e:
        rotated(**value)
    assert len(e.value.problems) == 1
    assert e.value.problems[0].startswith(line)
