"""Reading a YAML file with one-line errors that name the file (shared by every loader)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def read_yaml_file(path: str | Path, error: type[Exception], what: str = "file") -> Any:
    """Parse `path` with yaml.safe_load; a missing file or bad YAML raises `error` naming the file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise error(f"{what} {str(p)!r} does not exist")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise error(f"{p}: not valid YAML: {' '.join(str(e).split())}") from None
