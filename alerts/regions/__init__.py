"""Regions: the gazetteer, its hierarchy and region detection in articles."""

from alerts.regions.gazetteer import (
    BODY_MENTIONS_REQUIRED,
    Gazetteer,
    Mention,
    Region,
    RegionAssignment,
    UnknownRegionError,
    default_gazetteer,
    load_gazetteer,
)

__all__ = [
    "BODY_MENTIONS_REQUIRED",
    "Gazetteer",
    "Mention",
    "Region",
    "RegionAssignment",
    "UnknownRegionError",
    "default_gazetteer",
    "load_gazetteer",
]
