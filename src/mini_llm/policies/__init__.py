"""Policies: one ordered chain of hooks around the dispatch (auth, limits, cache, usage…)."""

from .access_log import AccessLog
from .base import Policy, PolicyChain, RequestInfo
from .metrics import Metrics, MetricsPolicy
from .request_log import RequestLog
from .usage import UsageLedger

__all__ = [
    "AccessLog",
    "Metrics",
    "MetricsPolicy",
    "Policy",
    "PolicyChain",
    "RequestInfo",
    "RequestLog",
    "UsageLedger",
]
