"""The tiers: core (pure), net, store, config, resolver (in-process, fakes), servers,
commands, docs, packaging; integration (real servers, the daemon as a subprocess) and e2e
(real Postfix). Tests that start another program carry the ``subprocess`` marker, so that
``pytest -m "not subprocess"`` runs everything that stays in-process (seconds, any user)."""

from __future__ import annotations

import pathlib

import pytest

HERE = pathlib.Path(__file__).parent
# Tiers that run programs (the daemon, Postfix, rpmbuild) in every test.
SUBPROCESS_TIERS = {"integration", "e2e"}
# Modules of the other tiers that run one (the CLI, postmap, promtool, apache2/nginx -t, ...).
SUBPROCESS_MODULES = {
    "core/test_nexthop.py",
    "resolver/test_export.py",
    "servers/test_control_trust.py",
    "store/test_reports.py",
    "store/test_report_intake.py",
    "docs/test_postfix_snippets.py",
    "docs/test_snippets.py",
    "packaging/test_monitoring.py",
    "packaging/test_rpm_gates.py",
    "packaging/test_systemd.py",
}


def pytest_collection_modifyitems(items):
    for item in items:
        relative = pathlib.Path(str(item.fspath)).resolve().relative_to(HERE.resolve())
        if relative.parts[0] in SUBPROCESS_TIERS or relative.as_posix() in SUBPROCESS_MODULES:
            item.add_marker(pytest.mark.subprocess)
