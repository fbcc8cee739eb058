"""tasks.stories.stories_update_status: its payload rules."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

# -- story-summarize -------------------------------------------------------------------------------


# -- stories-update-status ---------------------------------------------------------------------------


def test_payload_rules() -> None:
    from tasks.stories.stories_update_status import StoriesUpdateStatusPayload

    for bad in ({}, {"storyId": str(uuid.uuid4())}, {"state": "read"}, {"storyId": "x", "state": "read"}):
        with pytest.raises(ValidationError):
            StoriesUpdateStatusPayload.model_validate(bad)
    with pytest.raises(ValidationError):
        StoriesUpdateStatusPayload.model_validate({"storyId": str(uuid.uuid4()), "state": "deleted"})
