"""The tables of the teaching database (SQLAlchemy 2 declarative); changed only through a migration."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, DateTime, Integer, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Status(StrEnum):
    """Where a drawing stands in moderation: a visitor's label is a proposal until a curator decides."""

    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    CORRECTED = "corrected"
    REJECTED = "rejected"


class Drawing(Base):
    """One drawing a visitor taught, with consent: nothing about the person.

    ``strokes``: JSON list of strokes, each a list of ``[x, y]`` canvas fractions in [0, 1].
    ``label``: the digit the visitor says it is (0–9).  ``prediction``, ``confidence``,
    ``probabilities``: the model's reading when taught (``probabilities``: 10 floats summing to 1).
    ``model``, ``model_version``: the model that read it and its weights' sha256.
    ``status``: a :class:`Status`; ``curated_label``: the curator's digit when they corrected the
    visitor's (``None`` otherwise); ``moderated_at``: when the curator decided (``None``: not yet).
    ``delete_token_sha256``: the hex SHA-256 of the visitor's deletion token (the token itself is
    never stored: a copy of the database cannot delete drawings).
    """

    __tablename__ = "drawings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    strokes: Mapped[list[list[list[float]]]] = mapped_column(JSON)
    label: Mapped[int] = mapped_column(Integer)
    prediction: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float]
    probabilities: Mapped[list[float]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    delete_token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=Status.PROPOSED.value, index=True)
    curated_label: Mapped[int | None] = mapped_column(Integer, nullable=True)
    moderated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def final_label(self) -> int:
        """The digit this drawing teaches: the curator's correction, else the visitor's label."""
        return self.label if self.curated_label is None else self.curated_label
