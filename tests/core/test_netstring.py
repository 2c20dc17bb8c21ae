import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.core.netstring import MAX_REQUEST_SIZE, NetstringDecoder, encode
from mtasts.errors import NetstringError


def feed_bytewise(decoder, data):
    out = []
    for i in range(len(data)):
        out.extend(decoder.feed(data[i : i + 1]))
    return out


STREAM = b"12:postfix a.de,0:,20:postfix example.com.,"
PAYLOADS = [b"postfix a.de", b"", b"postfix example.com."]


def test_whole_stream():
    assert NetstringDecoder().feed(STREAM) == PAYLOADS


def test_byte_by_byte():
    assert feed_bytewise(NetstringDecoder(), STREAM) == PAYLOADS


def test_incomplete_stays_buffered():
    d = NetstringDecoder()
    assert d.feed(b"12:postfix") == []
    assert d.buffered == len(b"12:postfix")
    assert d.feed(b" a.de,5:") == [b"postfix a.de"]
    assert d.buffered == 2


def test_encode():
    assert encode(b"OK secure") == b"9:OK secure,"
    assert encode(b"") == b"0:,"


@pytest.mark.parametrize(
    "data",
    [
        b"x:abc,",  # non-digit prefix
        b"GET / HTTP/1.1\r\n",  # a stray HTTP client
        b"3:abcX",  # wrong terminator
        b"-1:,",
        b" 3:abc,",
        b"3 :abc,",
        b"12345678901",  # prefix longer than any valid length
        b"%d:" % (MAX_REQUEST_SIZE + 1),  # oversized: refused before the body arrives
    ],
)
def test_malformed_raises_whole_and_bytewise(data):
    with pytest.raises(NetstringError):
        NetstringDecoder().feed(data)
    with pytest.raises(NetstringError):
        feed_bytewise(NetstringDecoder(), data)


def test_limit_is_inclusive():
    payload = b"a" * MAX_REQUEST_SIZE
    assert NetstringDecoder().feed(encode(payload)) == [payload]


def test_errors_after_good_payloads_still_raise():
    d = NetstringDecoder()
    with pytest.raises(NetstringError):
        d.feed(b"1:a,1:bX")


@given(st.lists(st.binary(max_size=300), max_size=20), st.data())
def test_roundtrip_any_split(payloads, data):
    stream = b"".join(encode(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    d = NetstringDecoder()
    out, last = [], 0
    for cut in cuts + [len(stream)]:
        out.extend(d.feed(stream[last:cut]))
        last = cut
    assert out == payloads
    assert d.buffered == 0


@given(st.binary(max_size=200))
def test_fuzz_only_netstring_error(data):
    """Any input parses or raises NetstringError; nothing else escapes."""
    try:
        NetstringDecoder(max_size=100).feed(data)
    except NetstringError:
        pass
