"""monitoring/: the Prometheus config and alert rules (promtool), and the Grafana dashboard.

promtool comes from Debian's `prometheus` package (installed by .ci/run); without it these
tests skip, unless CI=true. Grafana itself cannot run here (no image, no package): its
dashboard and provisioning are checked statically, and every metric the dashboard and the
rules name is looked up on the /metrics pages of real processes.
"""

import json
import os
import re
import shutil
import subprocess

import httpx
import pytest
import yaml

from tests.batch_support import job_env, sqlite_starter, wait_for
from tooling.compose_project import pinned_compose_binary
from tooling.processes import REPO_ROOT, free_port

MONITORING = REPO_ROOT / "monitoring"
RULES = MONITORING / "rules" / "alerts.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "ml-serving-patterns.json"
PROVISIONING = MONITORING / "grafana" / "provisioning"
# Prometheus's own series.
PROMETHEUS_METRICS = {"up"}
# Words of PromQL that are not metric names (the functions and keywords used here).
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "histogram_quantile", "time",
    "clamp_min", "by", "without", "on", "ignoring", "and", "or", "unless", "bool",
}  # fmt: skip


def promtool(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no promtool on PATH (.ci/run installs Debian's prometheus)")
        pytest.skip(reason="no promtool on PATH: apt-get install prometheus")
    return subprocess.run(
        ["promtool", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_the_alert_rules_are_valid():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_the_alert_rules_fire_and_stay_silent_on_synthetic_series():
    result = promtool("test", "rules", str(MONITORING / "tests" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent_and_has_a_runbook_section():
    alerts = [rule for group in yaml_file(RULES)["groups"] for rule in group["rules"]]
    tests = yaml_file(MONITORING / "tests" / "alerts_test.yml")["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    runbook = (REPO_ROOT / "docs" / "monitoring.md").read_text()
    for alert in alerts:
        name = alert["alert"]
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == name}
        assert outcomes == {True, False}, f"{name}: needs a firing and a silent case"
        assert alert["annotations"]["runbook_url"] == f"docs/monitoring.md#{name.lower()}"
        assert f"\n### {name}\n" in runbook, f"docs/monitoring.md has no section for {name}"


def test_the_prometheus_config_is_valid_and_loads_the_rules():
    result = promtool("check", "config", str(MONITORING / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def yaml_file(path) -> dict:
    return yaml.safe_load(path.read_text())


def dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_dashboard_is_well_formed_and_queries_the_provisioned_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    (datasource,) = yaml_file(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    charts = [panel for panel in panels if panel["type"] != "row"]
    assert len(charts) >= 10
    for panel in charts:
        assert panel["title"] and panel["targets"], panel
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])


def test_every_dashboard_query_parses(tmp_path):
    # promtool parses the expression of every rule it checks: one recording rule per query.
    exprs = [expr.replace("$__rate_interval", "1m") for expr in dashboard_exprs()]
    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for number, expr in enumerate(exprs):
        rules["groups"][0]["rules"].append({"record": f"dashboard:query_{number}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # matchers, ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {word for word in words if word not in PROMQL_WORDS and not word.startswith("$")}


def test_metric_names_are_read_out_of_expressions():
    expr = 'histogram_quantile(0.95, sum by (le, service) (rate(a_bucket{job="proxy"}[1m])))'
    assert metric_names(expr) == {"a_bucket"}
    assert metric_names('time() - max(b{x="y"}) > clamp_min(3 * c, 600)') == {"b", "c"}


def exported_names(metrics_text: str) -> set[str]:
    """Every sample name the page's families can have, with or without samples yet."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", metrics_text, re.MULTILINE):
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        elif kind == "counter":
            names |= {name, name.removesuffix("_total") + "_total"}
        else:
            names.add(name)
    return names


@pytest.fixture(scope="module")
def job_metrics_url(tmp_path_factory):
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"

    def passed() -> bool:
        try:
            return "batch_job_passes_total 1.0" in httpx.get(metrics_url, timeout=2).text
        except httpx.TransportError:
            return False

    with sqlite_starter(tmp_path_factory.mktemp("job-metrics")) as (url, starter):
        env = job_env(url, METRICS_PORT=port, BATCH_WAIT_TIME=1)
        starter.start("job", ["src.task"], env)
        wait_for(passed, 30, "the job's first pass")
        yield metrics_url


def test_every_metric_of_the_dashboard_and_the_rules_is_exported(
    suite, sqlite_api, job_metrics_url
):
    pages = [
        suite.proxy.base_url + "/metrics",
        suite.services["setosa"].base_url + "/metrics",
        sqlite_api.base_url + "/metrics",
        job_metrics_url,
    ]
    exported = set(PROMETHEUS_METRICS)
    for page in pages:
        exported |= exported_names(httpx.get(page, timeout=10).text)
    rule_exprs = [rule["expr"] for group in yaml_file(RULES)["groups"] for rule in group["rules"]]
    named = set().union(*(metric_names(expr) for expr in [*dashboard_exprs(), *rule_exprs]))
    assert named - exported == set()
    # Every process is on the dashboard.
    assert {"http_requests_total", "proxy_backend_circuit_state", "batch_job_backlog_items"} <= (
        named
    )


def test_a_fresh_clones_monitoring_profile_has_prometheus_and_the_provisioned_grafana():
    result = subprocess.run(
        [str(pinned_compose_binary()), "--profile", "monitoring", "config", "--format", "json"],
        cwd=REPO_ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"prometheus", "grafana"} <= set(services)
    mounts = {
        volume["target"]: volume.get("source", "") for volume in services["grafana"]["volumes"]
    }
    assert mounts["/etc/grafana/provisioning"] == str(PROVISIONING)
    (provider,) = yaml_file(PROVISIONING / "dashboards" / "ml-serving-patterns.yml")["providers"]
    assert mounts[provider["options"]["path"]] == str(DASHBOARD.parent)
    prometheus_mounts = {
        volume["target"]: volume.get("source", "") for volume in services["prometheus"]["volumes"]
    }
    assert prometheus_mounts["/etc/prometheus/rules"] == str(RULES.parent)
