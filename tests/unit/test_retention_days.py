"""Every kind of row the dashboard sizes has a retention period to show."""

from __future__ import annotations

from alerts.config import get_settings
from alerts.retention import _TABLES, PRUNE_ORDER, retention_days


def test_every_sized_kind_has_a_retention_period() -> None:
    settings = get_settings()
    assert set(PRUNE_ORDER) <= set(_TABLES)
    periods = {kind: retention_days(settings, kind) for kind in _TABLES}
    assert periods["distinct_interests"] == periods["matches"] == settings.retain_matches_days
    assert periods["audit_entries"] == settings.retain_audit_days
