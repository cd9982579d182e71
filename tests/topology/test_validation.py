"""Every bad stack is refused before anything is touched, with one line naming field and value."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.stack import check_file
from topology import (
    TopologyError,
    load_stack,
    parse_stack,
    project_config,
    read_stack_file,
    stack_file,
)

HERE = Path(__file__).parent
EDITS = yaml.safe_load((HERE / "bad_edits.yaml").read_text())
REFERENCE = read_stack_file(stack_file("dev"))


def _apply(config: dict[str, Any], path: str, value: Any) -> None:
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    node: Any = config
    for key in keys[:-1]:
        node = node[key]
    if value == "~delete":
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


def edited(edits: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(project_config(REFERENCE))
    for path, value in edits.items():
        _apply(config, path, value)
    return config


def test_corpus_is_large_enough():
    assert len(EDITS) >= 30
    assert len({e["name"] for e in EDITS}) == len(EDITS)


def case_file(case: dict[str, Any], folder: Path) -> Path:
    """The reference stack file with a case's edits: `set` (paths in the project's config),
    `config` (keys of the whole `config:` map), `append` (raw lines at the end of `config:`),
    or `text` (the whole file, written in `encoding`)."""
    path = folder / f"Pulumi.{case['name']}.yaml"
    if "text" in case:
        path.write_bytes(case["text"].encode(case.get("encoding", "utf-8")))
        return path
    config = {k: v for k, v in copy.deepcopy(REFERENCE).items() if not k.startswith("hybrid-cloud:")}
    config |= {f"hybrid-cloud:{k}": v for k, v in edited(case.get("set", {})).items()}
    for key, value in case.get("config", {}).items():
        if value == "~delete":
            del config[key]
        else:
            config[key] = value
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False) + case.get("append", ""))
    return path


@pytest.mark.parametrize("case", EDITS, ids=[e["name"] for e in EDITS])
def test_validation_refuses_bad_stack(case: dict[str, Any], tmp_path: Path):
    # Everything `hybrid check` runs, on the edited stack file.
    with pytest.raises(TopologyError) as err:
        check_file(case_file(case, tmp_path))
    lines = err.value.problems
    assert any(case["error"] in line for line in lines), lines
    assert all("\n" not in line for line in lines)
    if "hidden" in case:
        assert not any(case["hidden"] in line for line in lines), lines


def test_validation_corpus_has_a_case_for_every_rule_of_the_table():
    rows = re.findall(r"^\| `([a-z0-9.-]+)` \|", (HERE.parents[1] / "docs" / "rules.md").read_text(), re.M)
    assert len(rows) == len(set(rows)), "a rule id twice in docs/rules.md"
    named = {e["rule"] for e in EDITS}
    assert sorted(set(rows) - named) == [], "rules of docs/rules.md without a bad-edit case"
    assert sorted(named - set(rows)) == [], "cases naming no rule of docs/rules.md"


def test_validation_reports_every_problem_at_once():
    config = edited(
        {
            "network.sites[0].bridge.privateAddress": "192.168.20.1",
            "network.sites[1].bridge.transitAddress": "192.168.10.2",
        }
    )
    with pytest.raises(TopologyError) as err:
        parse_stack(config)
    assert len(err.value.problems) == 2


def test_validation_accepts_reference_and_four_site_stacks():
    assert len(load_stack("dev").network.sites) == 2
    assert len(load_stack(str(HERE.parent / "stacks" / "Pulumi.four-site.yaml")).network.sites) == 3


def test_model_is_frozen():
    stack = load_stack("dev")
    with pytest.raises(ValueError):
        stack.network.transit.hub = "OTHER"  # type: ignore[misc]


# The same refusals through the command line, from files: exit 2, no traceback.
CLI_CASES = [
    e
    for e in EDITS
    if e["name"]
    in {
        "aws-bridge-on-vpc-router",
        "overlap-sites",
        "bridge-outside-its-subnet",
        "bad-cidr-syntax",
        "public-range-home",
        "duplicate-transit-address",
        "unknown-field",
        "subnet-zone-of-another-region",
        "rds-engine-extended-support",
        "public-host-url",
        "public-host-with-port",
        "public-host-with-spaces",
    }
]


def _refused(path: Path, message: str) -> subprocess.CompletedProcess[str]:
    """`hybrid check PATH` exits 2 with `message` on stderr and no traceback."""
    run = subprocess.run(
        [sys.executable, "-m", "cli", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    return run


@pytest.mark.parametrize("case", CLI_CASES, ids=[e["name"] for e in CLI_CASES])
def test_check_cli_refuses_bad_stack_file(case: dict[str, Any], tmp_path: Path):
    run = _refused(case_file(case, tmp_path), case["error"])
    assert run.stdout == ""


@pytest.mark.parametrize(
    ("value", "lines"),
    [
        # What `pulumi config set` without --secret writes: plain, and here weak as well.
        ("short1", ["homeAdminPassword: (value not shown) is plain text", "homeAdminPassword: (value not shown) is shorter than 20"]),
        ("Xk3f9QmZ2pLr8sTv1WcYq", ["homeAdminPassword: (value not shown) is plain text"]),
    ],
)
def test_check_cli_refuses_a_plain_home_admin_password_without_showing_it(
    value: str, lines: list[str], tmp_path: Path
) -> None:
    doc = copy.deepcopy(REFERENCE) | {"hybrid-cloud:homeAdminPassword": value}
    path = tmp_path / "Pulumi.plain.yaml"
    path.write_text(yaml.safe_dump({"config": doc}))
    run = _refused(path, lines[0])
    assert all(line in run.stderr for line in lines) and value not in run.stderr


def test_check_cli_cannot_read_an_encrypted_home_admin_password(tmp_path: Path) -> None:
    doc = copy.deepcopy(REFERENCE) | {"hybrid-cloud:homeAdminPassword": {"secure": "v1:AAAA"}}
    path = tmp_path / "Pulumi.secure.yaml"
    path.write_text(yaml.safe_dump({"config": doc}))
    run = subprocess.run([sys.executable, "-m", "cli", "check", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        ("config: [unclosed", "not valid YAML"),
        ("name: no-config-here\n", "config: missing"),
    ],
)
def test_check_cli_refuses_unreadable_stack_file(text: str, message: str, tmp_path: Path):
    path = tmp_path / "Pulumi.broken.yaml"
    path.write_text(text)
    _refused(path, message)


# Hostile paths (issue 15, defect 8): refused at once with one line, bounded in size and time.
def _hostile(kind: str, d: Path) -> Path:
    path = d / f"Pulumi.{kind}.yaml"
    match kind:
        case "dev-zero" | "dev-urandom":
            return Path("/dev") / kind.split("-")[1]
        case "fifo":
            os.mkfifo(path)  # nobody writes: reading it would wait forever
        case "not-utf8":
            path.write_bytes(b"config:\n  hybrid-cloud:x: \xff\xfe\n")
        case "too-large":
            path.write_bytes(b"#" * (2 << 20))
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("dev-zero", "not a regular file"),
        ("dev-urandom", "not a regular file"),
        ("fifo", "not a regular file"),
        ("not-utf8", "not UTF-8 text"),
        ("too-large", "larger than"),
    ],
)
def test_check_cli_refuses_hostile_stack_path(kind: str, message: str, tmp_path: Path) -> None:
    run = _refused(_hostile(kind, tmp_path), message)
    assert len(run.stderr.strip().splitlines()) == 1
