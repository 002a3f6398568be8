"""deploy/: the Prometheus config and alert rules pass promtool (check and unit tests), every
alert is documented and tested both ways, and every dashboard query is valid PromQL.

promtool comes from Debian's prometheus package (.ci/run installs it); without it these tests
fail rather than skip, so a CI machine without it cannot pass silently.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy_files import (
    DASHBOARD,
    DEPLOY,
    PROMETHEUS_CONFIG,
    RULE_TESTS,
    RULES,
    RUNBOOK,
    alert_names,
    all_exprs,
    as_promql,
    dashboard_exprs,
    dashboard_panels,
    jobs_selected,
    load_dashboard,
    load_rules,
    metric_names,
    promtool,
    scrape_jobs,
)

EXPECTED_ALERTS = {
    "SenderDaemonDown",
    "QueueBacklogGrowing",
    "HighErrorRate",
    "ProviderThrottling",
    "CampaignStuck",
    "OutcomeFlushSlow",
}


def _promtool(*args: str | Path) -> str:
    done = subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_promtool_check_config() -> None:
    output = _promtool("check", "config", PROMETHEUS_CONFIG)
    # The config's rule_files glob really finds the rules (a typo would find nothing).
    assert "1 rule files found" in output


def test_promtool_check_rules() -> None:
    output = _promtool("check", "rules", RULES)
    assert f"{len(load_rules())} rules found" in output


def test_promtool_unit_tests_of_the_alerts() -> None:
    _promtool("test", "rules", RULE_TESTS)


def test_the_issue_s_alerts_exist_with_summary_description_and_runbook() -> None:
    assert set(alert_names()) == EXPECTED_ALERTS
    runbook = RUNBOOK.read_text()
    for rule in load_rules():
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), rule
        assert rule["labels"]["severity"] in {"critical", "warning"}
        name = rule["alert"]
        assert annotations["runbook_url"] == f"deploy/RUNBOOK.md#{name.lower()}"
        # One section per alert, whose heading GitHub turns into that anchor.
        assert f"\n## {name}\n" in runbook, f"RUNBOOK.md has no section for {name}"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == ["../rules/sender.rules.yml"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert firing == EXPECTED_ALERTS
    assert silent == EXPECTED_ALERTS


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    # promtool parses each expression when it checks a rules file: wrap every dashboard query
    # in a recording rule.
    rules = [
        {"record": f"dashboard:query_{index}", "expr": as_promql(expr)}
        for index, (_, expr) in enumerate(dashboard_exprs())
    ]
    assert len(rules) >= 20
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _promtool("check", "rules", path)


def test_dashboard_is_a_provisionable_grafana_dashboard() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "campaign-sender"
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard_panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = {panel["title"] for panel in panels}
    # The questions the issue asks the dashboard to answer at a glance.
    for wanted in (
        "Send rate by outcome",
        "Provider latency",
        "Queue depth",
        "Oldest waiting job",
        "Requests in flight vs limit",
        "Limiter rate",
        "Error breakdown",
        "Flush latency",
        "API requests",
        "API latency p95",
        "Daemons up",
    ):
        assert wanted in titles, wanted
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    providers = yaml.safe_load((provisioning / "dashboards" / "sender.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    assert DASHBOARD.parent.name == "dashboards"


def test_job_matchers_name_configured_scrape_jobs() -> None:
    jobs = scrape_jobs()
    assert jobs == {"sender-api", "sender-daemon"}
    for where, expr in all_exprs():
        assert jobs_selected(expr) <= jobs, where


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (le, route) (rate(sender_http_request_duration_seconds_bucket{job="a"}[5m]))',
            {"sender_http_request_duration_seconds_bucket"},
        ),
        (
            'time() - (x_seconds{job="sender-daemon"} > 0) > 60 or absent(up{job="d"})',
            {"x_seconds", "up"},
        ),
        ("a / on() group_left sum(b) > 1e3 and on() c offset 5m", {"a", "b", "c"}),
        ("sum(rate(m_total[$__rate_interval])) by (category)", {"m_total"}),
        ('max_over_time(g{le="+Inf", q=~"a|b"}[1m:15s]) == bool 0', {"g"}),
        ("histogram_quantile(0.99, sum without (instance) (rate(h_bucket[5m])))", {"h_bucket"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
