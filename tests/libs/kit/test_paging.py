"""Keyset page tokens round-trip their key and refuse anything else, naming page_token."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wamesh_kit.errors import InvalidArgument
from wamesh_kit.paging import PageTokens

BY_TIME = PageTokens[tuple[datetime, str]](datetime, str)
BY_ID = PageTokens[tuple[str]](str)
QUERY = ("messages", "t_0001", "c_0002")

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(moment=moments, row_id=st.text())
def test_a_token_gives_back_its_key_exactly(moment: datetime, row_id: str) -> None:
    token = BY_TIME.encode((moment, row_id), *QUERY)
    assert BY_TIME.decode(token, *QUERY) == (moment, row_id)


def test_no_token_is_the_first_page() -> None:
    assert BY_ID.decode("", "tenants") is None


def test_a_token_of_another_query_is_refused() -> None:
    token = BY_ID.encode(("t_0001",), "tenants", "active")
    with pytest.raises(InvalidArgument, match="another query") as refused:
        BY_ID.decode(token, "tenants", "suspended")
    assert refused.value.field == "page_token"


def _forged(body: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _forged(["a", "list"]),
        _forged({"k": ["t_0001"]}),
        _forged({"k": "t_0001", "q": "x"}),
        _forged({"k": [1, "x", 3], "q": "x"}),
        _forged({"k": ["not a time", "x"], "q": "x"}),
        _forged({"k": [True, "x"], "q": "x"}),
        _forged({"k": [10**30, "x"], "q": "x"}),
        _forged({"k": [0, 7], "q": "x"}),
    ],
)
def test_anything_not_issued_is_refused_naming_the_field(token: str) -> None:
    with pytest.raises(InvalidArgument, match="not a token this service issued") as refused:
        BY_TIME.decode(token, *QUERY)
    assert refused.value.field == "page_token"


def test_a_key_of_the_wrong_shape_is_a_bug_not_a_token() -> None:
    with pytest.raises(ValueError, match="2 parts"):
        BY_TIME.encode(("only-one",), *QUERY)  # type: ignore[arg-type]
