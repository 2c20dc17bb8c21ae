"""The TLSRPT record (RFC 8460 §3), as `mtasts check` reads it."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.core.tlsrpt import select_tlsrpt
from mtasts.errors import RecordError


def one(text):
    return select_tlsrpt([text.encode()])


@pytest.mark.parametrize(
    "text,rua",
    [
        ("v=TLSRPTv1;rua=mailto:reports@example.com", ("mailto:reports@example.com",)),
        ("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt", ("https://reporting.example.com/v1/tlsrpt",)),
        (
            "v=TLSRPTv1; rua=mailto:a@example.com, https://r.example/tlsrpt",
            ("mailto:a@example.com", "https://r.example/tlsrpt"),
        ),
        ("v=TLSRPTv1; rua=mailto:a@x; foo=bar", ("mailto:a@x",)),  # RFC 8460 §3: unknown fields are ignored
        ("v=TLSRPTv1; rua=mailto:a%2Cb@example.com;", ("mailto:a%2Cb@example.com",)),
    ],
)
def test_i99_i101_valid(text, rua):
    assert one(text).rua == rua


@pytest.mark.parametrize(
    "text",
    [
        "v=TLSRPTv1;",
        "v=tlsrptv1; rua=mailto:a@x",
        "v=TLSRPTv1; RUA=mailto:a@x",
        "v=TLSRPTv1; rua=",
        "v=TLSRPTv1; rua=mailto:a@x, ",
        "v=TLSRPTv1; rua=mailto:a@x; junk",
    ],
)
def test_i100_invalid(text):
    with pytest.raises(RecordError):
        one(text)


def test_i102_http_is_not_usable():
    assert one("v=TLSRPTv1; rua=http://r.example/x").usable == ()


def test_i103_unencoded_comma_splits_into_a_non_uri():
    # The comma splits the list; "b@example.com" is then no URI, and the message says why.
    with pytest.raises(RecordError, match="must be %-encoded"):
        one("v=TLSRPTv1; rua=mailto:a,b@example.com")


def test_i104_exactly_one():
    assert select_tlsrpt([b"v=spf1 -all", b"v=TLSRPTv1; rua=mailto:a@x"]).rua == ("mailto:a@x",)
    with pytest.raises(RecordError, match="exactly one"):
        select_tlsrpt([b"v=TLSRPTv1; rua=mailto:a@x", b"v=TLSRPTv1; rua=mailto:b@x"])


@given(st.lists(st.binary(max_size=80), max_size=3))
def test_fuzz_only_record_error(texts):
    try:
        select_tlsrpt(texts)
    except RecordError:
        pass
