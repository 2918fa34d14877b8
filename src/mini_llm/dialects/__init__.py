"""Client dialects: one module (or package) per client API the gateway speaks."""

from .base import Dialect

__all__ = ["Dialect"]
