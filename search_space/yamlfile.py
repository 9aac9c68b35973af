"""Reading a YAML file with one-line errors that name the file (shared by every loader)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import read_text


def read_yaml_file(path: str | Path, error: type[Exception], what: str = "file") -> Any:
    """Parse `path` with yaml.safe_load; a missing file or bad YAML raises `error` naming the file."""
    import yaml

    p = Path(path)
    text = read_text(p, error, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{p}: not valid YAML: {' '.join(str(e).split())}") from None
