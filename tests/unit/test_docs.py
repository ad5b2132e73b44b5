"""Every setting is documented in the README with its default."""

from __future__ import annotations

from alerts.config import Settings
from tests.conftest import REPO_ROOT


def test_readme_documents_every_setting() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [
        f"ALERTS_{name.upper()}"
        for name in Settings.model_fields
        if f"`ALERTS_{name.upper()}`" not in readme
    ]
    assert missing == []
