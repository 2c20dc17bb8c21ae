"""The web server snippets of ``mtasts publish snippet``, read with the servers' own grammar."""

import pytest

from mtasts.commands.publish import snippet
from mtasts.core.policy import Mode
from mtasts.core.publication import PublishedDomain

DOMAIN = PublishedDomain(
    domain="example.com",
    mode=Mode.ENFORCE,
    mx=("mx.example.com",),
    max_age=604800,
    tlsrpt_rua=(),
    cert="",
    key="",
    host_addresses=(),
    host_cname="",
)

# mod_ssl's SSLProtocol parser (ssl_engine_config.c): the names each httpd knows, and what
# "all" means there. EL7: httpd 2.4.6 with OpenSSL 1.0.2; Debian 12: httpd 2.4.62, OpenSSL 3.
HTTPD = {
    "el7-2.4.6": ({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "all"}, {"SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2"}),
    "debian12-2.4.62": (
        {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "all"},
        {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"},
    ),
}


def ssl_protocol(line, known, every):
    """The protocols an SSLProtocol line enables, as mod_ssl computes them; ValueError as
    httpd refuses to start ("SSLProtocol: Illegal protocol ...")."""
    enabled = set()
    for word in line.split()[1:]:
        action, name = (word[0], word[1:]) if word[0] in "+-" else ("", word)
        if name not in known:
            raise ValueError(f"SSLProtocol: Illegal protocol '{name}'")
        if name == "SSLv2" and action != "-":
            raise ValueError("SSLProtocol: SSLv2 is no longer supported")
        these = every if name == "all" else {name} - ({"SSLv2"})
        if action == "-":
            enabled -= these
        elif action == "+":
            enabled |= these
        else:
            enabled = set(these)
    return enabled


@pytest.mark.parametrize("httpd", sorted(HTTPD))
def test_apache_snippet_starts_on_every_supported_httpd_with_tls_1_2_or_newer(httpd):
    known, every = HTTPD[httpd]
    lines = [line.strip() for line in snippet("apache", DOMAIN, "/var/www/mta-sts").splitlines()]
    (line,) = [line for line in lines if line.startswith("SSLProtocol ")]
    enabled = ssl_protocol(line, known, every)
    assert "TLSv1.2" in enabled and not enabled & {"SSLv3", "TLSv1", "TLSv1.1"}


def test_the_grammar_model_refuses_what_el7_refused():
    known, every = HTTPD["el7-2.4.6"]
    with pytest.raises(ValueError, match=r"Illegal protocol 'TLSv1\.3'"):
        ssl_protocol("SSLProtocol -all +TLSv1.2 +TLSv1.3", known, every)


MODULES = "/usr/lib/apache2/modules"


@pytest.fixture
def site_files(tmp_path):
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert("mta-sts.example.com")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    (tmp_path / "www" / "example.com").mkdir(parents=True)
    return PublishedDomain(
        domain="example.com",
        mode=Mode.ENFORCE,
        mx=("mx.example.com",),
        max_age=604800,
        cert=str(tmp_path / "cert.pem"),
        key=str(tmp_path / "key.pem"),
    )


@pytest.mark.skipif(
    not __import__("os").path.exists("/usr/sbin/apache2"),
    reason="Debian's apache2 is not installed (.ci/run installs it)",
)
def test_apache_snippet_passes_apaches_own_syntax_check(tmp_path, site_files):
    import subprocess

    (tmp_path / "site.conf").write_text(snippet("apache", site_files, str(tmp_path / "www")))
    (tmp_path / "httpd.conf").write_text(
        f"ServerRoot {tmp_path}\nServerName localhost\n"
        + "".join(
            f"LoadModule {m}_module {MODULES}/mod_{m}.so\n" for m in ("mpm_event", "authz_core", "alias", "mime", "ssl")
        )
        + f"PidFile {tmp_path}/httpd.pid\nErrorLog {tmp_path}/error.log\nListen 127.0.0.1:18443\n"
        f"Include {tmp_path}/site.conf\n"
    )
    done = subprocess.run(
        ["/usr/sbin/apache2", "-t", "-f", str(tmp_path / "httpd.conf")], capture_output=True, text=True
    )
    assert done.returncode == 0 and "Syntax OK" in done.stderr, done.stderr


@pytest.mark.skipif(
    not __import__("shutil").which("nginx") and not __import__("os").path.exists("/usr/sbin/nginx"),
    reason="Debian's nginx is not installed (.ci/run installs it)",
)
def test_nginx_snippet_passes_nginxs_own_check(tmp_path, site_files):
    import socket
    import subprocess

    text = snippet("nginx", site_files, str(tmp_path / "www"))
    assert "    listen 443 ssl;\n    listen [::]:443 ssl;\n" in text
    # nginx -t binds what it listens on: a free loopback port instead of 443 (root-only, and
    # taken by the policy host in the integration tests).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = text.replace("    listen 443 ssl;\n    listen [::]:443 ssl;\n", f"    listen 127.0.0.1:{port} ssl;\n")
    (tmp_path / "site.conf").write_text(text)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ access_log off; include {tmp_path}/site.conf; }}\n"
    )
    # -e: nginx opens its error log before it reads the configuration (as an ordinary user
    # the default /var/log/nginx/error.log cannot be opened).
    done = subprocess.run(
        [
            "/usr/sbin/nginx",
            "-t",
            "-e",
            str(tmp_path / "error.log"),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-p",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr
