"""The Grafana dashboards and the alert rules query only metrics that exist.

Every PromQL expression in charts/humanizer/dashboards/*.json (panel targets and variable queries) and in
charts/humanizer/files/alerts.yaml is lexed here (strings, label matchers, grouping clauses, ranges), checked
for balanced brackets and known functions, and its metric names are compared with what the API and the
workers export (``humanizer.metrics``: counters as ``_total``, histograms as ``_bucket``/``_sum``/``_count``).
Names from other exporters are listed explicitly below; the operator's autoscaler metrics are allowed while
the operator does not export them yet, and this test says so. A full PromQL parse of the same expressions
runs with promtool in tests/promtool/test_rules.py.
"""

from __future__ import annotations

import importlib
import json
import re
import runpy
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from humanizer import metrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "humanizer"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
ALERTS = CHART / "files" / "alerts.yaml"

# Metrics the operator (autoscaler) will export; allowed until humanizer_operator.metrics exists.
OPERATOR_METRICS_PENDING = frozenset({
    "humanizer_autoscaler_desired_replicas",
    "humanizer_autoscaler_current_replicas",
})
# Not ours: Prometheus' own target health, and the redis_exporter sidecar (redis.metrics.enabled).
EXTERNAL_METRICS = frozenset({"up", "redis_up", "redis_memory_used_bytes", "redis_memory_max_bytes"})

FUNCTIONS = frozenset({
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "count_over_time", "delta", "deriv", "exp", "floor", "histogram_quantile", "idelta", "increase", "irate",
    "label_join", "label_replace", "last_over_time", "ln", "max_over_time", "min_over_time", "predict_linear",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sort", "sort_desc", "sqrt", "stddev_over_time",
    "sum_over_time", "time", "timestamp", "vector", "present_over_time",
})
AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
})
KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "atan2",
})
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

TOKEN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      |(?P<range>\[[^\]]*\])
      |(?P<number>(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)
      |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      |(?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){},])
    """,
    re.VERBOSE,
)


def lex(expr: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot lex {expr[pos:pos + 20]!r} in {expr!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, m.group()))
        pos = m.end()
    return tokens


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (label names, functions and keywords excluded)."""
    tokens = lex(expr)
    depth = {"(": 0, "{": 0}
    names: set[str] = set()
    in_labels = False
    grouping_depth: int | None = None
    for i, (kind, text) in enumerate(tokens):
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text in "({":
            depth[text] += 1
            if text == "{":
                in_labels = True
        elif text in ")}":
            opener = "(" if text == ")" else "{"
            depth[opener] -= 1
            if depth[opener] < 0:
                raise ValueError(f"unbalanced {text!r} in {expr!r}")
            if text == "}":
                in_labels = False
            if text == ")" and grouping_depth is not None and depth["("] < grouping_depth:
                grouping_depth = None
        if kind != "ident" or in_labels or grouping_depth is not None:
            continue
        if text in GROUPING:
            if nxt == "(":
                grouping_depth = depth["("] + 1
            continue
        if text in KEYWORDS:
            continue
        if text in AGGREGATIONS and nxt in ("by", "without"):
            continue
        if nxt == "(":
            if text not in FUNCTIONS and text not in AGGREGATIONS:
                raise ValueError(f"unknown function {text!r} in {expr!r}")
            continue
        names.add(text)
    if any(depth.values()):
        raise ValueError(f"unbalanced brackets in {expr!r}")
    return names


def exported_names() -> set[str]:
    """Sample names the API and workers expose, from humanizer.metrics."""
    names: set[str] = set()
    for collector in metrics.ALL_METRICS:
        for family in collector.describe():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return names


def operator_names() -> set[str] | None:
    """The operator's metric names once ``humanizer_operator.metrics`` exists (None until then)."""
    try:
        module = importlib.import_module("humanizer_operator.metrics")
    except ImportError:
        return None
    names: set[str] = set()
    for value in vars(module).values():
        describe = getattr(value, "describe", None)
        if callable(describe) and type(value).__module__.startswith("prometheus_client"):
            for family in describe():
                names.add(family.name + ("_total" if family.type == "counter" else ""))
                if family.type == "histogram":
                    names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
                assert m, f"{path.name}: variable {var['name']}: unexpected query {query!r}"
                yield f"{path.name}: variable {var['name']}", m.group(1)


def rule_exprs() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"alerts.yaml: {rule.get('alert') or rule.get('record')}", rule["expr"]


def recorded_names() -> set[str]:
    return {r["record"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "record" in r}


def all_exprs() -> list[tuple[str, str]]:
    return [*dashboard_exprs(), *rule_exprs()]


# ---- the lexer itself -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("expr", "expected"), [
    ('sum by (le, queue) (rate(a_bucket{namespace=~"$ns", x="by (y)"}[$__rate_interval]))', {"a_bucket"}),
    ("sum(b) > 0 unless on() count(up{job=\"worker\"} == 1) > 0", {"b", "up"}),
    ("(sum(rate(c_total[10m])) or vector(0)) == 0", {"c_total"}),
    ("x / ignoring(pod) group_left(node) y", {"x", "y"}),
    ("max(redis_up) == 0", {"redis_up"}),
])
def test_metric_names_lexer(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


@pytest.mark.parametrize("expr", ["sum(rate(x[5m])", "sum(x{a=\"b\")", "frobnicate(x)"])
def test_metric_names_lexer_rejects(expr: str) -> None:
    with pytest.raises(ValueError):
        metric_names(expr)


# ---- dashboards and rules ---------------------------------------------------------------------------------
def test_there_is_something_to_check() -> None:
    assert {p.name for p in DASHBOARDS} == {"overview.json", "job-drilldown.json"}
    assert len(list(dashboard_exprs())) > 30
    assert len(list(rule_exprs())) >= 8


def test_dashboards_are_generated_from_generate_py() -> None:
    rendered = runpy.run_path(str(CHART / "dashboards" / "generate.py"))["render"]()
    for name, text in rendered.items():
        assert (CHART / "dashboards" / name).read_text() == text, (
            f"dashboards/{name} is stale: run python charts/humanizer/dashboards/generate.py")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"].startswith("humanizer-") and len(board["uid"]) <= 40
    assert board["title"].startswith("Humanizer / ")
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    var_names = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in var_names
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] in ("row", "text"):
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            used = set(re.findall(r"\$(?!__)(\w+)", target["expr"]))
            assert used <= var_names, f"{panel['title']}: undefined variables {used - var_names}"


def test_every_metric_used_exists() -> None:
    exported = exported_names()
    from_operator = operator_names()
    known = exported | EXTERNAL_METRICS | recorded_names()
    if from_operator is None:
        known |= OPERATOR_METRICS_PENDING
    else:
        known |= from_operator
    unknown: dict[str, set[str]] = {}
    used: set[str] = set()
    for where, expr in all_exprs():
        names = metric_names(expr)
        used |= names
        if missing := names - known:
            unknown[where] = missing
    assert not unknown, f"metrics that nothing exports: {unknown}"
    pending = sorted(used & OPERATOR_METRICS_PENDING - (from_operator or set()))
    if pending:
        message = (f"operator metrics pending (allowed until humanizer_operator.metrics exports them): "
                   f"{', '.join(pending)}")
        print(message)
        warnings.warn(message, stacklevel=1)


def test_histograms_are_queried_through_buckets_and_counters_through_rates() -> None:
    exported = exported_names()
    for where, expr in all_exprs():
        if ": variable " in where:  # label_values(selector, label) lists series; no rate needed
            continue
        for name in metric_names(expr):
            if name.endswith("_bucket"):
                assert "histogram_quantile" in expr, f"{where}: {name} outside histogram_quantile"
            if name.endswith("_total") and name in exported:
                assert re.search(rf"(rate|increase)\(\s*{name}\b", expr), f"{where}: counter {name} without rate()"


def test_rules_are_complete() -> None:
    alerts = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r]
    names = {a["alert"] for a in alerts}
    assert {
        "HumanizerJobFailureRateHigh", "HumanizerDeadLettersGrowing", "HumanizerQueueNotDraining",
        "HumanizerNoWorkers", "HumanizerProviderAuthFailure", "HumanizerRedisDown",
    } <= names
    for alert in alerts:
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]
        assert "for" in alert, alert["alert"]


def test_alert_unit_tests_cover_every_alert() -> None:
    tests = yaml.safe_load((ROOT / "tests" / "promtool" / "alerts_test.yaml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert alerts <= tested, f"alerts without a firing unit test: {alerts - tested}"
