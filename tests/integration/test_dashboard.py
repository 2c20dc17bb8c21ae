"""The reports dashboard in a real browser (Debian's chromium, headless), and its metrics.

Reports are seeded the way a mail host gets them (``reports ingest``); the daemon runs the
publisher on a loopback port with a trustme certificate and the dashboard on another, so
no root is needed. Chromium loads the page, the numbers of the seeded reports are in what it
rendered, a sender's HTML stays text, and a screenshot is taken.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request

import pytest
import trustme

from tests.support import tlsreports as shapes
from tests.support.launcher import free_port, launch, mtasts_command
from tests.support.tlsreports import report_mail

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
DOMAIN = "example.net"


@pytest.fixture
def dashboard(tmp_path):
    ca = trustme.CA()
    issued = ca.issue_cert(f"mta-sts.{DOMAIN}")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    port = free_port()
    config = tmp_path / "mtasts.toml"
    config.write_text(
        f'[publish]\nlisten = ["127.0.0.1:{free_port()}"]\n'
        f'[publish.domains."{DOMAIN}"]\nmx = ["mx1.{DOMAIN}", "*.backup.{DOMAIN}"]\n'
        f'cert = "{cert}"\nkey = "{key}"\n'
        f'[reports]\npath = "{tmp_path}/reports.sqlite3"\nlisten = "127.0.0.1:{port}"\n'
    )
    seeds = [
        shapes.array_sender(
            DOMAIN,
            report_id="seed-1",
            ok=1200,
            failures=[shapes.failure("certificate-host-mismatch", f"a.b.backup.{DOMAIN}", 4)],
        ),
        dict(
            shapes.array_sender(DOMAIN, report_id="seed-2", ok=800),
            **{"organization-name": "<script>document.title='owned'</script>Evil & Co"},
        ),
    ]
    seeds[1]["date-range"] = {"start-datetime": "2026-11-28T00:00:00Z", "end-datetime": "2026-11-28T23:59:59Z"}
    for seed in seeds:
        done = subprocess.run(
            mtasts_command("reports", "ingest", "-c", str(config)),
            capture_output=True,
            input=report_mail("application/tlsrpt+gzip", shapes.as_gzip(seed)),
            timeout=60,
        )
        assert done.returncode == 0 and b"stored" in done.stderr
    proc, log = launch(
        mtasts_command("serve", "--only", "publisher", "-c", str(config)),
        tmp_path / "daemon.log",
        ready="ready: publisher only",
    )
    yield f"http://127.0.0.1:{port}/", tmp_path
    proc.terminate()
    proc.wait(10)
    log.close()


def chromium(tmp_path, *args):
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            *args,
        ],
        capture_output=True,
        timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_dashboard_in_headless_chromium(dashboard):
    url, tmp_path = dashboard
    dom = chromium(tmp_path, "--dump-dom", url + "?since=2026-11-01").stdout.decode()
    assert "<h2>example.net</h2>" in dom
    assert "2000" in dom and ">4<" in dom and "99.80%" in dom  # 2000 ok, 4 failed over the two seeded days
    assert dom.count("<circle") == 2  # one point per day in the chart
    assert "covers one label only" in dom  # the advice tied to [publish]
    assert "&lt;script&gt;document.title='owned'&lt;/script&gt;Evil &amp; Co" in dom
    assert "<title>mtasts: TLSRPT reports</title>" in dom  # the sender's script did not run
    report = chromium(tmp_path, "--dump-dom", url + "report/seed-1").stdout.decode()
    assert "&quot;report-id&quot;: &quot;seed-1&quot;" in report or '"report-id": "seed-1"' in report
    shot = tmp_path / "dashboard.png"  # kept with the test's files (pytest's tmp_path)
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1100,1400", url + "?since=2026-11-01")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000
    if shutil.which("promtool") is None:
        return
    # The metrics beside it, checked by Prometheus' own linter.
    metrics = urllib.request.urlopen(url + "metrics", timeout=10).read()
    assert b'mtasts_tlsrpt_reports{status="ok",via="mail"} 2' in metrics
    lint = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_pages_forbid_scripts_and_refuse_what_they_cannot_read(dashboard):
    url, _ = dashboard
    with urllib.request.urlopen(url, timeout=10) as page:
        assert "script-src" not in page.headers["Content-Security-Policy"]
        assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    for path, status in (("?since=soon", 400), ("report/nonesuch", 404)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + path, timeout=10)
        assert err.value.code == status
        err.value.close()
