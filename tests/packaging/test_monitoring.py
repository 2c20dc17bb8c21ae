"""The shipped monitoring files (packaging/monitoring/): the alert rules pass promtool, and every
metric the rules, the dashboard and the README name is one the daemon exports."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import pytest

from mtasts.config import CacheSection, Config
from mtasts.daemon import Daemon
from mtasts.resolver import PolicyResolver
from mtasts.servers.metrics import MtastsCollector
from mtasts.store.tiered import PolicyCache
from tests.support.fakes import FakeDns, FakePolicies

pytest.importorskip("prometheus_client")

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "packaging" / "monitoring" / "mtasts-alerts.yml"
DASHBOARD = ROOT / "packaging" / "monitoring" / "grafana-dashboard.json"
METRIC = re.compile(r"\bmtasts_[a-z_]+")


def exported_names():
    """The sample names the collector yields for a daemon's real snapshot."""
    config = Config(cache=CacheSection(backend="memory"))
    daemon = Daemon(config, None)
    daemon.cache = PolicyCache(10)
    daemon.resolver = PolicyResolver(config, daemon.cache, FakeDns(), FakePolicies())
    snapshot = dict(daemon._metrics_snapshot(), policies_by_mode={"enforce": 1})
    names = set()
    for family in MtastsCollector(lambda: snapshot).collect():
        # A family's exposed names, also with no sample yet (a counter by label nobody hit).
        suffixes = {"counter": ("_total",), "histogram": ("", "_bucket", "_count", "_sum")}.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
        names.update(sample.name for sample in family.samples)
    # The reports dashboard's /metrics (the publisher's side), from its own text.
    from mtasts.servers.dashboard import metrics_text

    names.update(re.findall(r"^# TYPE (\S+) ", metrics_text([], {}, {}), re.M))
    return names


def test_the_collector_exports_what_the_docs_expect():
    names = exported_names()
    assert {
        "mtasts_policy_downgrades_total",
        "mtasts_overrides_active",
        "mtasts_policy_changes_total",
        "mtasts_fetch_duration_seconds_bucket",
    } <= names


@pytest.mark.parametrize("source", [RULES, DASHBOARD, ROOT / "README.md"], ids=lambda p: p.name)
def test_every_metric_named_is_exported(source):
    used = set(METRIC.findall(source.read_text()))
    assert used, f"{source.name} names no metric"
    assert sorted(used - exported_names()) == []


def test_the_dashboard_is_grafana_json_with_a_query_in_every_panel():
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "mtasts" and board["panels"]
    for panel in board["panels"]:
        assert panel["targets"] and all(t["expr"].count("(") == t["expr"].count(")") for t in panel["targets"])


def test_the_readme_shows_the_shipped_rules():
    readme = (ROOT / "README.md").read_text()
    for alert in re.findall(r"alert: (\w+)", RULES.read_text()):
        assert alert in readme, alert


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed (.ci/run installs prometheus)")
def test_promtool_accepts_the_alert_rules():
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0 and "SUCCESS: 7 rules found" in done.stdout, done.stdout + done.stderr
