"""One step of the dialogue before the greeting and rating rules have their say."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from wamesh_orders.bot.effects import Effect
from wamesh_orders.bot.model import Session


class Kind(Enum):
    """How well the bot understood the message, which decides what a first message or a
    pending rating does to the reply."""

    DONE = auto()
    QUIET = auto()  # nothing to say: the service confirms what the effects did
    GREETED = auto()  # the greeting and the menu are already the reply
    MENU = auto()  # the menu is already the reply
    GUESS = auto()  # not understood, but the reply suggests what was likely meant
    UNCLEAR = auto()


@dataclass(frozen=True)
class Step:
    session: Session
    replies: tuple[str, ...]
    effects: tuple[Effect, ...] = ()
    kind: Kind = Kind.DONE


def say(session: Session, *replies: str, kind: Kind = Kind.DONE) -> Step:
    return Step(session, replies, (), kind)
