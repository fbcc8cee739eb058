-- Cron statements: pg-boss's schedule table and cron claim (Node's timekeeper), plus zeke's claims
-- for plain Celery beat_schedule entries. transport.cron and transport.beat are the only callers;
-- the __pgboss__send-it jobs themselves go through the manager like every other job.

-- name: try_set_cron_time
-- Claim this cron interval (pg-boss trySetCronTime): only the instance whose UPDATE moves version.cron_on runs the pass; answers either way.
WITH prior AS (
  SELECT cron_on, EXTRACT(EPOCH FROM ({now} - cron_on))::float8 AS elapsed FROM {schema}.version
),
claim AS (
  UPDATE {schema}.version SET cron_on = {now}
  WHERE EXTRACT(EPOCH FROM ({now} - COALESCE(cron_on, {now} - interval '1 week'))) >= %(seconds)s
  RETURNING true
)
SELECT prior.cron_on AS prior_cron_on, prior.elapsed, EXISTS (SELECT 1 FROM claim) AS claimed, {now} AS now
FROM prior

-- name: get_schedules
-- Every pg-boss schedule, as the cron pass reads them.
SELECT name, key, /*if:schedule_kind*/kind/*else*/'cron'::text AS kind/*end*/, cron,
  COALESCE(timezone, 'UTC') AS timezone, data, options, created_on, updated_on
FROM {schema}.schedule
ORDER BY name, key

-- name: get_schedule
-- One pg-boss schedule by queue name and key.
SELECT name, key, /*if:schedule_kind*/kind/*else*/'cron'::text AS kind/*end*/, cron,
  COALESCE(timezone, 'UTC') AS timezone, data, options, created_on, updated_on
FROM {schema}.schedule
WHERE name = %(name)s AND COALESCE(key, '') = %(key)s

-- name: upsert_schedule
-- Create or replace a schedule as Node's boss.schedule() does; with only_if_changed an identical row is left alone (beat start-up).
INSERT INTO {schema}.schedule AS s (name, key, /*if:schedule_kind*/kind, /*end*/cron, timezone, data, options, created_on, updated_on)
VALUES (%(name)s, %(key)s, /*if:schedule_kind*/%(kind)s, /*end*/%(cron)s, %(tz)s, %(data)s::jsonb, %(options)s::jsonb, {now}, {now})
ON CONFLICT (name, key) DO UPDATE SET
  /*if:schedule_kind*/kind = EXCLUDED.kind,/*end*/
  cron = EXCLUDED.cron,
  timezone = EXCLUDED.timezone,
  data = EXCLUDED.data,
  options = EXCLUDED.options,
  updated_on = {now}
WHERE NOT %(only_if_changed)s
  OR (s.cron, COALESCE(s.timezone, 'UTC'), s.data, s.options)
     IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.timezone, EXCLUDED.data, EXCLUDED.options)
RETURNING name

-- name: delete_schedule
-- Remove a schedule (Node's unschedule()).
DELETE FROM {schema}.schedule WHERE name = %(name)s AND COALESCE(key, '') = %(key)s RETURNING name

-- name: set_schedule_last_job_id
-- Record the job a schedule last produced (12.38's schedule.last_job_id; a no-op on older schemas).
/*if:schedule_last_job_id*/UPDATE {schema}.schedule SET last_job_id = %(job_id)s::uuid
WHERE name = %(name)s AND COALESCE(key, '') = %(key)s/*else*/SELECT 1 WHERE false/*end*/

-- name: create_beat_store
-- Create zeke's table of plain Celery beat entries beside the pg-boss schema (idempotent; run under an advisory lock).
CREATE SCHEMA IF NOT EXISTS {aux};
CREATE TABLE IF NOT EXISTS {aux}.beat_entry (
  name text PRIMARY KEY,
  last_run_at timestamptz,
  total_run_count int NOT NULL DEFAULT 0,
  updated_on timestamptz NOT NULL DEFAULT now()
)

-- name: load_beat_entries
-- The shared run state of Celery beat entries, creating missing rows with the caller's last_run_at.
WITH input AS (
  SELECT * FROM json_to_recordset(%(entries)s::text::json) AS x (name text, last_run_at timestamptz)
),
created AS (
  INSERT INTO {aux}.beat_entry (name, last_run_at)
  SELECT name, last_run_at FROM input
  ON CONFLICT (name) DO NOTHING
  RETURNING name, last_run_at, total_run_count
)
SELECT name, last_run_at, total_run_count FROM created
UNION ALL
SELECT b.name, b.last_run_at, b.total_run_count
FROM {aux}.beat_entry b JOIN input i ON i.name = b.name
WHERE b.name NOT IN (SELECT name FROM created)

-- name: claim_beat_entry
-- Claim one run of a Celery beat entry: succeeds only for the beat that saw the current run count (compare-and-set); answers the row either way.
WITH claim AS (
  UPDATE {aux}.beat_entry
  SET last_run_at = %(now)s, total_run_count = total_run_count + 1, updated_on = now()
  WHERE name = %(name)s AND total_run_count = %(expected)s
  RETURNING name, last_run_at, total_run_count, true AS claimed
)
SELECT * FROM claim
UNION ALL
SELECT name, last_run_at, total_run_count, false FROM {aux}.beat_entry
WHERE name = %(name)s AND NOT EXISTS (SELECT 1 FROM claim)

-- name: send_it_savepoint
-- Before forwarding one __pgboss__send-it job inside the batch's transaction: a failed forward rolls back to here.
SAVEPOINT send_it

-- name: send_it_rollback
-- Undo a failed forward (the send-it job stays fetched, to be completed anyway).
ROLLBACK TO SAVEPOINT send_it
