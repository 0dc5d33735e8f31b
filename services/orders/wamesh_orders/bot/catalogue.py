"""The bot's message catalogues: every text it says and every word it knows, one file per
language in ``catalogues/``, read once from the package."""

from __future__ import annotations

import functools
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

LANGUAGES: tuple[str, ...] = ("en", "ar", "ne")
FALLBACK = "en"
_PACKAGE = __name__.rpartition(".")[0]


@dataclass(frozen=True)
class Catalogue:
    """One language's texts (``"cart.total"`` → template) and words (``"words.menu"`` → aliases)."""

    language: str
    texts: Mapping[str, str]
    words: Mapping[str, tuple[str, ...]]


def render(language: str, key: str, **values: object) -> str:
    """The text under ``key`` in the language (English for a language not shipped), with its
    ``{placeholders}`` filled from ``values``. A key unknown in every catalogue is a KeyError."""
    texts = catalogue(shipped(language)).texts
    template = texts.get(key)
    if template is None:
        template = catalogue(FALLBACK).texts[key]
    return template.format(**values)


def word_list(language: str, key: str) -> tuple[str, ...]:
    """The words the language has for a command or state (``"words.menu"``), as written."""
    return catalogue(shipped(language)).words.get(key, ())


def supported(language: str) -> str | None:
    """The shipped language a BCP 47 tag falls under (``ar-EG`` → ``ar``), or None."""
    primary = language.split("-")[0].split("_")[0].lower()
    return primary if primary in LANGUAGES else None


def shipped(language: str) -> str:
    """The shipped language a BCP 47 tag falls under; English for any other."""
    return supported(language) or FALLBACK


def placeholders(template: str) -> frozenset[str]:
    """The names of a template's ``{placeholders}``."""
    return frozenset(
        field for _, field, _, _ in string.Formatter().parse(template) if field is not None
    )


@functools.cache
def catalogue(language: str) -> Catalogue:
    """The shipped language's catalogue, read from the package on first use."""
    if language not in LANGUAGES:
        raise KeyError(f"no catalogue for language {language!r}; shipped: {LANGUAGES}")
    source = resources.files(_PACKAGE).joinpath("catalogues", f"{language}.toml")
    entries = _flatten(tomllib.loads(source.read_text(encoding="utf-8")))
    texts = {key: value for key, value in entries.items() if isinstance(value, str)}
    aliases = {key: value for key, value in entries.items() if isinstance(value, tuple)}
    return Catalogue(language, texts, aliases)


def _flatten(table: Mapping[str, object], prefix: str = "") -> dict[str, str | tuple[str, ...]]:
    entries: dict[str, str | tuple[str, ...]] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            entries.update(_flatten(value, f"{key}."))
        elif isinstance(value, str):
            entries[key] = value
        elif isinstance(value, list) and all(isinstance(word, str) for word in value):
            entries[key] = tuple(str(word) for word in value)
        else:
            raise ValueError(f"catalogue entry {key!r} is neither a text nor a list of words")
    return entries
