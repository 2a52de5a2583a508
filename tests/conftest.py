"""Every tier selects its tests by marker (``-m unit`` …): a test module without its tier's marker would be
deselected silently, so collection fails instead."""

from __future__ import annotations

from pathlib import Path

import pytest

# chart: by path
TIER_OF_DIR = {"unit": "unit", "integration": "integration", "cluster": "cluster", "node": "node", "e2e": "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = []
    for item in items:
        parts = Path(str(item.fspath)).parts
        tier = next((TIER_OF_DIR[p] for p in parts if p in TIER_OF_DIR and "tests" in parts), None)
        if tier and tier not in {m.name for m in item.iter_markers()}:
            unmarked.append(item.nodeid)
    if unmarked:
        raise pytest.UsageError(f"tests without their tier's marker would be skipped silently: {unmarked[:5]}")
