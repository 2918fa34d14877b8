"""Policies: one ordered chain of hooks around the dispatch (auth, limits, cache, usage…)."""

from .base import Policy, PolicyChain, RequestInfo
from .request_log import RequestLog

__all__ = ["Policy", "PolicyChain", "RequestInfo", "RequestLog"]
