"""Shared state: the backend interface and its in-memory implementation."""

from .base import Counter, Deadline, StateBackend, StateUnavailableError
from .memory import MemoryState

__all__ = ["Counter", "Deadline", "MemoryState", "StateBackend", "StateUnavailableError"]
