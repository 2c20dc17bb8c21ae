"""The _mta-sts TXT record (RFC 8461 §3.1)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.core.txtrecord import parse_record, select_record
from mtasts.errors import RecordError


def one(text):
    return select_record([text.encode("latin-1") if isinstance(text, str) else text])


def test_a2_valid():
    assert one("v=STSv1; id=20160831085700Z;").policy_id == "20160831085700Z"


def test_a3_must_begin_with_version():
    with pytest.raises(RecordError):
        one("id=abc; v=STSv1;")


def test_a4_non_sts_records_discarded():
    assert select_record([b"v=spf1 -all", b"v=STSv1; id=abc"]).policy_id == "abc"


@pytest.mark.parametrize("records", [[b"v=STSv1; id=abc", b"v=STSv1; id=def"], [b"v=STSv1; id=abc"] * 2])
def test_a5_more_than_one(records):
    with pytest.raises(RecordError, match="exactly one"):
        select_record(records)


def test_a6_other_text():
    with pytest.raises(RecordError):
        one("v=STSv1; id=abc; hello world")


@pytest.mark.parametrize("text", ["v=STSv1;", "v=STSv1"])
def test_a7_id_required(text):
    with pytest.raises(RecordError):
        one(text)


@pytest.mark.parametrize("pid", ["a", "A" * 32, "20240101T000000"])
def test_a8_valid_ids(pid):
    assert one(f"v=STSv1; id={pid}").policy_id == pid


@pytest.mark.parametrize("pid", ["a" * 33, "", "abc+def", "2024-01-01", "abc_def", "abc.def"])
def test_a8_invalid_ids(pid):
    with pytest.raises(RecordError):
        one(f"v=STSv1; id={pid}")


@pytest.mark.parametrize("text", ["V=STSv1; id=1", "v=stsv1; id=1", "v=STSv1; ID=1"])
def test_a9_case_sensitive(text):
    with pytest.raises(RecordError):
        one(text)


@pytest.mark.parametrize("text", ["v=STSv1; id=abc; foo=bar", "v=STSv1; foo=bar; id=abc"])
def test_a10_extensions_ignored(text):
    assert one(text).policy_id == "abc"


@pytest.mark.parametrize("ext", ["foo=a b", "foo=a=b", "a" * 33 + "=x", "_foo=x", "-foo=x", "foo=", "=x"])
def test_a10_invalid_extension(ext):
    with pytest.raises(RecordError):
        one(f"v=STSv1; id=abc; {ext}")


@pytest.mark.parametrize(
    "text", ["v=STSv1;id=abc", "v=STSv1; id=abc;", "v=STSv1;\tid=abc", "v=STSv1 ; id=abc", "v=STSv1;  id=abc  ;  "]
)
def test_a11_delimiters(text):
    assert one(text).policy_id == "abc"


def test_a11_space_before_semicolon_same_rule_with_several_records():
    # RFC 8461 §3.1 (the ABNF allows WSP before ";"): "v=STSv1 ;" counts as an STS record in multi-record answers too.
    with pytest.raises(RecordError, match="exactly one"):
        select_record([b"v=STSv1 ; id=abc", b"v=STSv1; id=def"])


def test_a11_prefix_not_followed_by_delimiter():
    with pytest.raises(RecordError):
        one("v=STSv10; id=abc")


def test_a12_first_id_wins():
    assert one("v=STSv1; id=abc; id=def").policy_id == "abc"


def test_a13_multistring_joined_by_caller():
    # DnsClient joins an RR's strings with no separator; the parser sees the result.
    assert select_record([b"v=STSv1; id=ab" + b"cd"]).policy_id == "abcd"


def test_a14_non_ascii():
    with pytest.raises(RecordError):
        select_record(["v=STSv1; id=abc; foo=\u00e9".encode("utf-8")])


def test_extensions_kept():
    assert parse_record("v=STSv1; id=abc; foo=bar").extensions == (("foo", "bar"),)


@given(st.lists(st.binary(max_size=80), max_size=4))
def test_fuzz_only_record_error(texts):
    try:
        record = select_record(texts)
    except RecordError:
        return
    assert 1 <= len(record.policy_id) <= 32 and record.policy_id.isalnum()


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=32),
    st.sampled_from(["", ";", " ;", "; "]),
    st.sampled_from(["", " ", "\t"]),
)
def test_property_valid_ids_roundtrip(pid, tail, wsp):
    assert one(f"v=STSv1;{wsp}id={pid}{tail}").policy_id == pid
