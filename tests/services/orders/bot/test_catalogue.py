"""Every catalogue says everything English says, with the same placeholders, and no word the
bot understands means two things."""

from __future__ import annotations

import pytest

from wamesh_orders.bot.catalogue import LANGUAGES, catalogue, placeholders, render, shipped
from wamesh_orders.bot.model import ORDER_STATES
from wamesh_orders.bot.text import normalise
from wamesh_orders.bot.words import STAFF_STATES, Command

# The texts the orders service renders itself, with the placeholders it fills.
SERVICE_TEXTS = {
    "notify.confirmed": {"number", "summary"},
    "notify.preparing": {"number"},
    "notify.out_for_delivery": {"number"},
    "notify.ready_for_pickup": {"number"},
    "notify.delivered": {"number"},
    "notify.cancelled": {"number", "reason"},
    "notify.rating_prompt": {"number"},
    "notify.staff_new_order": {"number", "customer", "summary"},
    "staff.moved": {"number", "state"},
    "staff.refused": {"number", "reason"},
    "staff.unknown_order": {"number"},
    "opt_out.confirmed": set(),
    "opt_in.confirmed": set(),
    "status.none": set(),
    "status.current": {"number", "state"},
    "cancel.done": {"number"},
    "cancel.refused": {"number", "state"},
    "confirm.done": {"number"},
    **{f"state.{state}": set() for state in ORDER_STATES},
}
OTHERS = [language for language in LANGUAGES if language != "en"]


def test_english_arabic_and_nepali_ship() -> None:
    assert LANGUAGES == ("en", "ar", "ne")


@pytest.mark.parametrize("language", OTHERS)
def test_every_catalogue_has_exactly_the_english_keys(language: str) -> None:
    english, other = catalogue("en"), catalogue(language)

    assert set(other.texts) == set(english.texts)
    assert set(other.words) == set(english.words)


@pytest.mark.parametrize("language", OTHERS)
def test_every_text_has_the_english_placeholders(language: str) -> None:
    english, other = catalogue("en"), catalogue(language)

    differing = {
        key: (placeholders(template), placeholders(other.texts[key]))
        for key, template in english.texts.items()
        if placeholders(template) != placeholders(other.texts[key])
    }
    assert differing == {}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(("key", "names"), sorted(SERVICE_TEXTS.items()))
def test_the_service_texts_are_there_with_their_placeholders(
    language: str, key: str, names: set[str]
) -> None:
    assert placeholders(catalogue(language).texts[key]) == names


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_renders_and_no_text_is_blank(language: str) -> None:
    for key, template in catalogue(language).texts.items():
        rendered = render(language, key, **dict.fromkeys(placeholders(template), "X"))
        assert rendered.strip(), key
        assert "{" not in rendered
        assert "}" not in rendered


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_command_and_staff_state_has_words_in_every_language(language: str) -> None:
    words = catalogue(language).words

    for command in Command:
        assert words[f"words.{command}"], command
    for state in STAFF_STATES:
        assert words[f"staff_words.{state}"], state


def test_no_word_means_two_commands_across_languages() -> None:
    meanings: dict[str, set[str]] = {}
    for language in LANGUAGES:
        for key, aliases in catalogue(language).words.items():
            if key.startswith("words."):
                for word in aliases:
                    meanings.setdefault(normalise(word), set()).add(key)

    assert {word: keys for word, keys in meanings.items() if len(keys) > 1} == {}


def test_no_word_names_two_staff_states_across_languages() -> None:
    meanings: dict[str, set[str]] = {}
    for language in LANGUAGES:
        for key, aliases in catalogue(language).words.items():
            if key.startswith("staff_words."):
                for word in aliases:
                    meanings.setdefault(normalise(word), set()).add(key)

    assert {word: keys for word, keys in meanings.items() if len(keys) > 1} == {}


def test_the_stop_and_start_words_of_each_language() -> None:
    stop = {word for language in LANGUAGES for word in catalogue(language).words["words.stop"]}
    start = {word for language in LANGUAGES for word in catalogue(language).words["words.start"]}

    assert {"stop", "إيقاف", "توقف", "रोक"} <= stop
    assert {"start", "ابدأ", "بدء", "सुरु"} <= start


def test_render_fills_placeholders() -> None:
    assert render("en", "status.current", number=1042, state="being prepared") == (
        "Your order #1042 is being prepared."
    )
    assert render("ar", "confirm.done", number=7) == (
        "شكرًا! تم تأكيد طلبك رقم 7. أرسل «الحالة» لمتابعته."
    )


def test_a_language_not_shipped_renders_in_english_and_a_region_in_its_language() -> None:
    assert render("fr", "status.none") == render("en", "status.none")
    assert render("ar-EG", "status.none") == render("ar", "status.none")
    assert shipped("NE") == "ne"
    assert shipped("") == "en"


def test_a_key_no_catalogue_has_is_an_error() -> None:
    with pytest.raises(KeyError):
        render("en", "no.such.key")
