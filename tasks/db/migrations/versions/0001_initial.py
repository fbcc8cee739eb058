"""App database: sources, health, raw items, contents, stories, analysis, highlights, team state.

Revision ID: 0001
Revises:
Create Date: 2026-01-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "zeke"


def _id() -> sa.Column:
    return sa.Column("id", UUID(as_uuid=True), primary_key=True, server_default=sa.func.gen_random_uuid())


def _ts(name: str, nullable: bool = True, default: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default else None,
    )


def _jsonb(name: str, default: str) -> sa.Column:
    return sa.Column(name, JSONB, nullable=False, server_default=default)


def _fk(column: str, table: str, ondelete: str, **kw: object) -> sa.Column:
    return sa.Column(column, UUID(as_uuid=True), sa.ForeignKey(f"{S}.{table}.id", ondelete=ondelete), **kw)


def upgrade() -> None:
    op.create_table(
        "sources",
        _id(),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("url", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False, server_default="true"),
        sa.Column("authority", sa.Float, nullable=False, server_default="0.5"),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        _ts("next_check_at"),
        sa.Column("check_interval_seconds", sa.Integer, nullable=False, server_default="900"),
        _jsonb("metadata", "{}"),
        _ts("created_at", False, True),
        _ts("updated_at", False, True),
        sa.CheckConstraint(
            "type IN ('rss', 'youtube_channel', 'manual', 'upload')", name=op.f("ck_sources_type")
        ),
        sa.CheckConstraint("authority >= 0 AND authority <= 1", name=op.f("ck_sources_authority")),
        sa.CheckConstraint("check_interval_seconds > 0", name=op.f("ck_sources_check_interval")),
        sa.UniqueConstraint("type", "url", name=op.f("uq_sources_type_url")),
        schema=S,
    )
    op.create_index(
        op.f("ix_sources_type_active_next_check_at"), "sources", ["type", "active", "next_check_at"], schema=S
    )

    op.create_table(
        "source_health",
        _fk("source_id", "sources", "CASCADE", primary_key=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("last_http_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        _ts("last_checked_at"),
        _ts("last_success_at"),
        _ts("last_error_at"),
        _ts("updated_at", False, True),
        sa.CheckConstraint("status IN ('ok', 'warn', 'error')", name=op.f("ck_source_health_status")),
        schema=S,
    )

    op.create_table(
        "raw_items",
        _id(),
        _fk("source_id", "sources", "CASCADE", nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False, server_default="article"),
        sa.Column("title", sa.Text),
        sa.Column("url", sa.Text),
        sa.Column("canonical_url", sa.Text),
        _ts("published_at"),
        sa.Column("summary", sa.Text),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("fetch_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("fetch_error", sa.Text),
        sa.Column("content_id", UUID(as_uuid=True)),
        _jsonb("metadata", "{}"),
        _ts("created_at", False, True),
        _ts("updated_at", False, True),
        sa.UniqueConstraint("source_id", "external_id", name=op.f("uq_raw_items_source_id_external_id")),
        sa.CheckConstraint("kind IN ('article', 'video')", name=op.f("ck_raw_items_kind")),
        sa.CheckConstraint("status IN ('pending', 'fetched', 'failed')", name=op.f("ck_raw_items_status")),
        schema=S,
    )
    op.create_index(op.f("ix_raw_items_canonical_url"), "raw_items", ["canonical_url"], schema=S)
    op.create_index(op.f("ix_raw_items_status"), "raw_items", ["status"], schema=S)

    op.create_table(
        "contents",
        _id(),
        _fk("raw_item_id", "raw_items", "CASCADE", nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False, server_default="text"),
        sa.Column("title", sa.Text),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("html_url", sa.Text),
        sa.Column("language", sa.String(16)),
        sa.Column("content_hash", sa.String(64), nullable=False),
        _ts("extracted_at", False, True),
        sa.UniqueConstraint("content_hash", name=op.f("uq_contents_content_hash")),
        schema=S,
    )
    op.create_index(op.f("ix_contents_raw_item_id"), "contents", ["raw_item_id"], schema=S)
    op.create_foreign_key(
        op.f("fk_raw_items_content_id_contents"),
        "raw_items",
        "contents",
        ["content_id"],
        ["id"],
        source_schema=S,
        referent_schema=S,
        ondelete="SET NULL",
    )

    op.create_table(
        "stories",
        _id(),
        _fk("content_id", "contents", "CASCADE", nullable=False),
        _fk("source_id", "sources", "SET NULL"),
        sa.Column("kind", sa.String(16), nullable=False, server_default="article"),
        sa.Column("url", sa.Text),
        sa.Column("title", sa.Text),
        _ts("published_at"),
        sa.Column("summary", sa.Text),
        _ts("created_at", False, True),
        _ts("updated_at", False, True),
        sa.UniqueConstraint("content_id", name=op.f("uq_stories_content_id")),
        sa.CheckConstraint("kind IN ('article', 'video', 'pdf', 'note')", name=op.f("ck_stories_kind")),
        schema=S,
    )
    op.create_index(op.f("ix_stories_published_at"), "stories", ["published_at"], schema=S)
    op.create_index(op.f("ix_stories_source_id"), "stories", ["source_id"], schema=S)

    op.create_table(
        "story_analysis",
        _fk("story_id", "stories", "CASCADE", primary_key=True),
        sa.Column("why_it_matters", sa.Text),
        sa.Column("chili", sa.Integer),
        sa.Column("confidence", sa.Float),
        _jsonb("citations", "[]"),
        sa.Column("provider", sa.String(32)),
        sa.Column("model", sa.Text),
        _ts("analyzed_at"),
        sa.Column("one_liner", sa.String(140)),
        sa.Column("two_liner", sa.String(280)),
        sa.Column("elevator", sa.Text),
        sa.Column("brief_provider", sa.String(32)),
        sa.Column("brief_model", sa.Text),
        _ts("brief_generated_at"),
        _jsonb("token_usage", "{}"),
        _ts("updated_at", False, True),
        sa.CheckConstraint("chili BETWEEN 0 AND 5", name=op.f("ck_story_analysis_chili")),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name=op.f("ck_story_analysis_confidence")),
        sa.CheckConstraint("char_length(one_liner) <= 140", name=op.f("ck_story_analysis_one_liner")),
        sa.CheckConstraint("char_length(two_liner) <= 280", name=op.f("ck_story_analysis_two_liner")),
        schema=S,
    )

    op.create_table(
        "highlights",
        _id(),
        _fk("story_id", "stories", "CASCADE", nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False, server_default="system"),
        sa.Column("title", sa.Text),
        sa.Column("summary", sa.Text),
        sa.Column("quote", sa.Text),
        sa.Column("confidence", sa.Float, nullable=False, server_default="0.5"),
        sa.Column("relevance_score", sa.Float),
        sa.Column("score_breakdown", JSONB),
        _ts("scored_at"),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        _fk("merged_into", "highlights", "SET NULL"),
        _jsonb("metadata", "{}"),
        _ts("created_at", False, True),
        _ts("updated_at", False, True),
        sa.CheckConstraint(
            "kind IN ('code_example', 'api_change', 'metric', 'quote', 'other')",
            name=op.f("ck_highlights_kind"),
        ),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name=op.f("ck_highlights_confidence")),
        sa.UniqueConstraint("story_id", "dedupe_key", name=op.f("uq_highlights_story_id_dedupe_key")),
        schema=S,
    )
    op.create_index(op.f("ix_highlights_story_id"), "highlights", ["story_id"], schema=S)

    op.create_table(
        "team_story_state",
        sa.Column("team_id", sa.Text, primary_key=True),
        _fk("story_id", "stories", "CASCADE", primary_key=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="unread"),
        _ts("read_at"),
        _ts("archived_at"),
        _ts("updated_at", False, True),
        sa.CheckConstraint("state IN ('unread', 'read', 'archived')", name=op.f("ck_team_story_state_state")),
        schema=S,
    )
    op.create_index(op.f("ix_team_story_state_story_id"), "team_story_state", ["story_id"], schema=S)


def downgrade() -> None:
    for table in (
        "team_story_state",
        "highlights",
        "story_analysis",
        "stories",
    ):
        op.drop_table(table, schema=S)
    op.drop_constraint(op.f("fk_raw_items_content_id_contents"), "raw_items", schema=S, type_="foreignkey")
    for table in ("contents", "raw_items", "source_health", "sources"):
        op.drop_table(table, schema=S)
