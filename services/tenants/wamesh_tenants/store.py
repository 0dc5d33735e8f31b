"""Postgres, the truth about tenants: every write is one transaction that bumps the version.

Writes return what the caller must invalidate (the tenant's numbers after the change, plus
any number that left it) so the servicer can tell the caches once the transaction commits.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh_kit.errors import AlreadyExists, FailedPrecondition, NotFound
from wamesh_kit.timestamps import timestamp
from wamesh_tenants.crypto import Sealed
from wamesh_tenants.schema import credentials, sender_numbers, tenants

STATUS_NAMES: Mapping[pb.TenantStatus.ValueType, str] = {
    pb.TENANT_STATUS_ACTIVE: "active",
    pb.TENANT_STATUS_SUSPENDED: "suspended",
}
STATUS_VALUES: Mapping[str, pb.TenantStatus.ValueType] = {
    name: value for value, name in STATUS_NAMES.items()
}


@dataclass(frozen=True)
class Change:
    """A committed write: the tenant afterwards and the numbers whose cached routes are stale."""

    tenant: pb.Tenant
    numbers: tuple[str, ...]
    changed: bool = True


@dataclass(frozen=True)
class SealedCredentials:
    account_sid: str
    api_key_sid: str
    auth_token: Sealed
    api_key_secret: Sealed | None
    updated_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TenantFields:
    """The validated fields of a new tenant."""

    display_name: str
    time_zone: str
    default_language: str
    support_contact: str
    limits: pb.Limits
    bot: pb.BotSettings


class TenantStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self, request_id: str, tenant_id: str, fields: TenantFields
    ) -> tuple[pb.Tenant, bool]:
        """The new tenant and False, or the one ``request_id`` created before and True."""
        new_id = tenant_id or f"t-{secrets.token_hex(5)}"
        async with self._engine.begin() as connection:
            inserted = await connection.execute(
                insert(tenants)
                .values(
                    id=new_id,
                    create_request_id=request_id,
                    status="active",
                    version=1,
                    created_at=sa.func.now(),
                    updated_at=sa.func.now(),
                    **_field_values(fields),
                )
                .on_conflict_do_nothing()
                .returning(tenants.c.id)
            )
            if inserted.first() is not None:
                return await _load(connection, new_id), False
            earlier = await connection.scalar(
                sa.select(tenants.c.id).where(tenants.c.create_request_id == request_id)
            )
        if earlier is None:
            raise AlreadyExists(f"tenant {new_id} already exists", field="tenant_id")
        return await self.get(earlier), True

    async def get(self, tenant_id: str) -> pb.Tenant:
        async with self._engine.connect() as connection:
            return await _load(connection, tenant_id)

    async def list_tenants(
        self, *, after_id: str, limit: int, status: str | None
    ) -> list[pb.Tenant]:
        query = sa.select(tenants).where(tenants.c.id > after_id).order_by(tenants.c.id)
        if status is not None:
            query = query.where(tenants.c.status == status)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query.limit(limit))).mappings().all()
            return await _assemble(connection, rows)

    async def update(
        self, tenant_id: str, expected_version: int, values: Mapping[str, Any]
    ) -> Change:
        """Apply ``values`` (column → value) only if the version is still ``expected_version``."""
        async with self._engine.begin() as connection:
            bumped = await connection.execute(
                _bump(tenant_id)
                .where(tenants.c.version == expected_version)
                .values(**values)
                .returning(tenants.c.id)
            )
            if bumped.first() is None:
                current = await connection.scalar(
                    sa.select(tenants.c.version).where(tenants.c.id == tenant_id)
                )
                if current is None:
                    raise NotFound(f"tenant {tenant_id} does not exist", field="tenant_id")
                raise FailedPrecondition(
                    f"tenant {tenant_id} is at version {current}, not {expected_version}",
                    field="expected_version",
                )
            return await _change(connection, tenant_id)

    async def set_status(self, tenant_id: str, status: str) -> Change:
        async with self._engine.begin() as connection:
            bumped = await connection.execute(
                _bump(tenant_id)
                .where(tenants.c.status != status)
                .values(status=status)
                .returning(tenants.c.id)
            )
            if bumped.first() is None:
                # Already in that status (a repeat): nothing changes, nothing to invalidate.
                return Change(await _load(connection, tenant_id), (), changed=False)
            return await _change(connection, tenant_id)

    async def add_number(self, tenant_id: str, number: str, messaging_service_sid: str) -> Change:
        async with self._engine.begin() as connection:
            await _lock_tenant(connection, tenant_id)
            inserted = await connection.execute(
                insert(sender_numbers)
                .values(
                    number=number,
                    tenant_id=tenant_id,
                    messaging_service_sid=messaging_service_sid,
                    added_at=sa.func.now(),
                )
                .on_conflict_do_nothing()
                .returning(sender_numbers.c.number)
            )
            if inserted.first() is None:
                owner = await connection.scalar(
                    sa.select(sender_numbers.c.tenant_id).where(sender_numbers.c.number == number)
                )
                if owner != tenant_id:
                    raise AlreadyExists(
                        f"number {number} belongs to tenant {owner}", field="number"
                    )
                return Change(await _load(connection, tenant_id), (), changed=False)
            await connection.execute(_bump(tenant_id))
            return await _change(connection, tenant_id)

    async def remove_number(self, tenant_id: str, number: str) -> Change:
        async with self._engine.begin() as connection:
            await _lock_tenant(connection, tenant_id)
            deleted = await connection.execute(
                sa.delete(sender_numbers)
                .where(sender_numbers.c.number == number, sender_numbers.c.tenant_id == tenant_id)
                .returning(sender_numbers.c.number)
            )
            if deleted.first() is None:
                raise NotFound(f"tenant {tenant_id} has no number {number}", field="number")
            await connection.execute(_bump(tenant_id))
            return await _change(connection, tenant_id, also=(number,))

    async def move_number(self, number: str, from_tenant_id: str, to_tenant_id: str) -> Change:
        async with self._engine.begin() as connection:
            # Lock both tenants in id order, so two opposite moves cannot deadlock.
            for tenant_id in sorted({from_tenant_id, to_tenant_id}):
                await _lock_tenant(connection, tenant_id)
            owner = await connection.scalar(
                sa.select(sender_numbers.c.tenant_id)
                .where(sender_numbers.c.number == number)
                .with_for_update()
            )
            if owner is None:
                raise NotFound(f"number {number} belongs to no tenant", field="number")
            if owner == to_tenant_id:
                return Change(await _load(connection, to_tenant_id), (), changed=False)
            if owner != from_tenant_id:
                raise FailedPrecondition(
                    f"number {number} does not belong to tenant {from_tenant_id}",
                    field="from_tenant_id",
                )
            await connection.execute(
                sa.update(sender_numbers)
                .where(sender_numbers.c.number == number)
                .values(tenant_id=to_tenant_id, added_at=sa.func.now())
            )
            await connection.execute(_bump(from_tenant_id))
            await connection.execute(_bump(to_tenant_id))
            return await _change(connection, to_tenant_id, also=(number,))

    async def set_credentials(self, tenant_id: str, sealed: SealedCredentials) -> Change:
        values = _sealed_values(sealed)
        async with self._engine.begin() as connection:
            await _lock_tenant(connection, tenant_id)
            await connection.execute(
                insert(credentials)
                .values(tenant_id=tenant_id, updated_at=sa.func.now(), **values)
                .on_conflict_do_update(
                    index_elements=[credentials.c.tenant_id],
                    set_={**values, "updated_at": sa.func.now()},
                )
            )
            await connection.execute(_bump(tenant_id))
            return await _change(connection, tenant_id)

    async def get_credentials(self, tenant_id: str) -> SealedCredentials:
        async with self._engine.connect() as connection:
            row = (
                (
                    await connection.execute(
                        sa.select(tenants.c.id, credentials)
                        .select_from(tenants.outerjoin(credentials))
                        .where(tenants.c.id == tenant_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"tenant {tenant_id} does not exist", field="tenant_id")
        if row["key_id"] is None:
            raise FailedPrecondition(f"tenant {tenant_id} has no Twilio credentials yet")
        return _sealed_from_row(row)

    async def resolve(self, number: str) -> pb.ResolveNumberResponse:
        query = (
            sa.select(
                sender_numbers,
                tenants.c.status,
                tenants.c.limits,
                tenants.c.version,
                credentials.c.account_sid,
            )
            .select_from(
                sender_numbers.join(tenants).outerjoin(
                    credentials, credentials.c.tenant_id == tenants.c.id
                )
            )
            .where(sender_numbers.c.number == number)
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"number {number} belongs to no tenant", field="number")
        return pb.ResolveNumberResponse(
            tenant_id=row["tenant_id"],
            status=STATUS_VALUES[row["status"]],
            sender=_sender_number(row),
            limits=json_format.ParseDict(row["limits"], pb.Limits()),
            account_sid=row["account_sid"] or "",
            tenant_version=row["version"],
        )

    async def credentials_not_under(
        self, key_id: str, *, after_tenant_id: str, limit: int
    ) -> list[tuple[str, SealedCredentials]]:
        """Up to ``limit`` tenants after ``after_tenant_id`` whose secrets another key sealed."""
        async with self._engine.connect() as connection:
            rows = (
                (
                    await connection.execute(
                        sa.select(credentials)
                        .where(
                            credentials.c.key_id != key_id,
                            credentials.c.tenant_id > after_tenant_id,
                        )
                        .order_by(credentials.c.tenant_id)
                        .limit(limit)
                    )
                )
                .mappings()
                .all()
            )
        return [(row["tenant_id"], _sealed_from_row(row)) for row in rows]

    async def reseal(self, tenant_id: str, old: SealedCredentials, new: SealedCredentials) -> bool:
        """Swap in ``new`` only if the row still holds ``old``: a concurrent SetCredentials wins."""
        async with self._engine.begin() as connection:
            updated = await connection.execute(
                sa.update(credentials)
                .where(
                    credentials.c.tenant_id == tenant_id,
                    credentials.c.key_id == old.auth_token.key_id,
                    credentials.c.auth_token == old.auth_token.ciphertext,
                )
                .values(**_sealed_values(new))
                .returning(credentials.c.tenant_id)
            )
            return updated.first() is not None


def _field_values(fields: TenantFields) -> dict[str, Any]:
    return {
        "display_name": fields.display_name,
        "time_zone": fields.time_zone,
        "default_language": fields.default_language,
        "support_contact": fields.support_contact,
        "limits": to_json(fields.limits),
        "bot": to_json(fields.bot),
    }


def to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _bump(tenant_id: str) -> sa.Update:
    return (
        sa.update(tenants)
        .where(tenants.c.id == tenant_id)
        .values(version=tenants.c.version + 1, updated_at=sa.func.now())
    )


async def _lock_tenant(connection: AsyncConnection, tenant_id: str) -> None:
    found = await connection.scalar(
        sa.select(tenants.c.id).where(tenants.c.id == tenant_id).with_for_update()
    )
    if found is None:
        raise NotFound(f"tenant {tenant_id} does not exist", field="tenant_id")


async def _change(connection: AsyncConnection, tenant_id: str, also: Iterable[str] = ()) -> Change:
    tenant = await _load(connection, tenant_id)
    numbers = {n.number for n in tenant.sender_numbers} | set(also)
    return Change(tenant, tuple(sorted(numbers)))


async def _load(connection: AsyncConnection, tenant_id: str) -> pb.Tenant:
    rows = (
        (await connection.execute(sa.select(tenants).where(tenants.c.id == tenant_id)))
        .mappings()
        .all()
    )
    if not rows:
        raise NotFound(f"tenant {tenant_id} does not exist", field="tenant_id")
    return (await _assemble(connection, rows))[0]


async def _assemble(connection: AsyncConnection, rows: Sequence[sa.RowMapping]) -> list[pb.Tenant]:
    """Tenant messages for ``rows``, with their numbers and credential summaries."""
    ids = [row["id"] for row in rows]
    if not ids:
        return []
    numbers = await connection.execute(
        sa.select(sender_numbers)
        .where(sender_numbers.c.tenant_id.in_(ids))
        .order_by(sender_numbers.c.number)
    )
    numbers_of: dict[str, list[pb.SenderNumber]] = {tenant_id: [] for tenant_id in ids}
    for number in numbers.mappings():
        numbers_of[number["tenant_id"]].append(_sender_number(number))
    summaries = await connection.execute(
        sa.select(
            credentials.c.tenant_id,
            credentials.c.account_sid,
            credentials.c.api_key_sid,
            credentials.c.updated_at,
        ).where(credentials.c.tenant_id.in_(ids))
    )
    summary_of = {
        row["tenant_id"]: pb.CredentialsSummary(
            account_sid=row["account_sid"],
            api_key_sid=row["api_key_sid"],
            updated_at=timestamp(row["updated_at"]),
        )
        for row in summaries.mappings()
    }
    return [
        pb.Tenant(
            id=row["id"],
            display_name=row["display_name"],
            status=STATUS_VALUES[row["status"]],
            time_zone=row["time_zone"],
            default_language=row["default_language"],
            support_contact=row["support_contact"],
            limits=json_format.ParseDict(row["limits"], pb.Limits()),
            bot=json_format.ParseDict(row["bot"], pb.BotSettings()),
            sender_numbers=numbers_of[row["id"]],
            credentials=summary_of.get(row["id"]),
            created_at=timestamp(row["created_at"]),
            updated_at=timestamp(row["updated_at"]),
            version=row["version"],
        )
        for row in rows
    ]


def _sender_number(row: sa.RowMapping) -> pb.SenderNumber:
    return pb.SenderNumber(
        number=row["number"],
        messaging_service_sid=row["messaging_service_sid"],
        added_at=timestamp(row["added_at"]),
    )


def _sealed_values(sealed: SealedCredentials) -> dict[str, Any]:
    if (
        sealed.api_key_secret is not None
        and sealed.api_key_secret.key_id != sealed.auth_token.key_id
    ):
        raise ValueError("both secrets of a tenant are sealed under one key")
    return {
        "account_sid": sealed.account_sid,
        "api_key_sid": sealed.api_key_sid,
        "key_id": sealed.auth_token.key_id,
        "auth_token": sealed.auth_token.ciphertext,
        "api_key_secret": sealed.api_key_secret.ciphertext if sealed.api_key_secret else None,
    }


def _sealed_from_row(row: sa.RowMapping) -> SealedCredentials:
    key_id = row["key_id"]
    secret = row["api_key_secret"]
    return SealedCredentials(
        account_sid=row["account_sid"],
        api_key_sid=row["api_key_sid"],
        auth_token=Sealed(key_id, bytes(row["auth_token"])),
        api_key_secret=Sealed(key_id, bytes(secret)) if secret is not None else None,
        updated_at=row["updated_at"],
    )
