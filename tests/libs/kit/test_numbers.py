from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wamesh_kit.errors import InvalidArgument
from wamesh_kit.numbers import normalize_number, whatsapp_address


@pytest.mark.parametrize(
    "raw",
    ["+14155238886", "whatsapp:+14155238886", " +1 415 523 8886 ", "WhatsApp:+1 (415) 523-8886"],
)
def test_the_spellings_of_one_number_are_one_number(raw: str) -> None:
    assert normalize_number(raw) == "+14155238886"


@pytest.mark.parametrize("raw", ["", "14155238886", "+0123456789", "+1", "+1415abc8886", "tel:+1"])
def test_malformed_numbers_name_the_field(raw: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        normalize_number(raw, field="sender_number")
    assert raised.value.field == "sender_number"


@given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
def test_normalizing_is_idempotent_and_prefix_blind(number: str) -> None:
    assert normalize_number(number) == number
    assert normalize_number(whatsapp_address(number)) == number
