"""Lazy access to the LiteRT wheel, so that `import latency` works without it."""
from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

from .errors import RuntimeMissingError

INSTALL_HINT = "pip install ai-edge-litert  (or the project's extra: pip install -e '.[latency]')"


@cache
def schema() -> ModuleType:
    """The TFLite flatbuffer schema module shipped with LiteRT."""
    try:
        import ai_edge_litert.schema_py_generated as s
        import flatbuffers  # noqa: F401  (the schema module needs it to pack)
    except ImportError as e:
        raise RuntimeMissingError(f"building TFLite graphs needs the LiteRT runtime ({e}); {INSTALL_HINT}") from None
    return s


def interpreter_class() -> Any:
    """`ai_edge_litert.interpreter.Interpreter`, or a clear error naming the install command."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise RuntimeMissingError(f"measuring latency needs the LiteRT runtime ({e}); {INSTALL_HINT}") from None
    return Interpreter


@cache
def runtime_version() -> str:
    """`ai-edge-litert <version>` of the installed wheel."""
    try:
        from importlib.metadata import version

        return f"ai-edge-litert {version('ai-edge-litert')}"
    except Exception:  # noqa: BLE001 - metadata missing in odd installs; the name still helps
        return "ai-edge-litert (unknown version)"
