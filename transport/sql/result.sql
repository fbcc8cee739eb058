-- Result-backend statements. A task that is a pg-boss job keeps its result in the job row (written
-- through the manager); only what is not a job lives in zeke's own table {aux}.result: group
-- metadata, chord counters, results of tasks that never were jobs, and progress/children extras.
-- transport.backend.PgBossBackend is the only caller.

-- name: create_result_store
-- Create zeke's result tables beside the pg-boss schema (idempotent; run under an advisory lock). Tables are locked in the order statements write them (chord_part, then result), so this can run while other processes count chord parts.
CREATE SCHEMA IF NOT EXISTS {aux};
CREATE TABLE IF NOT EXISTS {aux}.chord_part (
  group_id text NOT NULL,
  task_id text NOT NULL,
  group_index int,
  added_on timestamptz NOT NULL DEFAULT clock_timestamp(),
  expires_at timestamptz,
  PRIMARY KEY (group_id, task_id)
);
CREATE INDEX IF NOT EXISTS chord_part_expires_at ON {aux}.chord_part (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {aux}.result (
  key text PRIMARY KEY,
  value text,
  counter bigint NOT NULL DEFAULT 0,
  expires_at timestamptz,
  updated_on timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS result_expires_at ON {aux}.result (expires_at) WHERE expires_at IS NOT NULL

-- name: get_task_results
-- Task results by id: the job rows (found through every queue's primary key; a task replaced on another queue has two: the newer, as get_job picks) and any stored values, in one round trip.
(SELECT DISTINCT ON (j.id) 'job' AS source, j.id::text AS id, j.name, j.state::text AS state, j.output,
  j.retry_count, j.completed_on, CASE WHEN %(extended)s THEN j.data END AS data, NULL::text AS value,
  j.data #>> '{__celery,task}' AS task_name, j.data #> '{__celery,headers,ignore_result}' AS ignore_result
FROM {schema}.queue q
JOIN {schema}.job j ON j.name = q.name AND j.id = ANY(%(ids)s::uuid[])
ORDER BY j.id, j.created_on DESC)
UNION ALL
SELECT 'store', r.key, NULL, NULL, NULL, NULL, NULL, NULL, r.value, NULL, NULL
FROM {aux}.result r
WHERE r.key = ANY(%(keys)s::text[]) AND (r.expires_at IS NULL OR r.expires_at > now())

-- name: get_results
-- Stored values by key, skipping expired ones.
SELECT key, value FROM {aux}.result
WHERE key = ANY(%(keys)s::text[]) AND (expires_at IS NULL OR expires_at > now())

-- name: set_result
-- Upsert a value; its expiry follows the job's deletion_seconds when it belongs to a job, else the given expiry; NOTIFY waiters when it is a task's state.
WITH expiry AS (
  SELECT CASE
    WHEN %(queue)s::text IS NOT NULL THEN (
      SELECT CASE WHEN j.deletion_seconds > 0 THEN now() + j.deletion_seconds * interval '1s' END
      FROM {schema}.job j WHERE j.name = %(queue)s AND j.id = %(job_id)s::uuid)
    WHEN %(expires)s::float8 IS NOT NULL THEN now() + %(expires)s::float8 * interval '1s'
  END AS at
),
upserted AS (
  INSERT INTO {aux}.result (key, value, expires_at, updated_on)
  SELECT %(key)s, %(value)s, expiry.at, now() FROM expiry
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, updated_on = now()
  RETURNING key
)
SELECT pg_notify(%(channel)s, %(notify)s) FROM upserted WHERE %(notify)s::text IS NOT NULL

-- name: incr_result
-- Add one to a counter (chord parts), creating it at 1; returns the new count.
INSERT INTO {aux}.result AS r (key, counter, expires_at, updated_on)
VALUES (%(key)s, 1, CASE WHEN %(expires)s::float8 IS NOT NULL THEN now() + %(expires)s::float8 * interval '1s' END, now())
ON CONFLICT (key) DO UPDATE SET counter = r.counter + 1, updated_on = now()
RETURNING counter

-- name: count_chord_part
-- Count one finished chord header task, once per task id (a redelivered duplicate adds nothing): its part row, and one more on the chord's counter; returns the new count and the chord size (the counter's value), or no row for a duplicate. The counter's row lock serialises concurrent parts, so exactly one of them sees the count reach the size.
WITH part AS (
  INSERT INTO {aux}.chord_part (group_id, task_id, group_index, expires_at)
  VALUES (%(group_id)s, %(task_id)s, %(group_index)s,
    CASE WHEN %(expires)s::float8 IS NOT NULL THEN now() + %(expires)s::float8 * interval '1s' END)
  ON CONFLICT (group_id, task_id) DO NOTHING
  RETURNING 1
)
INSERT INTO {aux}.result AS r (key, counter, expires_at, updated_on)
SELECT %(key)s, 1, CASE WHEN %(expires)s::float8 IS NOT NULL THEN now() + %(expires)s::float8 * interval '1s' END, now()
FROM part
ON CONFLICT (key) DO UPDATE SET counter = r.counter + 1, updated_on = now()
RETURNING counter, value

-- name: set_chord_size
-- Record how many header tasks a chord waits for (the value of its counter row; the count is kept).
INSERT INTO {aux}.result AS r (key, value, expires_at, updated_on)
VALUES (%(key)s, %(size)s, CASE WHEN %(expires)s::float8 IS NOT NULL THEN now() + %(expires)s::float8 * interval '1s' END, now())
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_on = now()

-- name: chord_part_ids
-- The task ids of a chord's counted header tasks, in header order (group_index; parts without one last, as they came).
SELECT task_id FROM {aux}.chord_part WHERE group_id = %(group_id)s
ORDER BY group_index NULLS LAST, added_on, task_id

-- name: delete_chord
-- Forget a chord's parts and counter once its body has been sent (or failed).
WITH parts AS (
  DELETE FROM {aux}.chord_part WHERE group_id = %(group_id)s
)
DELETE FROM {aux}.result WHERE key = %(key)s

-- name: expire_result
-- Set how long a value lives from now (NULL or 0: for ever; negative: gone already).
UPDATE {aux}.result
SET expires_at = CASE WHEN %(expires)s::float8 <> 0 THEN now() + %(expires)s::float8 * interval '1s' END
WHERE key = %(key)s

-- name: delete_results
-- Delete values by key.
DELETE FROM {aux}.result WHERE key = ANY(%(keys)s::text[])

-- name: delete_expired_results
-- Delete a batch of expired values and a batch of expired chord parts (of chords that never finished); returns how many values.
WITH doomed AS (
  SELECT key FROM {aux}.result WHERE expires_at < now() LIMIT %(limit)s
),
doomed_parts AS (
  DELETE FROM {aux}.chord_part p USING (
    SELECT group_id, task_id FROM {aux}.chord_part WHERE expires_at < now() LIMIT %(limit)s
  ) d WHERE p.group_id = d.group_id AND p.task_id = d.task_id
)
DELETE FROM {aux}.result r USING doomed d WHERE r.key = d.key
