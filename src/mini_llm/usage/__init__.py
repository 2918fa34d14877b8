"""Usage accounting: the price table (a data file), costs, the ledger and its reports."""

from __future__ import annotations

from .ledger import Ledger
from .prices import Price, PriceTable

__all__ = ["Ledger", "Price", "PriceTable"]
