"""The parsed form as the signature check and the webhook reader see it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wamesh_ingress.webhooks import WebhookError, parse_form


def test_every_value_of_a_repeated_name_is_kept_in_order() -> None:
    form = parse_form(b"MediaUrl=b&Body=hi%20there&MediaUrl=a&Empty=")

    assert form.getall("MediaUrl") == ["b", "a"]
    assert form["MediaUrl"] == "a"  # as a mapping: the last value, like Starlette's forms
    assert form.getlist("Body") == ["hi there"]
    assert form.getlist("Empty") == [""]
    assert form.getlist("Missing") == []
    assert sorted(form) == ["Body", "Empty", "MediaUrl"]


def test_getlist_hands_out_copies() -> None:
    form = parse_form(b"Tag=a&Tag=b")
    form.getlist("Tag").append("c")
    assert form.getlist("Tag") == ["a", "b"]


@pytest.mark.parametrize(
    "body", [b"not a form", b"Body=%ff", b"Body=a%00b", b"Body=%00%00", b"a&b=c=d", b"&&="]
)
def test_what_is_not_a_form_names_the_problem(body: bytes) -> None:
    with pytest.raises(WebhookError):
        parse_form(body)


def reference(body: bytes) -> list[tuple[str, str]] | None:
    """What parse_qsl makes of ``body`` as a strict form, or None where it refuses it."""
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None


def parsed(body: bytes) -> list[tuple[str, str]] | None:
    try:
        form = parse_form(body)
    except WebhookError:
        return None
    return [(name, value) for name in form for value in form.getlist(name)]


def grouped(pairs: list[tuple[str, str]] | None) -> list[tuple[str, str]] | None:
    """``pairs`` in the order a Form gives them back: by first appearance of each name."""
    if pairs is None:
        return None
    order = list(dict.fromkeys(name for name, _ in pairs))
    return [(name, value) for name in order for n, value in pairs if n == name]


# Form-ish text: the separators, escapes (valid, invalid, NUL, split UTF-8), '+', non-ASCII.
_PIECES = ["a", "B", "=", "&", "+", "%20", "%3D", "%26", "%00", "%C3", "%A9", "%zz", "%"]
_PIECES += ["ñ", "\x00", ";"]
_FORMISH = st.lists(st.sampled_from(_PIECES), max_size=24).map("".join)


@given(_FORMISH)
def test_any_body_reads_as_parse_qsl_reads_it_or_is_refused(text: str) -> None:
    body = text.encode()
    expected = reference(body)
    if expected is not None and any("\x00" in n or "\x00" in v for n, v in expected):
        expected = None  # NULs are refused
    assert parsed(body) == grouped(expected)


@given(st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=12))
def test_what_twilio_encodes_reads_back(pairs: list[tuple[str, str]]) -> None:
    body = urlencode(pairs).encode()
    has_nul = any("\x00" in n or "\x00" in v for n, v in pairs)
    assert parsed(body) == (None if has_nul else grouped(pairs))
