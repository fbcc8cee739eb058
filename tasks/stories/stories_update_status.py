"""stories-update-status: each team's reading state of a story, unread → read → archived, plus a sweep
that archives stale stories.

Moves go forward only (a repeated or backward move is reported, not applied) unless
``allowBackwards`` — the "mark as unread" / "unarchive" of a UI. Without ``teamId`` the move applies to
every team that already has a state for the story. The sweep archives every unread or read state of
stories published (or, failing that, created) more than ``staleAfterDays`` ago.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import Field, model_validator
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from tasks.db.models import Story, TeamStoryState
from tasks.lib.context import Context, Payload
from tasks.lib.store import utcnow

TASK_ID = "stories-update-status"

State = Literal["unread", "read", "archived"]
ORDER = {"unread": 0, "read": 1, "archived": 2}


class StoriesUpdateStatusPayload(Payload):
    task_id = TASK_ID

    story_id: uuid.UUID | None = None
    team_id: str | None = Field(default=None, min_length=1, max_length=200)
    state: State | None = None
    allow_backwards: bool = False
    #: Archive stale stories (all teams, or ``teamId``'s).
    sweep: bool = False
    #: Age after which the sweep archives; the setting ``ZEKE_STALE_AFTER_DAYS`` when omitted.
    stale_after_days: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _something_to_do(self) -> StoriesUpdateStatusPayload:
        if (self.story_id is None) != (self.state is None):
            raise ValueError("storyId and state go together")
        if self.story_id is None and not self.sweep:
            raise ValueError("give storyId and state, or sweep: true")
        return self


PAYLOAD = StoriesUpdateStatusPayload


def run(payload: StoriesUpdateStatusPayload, ctx: Context) -> dict:
    now = utcnow()
    result: dict = {}
    with ctx.session_factory.begin() as session:
        if payload.story_id is not None and payload.state is not None:
            result.update(_move(session, payload, payload.story_id, payload.state, now))
        if payload.sweep:
            days = payload.stale_after_days or ctx.settings.stale_after_days
            result["archived"] = _sweep(session, payload.team_id, now - dt.timedelta(days=days), now)
            result["staleAfterDays"] = days
    ctx.logger.info("stories_update_status_done", **{k: v for k, v in result.items() if k != "teams"})
    return result


def _move(
    session: Session, payload: StoriesUpdateStatusPayload, story_id: uuid.UUID, state: str, now: dt.datetime
) -> dict:
    if session.get(Story, story_id) is None:
        return {"storyId": str(story_id), "status": "missing"}
    if payload.team_id is not None:
        teams = [payload.team_id]
    else:
        teams = list(
            session.scalars(select(TeamStoryState.team_id).where(TeamStoryState.story_id == story_id))
        )
    outcomes: dict[str, str] = {}
    for team in sorted(teams):
        row = session.get(TeamStoryState, (team, story_id), with_for_update=True)
        if row is None:
            session.execute(
                insert(TeamStoryState)
                .values(team_id=team, story_id=story_id, state="unread", updated_at=now)
                .on_conflict_do_nothing()
            )
            row = session.get_one(
                TeamStoryState, (team, story_id), with_for_update=True, populate_existing=True
            )
            if state == "unread":
                outcomes[team] = "updated"
                continue
        outcomes[team] = _transition(row, state, payload.allow_backwards, now)
    return {
        "storyId": str(story_id),
        "state": state,
        "status": "done" if teams else "no_teams",
        "teams": outcomes,
        "updated": sum(1 for o in outcomes.values() if o == "updated"),
    }


def _transition(row: TeamStoryState, state: str, allow_backwards: bool, now: dt.datetime) -> str:
    if row.state == state:
        return "unchanged"
    if ORDER[state] < ORDER[row.state] and not allow_backwards:
        return f"refused: {row.state} -> {state} goes backwards"
    row.state = state
    row.updated_at = now
    if state == "read":
        row.read_at = now
        row.archived_at = None
    elif state == "archived":
        row.archived_at = now
    else:
        row.read_at = None
        row.archived_at = None
    return "updated"


def _sweep(session: Session, team_id: str | None, cutoff: dt.datetime, now: dt.datetime) -> int:
    stale = select(Story.id).where(func.coalesce(Story.published_at, Story.created_at) < cutoff)
    stmt = (
        update(TeamStoryState)
        .where(TeamStoryState.state != "archived", TeamStoryState.story_id.in_(stale))
        .values(state="archived", archived_at=now, updated_at=now)
    )
    if team_id is not None:
        stmt = stmt.where(TeamStoryState.team_id == team_id)
    return session.execute(stmt).rowcount or 0
