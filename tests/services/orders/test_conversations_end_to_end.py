"""Whole conversations, from the first message to the rating, in each shipped language: the
customer's messages go through the real conversation store and the real ``inbound`` stream,
the bot answers, the real dispatcher sends through the Twilio sandbox (placed on the sender
by the real workers registry), and each test reads what the customer's phone received."""

# The look-alike characters (the multiplication sign, other scripts' digits) are what
# customers type and what the bot writes.
# ruff: noqa: RUF001

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from prometheus_client import CollectorRegistry

from tests.services.dispatcher.dispatcher_testkit import sandbox_messages
from tests.services.dispatcher.runner_testkit import registry, registry_dsn
from tests.services.dispatcher.service_testkit import make_settings as dispatcher_settings
from tests.services.orders.orders_testkit import Mesh, Shop, among_peers, unique_customer
from tests.tools.sandbox.conftest import _no_twilio_edge, sandbox
from tests.tools.sandbox.sandbox_testkit import ACCOUNT, SENDER, Running
from wamesh.tenants.v1 import tenants_pb2
from wamesh_dispatcher.app import dispatcher_service
from wamesh_kit.rpc.server import GrpcService
from wamesh_orders.settings import OrdersSettings

__all__ = ["_no_twilio_edge", "registry", "registry_dsn", "sandbox"]

SEND_TIMEOUT_S = 60


@pytest.fixture
async def dispatcher(
    dispatcher_dsn: str,
    redis_url: str,
    tenants: GrpcService,
    conversations: GrpcService,
    registry: GrpcService,
    sandbox: Running,
) -> AsyncIterator[GrpcService]:
    """The dispatcher that sends: a twilio worker the registry places the sender on."""
    settings = dispatcher_settings(
        dispatcher_dsn,
        redis_url,
        send=True,
        tenants_target=f"127.0.0.1:{tenants.port}",
        workers_target=f"127.0.0.1:{registry.port}",
        conversations_target=f"127.0.0.1:{conversations.port}",
        twilio_base_url=sandbox.url,
        instance_id="dispatcher-orders-e2e",
        reconcile_interval_s=0.2,
    )
    async with dispatcher_service(settings, registry=CollectorRegistry()) as server:
        yield server


@pytest.fixture
def settings(
    orders_dsn: str,
    redis_url: str,
    tenants: GrpcService,
    conversations: GrpcService,
    dispatcher: GrpcService,
) -> OrdersSettings:
    return among_peers(
        orders_dsn,
        redis_url,
        tenants=tenants.port,
        conversations=conversations.port,
        dispatcher=dispatcher.port,
        rating_prompt_delay_s=0,
    )


@pytest.fixture
async def shop(mesh: Mesh, tenants_admin: Any) -> AsyncIterator[Shop]:
    """Casa Pepe, speaking all three languages, on the sandbox's sender and account."""
    tenant = await mesh.shop(languages=["en", "ar", "ne"])
    await tenants_admin.SetCredentials(
        tenants_pb2.SetCredentialsRequest(
            tenant_id=tenant.tenant_id,
            credentials=tenants_pb2.TwilioCredentials(
                account_sid=ACCOUNT.sid, auth_token=ACCOUNT.auth_token
            ),
        )
    )
    current = await tenants_admin.GetTenant(
        tenants_pb2.GetTenantRequest(tenant_id=tenant.tenant_id)
    )
    # Replies follow each other at once: the default two seconds per recipient would only
    # slow the test down.
    await tenants_admin.UpdateTenant(
        tenants_pb2.UpdateTenantRequest(
            tenant_id=tenant.tenant_id,
            expected_version=current.tenant.version,
            limits=tenants_pb2.Limits(recipient_min_interval=Duration(nanos=1_000_000)),
        )
    )
    await tenants_admin.RemoveSenderNumber(
        tenants_pb2.RemoveSenderNumberRequest(tenant_id=tenant.tenant_id, number=tenant.sender)
    )
    sender = SENDER.removeprefix("whatsapp:")
    await tenants_admin.AddSenderNumber(
        tenants_pb2.AddSenderNumberRequest(tenant_id=tenant.tenant_id, number=sender)
    )
    yield Shop(tenant.tenant_id, sender, tenant.staff)
    # The sandbox has the one sender: the next test's shop takes it over.
    await tenants_admin.RemoveSenderNumber(
        tenants_pb2.RemoveSenderNumberRequest(tenant_id=tenant.tenant_id, number=sender)
    )


async def phone(sandbox: Running, number: str, count: int) -> list[str]:
    """The first ``count`` messages ``number`` received, once they have all arrived."""
    async with asyncio.timeout(SEND_TIMEOUT_S):
        while True:
            received = await sandbox_messages(sandbox, to=f"whatsapp:{number}")
            if len(received) >= count:
                return [message["body"] for message in received]
            await asyncio.sleep(0.1)


async def converse(
    mesh: Mesh,
    shop: Shop,
    sandbox: Running,
    customer: str,
    script: list[tuple[str, str]],
) -> list[str]:
    """Plays ``script`` (who, text): the customer's lines, and the staff's moves of the
    customer's latest order (``{number}`` filled in); the customer's phone afterwards."""
    for who, text in script:
        if who == "customer":
            await mesh.say(shop, customer, text)
        else:
            order = await mesh.latest_order(shop, customer)
            await mesh.say(shop, shop.staff[0], text.format(number=order.number))
    expected = len(await mesh.received(shop, customer))
    return await phone(sandbox, customer, expected)


MENU_EN = (
    "Menu:\n"
    "1. Margherita — €25.00\n"
    "2. Paella Valenciana — €42.00\n"
    "3. Crème Brûlée — €9.00\n"
    "To order, send the quantity and the item number (e.g. 2 x 1) or the item's name. "
    "Send help for all commands."
)


async def test_in_english(mesh: Mesh, shop: Shop, sandbox: Running) -> None:
    ana = unique_customer()
    received = await converse(
        mesh,
        shop,
        sandbox,
        ana,
        [
            ("customer", "hi"),
            ("customer", "2 x 1"),
            ("customer", "margarita"),
            ("customer", "checkout"),
            ("customer", "1"),
            ("customer", "Calle Mayor 5"),
            ("customer", "confirm"),
            ("staff", "#{number} preparing"),
            ("staff", "#{number} on the way"),
            ("staff", "#{number} delivered"),
            ("customer", "5"),
        ],
    )
    number = (await mesh.latest_order(shop, ana)).number
    assert received == [
        "Welcome to Casa Pepe!",
        MENU_EN,
        "Added 2 × Margherita. Cart total: €50.00. "
        "Send checkout to order, or cart to see your cart.",
        "I couldn't find “margarita”. Did you mean Margherita? Send 1 x 1 to add it.",
        "Delivery or pickup? Reply 1 for delivery or 2 for pickup.",
        "Please send the delivery address.",
        "Your order:\n2 × Margherita — €50.00\nTotal: €50.00\nDelivery to: Calle Mayor 5\n"
        "Send confirm to place the order, or cancel to stop.",
        f"Your order #{number} is confirmed.\n"
        "2 × Margherita — €50.00\nTotal: €50.00\nDelivery to: Calle Mayor 5",
        f"Your order #{number} is being prepared.",
        f"Your order #{number} is on its way.",
        f"Your order #{number} was delivered. Enjoy!",
        f"How was order #{number}? Reply with a number from 1 (bad) to 5 (great).",
        f"Thank you for rating order #{number}!\nThanks! 10% off with code PEPE10",
    ]
    staff = await phone(sandbox, shop.staff[0], 4)
    assert staff[0] == (
        f"New order #{number} from {ana}:\n"
        "2 × Margherita — €50.00\nTotal: €50.00\nDelivery to: Calle Mayor 5"
    )
    assert staff[1:] == [
        f"Order #{number} is now being prepared.",
        f"Order #{number} is now out for delivery.",
        f"Order #{number} is now delivered.",
    ]


async def test_in_arabic(mesh: Mesh, shop: Shop, sandbox: Running) -> None:
    ana = unique_customer()
    received = await converse(
        mesh,
        shop,
        sandbox,
        ana,
        [
            ("customer", "مرحبا"),
            ("customer", "٢ x ٢"),
            ("customer", "السلة"),
            ("customer", "اطلب"),
            ("customer", "١"),
            ("customer", "شارع الملك فهد ١٢"),
            ("customer", "تأكيد"),
            ("staff", "#{number} preparing"),
            ("staff", "#{number} on the way"),
            ("staff", "#{number} delivered"),
            ("customer", "٤"),
        ],
    )
    number = (await mesh.latest_order(shop, ana)).number
    assert received == arabic_transcript(number)


async def test_in_nepali(mesh: Mesh, shop: Shop, sandbox: Running) -> None:
    ana = unique_customer()
    received = await converse(
        mesh,
        shop,
        sandbox,
        ana,
        [
            ("customer", "नमस्ते"),
            ("customer", "३ x ३"),
            ("customer", "चेकआउट"),
            ("customer", "२"),
            ("customer", "पुष्टि"),
            ("staff", "#{number} preparing"),
            ("staff", "#{number} ready"),
            ("staff", "#{number} delivered"),
            ("customer", "२"),
        ],
    )
    number = (await mesh.latest_order(shop, ana)).number
    assert received == nepali_transcript(number)


# Euro amounts as each locale writes them: a right-to-left mark before Arabic ones, and a
# no-break space between the amount and the sign.
def arabic_transcript(n: int) -> list[str]:
    return [
        "Welcome to Casa Pepe!",
        "القائمة:\n1. Margherita — \u200f25.00\xa0€\n2. Paella Valenciana — \u200f42.00\xa0€\n"
        "3. Crème Brûlée — \u200f9.00\xa0€\n"
        "للطلب أرسل الكمية ورقم الصنف (مثلًا 2 x 1) أو اسم الصنف. أرسل «مساعدة» لكل الأوامر.",
        "تمت إضافة 2 × Paella Valenciana. مجموع السلة: \u200f84.00\xa0€. "
        "أرسل «إتمام» للطلب أو «السلة» لرؤية سلتك.",
        "سلتك:\n1. 2 × Paella Valenciana — \u200f84.00\xa0€\nالمجموع: \u200f84.00\xa0€\n"
        "أرسل «إتمام» للطلب، أو «حذف» ورقم السطر لإخراجه من السلة (مثلًا حذف 1).",
        "توصيل أم استلام؟ أرسل 1 للتوصيل أو 2 للاستلام.",
        "الرجاء إرسال عنوان التوصيل.",
        "طلبك:\n2 × Paella Valenciana — \u200f84.00\xa0€\nالمجموع: \u200f84.00\xa0€\n"
        "التوصيل إلى: شارع الملك فهد ١٢\nأرسل «تأكيد» لإرسال الطلب، أو «إلغاء» للتوقف.",
        f"تم تأكيد طلبك رقم {n}.\n2 × Paella Valenciana — \u200f84.00\xa0€\n"
        "المجموع: \u200f84.00\xa0€\nالتوصيل إلى: شارع الملك فهد ١٢",
        f"طلبك رقم {n} قيد التحضير.",
        f"طلبك رقم {n} في الطريق إليك.",
        f"تم توصيل طلبك رقم {n}. بالهناء والشفاء!",
        f"كيف كان طلبك رقم {n}؟ أرسل رقمًا من 1 (سيئ) إلى 5 (ممتاز).",
        f"شكرًا لتقييمك الطلب رقم {n}!\nThanks! 10% off with code PEPE10",
    ]


def nepali_transcript(n: int) -> list[str]:
    return [
        "Welcome to Casa Pepe!",
        "मेनु:\n1. Margherita — €\xa025.00\n2. Paella Valenciana — €\xa042.00\n"
        "3. Crème Brûlée — €\xa09.00\n"
        "अर्डर गर्न मात्रा र परिकारको नम्बर (जस्तै 2 x 1) वा परिकारको नाम पठाउनुहोस्। "
        "सबै आदेशका लागि मद्दत पठाउनुहोस्।",
        "3 × Crème Brûlée थपियो। कार्टको जम्मा: €\xa027.00। "
        "अर्डर गर्न चेकआउट, वा कार्ट हेर्न कार्ट पठाउनुहोस्।",
        "डेलिभरी कि पिकअप? डेलिभरीका लागि 1 वा पिकअपका लागि 2 पठाउनुहोस्।",
        "तपाईंको अर्डर:\n3 × Crème Brûlée — €\xa027.00\nजम्मा: €\xa027.00\nपसलबाट पिकअप\n"
        "अर्डर पठाउन पुष्टि पठाउनुहोस्, वा छोड्न रद्द पठाउनुहोस्।",
        f"तपाईंको अर्डर #{n} पुष्टि भयो।\n3 × Crème Brûlée — €\xa027.00\nजम्मा: €\xa027.00\n"
        "पसलबाट पिकअप",
        f"तपाईंको अर्डर #{n} तयार हुँदैछ।",
        f"तपाईंको अर्डर #{n} पिकअपका लागि तयार छ।",
        f"तपाईंको अर्डर #{n} डेलिभर भयो। मीठो भोजन!",
        f"अर्डर #{n} कस्तो लाग्यो? 1 (नराम्रो) देखि 5 (उत्कृष्ट) सम्मको नम्बर पठाउनुहोस्।",
        "We are sorry it was not perfect.\nहामीलाई support@casapepe.example मा सम्पर्क गर्न सक्नुहुन्छ।",
    ]
