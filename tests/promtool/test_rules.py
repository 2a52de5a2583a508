"""promtool on the alert rules and on every dashboard query (a real PromQL parse).

Needs promtool from the cache (``make promtool``; ``make chart-test`` installs it first) or $PROMTOOL.
Marked ``cluster``: like helm it is a tool the cluster tier builds; without it these tests fail, they
never skip.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "humanizer"
PROMTOOL_VERSION = "v0.316.0"  # keep in step with mk/chart.mk


def promtool() -> str:
    cache = Path(os.environ.get("HUMANIZER_CACHE") or Path.home() / ".cache" / "humanizer")
    path = os.environ.get("PROMTOOL") or str(cache / "promtool" / PROMTOOL_VERSION / "bin" / "promtool")
    if not Path(path).is_file():
        pytest.fail(f"promtool not found at {path}: run `make promtool` (or set PROMTOOL)")
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_rules_file_is_valid() -> None:
    res = run("check", "rules", "--lint=all", "--lint-fatal", str(CHART / "files" / "alerts.yaml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_alert_unit_tests_pass() -> None:
    res = run("test", "rules", "alerts_test.yaml", cwd=ROOT / "tests" / "promtool")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel query becomes a recording rule, so promtool parses it with the real PromQL parser."""
    rules: list[dict[str, str]] = []
    for path in sorted((CHART / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(var, value)
                rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:q{len(rules)}", "expr": expr})
    assert len(rules) > 30
    file = tmp_path / "dashboards.rules.yaml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    res = run("check", "rules", str(file))
    assert res.returncode == 0, res.stdout + res.stderr
