"""Token cost: USD per million input/output tokens, per model, from settings (HUMANIZER_MODEL_PRICES)."""

from __future__ import annotations

from collections.abc import Mapping


def cost_usd(prices: Mapping[str, tuple[float, float]], model: str, tokens_in: int, tokens_out: int) -> float:
    """Estimated cost; the longest priced name that prefixes ``model`` sets the price (so a dated
    snapshot such as ``gpt-4o-mini-2024-07-18`` costs what ``gpt-4o-mini`` costs). 0 when unpriced."""
    key = max((k for k in prices if model.startswith(k)), key=len, default=None)
    if key is None:
        return 0.0
    price_in, price_out = prices[key]
    return round((max(0, tokens_in) * price_in + max(0, tokens_out) * price_out) / 1_000_000, 6)
