"""The deploy/ monitoring files as test data: alert rules, the dashboard, PromQL metric names.

Shared by the promtool checks (unit), the metric-name check against the running api and
daemon (integration) and the real-Prometheus acceptance test.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules" / "sender.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "sender.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "campaign-sender.json"
RUNBOOK = DEPLOY / "RUNBOOK.md"

#: Series Prometheus itself writes for every target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

#: Grafana's range variables, replaced by a duration so the expression parses as PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan", "atan2"}
)
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_JOB_MATCHER = re.compile(r"\bjob\s*=\s*\"([^\"]*)\"")


def promtool() -> str:
    """The promtool binary; a missing one fails the test (CI installs Debian's prometheus)."""
    found = shutil.which("promtool")
    assert found, "promtool not found: apt-get install prometheus (.ci/run does)"
    return found


def prometheus() -> str:
    found = shutil.which("prometheus")
    assert found, "prometheus not found: apt-get install prometheus (.ci/run does)"
    return found


def as_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, ready for Prometheus."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords,
    label names (inside ``{}`` or ``by (...)``), durations or numbers."""
    text = _STRING.sub('""', as_promql(expr))
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(0)
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":
            continue  # the exponent of 1e3 or the unit of a duration
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def jobs_selected(expr: str) -> set[str]:
    return set(_JOB_MATCHER.findall(expr))


def load_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in load_rules() if "alert" in rule]


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return dashboard


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    panels: list[dict[str, Any]] = []
    for panel in load_dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every query target of the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
    ]


def all_exprs() -> list[tuple[str, str]]:
    """(where, expression) of every PromQL expression in the rules and the dashboard."""
    rules = [
        (f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]) for rule in load_rules()
    ]
    panels = [(f"panel {title!r}", expr) for title, expr in dashboard_exprs()]
    return rules + panels


def scrape_jobs() -> set[str]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return {job["job_name"] for job in config["scrape_configs"]}
