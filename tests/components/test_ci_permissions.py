"""The README's table of the CI credentials' permissions names every lookup (invoke) the
program makes in a preview: a preview runs them with the CI's credentials (audit 2 #13)."""

from __future__ import annotations

import re
from pathlib import Path

from components.offline import ProgramRun

README = Path(__file__).resolve().parents[2] / "README.md"


def _table() -> dict[str, str]:
    text = README.read_text()
    section = text[text.index("**What the CI credentials need.**") :]
    return dict(re.findall(r"^\| `([\w:/-]+)`[^|]*\| ([^|]+) \|$", section, re.M))


def test_ci_permissions_readme_names_every_lookup_of_the_program(dev: ProgramRun, four_site: ProgramRun):
    made = {c.token for run in (dev, four_site) for c in run.calls}
    assert "azure-native:storage:listStorageAccountKeys" in made
    table = _table()
    assert sorted(made - set(table)) == []
    assert "Microsoft.Storage/storageAccounts/listKeys/action" in table["azure-native:storage:listStorageAccountKeys"]
