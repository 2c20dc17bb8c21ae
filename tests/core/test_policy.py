"""The policy body (RFC 8461 §3.2)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.core.policy import MAX_MAX_AGE, MAX_POLICY_SIZE, Mode, parse_policy
from mtasts.errors import PolicyError

P_ENF = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.backup.example.net\r\nmax_age: 604800\r\n"


def make(*lines, term=b"\r\n"):
    return term.join(line.encode("utf-8") for line in lines) + term


BASE = ["version: STSv1", "mode: enforce", "mx: mx1.example.com", "max_age: 604800"]


def test_c42_canonical():
    p = parse_policy(P_ENF)
    assert p.mode is Mode.ENFORCE
    assert [m.text for m in p.mx] == ["mx1.example.com", "*.backup.example.net"]
    assert p.max_age == 604800
    assert p.lines == (
        "version: STSv1",
        "mode: enforce",
        "mx: mx1.example.com",
        "mx: *.backup.example.net",
        "max_age: 604800",
    )


def test_c43_lf_only():
    assert parse_policy(P_ENF.replace(b"\r\n", b"\n")).max_age == 604800


def test_c44_mixed_terminators():
    assert parse_policy(b"version: STSv1\nmode: enforce\r\nmx: a.example\nmax_age: 1\r\n").mode is Mode.ENFORCE


def test_c45_no_final_terminator():
    assert parse_policy(P_ENF.rstrip(b"\r\n")).max_age == 604800


def test_c46_any_order():
    assert parse_policy(make("max_age: 5", "mx: a.example", "mode: testing", "version: STSv1")).mode is Mode.TESTING


@pytest.mark.parametrize("line", ["mode:enforce", "mode:\tenforce", "mode:    enforce", "mode: enforce  \t"])
def test_c47_c48_delimiters_and_trailing_wsp(line):
    assert parse_policy(make("version: STSv1", line, "mx: a.example", "max_age: 1")).mode is Mode.ENFORCE


@pytest.mark.parametrize("line", ["mode : enforce", " mode: enforce", "\tmode: enforce", "mode enforce"])
def test_c47_c48_gap_malformed_line_invalidates(line):
    with pytest.raises(PolicyError, match="not 'name: value'"):
        parse_policy(make("version: STSv1", line, "mx: a.example", "max_age: 1"))


@pytest.mark.parametrize(
    "lines",
    [
        ["version: STSv1", "Mode: enforce", "mx: a.example", "max_age: 1"],  # Mode is an extension: mode missing
        ["version: STSv1", "mode: Enforce", "mx: a.example", "max_age: 1"],
        ["version: stsv1", "mode: enforce", "mx: a.example", "max_age: 1"],
        ["version: STSv2", "mode: enforce", "mx: a.example", "max_age: 1"],
        ["version: STSv1", "mode: report", "mx: a.example", "max_age: 1"],
        ["version: STSv1", "mode:", "mx: a.example", "max_age: 1"],
    ],
)
def test_c49_c50_c51_case_and_values(lines):
    with pytest.raises(PolicyError):
        parse_policy(make(*lines))


@pytest.mark.parametrize("value,expected", [("604800", 604800), ("0", 0), ("31557600", 31557600), ("0604800", 604800)])
def test_c52_max_age_valid(value, expected):
    assert parse_policy(make("version: STSv1", "mode: none", f"max_age: {value}")).max_age == expected


@pytest.mark.parametrize("value", ["-1", "1e6", "604800s", "60 4800", "12345678901", ""])
def test_c52_max_age_invalid(value):
    with pytest.raises(PolicyError):
        parse_policy(make("version: STSv1", "mode: none", f"max_age: {value}"))


def test_c52_gap_over_maximum_is_clamped():
    assert parse_policy(make("version: STSv1", "mode: none", "max_age: 31557601")).max_age == MAX_MAX_AGE
    assert parse_policy(make("version: STSv1", "mode: none", "max_age: 9999999999")).max_age == MAX_MAX_AGE


@pytest.mark.parametrize("missing", ["version", "mode", "max_age", "mx"])
def test_c53_required(missing):
    with pytest.raises(PolicyError):
        parse_policy(make(*[line for line in BASE if not line.startswith(missing)]))


def test_c53_none_without_mx():
    assert parse_policy(make("version: STSv1", "mode: none", "max_age: 86400")).mx == ()


def test_c53_typo_nmx_leaves_no_mx():
    with pytest.raises(PolicyError, match="no mx"):
        parse_policy(make("version: STSv1", "mode: enforce", "nmx: mx0.example.com", "max_age: 1"))


def test_c54_extensions_ignored():
    p = parse_policy(make(*BASE, "foo: bar", "x_ext-1.a: value with spaces", "ext: caf\u00e9"))
    assert p.mode is Mode.ENFORCE


def test_c55_duplicates_first_wins():
    p = parse_policy(
        make(
            "version: STSv1",
            "mode: enforce",
            "mode: testing",
            "mx: a.example",
            "mx: b.example",
            "max_age: 10",
            "max_age: 20",
            "version: STSv2",
        )
    )
    assert p.mode is Mode.ENFORCE and p.max_age == 10
    assert [m.text for m in p.mx] == ["a.example", "b.example"]


@pytest.mark.parametrize("value", ["a.example.com, b.example.com", "a.example.com b.example.com"])
def test_c56_gap_one_mx_per_line(value):
    with pytest.raises(PolicyError):
        parse_policy(make("version: STSv1", "mode: enforce", f"mx: {value}", "max_age: 1"))


@pytest.mark.parametrize("value", ["mail.example.com", "*.example.net", "MX.Example.COM", "mail.example.com."])
def test_c57_valid_mx(value):
    assert parse_policy(make("version: STSv1", "mode: enforce", f"mx: {value}", "max_age: 1")).mx[0].text == value


@pytest.mark.parametrize(
    "value",
    [
        ".example.net",
        "*example.net",
        "mx*.example.net",
        "*.*.example.net",
        "*",
        "mx_1.example.com",
        "mx.b\u00fccher.example",
        "212.114.86.56",
        "-mx.example.com",
        "a" * 64 + ".example",
    ],
)
def test_c57_c58_c59_invalid_mx(value):
    with pytest.raises(PolicyError):
        parse_policy(make("version: STSv1", "mode: enforce", f"mx: {value}", "max_age: 1"))


def test_c58_a_label_ok():
    assert parse_policy(make("version: STSv1", "mode: enforce", "mx: mx.xn--bcher-kva.example", "max_age: 1")).mx


@pytest.mark.parametrize("ctl", ["\x00", "\x01", "\x7f", "\r"])
def test_c60_control_characters(ctl):
    with pytest.raises(PolicyError):
        parse_policy(make("version: STSv1", f"mode: enforce{ctl}x", "mx: a.example", "max_age: 1"))


def test_c62_gap_blank_lines_ignored():
    assert parse_policy(b"\r\nversion: STSv1\r\n\r\nmode: enforce\r\n  \r\nmx: a.example\r\nmax_age: 1\r\n\r\n\r\n").mx


def test_c63_html_is_invalid():
    with pytest.raises(PolicyError):
        parse_policy(b"<!DOCTYPE html>\n<html><body>Welcome to our captive portal</body></html>\n")


def test_not_utf8():
    with pytest.raises(PolicyError, match="UTF-8"):
        parse_policy(P_ENF + b"ext: \xff\r\n")


def test_size_limit():
    pad = b"x: " + b"a" * (MAX_POLICY_SIZE - len(P_ENF) - 5) + b"\r\n"
    body = P_ENF + pad
    assert len(body) == MAX_POLICY_SIZE
    parse_policy(body)
    with pytest.raises(PolicyError, match="limit"):
        parse_policy(body + b"a")


def test_bom_invalid():
    with pytest.raises(PolicyError):
        parse_policy(b"\xef\xbb\xbf" + P_ENF)


@given(st.binary(max_size=400))
def test_fuzz_only_policy_error(body):
    try:
        policy = parse_policy(body)
    except PolicyError:
        return
    assert policy.mx or policy.mode is Mode.NONE


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_host = st.lists(_label, min_size=1, max_size=4).map(".".join).map(lambda h: h + ".example")
_pattern = st.tuples(st.booleans(), _host).map(lambda t: ("*." if t[0] else "") + t[1])


@given(
    st.sampled_from(list(Mode)),
    st.lists(_pattern, min_size=1, max_size=6),
    st.integers(0, MAX_MAX_AGE),
    st.sampled_from([b"\r\n", b"\n"]),
    st.randoms(use_true_random=False),
)
def test_property_generated_policies_parse(mode, patterns, max_age, term, rnd):
    lines = ["version: STSv1", f"mode: {mode.value}", f"max_age: {max_age}"] + [f"mx: {p}" for p in patterns]
    rnd.shuffle(lines)
    p = parse_policy(term.join(line.encode() for line in lines))
    assert p.mode is mode and p.max_age == max_age
    assert [m.text for m in p.mx] == [line[4:] for line in lines if line.startswith("mx: ")]
