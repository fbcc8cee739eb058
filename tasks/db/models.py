"""The app database: SQLAlchemy 2 models in PostgreSQL schema ``zeke`` (pg-boss keeps ``pgboss``).

Pipeline: ``sources`` → ``raw_items`` (one per feed entry / video / URL / upload) → ``contents`` (one per
distinct text, keyed by ``content_hash``) → ``stories`` (one per content) → ``story_analysis`` (1:1)
and ``highlights`` (n:1); ``team_story_state`` is each team's reading state of a story.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA = "zeke"

SOURCE_TYPES = ("rss", "youtube_channel", "manual", "upload")
HEALTH_STATUSES = ("ok", "warn", "error")
RAW_ITEM_KINDS = ("article", "video")
#: pending: waiting for fetch-content; fetched: has content; failed: gave up (see fetch_error).
RAW_ITEM_STATUSES = ("pending", "fetched", "failed")
STORY_KINDS = ("article", "video", "pdf", "note")
HIGHLIGHT_KINDS = ("code_example", "api_change", "metric", "quote", "other")
TEAM_STATES = ("unread", "read", "archived")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(
        UUID(as_uuid=True), primary_key=True, default=uuid.uuid4, server_default=func.gen_random_uuid()
    )


def _created() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated() -> Mapped[dt.datetime]:
    return mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA, naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


class Source(Base):
    __tablename__ = "sources"
    __table_args__ = (
        CheckConstraint(_in("type", SOURCE_TYPES), name="type"),
        CheckConstraint("authority >= 0 AND authority <= 1", name="authority"),
        CheckConstraint("check_interval_seconds > 0", name="check_interval"),
        UniqueConstraint("type", "url"),
        Index(None, "type", "active", "next_check_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default="true")
    #: How much we trust this source, 0..1; feeds score-relevance.
    authority: Mapped[float] = mapped_column(Float, nullable=False, default=0.5, server_default="0.5")
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    #: NULL: due now.
    next_check_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    check_interval_seconds: Mapped[int] = mapped_column(
        Integer, nullable=False, default=900, server_default="900"
    )
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, default=dict, server_default="{}"
    )
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()

    health: Mapped[SourceHealth | None] = relationship(back_populates="source", passive_deletes=True)


class SourceHealth(Base):
    __tablename__ = "source_health"
    __table_args__ = (CheckConstraint(_in("status", HEALTH_STATUSES), name="status"),)

    source_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(Source.id, ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(8), nullable=False)
    #: HTTP status of the last check (NULL when it never got an answer).
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    last_checked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_success_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = _updated()

    source: Mapped[Source] = relationship(back_populates="health")


class RawItem(Base):
    __tablename__ = "raw_items"
    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        CheckConstraint(_in("kind", RAW_ITEM_KINDS), name="kind"),
        CheckConstraint(_in("status", RAW_ITEM_STATUSES), name="status"),
        Index(None, "canonical_url"),
        Index(None, "status"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    source_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(Source.id, ondelete="CASCADE"), nullable=False
    )
    external_id: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="article", server_default="article")
    title: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    canonical_url: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: Feed summary, or a video's description.
    summary: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default="pending", server_default="pending"
    )
    fetch_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    fetch_error: Mapped[str | None] = mapped_column(Text)
    #: The content this item resolved to (several items may share one).
    content_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("contents.id", ondelete="SET NULL", use_alter=True)
    )
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, default=dict, server_default="{}"
    )
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class Content(Base):
    __tablename__ = "contents"

    id: Mapped[uuid.UUID] = _uuid_pk()
    #: The raw item this text was first extracted from.
    raw_item_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(RawItem.id, ondelete="CASCADE"), nullable=False, index=True
    )
    #: text | html | markdown | pdf | video_description
    content_type: Mapped[str] = mapped_column(
        String(32), nullable=False, default="text", server_default="text"
    )
    title: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    html_url: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    extracted_at: Mapped[dt.datetime] = _created()


class Story(Base):
    __tablename__ = "stories"
    __table_args__ = (CheckConstraint(_in("kind", STORY_KINDS), name="kind"), Index(None, "published_at"))

    id: Mapped[uuid.UUID] = _uuid_pk()
    #: One story per content, hence per distinct content hash.
    content_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(Content.id, ondelete="CASCADE"), nullable=False, unique=True
    )
    source_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey(Source.id, ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="article", server_default="article")
    url: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    summary: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()

    content: Mapped[Content] = relationship(lazy="joined", innerjoin=True)
    source: Mapped[Source | None] = relationship()
    analysis: Mapped[StoryAnalysis | None] = relationship(back_populates="story", passive_deletes=True)


class StoryAnalysis(Base):
    __tablename__ = "story_analysis"
    __table_args__ = (
        CheckConstraint("chili BETWEEN 0 AND 5", name="chili"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
        CheckConstraint("char_length(one_liner) <= 140", name="one_liner"),
        CheckConstraint("char_length(two_liner) <= 280", name="two_liner"),
    )

    story_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(Story.id, ondelete="CASCADE"), primary_key=True
    )
    why_it_matters: Mapped[str | None] = mapped_column(Text)
    #: How hot the story is, 0..5.
    chili: Mapped[int | None] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Float)
    #: [{"quote": ..., "url": ...}]
    citations: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, default=list, server_default="[]")
    #: openai | offline
    provider: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(Text)
    analyzed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    one_liner: Mapped[str | None] = mapped_column(String(140))
    two_liner: Mapped[str | None] = mapped_column(String(280))
    elevator: Mapped[str | None] = mapped_column(Text)
    brief_provider: Mapped[str | None] = mapped_column(String(32))
    brief_model: Mapped[str | None] = mapped_column(Text)
    brief_generated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: {"analysis": {"prompt_tokens", "completion_tokens", "total_tokens"}, "brief": {...}}
    token_usage: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default="{}"
    )
    updated_at: Mapped[dt.datetime] = _updated()

    story: Mapped[Story] = relationship(back_populates="analysis")


class Highlight(Base):
    __tablename__ = "highlights"
    __table_args__ = (
        CheckConstraint(_in("kind", HIGHLIGHT_KINDS), name="kind"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
        UniqueConstraint("story_id", "dedupe_key"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    story_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(Story.id, ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    #: system (extractors) | assistant | user
    origin: Mapped[str] = mapped_column(String(16), nullable=False, default="system", server_default="system")
    title: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    quote: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float, nullable=False, default=0.5, server_default="0.5")
    relevance_score: Mapped[float | None] = mapped_column(Float)
    score_breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    scored_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: Hash of kind and normalised text: re-extraction updates the row instead of adding one.
    dedupe_key: Mapped[str] = mapped_column(String(64), nullable=False)
    #: Set when dedupe-insights found this a duplicate of a better highlight.
    merged_into: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("highlights.id", ondelete="SET NULL")
    )
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, default=dict, server_default="{}"
    )
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


class TeamStoryState(Base):
    __tablename__ = "team_story_state"
    __table_args__ = (CheckConstraint(_in("state", TEAM_STATES), name="state"), Index(None, "story_id"))

    #: The auth system's team id (text: ids are not necessarily UUIDs).
    team_id: Mapped[str] = mapped_column(Text, primary_key=True)
    story_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(Story.id, ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="unread", server_default="unread")
    read_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = _updated()
