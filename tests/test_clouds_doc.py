"""docs/clouds.md lists every place that knows a cloud kind (review improvement 1's proof)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "clouds.md"
PRODUCT = ("topology", "components", "cli", "lab", "policies", "softether")
# Code that knows a cloud kind: a dispatch on it, a cloud-keyed table, a per-cloud component
# tested by type, or a cloud provider's resource type token.
KNOWS_A_CLOUD = re.compile(
    r'case\s+"(aws|azure)"'
    r'|\bcloud\s*[!=]=\s*"'
    r'|"(aws|azure)"\s*:'
    r"|isinstance\([^)]*\b(HybridVpc|HybridVnet|Ec2Bridge|AzureVmBridge)\b"
    r'|"(aws|azure-native):[\w/]+:\w+"'
)


def _listed(sections: tuple[str, ...] | None = None) -> set[str]:
    """Backticked paths of the doc (first table column of `sections`, by number, if given)."""
    text = DOC.read_text()
    if sections is None:
        return set(re.findall(r"`([\w/]+\.(?:py|yaml))`", text))
    parts = [p for p in text.split("\n## ") if p.split(".", 1)[0] in sections]
    return {path for p in parts for path in re.findall(r"^\| `([\w/]+\.py)` \|", p, re.M)}


def test_clouds_doc_lists_every_file_that_knows_a_cloud_kind() -> None:
    found = {
        str(p.relative_to(ROOT))
        for package in PRODUCT
        for p in sorted((ROOT / package).rglob("*.py"))
        if KNOWS_A_CLOUD.search(p.read_text())
    }
    assert found, "the pattern finds nothing: it no longer matches the code"
    assert sorted(found - _listed()) == []


def test_clouds_doc_names_only_files_that_exist() -> None:
    assert sorted(p for p in _listed() if not (ROOT / p).is_file()) == []


def test_clouds_doc_a_third_cloud_kind_fails_pyright_at_every_listed_match(tmp_path: Path) -> None:
    """`gcp` added to `Cloud` in a copy of the tree: pyright reports an `assert_never` at each
    exhaustive match of the doc's groups 1 and 2, and at nothing else."""
    for package in PRODUCT:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)  # the same pyright settings
    clouds = tmp_path / "topology" / "clouds.py"
    source = clouds.read_text()
    declared = 'Cloud = Literal["aws", "azure"]'
    assert declared in source
    clouds.write_text(source.replace(declared, 'Cloud = Literal["aws", "azure", "gcp"]'))
    pyright = Path(sys.executable).with_name("pyright")
    out = subprocess.run(
        [str(pyright), "--pythonpath", sys.executable, "--outputjson", *PRODUCT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [d for d in json.loads(out.stdout)["generalDiagnostics"] if d["severity"] == "error"]
    where = {str(Path(d["file"]).relative_to(tmp_path)) for d in errors}
    assert all("assert_never" in d["message"] and "gcp" in d["message"] for d in errors), errors
    assert where == _listed(("1", "2"))
