-- The monitoring views of the seed's jobs package (docs "Monitoring"), rewritten for pg-boss v12:
-- snake_case columns (created_on, started_on, completed_on, retry_count), no archive table, job
-- partitions read through {schema}.job. Read-only; transport.monitor.Monitor is the caller.

-- name: monitor_recent_jobs
-- Recent jobs, newest first, optionally of one queue.
SELECT id, name, state::text AS state, retry_count, retry_limit, priority,
  created_on, started_on, completed_on, data, output
FROM {schema}.job
WHERE %(name)s::text IS NULL OR name = %(name)s
ORDER BY created_on DESC
LIMIT %(limit)s

-- name: monitor_failed_jobs
-- Failed jobs, most recently failed first, optionally of one queue.
SELECT id, name, state::text AS state, retry_count, retry_limit, priority,
  created_on, started_on, completed_on, data, output
FROM {schema}.job
WHERE state = 'failed' AND (%(name)s::text IS NULL OR name = %(name)s)
ORDER BY completed_on DESC NULLS LAST
LIMIT %(limit)s

-- name: monitor_state_counts
-- Job counts by state (in pg-boss's state order), optionally of one queue.
SELECT state::text AS state, count(*)::int AS count
FROM {schema}.job
WHERE %(name)s::text IS NULL OR name = %(name)s
GROUP BY state
ORDER BY state

-- name: monitor_schedules
-- Every schedule with its cron, time zone and data.
SELECT name, key, /*if:schedule_kind*/kind/*else*/'cron'/*end*/ AS kind, cron, timezone, data, options,
  created_on, updated_on, /*if:schedule_last_job_id*/last_job_id/*else*/NULL::uuid AS last_job_id/*end*/
FROM {schema}.schedule
ORDER BY name, key
