"""Moved to the `nas.executors` package (inline, local process pool, Ray); kept for old imports."""
from .executors import InlineExecutor, build_executor

__all__ = ["InlineExecutor", "build_executor"]
