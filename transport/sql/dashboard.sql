-- The web dashboard's read-only views (zeke.dashboard through transport.monitor.Monitor). Every
-- statement reads schemas 26..46 alike and stays fast at millions of jobs: each one walks a queue's
-- rows through an index whose leading column is the queue name (the primary key (name, id), and on
-- schema 46 job_i14 (name, state, ...) and job_i15 (name, created_on)), one queue at a time.

-- name: dashboard_queue_counts
-- Jobs per queue and state, read live and bounded: each pending or failed count stops at %(cap)s (schema 46 reads them from job_i14), and completed and cancelled are counted together in one walk of at most %(cap)s finished rows (job_i16, on completed_on), "finished_walked" telling whether that walk was cut short.
SELECT q.name, q.policy,
  (SELECT count(*) FROM (SELECT 1 FROM {schema}.job j
     WHERE j.name = q.name AND j.state = 'created' LIMIT %(cap)s) x)::int AS created,
  (SELECT count(*) FROM (SELECT 1 FROM {schema}.job j
     WHERE j.name = q.name AND j.state = 'retry' LIMIT %(cap)s) x)::int AS retry,
  (SELECT count(*) FROM (SELECT 1 FROM {schema}.job j
     WHERE j.name = q.name AND j.state = 'active' LIMIT %(cap)s) x)::int AS active,
  (SELECT count(*) FROM (SELECT 1 FROM {schema}.job j
     WHERE j.name = q.name AND j.state = 'failed' LIMIT %(cap)s) x)::int AS failed,
  f.completed, f.cancelled, f.walked AS finished_walked
FROM {schema}.queue q
CROSS JOIN LATERAL (
  SELECT count(*) FILTER (WHERE w.state = 'completed')::int AS completed,
    count(*) FILTER (WHERE w.state = 'cancelled')::int AS cancelled,
    count(*)::int AS walked
  FROM (SELECT j.state FROM {schema}.job j
        WHERE j.name = q.name AND j.completed_on IS NOT NULL AND j.state IN ('completed', 'cancelled')
        LIMIT %(cap)s) w
) f
WHERE left(q.name, 10) <> '__pgboss__' AND (%(name)s::text IS NULL OR q.name = %(name)s)
ORDER BY q.name

-- name: dashboard_queues
-- Every queue's settings (pg-boss's own __pgboss__ queues left out).
SELECT name, policy, retry_limit, retry_delay, retry_backoff, expire_seconds, retention_seconds,
  deletion_seconds, dead_letter, partition, created_on, updated_on
FROM {schema}.queue
WHERE left(name, 10) <> '__pgboss__'
ORDER BY name

-- name: _dashboard_job_columns
-- The columns of a job row in a list: no data, the error message (not the whole output).
j.id, j.name, j.state::text AS state, j.priority, j.retry_count, j.retry_limit, j.singleton_key,
  j.created_on, j.start_after, j.started_on, j.completed_on,
  j.data -> '__celery' ->> 'task' AS celery_task,
  CASE WHEN j.state IN ('failed', 'retry') THEN left(COALESCE(
    j.output ->> 'message', j.output -> 'value' ->> 'message', j.output ->> 'value', j.output::text), 300)
  END AS error

-- name: dashboard_jobs
-- One page of jobs, newest first, by keyset (created_on, id) below the cursor; per queue through its (name, created_on) index, merged.
SELECT j.* FROM {schema}.queue q
CROSS JOIN LATERAL (
  SELECT {_dashboard_job_columns}
  FROM {schema}.job j
  WHERE j.name = q.name
    AND (%(state)s::text IS NULL OR j.state = %(state)s::text::{schema}.job_state)
    AND (%(since)s::timestamptz IS NULL OR j.created_on >= %(since)s::timestamptz)
    AND (%(until)s::timestamptz IS NULL OR j.created_on < %(until)s::timestamptz)
    AND (%(before_on)s::timestamptz IS NULL
         OR (j.created_on, j.id) < (%(before_on)s::timestamptz, %(before_id)s::uuid))
    AND (%(text)s::text IS NULL
         OR j.id::text = %(text)s OR j.singleton_key = %(text)s
         OR j.data::text ILIKE %(pattern)s OR j.output::text ILIKE %(pattern)s)
  ORDER BY j.created_on DESC, j.id DESC
  LIMIT %(limit)s
) j
WHERE left(q.name, 10) <> '__pgboss__' AND (%(name)s::text IS NULL OR q.name = %(name)s)
ORDER BY j.created_on DESC, j.id DESC
LIMIT %(limit)s

-- name: dashboard_throughput
-- Per queue and time bucket over the last %(minutes)s minutes: jobs finished (completed, failed) and their mean wait (created to started) and run (started to finished) in seconds.
SELECT j.name,
  to_timestamp(floor(extract(epoch FROM j.completed_on) / %(bucket)s) * %(bucket)s) AS bucket,
  count(*) FILTER (WHERE j.state = 'completed')::int AS completed,
  count(*) FILTER (WHERE j.state = 'failed')::int AS failed,
  avg(extract(epoch FROM j.started_on - j.created_on))::float AS wait_seconds,
  avg(extract(epoch FROM j.completed_on - j.started_on))::float AS run_seconds
FROM {schema}.queue q
JOIN {schema}.job j ON j.name = q.name
WHERE left(q.name, 10) <> '__pgboss__' AND (%(name)s::text IS NULL OR q.name = %(name)s)
  AND j.completed_on >= {now} - make_interval(mins => %(minutes)s)
  AND j.state IN ('completed', 'failed') AND j.started_on IS NOT NULL
GROUP BY 1, 2
ORDER BY 2, 1

-- name: dashboard_schedule_last_jobs
-- The jobs schedules last sent (schema 41+ records last_job_id): their created_on and state.
SELECT j.id, j.name, j.state::text AS state, j.created_on
FROM {schema}.queue q
JOIN {schema}.job j ON j.name = q.name AND j.id = ANY(%(ids)s::uuid[])

-- name: dashboard_node_instances
-- Node pg-boss processes registered in the schema's instance table (pg-boss 12.36+) and what they work.
/*if:instances*/SELECT id, name, host, pid, version, node_version, application_name, heartbeat_seconds,
  supervise, schedule, workers, started_on, heartbeat_on, stopped_on
FROM {schema}.instance
ORDER BY heartbeat_on DESC NULLS LAST/*else*/SELECT NULL::uuid AS id WHERE false/*end*/
