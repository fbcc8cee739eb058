"""Schemathesis against zeke's HTTP API: every operation of its OpenAPI schema, with valid (positive)
and schema-violating (negative) requests, through a real uvicorn server on 127.0.0.1. No request may
get a 5xx, and the job table is still there afterwards.

Five requests in six carry the API key so they get past auth into the handlers. The schema alone
rarely names a task that exists, so ``POST /api/jobs`` is also fuzzed with bodies naming the
``hostile-*`` tasks and payloads full of awkward JSON: NUL, unpaired surrogates, huge numbers, SQL.

Bounded: ``HOSTILE_MAX_EXAMPLES`` examples per operation and mode (default 40), so the module runs in
well under a minute; raise it for a longer hunt (``HOSTILE_MAX_EXAMPLES=2000 pytest tests/hostile``).
Schemathesis' own pytest loader (``schemathesis.pytest.from_fixture``) does not run on pytest 9 (it
reads ``Function._nodeid``), so the operations are driven here with hypothesis directly.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.hostile.conftest import API_KEY, ApiServer, job_table_exists
from transport.db import Database

MAX_EXAMPLES = int(os.environ.get("HOSTILE_MAX_EXAMPLES", "40"))
OPERATIONS = {
    "GET /healthz",
    "GET /api/tasks",
    "POST /api/jobs",
    "GET /api/jobs/{job_id}",
    "POST /api/jobs/{job_id}/cancel",
    "POST /api/jobs/{job_id}/retry",
    "GET /api/jobs/stream/{run_id}",
}
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)

_awkward_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "\x00",
            "a\x00b",
            "\ud800",
            "\udfff",
            "\ud83e\udd86",
            "🦆",
            "x'; DROP TABLE pgboss.job; --",
            "%(name)s",
            "{schema}",
            "\\u0000",
            "\u202e",
            "x" * 5000,
        ]
    ),
)
_awkward_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _awkward_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_awkward_text, children, max_size=4),
    max_leaves=12,
)
_task_bodies = st.fixed_dictionaries(
    {
        "taskId": st.sampled_from(["hostile-doc", "hostile-echo"]),
        "payload": st.fixed_dictionaries(
            {},
            optional={
                "title": _awkward_json,
                "body": _awkward_json,
                "tags": st.lists(_awkward_text, max_size=3) | _awkward_json,
                "message": _awkward_text,
                "count": _awkward_json,
            },
        ),
    }
)


def fuzz(operation: Any, strategy: Any, headers_for: Callable[[], dict[str, str]], seen: set[int]) -> None:
    @given(case=strategy)
    @HYPOTHESIS
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=headers_for(), timeout=20)
        seen.add(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_server_errors(api: ApiServer, database: Database, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == OPERATIONS, "new endpoint: list it"
    turn = itertools.count()

    def headers_for() -> dict[str, str]:
        return {} if next(turn) % 6 == 5 else {"Authorization": f"Bearer {API_KEY}"}

    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        strategies = [operation.as_strategy(generation_mode=mode)]
        if label == "POST /api/jobs" and mode is GenerationMode.POSITIVE:
            strategies.append(st.tuples(strategies[0], _task_bodies).map(lambda pair: _with_body(*pair)))
        for strategy in strategies:
            try:
                fuzz(operation, strategy, headers_for, statuses.setdefault(label, set()))
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong (no parameters, no body)
            except Exception as exc:  # collect every operation's failure, then report them together
                failures.append(f"{label}: {exc}")

    assert not failures, "\n\n".join(failures)
    assert job_table_exists(database)
    if mode is GenerationMode.POSITIVE:  # the key worked: not everything was a 401
        assert all(codes - {401} for codes in statuses.values()), statuses
        assert {201, 422} <= statuses["POST /api/jobs"], statuses  # jobs made, and bad ones refused


def _with_body(case: schemathesis.Case, body: dict[str, Any]) -> schemathesis.Case:
    case.body = body
    return case
