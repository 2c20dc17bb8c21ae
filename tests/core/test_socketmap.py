import pytest

from mtasts.core.socketmap import NOTFOUND, Status, format_reply, parse_request
from mtasts.errors import RequestError


def test_parse_request():
    r = parse_request(b"postfix example.com")
    assert (r.map_name, r.key) == ("postfix", "example.com")


def test_key_may_contain_spaces_after_the_first():
    assert parse_request(b"postfix a b").key == "a b"


def test_invalid_utf8_key_is_kept_not_fatal():
    r = parse_request(b"postfix \xff\xfe.example")
    assert r.key.startswith("\ufffd")


@pytest.mark.parametrize("payload", [b"", b"postfix", b" example.com", b"postfix "])
def test_not_name_key(payload):
    with pytest.raises(RequestError):
        parse_request(payload)


def test_notfound_has_trailing_space():
    assert NOTFOUND == b"NOTFOUND "


def test_bare_ok_refused():
    with pytest.raises(ValueError):
        format_reply(Status.OK, "")


def test_reply_refuses_line_breaks():
    with pytest.raises(ValueError):
        format_reply(Status.OK, "secure\nmatch=x")


def test_temp_reply():
    assert format_reply(Status.TEMP, "later") == b"TEMP later"
