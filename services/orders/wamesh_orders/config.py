"""A tenant's bot settings (from the tenants registry) as the bot reads them."""

from __future__ import annotations

import logging

from wamesh.tenants.v1 import tenants_pb2
from wamesh_orders.bot.catalogue import LANGUAGES
from wamesh_orders.bot.dialogue import BotConfig, MenuEntry
from wamesh_orders.bot.money import minor_units

log = logging.getLogger(__name__)


def bot_config(tenant: tenants_pb2.Tenant) -> BotConfig:
    bot = tenant.bot
    return BotConfig(
        menu=tuple(entry for item in bot.menu if (entry := _entry(tenant.id, item)) is not None),
        greeting=bot.greeting,
        promo_text=bot.promo_text,
        apology_text=bot.apology_text,
        support_contact=tenant.support_contact,
        languages=tuple(bot.languages) or (_language(tenant.default_language),),
        default_language=_language(tenant.default_language),
        staff_numbers=frozenset(bot.staff_numbers),
    )


def _language(tag: str) -> str:
    """The shipped language a BCP 47 tag ("ar-SA", "ne") asks for; English otherwise."""
    base = tag.split("-")[0].lower()
    return base if base in LANGUAGES else "en"


def _entry(tenant_id: str, item: tenants_pb2.MenuItem) -> MenuEntry | None:
    try:
        price = minor_units(item.price.units, item.price.nanos, item.price.currency_code)
    except ValueError:
        # The registry checks prices; one finer than its currency's minor unit is not shown
        # rather than sold at a rounded price.
        log.warning(
            "menu item with an unusable price", extra={"tenant": tenant_id, "item": item.id}
        )
        return None
    return MenuEntry(
        id=item.id,
        name=item.name,
        price_minor=price,
        currency=item.price.currency_code,
        available=item.available,
    )
