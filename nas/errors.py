"""The base of every mistake a user can fix: the CLI prints it as one line and exits 2."""
from __future__ import annotations


class UserError(ValueError):
    """A one-line, user-fixable error (config, data, run folder, missing optional dependency)."""
