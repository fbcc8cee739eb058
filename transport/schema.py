"""The pg-boss schema: install it the way Node pg-boss does, detect what an existing one offers, and
refuse versions zeke does not serve.

zeke never alters an existing schema. Upgrades belong to Node pg-boss (``npx pg-boss migrate``), which
owns the migration chain; zeke only creates a schema where there is none, identical to the one
Node pg-boss 12.38 (12.38.0 and 12.38.1) would create (``transport/sql/schema_v46.sql``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions

from transport.db import Connection, raw_connection
from transport.exceptions import PgBossError, UnsupportedSchemaVersion
from transport.names import validate_schema_name
from transport.sql import schema_ddl, statement

#: The oldest schema zeke serves: pg-boss 12.0 (the same schema as 11.1).
MIN_VERSION = 26
#: The schema zeke installs, and the newest it knows: pg-boss 12.38.0 - 12.38.1.
CURRENT_VERSION = 46
DEFAULT_SCHEMA = "pgboss"

#: Schema version -> the pg-boss releases that use it, for messages.
RELEASES: dict[int, str] = {
    20: "pg-boss 9.x or older",
    21: "pg-boss 10.x",
    22: "pg-boss 10.x",
    23: "pg-boss 10.x",
    24: "pg-boss 10.x",
    25: "pg-boss 11.0",
    26: "pg-boss 11.1 - 12.5",
    27: "pg-boss 12.6 - 12.9",
    28: "pg-boss 12.10",
    29: "pg-boss 12.11",
    30: "pg-boss 12.12 - 12.18",
    31: "pg-boss 12.19 - 12.20",
    32: "pg-boss 12.21",
    33: "pg-boss 12.22",
    34: "pg-boss 12.23",
    35: "pg-boss 12.24.0",
    36: "pg-boss 12.24.1 - 12.25",
    37: "pg-boss 12.26 - 12.27",
    38: "pg-boss 12.28",
    39: "pg-boss 12.29",
    40: "pg-boss 12.30",
    41: "pg-boss 12.31 - 12.32",
    42: "pg-boss 12.33 - 12.34",
    43: "pg-boss 12.35",
    44: "pg-boss 12.36",
    45: "pg-boss 12.37",
    46: "pg-boss 12.38",
}

#: Optional features, each detected by the presence of one catalog object: (table, column), or
#: (None, function) for a function in the schema. Other code templates SQL on these names.
FEATURE_PROBES: dict[str, tuple[str | None, str]] = {
    "heartbeat": ("job", "heartbeat_on"),  # 30+
    "blocked": ("job", "blocked"),  # 31+ (flows)
    "notify": ("queue", "notify"),  # 32+ (LISTEN/NOTIFY)
    "source": ("job", "source_name"),  # 34+ (dead-letter origin)
    "source_output": ("job", "source_output"),  # 43+
    "job_now": (None, "job_now"),  # 42+ (the schema clock)
    "schedule_kind": ("schedule", "kind"),  # 41+ (cron or rrule)
    "schedule_last_job_id": ("schedule", "last_job_id"),  # 41+
    "monitor_claim": ("queue", "monitor_claim_on"),  # 40+
    "singletons_active": ("queue", "singletons_active"),
    "group": ("job", "group_id"),  # 27+
    "upsert": ("job", "upsert_by_key"),  # 45+
    # What the supervisor keeps (transport.upkeep): the queue statistics each version's monitor
    # writes, its vacuum backoff, the flow resolver's claim, and the Node instance registry.
    "queue_ready": ("queue", "ready_count"),  # 32+ (ready_count, failed_count)
    "ready_history": ("queue", "ready_history"),  # 35+
    "queue_blocked": ("queue", "blocked_count"),  # 44+
    "retained": ("queue", "retained_count"),  # 46 (total_count = live + retained)
    "monitor_backoff": ("version", "monitor_backoff_on"),  # 40+
    "flows": ("version", "flow_on"),  # 33+ (the background flow resolver)
    "dependencies": ("job_dependency", "parent_id"),  # 31+
    "instances": ("instance", "supervise"),  # 44+
}


@dataclasses.dataclass(frozen=True)
class SchemaInfo:
    """What a pg-boss schema is: its version (None when not installed) and what its catalog offers."""

    schema: str
    version: int | None
    features: frozenset[str] = frozenset()
    #: Columns of ``<schema>.job`` in attnum order.
    job_columns: tuple[str, ...] = ()

    @property
    def installed(self) -> bool:
        return self.version is not None

    @property
    def release(self) -> str:
        return release_of(self.version)

    def has(self, feature: str) -> bool:
        if feature not in FEATURE_PROBES:
            raise KeyError(f"unknown pg-boss schema feature {feature!r}")
        return feature in self.features


def release_of(version: int | None) -> str:
    if version is None:
        return "not installed"
    if version in RELEASES:
        return RELEASES[version]
    if version > CURRENT_VERSION:
        return f"a pg-boss release newer than {RELEASES[CURRENT_VERSION].removeprefix('pg-boss ')}"
    return "a pg-boss release older than 9"


def quote_schema(schema: str) -> str:
    """The schema as a quoted identifier (validated first, so plain double quotes are enough)."""
    return '"' + validate_schema_name(schema) + '"'


def lock_key_sql(schema: str, key: str = "") -> tuple[str, dict[str, str]]:
    """SQL for pg-boss's advisory lock key of ``schema`` + ``key`` and its parameters: the first 64 bits
    of sha224('<database>.pgboss.<schema><key>'), with the text after the database name bound as a
    parameter, so a key never needs quoting."""
    return statement("_lock_key"), _lock_params(schema, key)


def lock_sql(schema: str, key: str = "", *, wait: bool = True) -> tuple[str, dict[str, str]]:
    """Take pg-boss's transaction-scoped advisory lock for ``key``, the one Node takes for it.

    ``key`` is pg-boss's suffix: "" for install/migrate, "create-queue", "delete-queue",
    "<table>deletion", "queue-stats", ... With ``wait=False`` the statement returns whether it got
    the lock (pg_try_advisory_xact_lock) instead of waiting.
    """
    return statement("schema_lock" if wait else "schema_try_lock"), _lock_params(schema, key)


def _lock_params(schema: str, key: str) -> dict[str, str]:
    return {"lock_name": validate_schema_name(schema) + key}


def lock_key(database: str, schema: str, key: str = "") -> int:
    """The bigint pg-boss's lock key evaluates to in ``database``, computed locally (for logs/tests)."""
    digest = hashlib.sha224(f"{database}.pgboss.{schema}{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _reading(conn: Connection) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor for catalog reads that leaves an idle connection idle again (and a caller's open
    transaction untouched)."""
    idle = conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        if idle and not conn.autocommit and not conn.closed:
            conn.rollback()


def _version_table_exists(cur: psycopg2.extensions.cursor, schema: str) -> bool:
    cur.execute(statement("schema_version_table_exists"), {"relation": quote_schema(schema) + ".version"})
    return bool(cur.fetchone()[0])


def detect(conn: Any, schema: str = DEFAULT_SCHEMA) -> SchemaInfo:
    """Read the version and features of the pg-boss schema ``schema``, without changing anything."""
    conn = raw_connection(conn)
    quoted = quote_schema(schema)
    with _reading(conn) as cur:
        if not _version_table_exists(cur, schema):
            return SchemaInfo(schema, None)
        cur.execute(statement("schema_version", {"schema": quoted}))
        rows = cur.fetchall()
        if len(rows) != 1:
            raise UnsupportedSchemaVersion(
                f"{quoted}.version holds {len(rows)} rows, not the one pg-boss keeps; "
                "this is not a pg-boss schema zeke can serve"
            )
        version = int(rows[0][0])
        cur.execute(statement("schema_columns"), {"schema": schema})
        columns = cur.fetchall()
        cur.execute(statement("schema_functions"), {"schema": schema})
        functions = {row[0] for row in cur.fetchall()}
    present = set(columns)
    features = frozenset(
        name
        for name, (table, column) in FEATURE_PROBES.items()
        if (column in functions if table is None else (table, column) in present)
    )
    job_columns = tuple(column for table, column in columns if table == "job")
    return SchemaInfo(schema, version, features, job_columns)


def check_version(info: SchemaInfo) -> SchemaInfo:
    """Refuse a schema outside MIN_VERSION..CURRENT_VERSION with a message that says what to do."""
    version = info.version
    if version is None:
        raise UnsupportedSchemaVersion(
            f"pg-boss is not installed in schema {info.schema!r}; start Node pg-boss on this database "
            "or let zeke install it"
        )
    if version < MIN_VERSION:
        if version >= 25:
            advice = "upgrade it with Node pg-boss >= 12 (`npx pg-boss migrate`) first"
        else:
            # pg-boss 12 migrates only from 25 up; pg-boss 11 had no path from 10 either.
            advice = (
                "upgrade it with Node pg-boss >= 12 (`npx pg-boss migrate`) first; pg-boss 12 migrates "
                "only from schema 25 (pg-boss 11) up, so older jobs must be moved into a new pg-boss 12 "
                "schema by hand"
            )
        raise UnsupportedSchemaVersion(
            f"pg-boss schema version {version} ({release_of(version)}) in schema {info.schema!r} is older "
            f"than {MIN_VERSION} (pg-boss 12.0), the oldest zeke serves; {advice}"
        )
    if version > CURRENT_VERSION:
        raise UnsupportedSchemaVersion(
            f"pg-boss schema version {version} ({release_of(version)}) in schema {info.schema!r} is newer "
            f"than {CURRENT_VERSION} ({RELEASES[CURRENT_VERSION]}), the newest zeke knows; upgrade zeke"
        )
    return info


def install(conn: Any, schema: str = DEFAULT_SCHEMA) -> bool:
    """Create pg-boss schema version 46 in ``schema`` unless a version table is already there.

    Returns True when this call created it. Runs as Node pg-boss's install does: one transaction with
    30 s lock and idle timeouts, holding the install advisory lock Node takes, so Python and Node
    installers racing each other end with exactly one schema. The existence check is repeated under
    the lock; an "already exists" error is still treated as a lost race, as Node treats it.
    """
    conn = raw_connection(conn)
    quoted = quote_schema(schema)
    with _reading(conn) as cur:
        if _version_table_exists(cur, schema):
            return False
    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        # The install must commit on its own; it cannot join (or end) a caller's transaction.
        raise PgBossError("installing pg-boss needs a connection that is not inside a transaction")

    ddl = schema_ddl(CURRENT_VERSION).replace("{schema}", quoted)
    autocommit = conn.autocommit
    conn.autocommit = False  # everything below is one transaction
    try:
        with conn.cursor() as cur:
            cur.execute(statement("schema_install_timeouts"))
            cur.execute(*lock_sql(schema))
            if _version_table_exists(cur, schema):
                conn.rollback()
                return False
            cur.execute(ddl)
        conn.commit()
        return True
    except psycopg2.Error as exc:
        conn.rollback()
        if "already exists" in str(exc):
            return False
        raise
    finally:
        conn.autocommit = autocommit


def ensure(conn: Any, schema: str = DEFAULT_SCHEMA) -> SchemaInfo:
    """Install the schema if it is absent, then return what it is, refusing unsupported versions."""
    install(conn, schema)
    info = detect(conn, schema)
    if info.version is None:
        # Only an "already exists" error without a winner gets here: objects of another kind sit
        # where pg-boss's would go.
        raise PgBossError(
            f"could not install pg-boss in schema {schema!r}: objects with pg-boss's names already exist "
            "there but it holds no pg-boss version table"
        )
    return check_version(info)


def require(conn: Any, schema: str = DEFAULT_SCHEMA) -> SchemaInfo:
    """Like :func:`ensure` without installing: a missing schema is refused too (for tools that must
    never write to a database Node owns)."""
    return check_version(detect(conn, schema))
