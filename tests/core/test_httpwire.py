"""core/httpwire: responses framed every way RFC 9112 allows, fed in any pieces, read back to
the same head and body; limits on everything a policy host controls (interim responses,
framing, the head, the body as sent and decoded); truncation, a close without close_notify
included; any bytes either read or raise HttpWireError."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtasts.core.httpwire import MAX_HEAD, MAX_INTERIM, BodyTooLarge, Exchange, HttpWireError

LIMIT = 65536
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, blacklist_characters=","), max_size=20)
FRAMING = st.sampled_from(["length", "chunked", "close", "gzip-length", "gzip-chunked", "deflate-close"])


def ResponseReader(limit=LIMIT):
    return Exchange("mta-sts.example.com", "/.well-known/mta-sts.txt", (), limit)


def read(wire: bytes, pieces=None, limit=LIMIT, clean=True):
    """Feed *wire* in *pieces* (cut points), then the end (*clean*: a close_notify); the reader."""
    reader = ResponseReader(limit)
    cuts = sorted(set(pieces or [])) + [len(wire)]
    at = 0
    for cut in cuts:
        reader.feed(wire[at:cut])
        at = cut
    if not reader.done:
        reader.feed(b"")  # the head may have been complete at the last piece
    if not reader.done:
        reader.end(clean)
    return reader


def frame(body: bytes, framing: str, chunks, fields=()):
    head = ["HTTP/1.1 200 OK", "Content-Type: text/plain"] + [f"{n}: {v}" for n, v in fields]
    sent = body
    if framing.startswith("gzip"):
        sent = gzip.compress(body)
        head.append("Content-Encoding: gzip")
    elif framing.startswith("deflate"):
        sent = zlib.compress(body)
        head.append("Content-Encoding: deflate")
    if framing.endswith("length"):
        head.append(f"Content-Length: {len(sent)}")
        payload = sent
    elif framing.endswith("chunked"):
        head.append("Transfer-Encoding: chunked")
        payload, at = b"", 0
        for size in chunks:
            piece = sent[at : at + size]
            if not piece:
                break
            payload += b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n"
            at += len(piece)
        if at < len(sent):
            payload += b"%X\r\n" % (len(sent) - at) + sent[at:] + b"\r\n"
        payload += b"0\r\nX-Trailer: 1\r\n\r\n"
    else:
        payload = sent
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


@settings(max_examples=300)
@given(
    st.binary(max_size=3000),
    FRAMING,
    st.lists(st.integers(1, 700), max_size=8),
    st.lists(st.tuples(TOKEN, VALUE), max_size=6),
    st.lists(st.integers(0, 4000), max_size=6),
)
def test_any_framing_in_any_pieces_reads_back(body, framing, chunks, fields, cuts):
    wire = frame(body, framing, chunks, fields)
    reader = read(wire, [c for c in cuts if c < len(wire)])
    assert reader.done and reader.body == body
    assert reader.head.status == 200 and reader.head.get("content-type") == "text/plain"
    for name, value in fields:
        assert (name.lower(), value.strip(" \t")) in reader.head.fields


def test_feed_stops_after_the_head_so_the_status_is_judged_first():
    # A 404 with a body over the limit: the caller sees the head before the body's size.
    wire = b"HTTP/1.1 404 Not Found\r\nContent-Length: 999999\r\n\r\n" + b"x" * 100
    reader = ResponseReader(LIMIT)
    reader.feed(wire)
    assert reader.head.status == 404 and reader.head.reason == "Not Found" and not reader.done
    with pytest.raises(BodyTooLarge):
        reader.feed(b"")


def test_interim_responses_are_skipped():
    wire = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    reader = read(wire)
    assert reader.head.status == 200 and reader.body == b"ok"


def test_bare_lf_obs_fold_and_http10():
    wire = b"HTTP/1.0 200 OK\nContent-Type: text/plain;\n charset=utf-8\n\nbody to close"
    reader = read(wire)
    assert reader.head.get("Content-Type") == "text/plain; charset=utf-8"
    assert reader.body == b"body to close"


def test_transfer_encoding_overrides_content_length():
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert read(wire).body == b"abc"


def test_equal_content_lengths_are_one_and_different_ones_an_error():
    assert read(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok").body == b"ok"
    for bad in (
        b"Content-Length: 2\r\nContent-Length: 3",
        b"Content-Length: -1",
        b"Content-Length: 0x10",
        b"Content-Length: \xb2",
    ):
        with pytest.raises(HttpWireError, match="Content-Length"):
            read(b"HTTP/1.1 200 OK\r\n" + bad + b"\r\n\r\nok")


def test_no_body_for_204_and_304():
    for status in (204, 304):
        reader = read(b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status)
        assert reader.done and reader.body == b""


@pytest.mark.parametrize(
    "wire,match",
    [
        (b"", "without a response"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "unreadable response head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "received 5 bytes, expected 10"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "before the end of the body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", "before the end of the body"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gzip.compress(b"x" * 100)[:20], "compressed body ends"),
    ],
)
def test_truncated_responses_are_errors(wire, match):
    with pytest.raises(HttpWireError, match=match):
        read(wire)


@pytest.mark.parametrize(
    "wire,match",
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "illegal status line"),
        (b"<html>hello</html>\r\n\r\n", "illegal status line"),
        (b"HTTP/2.0 200 OK\r\n\r\n", "not HTTP/1.x"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "illegal status line"),
        (b"HTTP/1.1 200 OK\rX-Smuggled: 1\r\n\r\n", "illegal status line"),  # a bare CR
        (b"HTTP/1.1 200 OK\r\nContent-Type : text/plain\r\n\r\n", "illegal header line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "illegal header line"),
        (b"HTTP/1.1 200 OK\r\n continuation\r\n\r\n", "continuation line"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\nxx", "unsupported Content-Encoding 'br'"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, gzip\r\n\r\nxx", "unsupported Content-Encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nnot gzip at all", "undecodable"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "Only Transfer-Encoding: chunked"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "illegal chunk header"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "chunk"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\n0\n\n",
            "unreadable response body",
        ),  # bare LF framing
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 40000, "Receive buffer too long"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "more than 100 header fields"),
    ],
)
def test_unreadable_responses_say_why(wire, match):
    with pytest.raises(HttpWireError, match=match):
        read(wire)


def test_a_header_section_without_end_is_bounded():
    reader = ResponseReader(LIMIT)
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(HttpWireError, match="Receive buffer too long"):
        for _ in range(MAX_HEAD // 1000 + 1):
            reader.feed(b"X-Pad: " + b"a" * 991 + b"\r\n")


def test_endless_trailers_are_bounded():
    reader = ResponseReader(LIMIT)
    reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    reader.feed(b"1\r\na\r\n0\r\n")
    with pytest.raises(HttpWireError, match="Receive buffer too long"):
        for _ in range(MAX_HEAD // 100 + 2):
            reader.feed(b"T: " + b"t" * 95 + b"\r\n")


@pytest.mark.parametrize("framing", ["length", "chunked", "close", "gzip-length", "gzip-chunked", "deflate-close"])
def test_the_limit_holds_as_sent_and_as_decoded(framing):
    assert read(frame(b"a" * LIMIT, framing, [5000] * 20)).body == b"a" * LIMIT  # at the limit: read
    with pytest.raises(BodyTooLarge):
        read(frame(b"a" * (LIMIT + 1), framing, [5000] * 20))


def test_a_compression_bomb_stops_at_the_limit():
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))  # 50 MiB of zeros in ~50 KiB
    reader = ResponseReader(LIMIT)
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n")
    with pytest.raises(BodyTooLarge, match="decoded body over"):
        reader.feed(bomb[:4096])


def test_a_huge_chunk_stops_at_the_limit():
    reader = ResponseReader(LIMIT)
    reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    reader.feed(b"FFFFFFFFFFFFFFFF\r\n")
    with pytest.raises(BodyTooLarge):
        for _ in range(LIMIT // 4096 + 1):
            reader.feed(b"x" * 4096)


def test_interim_responses_are_bounded():
    reader = ResponseReader(LIMIT)
    reader.feed(b"HTTP/1.1 100 Continue\r\n\r\n" * MAX_INTERIM)
    assert reader.head is None
    with pytest.raises(HttpWireError, match=f"more than {MAX_INTERIM} interim"):
        reader.feed(b"HTTP/1.1 100 Continue\r\n\r\n")


def test_a_stream_of_interim_responses_stops_within_one_read():
    # What a hostile host sends as fast as it can: one 16 KiB read of it is already refused.
    with pytest.raises(HttpWireError, match="interim"):
        ResponseReader(LIMIT).feed(b"HTTP/1.1 100 Continue\r\n\r\n" * 700)


def test_chunk_framing_counts_against_the_response_bound():
    # One-octet chunks with 1 KiB extensions: a small body in megabytes of framing.
    reader = ResponseReader(LIMIT)
    reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"1;" + b"e" * 1000 + b"\r\nx\r\n"
    with pytest.raises(HttpWireError, match="octets with its framing"):
        for _ in range(reader.max_response // len(chunk) + 2):
            reader.feed(chunk)
    assert reader.max_response < 1024 * 1024


@pytest.mark.parametrize("framing", ["close", "deflate-close"])
def test_a_close_delimited_body_needs_close_notify(framing):
    wire = frame(b"version: STSv1\r\nmode: enforce\r\nmx: mx1.victim.atk\r\nmax_age: 31557600\r\n", framing, [])
    assert read(wire, clean=True).body.endswith(b"max_age: 31557600\r\n")
    for cut in (len(wire), len(wire) - 5, len(wire) - 30):
        with pytest.raises(HttpWireError, match="without TLS close_notify"):
            read(wire[:cut], clean=False)


@pytest.mark.parametrize("framing", ["length", "chunked", "gzip-chunked"])
def test_a_self_delimited_body_is_complete_before_any_close(framing):
    wire = frame(b"version: STSv1\r\n", framing, [5])
    reader = ResponseReader(LIMIT)
    reader.feed(wire)
    reader.feed(b"")
    assert reader.done and reader.body == b"version: STSv1\r\n"
    reader.end(clean=False)  # a FIN after a complete body changes nothing


@settings(max_examples=400)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=4))
def test_any_bytes_read_or_raise_httpwireerror(data, cuts):
    try:
        read(data, [c for c in cuts if c < len(data)])
    except HttpWireError:
        pass


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=500), FRAMING, st.integers(0, 10**6), st.data())
def test_damaged_responses_read_or_raise_httpwireerror(body, framing, position, data):
    wire = bytearray(frame(body, framing, [7, 100]))
    at = position % len(wire)
    wire[at] = data.draw(st.integers(0, 255))
    try:
        read(bytes(wire))
    except HttpWireError:
        pass


def test_every_prefix_of_a_framed_response_is_an_error():
    for framing in ("length", "chunked", "gzip-chunked", "close"):
        wire = frame(b"version: STSv1\r\nmode: enforce\r\n", framing, [4, 9])
        for cut in range(len(wire)):
            with pytest.raises(HttpWireError):
                read(wire[:cut], clean=framing != "close")


def test_the_request_is_one_get_that_closes():
    wire = Exchange("mta-sts.example.com", "/.well-known/mta-sts.txt", (("Accept", "text/plain"),), LIMIT).request
    assert wire == (
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
        b"Accept: text/plain\r\nConnection: close\r\n\r\n"
    )


def test_a_request_no_http_can_carry_is_refused():
    with pytest.raises(HttpWireError, match="cannot send the request"):
        Exchange("bad\r\nhost", "/", (), LIMIT)


def test_a_head_trickled_one_octet_at_a_time_reads_the_same():
    wire = frame(b"version: STSv1\r\n", "chunked", [3], [("X-A", "1"), ("X-B", "2")])
    reader = ResponseReader(LIMIT)
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
    reader.feed(b"")
    assert reader.done and reader.body == b"version: STSv1\r\n" and reader.head.get("x-b") == "2"
    bare = b"HTTP/1.1 200 OK\nA: b\n\nbody"
    reader = ResponseReader(LIMIT)
    for i in range(len(bare)):
        reader.feed(bare[i : i + 1])
    reader.end()
    assert reader.head.get("a") == "b" and reader.body == b"body"
