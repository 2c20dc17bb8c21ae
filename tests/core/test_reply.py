"""The answer Postfix receives for each policy (postconf(5): smtp_tls_policy_maps)."""

from mtasts.core.policy import parse_policy
from mtasts.core.reply import MapProfile, tls_policy_reply


def policy(mode, *mx):
    lines = ["version: STSv1", f"mode: {mode}", "max_age: 86400"] + [f"mx: {m}" for m in mx]
    return parse_policy("\r\n".join(lines).encode())


def test_enforce_answer_in_policy_order():
    p = policy("enforce", "mx2.example.com", "*.example.net", "mx1.example.com")
    assert tls_policy_reply("example.com", p, MapProfile()) == (
        b"OK secure match=mx2.example.com:.example.net:mx1.example.com servername=hostname"
    )


def test_duplicates_collapsed_order_kept():
    p = policy("enforce", "b.example", "a.example", "B.example")
    assert (
        tls_policy_reply("example.com", p, MapProfile()) == b"OK secure match=b.example:a.example servername=hostname"
    )


def test_without_sni_for_old_postfix():
    p = policy("enforce", "mx.example.com")
    assert tls_policy_reply("example.com", p, MapProfile(sni=False)) == b"OK secure match=mx.example.com"


def test_testing_ignored_by_default():
    assert tls_policy_reply("example.com", policy("testing", "mx.example.com"), MapProfile()) == b"NOTFOUND "


def test_testing_enforced_when_asked():
    p = policy("testing", "mx.example.com")
    assert tls_policy_reply("example.com", p, MapProfile(testing="enforce")).startswith(
        b"OK secure match=mx.example.com"
    )


def test_none_and_absent():
    assert tls_policy_reply("example.com", policy("none"), MapProfile(testing="enforce")) == b"NOTFOUND "
    assert tls_policy_reply("example.com", None, MapProfile()) == b"NOTFOUND "


# -- TLSRPT attributes (Postfix >= 3.10, TLSRPT_README) ----------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mtasts.core.hostname import looks_like_ip  # noqa: E402
from mtasts.core.policyanswer import AnswerError, read_answer, split_answer  # noqa: E402

TLSRPT = MapProfile(tlsrpt=True)
RFC_EXAMPLE = (
    b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    b"mx: backupmx.example.com\r\nmax_age: 604800\r\n"
)


def test_tlsrpt_enforce_answer_exact_bytes():
    p = parse_policy(RFC_EXAMPLE)
    assert tls_policy_reply("example.com", p, TLSRPT) == (
        b"OK secure match=mail.example.com:.example.net:backupmx.example.com servername=hostname"
        b" policy_type=sts policy_domain=example.com"
        b" mx_host_pattern=mail.example.com mx_host_pattern=*.example.net"
        b" mx_host_pattern=backupmx.example.com"
        b" { policy_string = version: STSv1 } { policy_string = mode: enforce }"
        b" { policy_string = mx: mail.example.com } { policy_string = mx: *.example.net }"
        b" { policy_string = mx: backupmx.example.com } { policy_string = max_age: 604800 }"
    )


def test_tlsrpt_mx_pattern_is_verbatim_never_dot_form():
    p = policy("enforce", "*.example.net")
    _level, attributes = read_answer(tls_policy_reply("example.com", p, TLSRPT)[3:].decode())
    assert ("mx_host_pattern", "*.example.net") in attributes
    assert ("mx_host_pattern", ".example.net") not in attributes
    assert ("match", ".example.net") in attributes  # the certificate match keeps Postfix's form


def test_tlsrpt_mx_pattern_loses_a_trailing_dot_policy_string_keeps_it():
    # Postfix >= 3.10.5 compares mx_host_pattern with DNS MX names (no final dot) by
    # strcasecmp: "mail.example.com." would skip every MX.
    p = parse_policy(
        b"version: STSv1\r\nmode: enforce\r\nmx: Mail.Example.com.\r\nmx: *.example.net.\r\nmax_age: 86400\r\n"
    )
    _level, attributes = read_answer(tls_policy_reply("example.com", p, TLSRPT)[3:].decode())
    assert [v for n, v in attributes if n == "mx_host_pattern"] == ["Mail.Example.com", "*.example.net"]
    assert ("policy_string", "mx: Mail.Example.com.") in attributes


def test_tlsrpt_off_by_default_because_postfix_3_9_rejects_it():
    p = parse_policy(RFC_EXAMPLE)
    assert b"policy_type" not in tls_policy_reply("example.com", p, MapProfile())


def test_tlsrpt_testing_policy_reported_without_enforcing():
    p = policy("testing", "mx.example.com")
    answer = tls_policy_reply("example.com", p, TLSRPT)
    assert answer.startswith(b"OK may policy_type=sts policy_domain=example.com mx_host_pattern=mx.example.com ")
    assert b"{ policy_string = mode: testing }" in answer
    assert b"match=" not in answer and b"secure" not in answer
    encrypt = tls_policy_reply("example.com", p, MapProfile(tlsrpt=True, testing_level="encrypt"))
    assert encrypt.startswith(b"OK encrypt policy_type=sts ")


def test_tlsrpt_testing_enforced_when_asked_keeps_attributes():
    p = policy("testing", "mx.example.com")
    answer = tls_policy_reply("example.com", p, MapProfile(tlsrpt=True, testing="enforce"))
    assert answer.startswith(b"OK secure match=mx.example.com servername=hostname policy_type=sts ")


def test_tlsrpt_none_mode_and_no_policy_stay_notfound():
    assert tls_policy_reply("example.com", policy("none"), TLSRPT) == b"NOTFOUND "
    assert tls_policy_reply("example.com", None, TLSRPT) == b"NOTFOUND "


def test_tlsrpt_extension_line_with_braces_left_out_of_the_report():
    body = RFC_EXAMPLE + b"x-note: {a} b\r\nx-other: plain, text\r\n"
    answer = tls_policy_reply("example.com", parse_policy(body), TLSRPT).decode()
    _level, attributes = read_answer(answer[3:])
    strings = [v for n, v in attributes if n == "policy_string"]
    assert "x-other: plain, text" in strings
    assert not any("x-note" in v for v in strings)


def test_tlsrpt_falls_back_to_plain_answer_over_the_reply_limit():
    # 1000 mx lines (a 51 KB policy): the plain answer fits in 100000 bytes, with every line repeated
    # as mx_host_pattern and policy_string it does not.
    mx = [f"mx{i:04}.a-rather-long-mail-host-name.example.com" for i in range(1000)]
    p = policy("enforce", *mx)
    answer = tls_policy_reply("example.com", p, TLSRPT)
    assert answer == tls_policy_reply("example.com", p, MapProfile())
    assert len(answer) < 100000


def test_answer_grammar_quoting():
    assert split_answer("secure match=a:b, { x = y z } ,servername=hostname") == [
        "secure",
        "match=a:b",
        "x = y z",
        "servername=hostname",
    ]
    assert read_answer("may {  policy_string =  mode: testing  }")[1] == [("policy_string", "mode: testing")]
    for bad in ("", "bogus", "secure {x=y", "secure x=y}", "secure {x=y}z", "secure novalue", "secure =v"):
        try:
            read_answer(bad)
        except AnswerError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_host = st.lists(_label, min_size=2, max_size=4).map(".".join).filter(lambda h: not looks_like_ip(h))
_mx = st.one_of(_host, _host.map(lambda h: "*." + h))
_ext_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(str.strip)


@given(
    mode=st.sampled_from(["enforce", "testing"]),
    mx=st.lists(_mx, min_size=1, max_size=6),
    extensions=st.lists(st.tuples(st.from_regex(r"x[a-z0-9_-]{0,8}", fullmatch=True), _ext_value), max_size=4),
    profile=st.builds(
        MapProfile,
        testing=st.sampled_from(["ignore", "enforce"]),
        sni=st.booleans(),
        tlsrpt=st.just(True),
        testing_level=st.sampled_from(["may", "encrypt"]),
    ),
)
def test_tlsrpt_answer_reads_back_exactly(mode, mx, extensions, profile):
    lines = ["version: STSv1", f"mode: {mode}", "max_age: 86400"] + [f"mx: {m}" for m in mx]
    lines += [f"{k}: {v}" for k, v in extensions]
    p = parse_policy("\r\n".join(lines).encode())
    answer = tls_policy_reply("example.com", p, profile).decode()
    assert answer.startswith("OK ")
    level, attributes = read_answer(answer[3:])
    assert level == ("secure" if mode == "enforce" or profile.testing == "enforce" else profile.testing_level)
    assert [v for n, v in attributes if n == "mx_host_pattern"] == mx
    expected_strings = [line for line in p.lines if "{" not in line and "}" not in line]
    assert [v for n, v in attributes if n == "policy_string"] == expected_strings
    assert [v for n, v in attributes if n == "policy_type"] == ["sts"]
    assert [v for n, v in attributes if n == "policy_domain"] == ["example.com"]
