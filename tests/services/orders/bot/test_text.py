"""One normal form for what customers write, and the script that tells their language."""

# The look-alike characters here (the multiplication sign, Arabic-Indic and fullwidth digits)
# are what customers type and what the bot writes.
# ruff: noqa: RUF001

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wamesh_orders.bot.text import (
    clip,
    has_letters,
    has_word_chars,
    language_of,
    name_key,
    normalise,
    strip_symbols,
)


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("  Crème   BRÛLÉE ", "creme brulee"),
        ("MARGHERITA", "margherita"),
        ("Straße", "strasse"),
        ("٠١٢٣٤٥٦٧٨٩", "0123456789"),
        ("۰۱۲۳۴۵۶۷۸۹", "0123456789"),
        ("०१२३४५६७८९", "0123456789"),
        ("２ｘ３", "2x3"),
        ("مَرْحَبًا", "مرحبا"),
        ("القائـــمة", normalise("القائمة")),
        ("إيقاف", "ايقاف"),
        ("ابدأ", "ابدا"),
        ("मेनु", "मेनु"),
        ("line one\n\tline two", "line one line two"),
        ("", ""),
    ],
)
def test_normalise_folds_case_accents_tashkeel_digits_and_spaces(written: str, normal: str) -> None:
    assert normalise(written) == normal


def test_devanagari_vowel_signs_and_viramas_are_kept() -> None:
    assert normalise("हटाउनुहोस्") == "हटाउनुहोस्"
    assert normalise("तयारी") != normalise("तयार")


@given(st.text(max_size=60))
def test_normalise_is_idempotent(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)


@pytest.mark.parametrize(
    ("written", "language"),
    [
        ("مرحبا", "ar"),
        ("٢ x ٣", "ar"),
        ("2 × ۳", "ar"),
        ("नमस्ते", "ne"),
        ("२ x ३", "ne"),
        ("hello", None),
        ("2 x 3", None),
        ("🍕🍕", None),
        ("", None),
        ("menu مرحبا", "ar"),
    ],
)
def test_language_of_goes_by_script(written: str, language: str | None) -> None:
    assert language_of(written) == language


def test_name_key_ignores_punctuation_case_and_accents() -> None:
    assert name_key("Coke (330ml)") == "coke 330ml"
    assert name_key("  crème-brûlée!") == "creme brulee"


def test_word_chars_and_letters() -> None:
    assert not has_word_chars("🍕 👍🏽 ❤️ ?! ")
    assert has_word_chars("1️⃣")
    assert has_letters("Calle 5")
    assert not has_letters("12 / 4")


def test_strip_symbols_at_either_end_or_only_the_end() -> None:
    assert strip_symbols("👋 hi!!") == "hi"
    assert strip_symbols("-2 x 3.", leading=False) == "-2 x 3"
    assert strip_symbols("🍕") == ""


def test_clip_marks_what_it_cut() -> None:
    assert clip("margherita", 20) == "margherita"
    assert clip("margherita", 5) == "marg…"
