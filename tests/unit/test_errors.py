"""Every error the domain raises on purpose belongs to the one tree in alerts.errors."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import alerts
from alerts.errors import AlertsError

# Edges raise HTTP errors that FastAPI answers; they are not domain errors.
EDGE_PACKAGES = ("alerts.web", "alerts.cli")


def domain_modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(alerts.__path__, "alerts.")
        if not info.name.startswith(EDGE_PACKAGES)
        and ".migrations" not in info.name
        and info.name != "alerts.__main__"
    ]
    return sorted(names)


def test_every_domain_error_is_an_alerts_error() -> None:
    strays = []
    seen = 0
    for name in domain_modules():
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if not (inspect.isclass(value) and issubclass(value, Exception)):
                continue
            if value.__module__ != name or attribute.startswith("_"):
                continue
            seen += 1
            if not issubclass(value, AlertsError):
                strays.append(f"{name}.{attribute}")
    assert seen >= 20, "the walk found too few error classes to mean anything"
    assert strays == []


def test_one_name_for_an_unknown_region() -> None:
    from alerts import matching, regions

    assert matching.UnknownRegionError is regions.UnknownRegionError
    assert not hasattr(matching, "RegionNotFoundError")
