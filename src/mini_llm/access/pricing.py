"""What a request costs, for budgets. A stand-in: the usage work (`usage/`, issue #10) brings
the real price table; point `cost` at it when it lands. Unknown models are priced at a
conservative default so that a budget always stops spending."""

from __future__ import annotations

__all__ = ["cost"]

# USD per million tokens: (input, output); matched on the model name's last part, by prefix
_PRICES: tuple[tuple[str, float, float], ...] = (
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1", 2.00, 8.00),
    ("o4-mini", 1.10, 4.40),
    ("claude-opus", 15.00, 75.00),
    ("claude-sonnet", 3.00, 15.00),
    ("claude-haiku", 0.80, 4.00),
    ("gemini-2.5-pro", 1.25, 10.00),
    ("gemini-2.5-flash", 0.30, 2.50),
)
_DEFAULT = (1.00, 4.00)


def cost(model: str, input_tokens: int, output_tokens: int) -> float:
    """USD for `input_tokens` in and `output_tokens` out on `model`."""
    name = model.rpartition("/")[2]
    price_in, price_out = _DEFAULT
    for prefix, p_in, p_out in _PRICES:
        if name.startswith(prefix):
            price_in, price_out = p_in, p_out
            break
    return (input_tokens * price_in + output_tokens * price_out) / 1_000_000
