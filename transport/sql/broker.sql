-- The pgboss:// Kombu transport's own statements. Its tables live in zeke's schema beside pg-boss's
-- ({aux}), never inside it: a broadcast log for fanout/topic/direct exchanges (remote control,
-- events) and the bindings of durable queues to named exchanges.

-- name: broker_install
-- Create the transport's schema and tables if absent (idempotent; run under the zeke-aux advisory lock, as the result and beat stores are: CREATE SCHEMA IF NOT EXISTS races).
CREATE SCHEMA IF NOT EXISTS {aux};
-- Unlogged: broadcasts are ephemeral (a crash may lose them, like Redis pub/sub), so skip the WAL.
CREATE UNLOGGED TABLE IF NOT EXISTS {aux}.broadcast (
  id bigserial PRIMARY KEY,
  exchange text NOT NULL,
  routing_key text NOT NULL,
  payload text NOT NULL,
  created_on timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS broadcast_created_on ON {aux}.broadcast (created_on);
CREATE TABLE IF NOT EXISTS {aux}.binding (
  exchange text NOT NULL,
  queue text NOT NULL,
  routing_key text NOT NULL,
  pattern text NOT NULL DEFAULT '',
  type text NOT NULL DEFAULT 'direct',
  created_on timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (exchange, queue, routing_key)
);

-- name: broadcast_publish
-- Append one message to the broadcast log and wake every listening consumer, in one statement.
WITH appended AS (
  INSERT INTO {aux}.broadcast (exchange, routing_key, payload)
  VALUES (%(exchange)s, %(routing_key)s, %(payload)s)
  RETURNING id
)
SELECT id, pg_notify(%(channel)s, %(notice)s) FROM appended

-- name: broadcast_head
-- The newest broadcast id: where a new subscriber starts reading.
SELECT COALESCE(max(id), 0) AS id FROM {aux}.broadcast

-- name: broadcast_read
-- Broadcasts after an id, plus ids seen missing earlier (commit-order gaps); payloads only for wanted exchanges.
SELECT id, exchange, routing_key,
  CASE WHEN exchange = ANY(%(exchanges)s::text[]) THEN payload END AS payload,
  EXTRACT(EPOCH FROM (now() - created_on))::float8 AS age
FROM {aux}.broadcast
WHERE id > %(after)s OR id = ANY(%(gaps)s::bigint[])
ORDER BY id
LIMIT %(limit)s

-- name: broadcast_sweep
-- Forget broadcasts older than the retention, so the log never grows for stopped consumers.
DELETE FROM {aux}.broadcast WHERE created_on < now() - %(seconds)s * interval '1s'

-- name: binding_add
-- Remember that a durable queue is bound to a named exchange (so any process's publish reaches it).
INSERT INTO {aux}.binding (exchange, queue, routing_key, pattern, type)
VALUES (%(exchange)s, %(queue)s, %(routing_key)s, %(pattern)s, %(type)s)
ON CONFLICT (exchange, queue, routing_key) DO UPDATE SET pattern = EXCLUDED.pattern, type = EXCLUDED.type
WHERE binding.pattern IS DISTINCT FROM EXCLUDED.pattern OR binding.type IS DISTINCT FROM EXCLUDED.type

-- name: binding_list
-- The durable bindings of one exchange.
SELECT routing_key, pattern, queue, type FROM {aux}.binding WHERE exchange = %(exchange)s ORDER BY queue, routing_key

-- name: binding_remove
-- Forget one binding.
DELETE FROM {aux}.binding WHERE exchange = %(exchange)s AND queue = %(queue)s AND routing_key = %(routing_key)s

-- name: binding_remove_queue
-- Forget every binding of a deleted queue.
DELETE FROM {aux}.binding WHERE queue = %(queue)s

-- name: wake
-- NOTIFY one channel (a queue became runnable, or its next start time changed).
SELECT pg_notify(%(channel)s, %(payload)s)

-- name: session_async_commit
-- This session's commits do not wait for the WAL flush (the consumer's fetch/settle connection).
SET synchronous_commit TO off

-- name: listen
-- Subscribe this session to a channel. The channel is an identifier, quoted by the caller (psycopg2 quote_ident).
LISTEN %(channel)s

-- name: try_presence
-- Hold advisory lock key shared for the session (false while a claim holds it alone: try again).
SELECT pg_try_advisory_lock_shared(%(key)s)

-- name: release_presence
-- The session no longer wants it.
SELECT pg_advisory_unlock_shared(%(key)s)

-- name: flush_commits
-- Return once this session's earlier commits are on disk (a durable publish committed asynchronously). A transaction that wrote WAL commits in the server's own commit mode, flushing the WAL up to its commit record and so past every earlier one. Its WAL is one empty transactional logical message (prefix zeke.flush): no table, no lock, any role may emit it; a logical decoding client that asks for messages sees one per durable publish. Several statements, one round trip.
BEGIN; SET LOCAL synchronous_commit TO DEFAULT; SELECT pg_logical_emit_message(true, 'zeke.flush', ''); COMMIT

-- name: local_default_commit
-- This transaction commits in the server's own commit mode (a durable group's transaction on an asynchronous-commit session).
SET LOCAL synchronous_commit TO DEFAULT

-- name: session_sync_commit
-- Back to the server's commit mode (a pooled connection leaving the consumer's asynchronous commits).
RESET synchronous_commit

-- name: local_async_commit
-- This transaction's commit does not wait for the WAL flush (a lost claim or completion only means the job runs again).
SET LOCAL synchronous_commit TO off
