"""Token cost: USD per million input/output tokens, per model, from settings."""

from __future__ import annotations

from collections.abc import Mapping


def cost_usd(prices: Mapping[str, tuple[float, float]], model: str, tokens_in: int, tokens_out: int) -> float:
    """Estimated cost; 0 for models without a price (offline, echo, unknown)."""
    price = prices.get(model)
    if price is None:
        return 0.0
    return round((tokens_in * price[0] + tokens_out * price[1]) / 1_000_000, 6)
