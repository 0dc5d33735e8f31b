"""The parsed form as the signature check and the webhook reader see it."""

from __future__ import annotations

import pytest

from wamesh.services.ingress.webhooks import WebhookError, parse_form


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


@pytest.mark.parametrize("body", [b"not a form", b"Body=%ff", b"Body=a%00b", b"&&="])
def test_what_is_not_a_form_names_the_problem(body: bytes) -> None:
    with pytest.raises(WebhookError):
        parse_form(body)
