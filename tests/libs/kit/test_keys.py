"""Key names: tenant keys share one cluster slot per tenant, and bad parts are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wamesh_kit import keys

tenant_ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
parts = st.from_regex(r"[A-Za-z0-9:+._-]{1,40}", fullmatch=True)


def test_tenant_key_puts_the_tenant_in_a_hash_tag() -> None:
    assert keys.tenant_key("pizza-1", "dedup", "SM123") == "wamesh:{pizza-1}:dedup:SM123"
    assert keys.dedup_key("pizza-1", "SM123") == "wamesh:{pizza-1}:dedup:SM123"


@given(tenant_ids, st.lists(parts, min_size=1, max_size=4), st.lists(parts, min_size=1, max_size=4))
def test_all_keys_of_a_tenant_hash_alike(tenant: str, first: list[str], second: list[str]) -> None:
    a = keys.tenant_key(tenant, *first)
    b = keys.tenant_key(tenant, *second)
    assert keys.hash_tag(a) == keys.hash_tag(b) == tenant
    assert keys.hash_tag(keys.dead_letter_stream(a)) == tenant


def test_route_keys_of_a_number_share_a_slot() -> None:
    key = keys.number_route_key("+14155550100")
    assert key == "wamesh:route:number:{+14155550100}"
    assert keys.hash_tag(key) == keys.hash_tag(keys.number_route_generation_key("+14155550100"))
    assert keys.hash_tag(keys.global_key("a", "b")) == "wamesh:a:b"
    with pytest.raises(ValueError, match="number"):
        keys.number_route_key("+1 415")


@pytest.mark.parametrize("tenant", ["", "a b", "a{b", "x}", "é", "t" * 65])
def test_bad_tenant_ids_are_refused(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant id"):
        keys.tenant_key(tenant, "x")


@pytest.mark.parametrize("part", ["", "a b", "{x}", "tab\t"])
def test_bad_parts_are_refused(part: str) -> None:
    with pytest.raises(ValueError, match="key part"):
        keys.tenant_key("t1", part)
    with pytest.raises(ValueError, match="key part"):
        keys.global_key(part)


def test_a_key_needs_a_part() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        keys.tenant_key("t1")
