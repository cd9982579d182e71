from __future__ import annotations

import pytest
from pydantic import SecretStr

from softether import vpncmd as v
from softether.facts import read_commands

from .helpers import FAKE, error_script, reference_specs, vpncmd_output


def test_vpncmd_command_masks_secret_arguments_but_renders_them_for_the_script() -> None:
    cmd = v.Command("UserPasswordSet", ("bob", v.SecretArg(SecretStr("s3cr3t"), "/PASSWORD")))
    assert cmd.render() == "UserPasswordSet bob /PASSWORD:s3cr3t"
    assert cmd.masked() == "UserPasswordSet bob /PASSWORD:***"
    assert "s3cr3t" not in str(cmd)
    bare = v.Command("ServerPasswordSet", (v.SecretArg(SecretStr("adm1n")),))
    assert bare.render() == "ServerPasswordSet adm1n"
    assert bare.masked() == "ServerPasswordSet ***"


def test_vpncmd_script_selects_hubs_only_when_the_context_changes() -> None:
    C = v.Command
    cmds = [C("HubList"), C("UserList", hub="A"), C("CascadeList", hub="A"), C("BridgeList")]
    assert v.script(cmds) == ["HubList", "Hub A", "UserList", "CascadeList", "Hub", "BridgeList"]
    # From one hub to another through the unselected state.
    assert v.script([C("UserList", hub="A"), C("UserList", hub="B")]) == [
        "Hub A",
        "UserList",
        "Hub",
        "Hub B",
        "UserList",
    ]
    with pytest.raises(ValueError):
        v.script([C("Hub", ("A",))])


def test_vpncmd_mask_replaces_longest_secret_first() -> None:
    assert v.mask("pw pwpw x", ["pw", "pwpw"]) == "*** *** x"
    assert v.mask("nothing", [""]) == "nothing"


def test_vpncmd_split_output_reads_each_commands_own_status() -> None:
    commands = error_script(reference_specs())
    out = vpncmd_output("server_apply_errors", commands)
    parsed = v.split_output(out, v.script(commands))
    assert parsed.password_prompted
    codes = [r.code for r in parsed.replies]
    # HubCreate existing 57, ListenerDelete missing 53, Hub selects, UserPasswordSet ok,
    # Hub unselects, Hub NOPE 8, UserList refused (no hub selected: it cannot run in HYBRID),
    # Hub, RouterIfAdd same hub 97, unknown command, CascadeList without hub, ServerInfoGet.
    assert codes == [
        57, 53, 0, 0, 0, 8, v.NO_HUB_SELECTED, 0, 97, v.UNKNOWN_COMMAND, v.NO_HUB_SELECTED, 0
    ]  # fmt: skip
    assert parsed.replies[0].message.startswith("The Virtual Hub with the specified name")
    assert v.error_name(57) == "ERR_HUB_ALREADY_EXISTS"
    assert v.error_name(12345) == "ERR_12345"


def test_vpncmd_pair_blames_commands_of_an_unselectable_hub() -> None:
    C = v.Command
    cmds = [C("UserList", hub="NOPE"), C("HubList")]
    replies = [
        v.Reply("Hub NOPE", ("Error occurred. (Error code: 8)",), 8),
        v.Reply("UserList", ("User Name,Full Name", "bob,"), 0),
        v.Reply("Hub", (), 0),
        v.Reply("HubList", (), 0),
    ]
    paired = v.pair(cmds, replies)
    assert [r.code for _, r in paired] == [8, 0]
    assert paired[0][1].output == ()  # not the other hub's users


def test_vpncmd_split_output_rejects_output_of_another_script() -> None:
    out = vpncmd_output("bridge_fresh_read", read_commands(reference_specs().bridges["Hybrid-VPC"]))
    with pytest.raises(v.OutputError):
        v.split_output(out, ["ListenerList", "HubList", "SomethingElse"])


def test_vpncmd_split_output_recognises_access_denied() -> None:
    out = (
        "Password: *****\n\nAccess has been denied. Possibly the password is incorrect.\nPassword: "
    )
    with pytest.raises(v.AccessDenied):
        v.split_output(out, ["HubList"])


def test_vpncmd_csv_table_maps_headers_in_one_place_and_handles_quotes() -> None:
    rows = v.table(
        [
            "Setting Name,Status,Established at,Destination VPN Server,Virtual Hub",
            "home,Online (Established),2026-11-24 (Tue) 23:25:50,203.0.113.1,",
        ]
    )
    assert rows == [
        {
            "name": "home",
            "status": "Online (Established)",
            "established": "2026-11-24 (Tue) 23:25:50",
            "server": "203.0.113.1",
            "hub": "",
        }
    ]
    assert v.number('"21,246"'.strip('"')) == 21246
    assert v.number("1,234 bytes") == 1234
    assert v.items(["Item,Value", "SecureNAT,Disabled", "", "Other,table"]) == {
        "securenat": "Disabled"
    }


def test_vpncmd_fixture_outputs_hold_only_fake_secrets() -> None:
    # Guard for the fixtures themselves: captured with the fake passwords, nothing else.
    out = vpncmd_output("server_apply_errors", error_script(reference_specs()))
    assert f"{FAKE}-0" in out
    assert v.mask(out, [f"{FAKE}-0", f"{FAKE}-4"]).count(FAKE) == 0
