"""Cursor pages, newest first, of a key's records that have `created_at` and `id` (edits, assets)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from cmet_core.errors import ErrorCode
from cmet_jobs.errors import RequestError


class Dated(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


R = TypeVar("R", bound=Dated)


def _cursor(row: Dated) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def page(
    session: Session,
    query: Select[R],
    columns: tuple[InstrumentedAttribute[datetime], InstrumentedAttribute[str]],
    limit: int,
    cursor: str | None,
) -> tuple[list[R], str | None]:
    """One page of `query`'s rows after `cursor`, and the cursor of the next page (None at the end)."""
    created, ident = columns
    if cursor is not None:
        try:
            stamp, _, last_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
            when = datetime.fromisoformat(stamp)
        except ValueError:
            raise RequestError(ErrorCode.BAD_CURSOR, "cursor is not one this API returned") from None
        query = query.where((created < when) | ((created == when) & (ident < last_id)))
    rows = list(session.scalars(query.order_by(created.desc(), ident.desc()).limit(limit + 1)))
    shown = rows[:limit]
    return shown, (_cursor(shown[-1]) if len(rows) > limit else None)
