"""The errors of the latency package."""
from __future__ import annotations


class LatencyTableError(ValueError):
    """A latency table that cannot be read, is of another schema, or lacks an entry."""


class RuntimeMissingError(ImportError):
    """The LiteRT runtime (`ai_edge_litert`) is needed but not installed."""
