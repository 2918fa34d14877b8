"""The SDK: a manager that keeps one shared gateway running, and clients for it."""

from __future__ import annotations
