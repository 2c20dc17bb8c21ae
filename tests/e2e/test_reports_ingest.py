"""TLSRPT report mail through a real Postfix into ``mtasts reports ingest`` (a pipe transport).

The pipe runs as an unprivileged user with Debian's own python3 and only the standard
library (as it would on a mail host: no daemon, no third-party imports). A report is stored
once however often it comes; a mail that is no report is delivered (dropped by ingest, never
bounced); a store that cannot be written defers the mail (exit 75) instead of losing it.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import uuid

import pytest

from tests.e2e.harness import ROOT, Sender, ns_run
from tests.support import tlsreports as shapes
from tests.support.tlsreports import report_mail

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not shutil.which("postfix"), reason="Postfix is not installed (.ci/run installs it)"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="the pipe runs the system's python3"),
]

DOMAIN = "example.net"


@pytest.fixture(scope="module")
def pipe_world(netns, sender_dir):
    # What the pipe user may read and write: a copy of the code, the config, the store.
    shared = pathlib.Path(tempfile.mkdtemp(prefix="mtasts-reports-", dir="/tmp"))
    os.chmod(shared, 0o755)
    shutil.copytree(ROOT / "src", shared / "src")
    store = shared / "store"
    store.mkdir()
    shutil.chown(store, "nobody", "nogroup")
    config = shared / "mtasts.toml"
    config.write_text(
        f'[reports]\npath = "{store}/reports.sqlite3"\n'
        f'[publish.domains."{DOMAIN}"]\nmx = ["mx1.{DOMAIN}", "*.backup.{DOMAIN}"]\n'
        f'tlsrpt_rua = ["mailto:tlsrpt@reports.test"]\n'
    )
    os.chmod(config, 0o644)
    for path in (shared / "src").rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    command = f"/usr/bin/env PYTHONPATH={shared}/src /usr/bin/python3 -m mtasts reports ingest -c {config}"
    sender = Sender(
        netns,
        sender_dir,
        main_cf_extra="transport_maps = inline:{ reports.test=mtastsreports: }\n"
        "mtastsreports_destination_recipient_limit = 1\n",
        transports=f"mtastsreports unix - n n - - pipe flags=Rq user=nobody argv={command}",
    )
    sender.start_postfix()
    yield sender, store, config
    sender.close()
    shutil.rmtree(shared, ignore_errors=True)


def submit(sender: Sender, message: bytes, rcpt: str) -> None:
    ns_run(
        sender.ns,
        *sender.postfix_command("sendmail", "-C", sender.etc, "-f", "reporter@array.example", rcpt),
        input=message,
        check=True,
    )


def stored(config) -> list:
    out = subprocess.run(
        ["/usr/bin/python3", "-m", "mtasts", "reports", "list", "--since", "2010-01-01", "--json", "-c", str(config)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src")},
    )
    return json.loads(out.stdout) if out.returncode == 0 else []


def test_a_report_mail_is_stored_once_and_other_mail_is_not_bounced(pipe_world):
    sender, _store, config = pipe_world
    document = shapes.array_sender(
        DOMAIN,
        report_id=f"mail-{uuid.uuid4().hex[:8]}",
        failures=[shapes.failure("starttls-not-supported", f"mx1.{DOMAIN}", 3)],
    )
    message = report_mail("application/tlsrpt+gzip", shapes.as_gzip(document), f"array.example!{DOMAIN}!1!2.json.gz")
    submit(sender, message, "tlsrpt@reports.test")
    status, log = sender.status("tlsrpt@reports.test")
    assert status == "sent", log
    assert [r["report_id"] for r in stored(config)] == [document["report-id"]]

    submit(sender, message, "tlsrpt+again@reports.test")  # the same report again: delivered, stored once
    assert sender.status("tlsrpt+again@reports.test")[0] == "sent"
    assert len(stored(config)) == 1

    submit(sender, b"Subject: hello\n\nnot a report\n", "tlsrpt+spam@reports.test")
    assert sender.status("tlsrpt+spam@reports.test")[0] == "sent"  # dropped by ingest, never bounced
    assert len(stored(config)) == 1


def test_a_store_that_cannot_be_written_defers_the_report(pipe_world):
    sender, store, _config = pipe_world
    os.chmod(store, 0o555)
    for name in os.listdir(store):
        os.chmod(store / name, 0o444)
    try:
        document = shapes.array_sender(DOMAIN, report_id=f"defer-{uuid.uuid4().hex[:8]}")
        submit(
            sender,
            report_mail("application/tlsrpt+json", shapes.as_json(document), "r.json"),
            "tlsrpt+defer@reports.test",
        )
        status, log = sender.status("tlsrpt+defer@reports.test")
        assert status == "deferred", log
        assert "cannot open the report store" in log or "cannot store the report" in log
    finally:
        os.chmod(store, 0o755)
        for name in os.listdir(store):
            os.chmod(store / name, 0o644)
