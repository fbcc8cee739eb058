-- pg-boss queue, lock and claim statements.

-- name: advisory_lock
-- Take pg-boss's transaction-scoped advisory lock for a key (the same key Node computes).
SELECT pg_advisory_xact_lock(('x' || encode(sha224((current_database() || '.pgboss.' || %(schema)s || %(key)s)::bytea), 'hex'))::bit(64)::bigint)

-- name: create_queue
-- Create a queue through pg-boss's own create_queue() (idempotent); run under the create-queue lock.
SELECT {schema}.create_queue(%(name)s, %(options)s::jsonb)

-- name: get_queue
-- One queue's settings.
SELECT * FROM {schema}.queue WHERE name = %(name)s

-- name: get_queues
-- Settings of several queues.
SELECT * FROM {schema}.queue WHERE name = ANY(%(names)s::text[])

-- name: get_queue_policies
-- The policies of several queues (which fetch statement serves them).
SELECT name, policy FROM {schema}.queue WHERE name = ANY(%(names)s::text[])

-- name: enable_queue_notify
-- Turn a queue's notify on, as Node's updateQueue(name, {notify: true}) does: pg-boss then NOTIFYs on every runnable insert. The name back when it was off.
UPDATE {schema}.queue SET notify = true, updated_on = {now} WHERE name = %(name)s AND NOT notify RETURNING name

-- name: list_queues
-- Every queue, by name.
SELECT * FROM {schema}.queue ORDER BY name

-- name: delete_queue
-- Delete a queue and its jobs through pg-boss's delete_queue(); run under the delete-queue lock.
SELECT {schema}.delete_queue(%(name)s)

-- name: claim_queues_for_monitor
-- Claim queues whose expiry/heartbeat pass is due (pg-boss's monitor claim), skipping rows another instance holds.
WITH due AS (
  SELECT name FROM {schema}.queue
  WHERE name = ANY(%(names)s::text[])
    AND EXTRACT(EPOCH FROM ({now} - COALESCE(/*if:monitor_claim*/monitor_claim_on, /*end*/monitor_on, {now} - interval '1 week'))) >= %(seconds)s
  ORDER BY name FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE {schema}.queue SET /*if:monitor_claim*/monitor_claim_on/*else*/monitor_on/*end*/ = {now}
FROM due WHERE queue.name = due.name
RETURNING queue.name

-- name: claim_queues_for_deletion
-- Claim queues whose deletion pass is due (pg-boss's maintain_on claim).
WITH due AS (
  SELECT name FROM {schema}.queue
  WHERE name = ANY(%(names)s::text[])
    AND EXTRACT(EPOCH FROM ({now} - COALESCE(maintain_on, {now} - interval '1 week'))) >= %(seconds)s
  ORDER BY name FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE {schema}.queue SET maintain_on = {now}
FROM due WHERE queue.name = due.name
RETURNING queue.name

-- name: database_now
-- The database clock, which every pg-boss timestamp follows.
SELECT {now} AS now
