"""What a customer's text says, before any meaning: one normal form, and the script it is in."""

from __future__ import annotations

import unicodedata

# Presentation only: how an emoji or a glyph looks, not what it says.
_VARIATION_SELECTORS = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))
# Marks dropped after canonical decomposition: accents over Latin (and Greek, Cyrillic)
# letters, and the Arabic vowel signs and hamza marks, so that `crème`/`creme` and
# `إيقاف`/`ايقاف` read alike. Devanagari signs are letters' vowels, never dropped.
_DROPPED_MARKS = (
    (0x0300, 0x036F),  # combining diacritical marks
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
    (0x0610, 0x061A),  # Arabic honorific marks
    (0x064B, 0x065F),  # Arabic tashkeel, hamza above and below
    (0x0670, 0x0670),  # superscript alef
    (0x06D6, 0x06ED),  # Quranic annotation marks
    *_VARIATION_SELECTORS,
)
_TATWEEL = "\u0640"
_ARABIC_RANGES = (
    (0x0600, 0x06FF),
    (0x0750, 0x077F),
    (0x08A0, 0x08FF),
    (0xFB50, 0xFDFF),
    (0xFE70, 0xFEFF),
)
_DEVANAGARI_RANGES = ((0x0900, 0x097F), (0xA8E0, 0xA8FF))


def normalise(text: str) -> str:
    """The form every comparison uses: NFKC, case-folded, Latin accents and Arabic tashkeel
    and tatweel gone, every script's digits as ASCII, whitespace collapsed to single spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFD", folded)
    kept = "".join(_ascii_digit(char) for char in decomposed if not _is_dropped(char))
    return " ".join(unicodedata.normalize("NFC", kept).split())


def language_of(text: str) -> str | None:
    """``"ar"`` or ``"ne"`` when more of the text's letters and digits are in that script than
    in the other; None when neither script is there (Latin says nothing of the language)."""
    arabic = sum(1 for char in text if _is_word_char(char) and _within(char, _ARABIC_RANGES))
    devanagari = sum(
        1 for char in text if _is_word_char(char) and _within(char, _DEVANAGARI_RANGES)
    )
    if arabic > devanagari:
        return "ar"
    if devanagari > arabic:
        return "ne"
    return None


def has_word_chars(text: str) -> bool:
    """Whether the text holds a letter or a digit (emoji, spaces and punctuation alone do not)."""
    return any(_is_word_char(char) for char in text)


def has_letters(text: str) -> bool:
    """Whether the text holds a letter of any script (an address does; `12` alone does not)."""
    return any(unicodedata.category(char)[0] == "L" for char in text)


def strip_symbols(text: str, *, leading: bool = True) -> str:
    """The text without punctuation, symbols and spaces at its end (`menu!`, `hi 👋`), and at
    its start unless ``leading`` is False."""
    start, end = 0, len(text)
    while leading and start < end and not _is_word_char(text[start]):
        start += 1
    while end > start and not _is_word_char(text[end - 1]):
        end -= 1
    return text[start:end]


def name_key(text: str) -> str:
    """What two names must share to be the same: normalised words, punctuation aside
    (`Coke (330ml)` and `coke 330ml`, `Crème Brûlée` and `creme brulee`)."""
    spaced = "".join(char if _is_word_char(char) else " " for char in normalise(text))
    return " ".join(spaced.split())


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, with an ellipsis when something was cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"


def _ascii_digit(char: str) -> str:
    value = unicodedata.decimal(char, None)
    return char if value is None else str(value)


def _is_dropped(char: str) -> bool:
    return char == _TATWEEL or _within(char, _DROPPED_MARKS)


def _is_word_char(char: str) -> bool:
    category = unicodedata.category(char)
    # Marks count, as Devanagari vowel signs and viramas are part of its words; variation
    # selectors are marks too, but say nothing.
    if _within(char, _VARIATION_SELECTORS):
        return False
    return category[0] in "LN" or category in ("Mn", "Mc")


def _within(char: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    point = ord(char)
    return any(low <= point <= high for low, high in ranges)
