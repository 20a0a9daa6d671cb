"""Store and forget taught drawings: the only code that writes the ``drawings`` table.

Every call commits before it returns, so a caller that answers a visitor
afterwards answers only for what is durable.  The driver does the I/O off the
event loop (aiosqlite: one thread per connection; asyncpg: non-blocking
sockets), so a write never holds up a frame.
"""

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from .schema import Drawing, Status

TOKEN_BYTES = 24  # 192 random bits: a deletion token cannot be guessed
MAX_TOKEN_CHARS = 128  # a longer delete_token cannot be one of ours


@dataclass(frozen=True)
class Reading:
    """The model's reading of a drawing when it was taught: ``probabilities`` 10 floats in [0, 1]."""

    model: str
    model_version: str
    prediction: int
    probabilities: tuple[float, ...]


@dataclass(frozen=True)
class Stored:
    """A committed drawing: its ``id`` and the visitor's ``delete_token`` (URL-safe base64, 32 chars)."""

    id: int
    delete_token: str


def token_digest(token: str) -> str:
    """The hex SHA-256 under which a deletion token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class DrawingStore:
    """The ``drawings`` table behind ``engine`` (schema at the newest revision)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def add(self, strokes: tuple[tuple[tuple[float, float], ...], ...], label: int,
                  reading: Reading) -> Stored:
        """Store a drawing labelled ``label`` (0–9) as a proposal; return once committed."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        drawing = Drawing(strokes=[[list(point) for point in stroke] for stroke in strokes], label=label,
                          prediction=reading.prediction, confidence=max(reading.probabilities),
                          probabilities=list(reading.probabilities), model=reading.model,
                          model_version=reading.model_version, delete_token_sha256=token_digest(token),
                          status=Status.PROPOSED.value)
        async with self.sessions.begin() as session:
            session.add(drawing)
            await session.flush()  # assigns the id inside the transaction
        return Stored(drawing.id, token)

    async def forget(self, token: str) -> int | None:
        """Delete the drawing of deletion token ``token``; its id, or ``None`` if no drawing has it."""
        if len(token) > MAX_TOKEN_CHARS:
            return None
        async with self.sessions.begin() as session:
            # Bound parameters throughout: the token is data, never SQL.
            deleted = await session.execute(delete(Drawing).where(Drawing.delete_token_sha256 == token_digest(token))
                                            .returning(Drawing.id))
            row = deleted.first()
        return None if row is None else int(row[0])

    async def count(self) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Drawing)) or 0)

    async def get(self, drawing_id: int) -> Drawing | None:
        async with self.sessions() as session:
            return await session.get(Drawing, drawing_id)

    async def with_status(self, statuses: Sequence[Status], limit: int) -> list[Drawing]:
        """Drawings in any of ``statuses``, oldest first, at most ``limit``."""
        async with self.sessions() as session:
            found = await session.scalars(select(Drawing).where(Drawing.status.in_([s.value for s in statuses]))
                                          .order_by(Drawing.id).limit(limit))
            return list(found)

    async def moderate(self, drawing_id: int, status: Status, curated_label: int | None) -> Drawing | None:
        """Record a curator's decision; the updated drawing, or ``None`` if no drawing has ``drawing_id``."""
        async with self.sessions.begin() as session:
            drawing = await session.get(Drawing, drawing_id)
            if drawing is None:
                return None
            drawing.status = status.value
            drawing.curated_label = curated_label
            drawing.moderated_at = datetime.now(UTC)
        return drawing
