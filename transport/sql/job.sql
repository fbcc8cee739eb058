-- pg-boss job statements run by transport.manager.JobManager: inserts (send), fetches, completion,
-- failure and retry, cancel/resume/restore/delete, touches, reads by id and state, and the sweeps
-- (expiry, lost heartbeats, deletion); with the fragments they share (_insert_jobs, _claim_next,
-- _announce, _notify_states, _fail_body). Other job transitions, all JobManager methods too, live in
-- verbs.sql (edits, grouped fetch, flows, redrive), groups.sql (the consumer's group-limited fetch)
-- and supervise.sql (resolve_flows).

-- name: send_jobs
-- Insert a batch of jobs into one queue with the queue's defaults (pg-boss insertJobs); NOTIFY when one is runnable. One row back: the inserted ids as text[] (thousands of one-column rows cost more to read than to insert).
WITH input AS (
  SELECT x.*,
    CASE WHEN x.start_after_at IS NOT NULL THEN x.start_after_at
         ELSE {now} + COALESCE(x.start_after_seconds, 0) * interval '1s' END AS start_after
  FROM jsonb_to_recordset(%(jobs)s::text::jsonb) AS x (
    id uuid, priority int, data jsonb, start_after_at timestamptz, start_after_seconds float8,
    singleton_key text, singleton_seconds int, singleton_offset int, singleton_slot timestamp,
    expire_seconds int, deletion_seconds int, retention_seconds int, keep_until timestamptz,
    retry_limit int, retry_delay int, retry_backoff bool, retry_delay_max int,
    dead_letter text, heartbeat_seconds int, group_id text, group_tier text
  )
),
{_insert_jobs}

-- name: send_job
-- send_jobs for one job with only an id, data, priority and times (the transport's publish): typed parameters instead of a JSON recordset, about 0.06 ms less per durable send.
WITH input AS (
  SELECT x.*,
    COALESCE(x.start_after_at, {now}) AS start_after,
    NULL::float8 AS start_after_seconds, NULL::text AS singleton_key, NULL::int AS singleton_seconds,
    NULL::int AS singleton_offset, NULL::timestamp AS singleton_slot, NULL::int AS expire_seconds,
    NULL::int AS deletion_seconds, NULL::int AS retention_seconds, NULL::int AS retry_limit,
    NULL::int AS retry_delay, NULL::bool AS retry_backoff, NULL::int AS retry_delay_max,
    NULL::text AS dead_letter, NULL::int AS heartbeat_seconds, NULL::text AS group_id,
    NULL::text AS group_tier
  FROM (SELECT %(id)s::uuid AS id, %(priority)s::int AS priority, %(data)s::jsonb AS data,
    %(start_after_at)s::timestamptz AS start_after_at, %(keep_until)s::timestamptz AS keep_until) AS x
),
{_insert_jobs}

-- name: _insert_jobs
-- Shared by send_jobs and send_job: the jobs of CTE input, inserted with their queue's defaults, and the ids as text[].
inserted AS (
  INSERT INTO {schema}.job (
    id, name, data, priority, start_after, created_on, singleton_key, singleton_on,
    expire_seconds, deletion_seconds, keep_until, retry_limit, retry_delay, retry_backoff,
    retry_delay_max, policy, dead_letter/*if:heartbeat*/, heartbeat_seconds/*end*/
    /*if:group*/, group_id, group_tier/*end*/
  )
  SELECT
    COALESCE(i.id, gen_random_uuid()),
    q.name,
    i.data,
    COALESCE(i.priority, 0),
    i.start_after,
    {now},
    i.singleton_key,
    CASE
      WHEN i.singleton_slot IS NOT NULL THEN i.singleton_slot
      WHEN i.singleton_seconds IS NOT NULL THEN 'epoch'::timestamp + '1s'::interval * (
        i.singleton_seconds::float8 * floor((date_part('epoch', {now}) + COALESCE(i.singleton_offset, 0)::float8)
          / i.singleton_seconds::float8))
    END,
    COALESCE(i.expire_seconds, q.expire_seconds),
    COALESCE(i.deletion_seconds, q.deletion_seconds),
    COALESCE(i.keep_until, i.start_after + COALESCE(i.retention_seconds, q.retention_seconds) * interval '1s'),
    COALESCE(i.retry_limit, q.retry_limit),
    COALESCE(i.retry_delay, q.retry_delay),
    COALESCE(i.retry_backoff, q.retry_backoff),
    COALESCE(i.retry_delay_max, q.retry_delay_max),
    q.policy,
    COALESCE(i.dead_letter, q.dead_letter)/*if:heartbeat*/,
    COALESCE(i.heartbeat_seconds, q.heartbeat_seconds)/*end*/
    /*if:group*/, i.group_id, i.group_tier/*end*/
  FROM input i
  JOIN {schema}.queue q ON q.name = %(name)s
  ON CONFLICT DO NOTHING
  RETURNING id, start_after
),
notified AS (
  SELECT pg_notify(%(channel)s, %(name)s) FROM inserted WHERE start_after <= {now} LIMIT 1
)
SELECT COALESCE(array_agg(id::text), '{}'::text[]) AS ids FROM inserted WHERE (SELECT count(*) FROM notified) >= 0

-- name: lock_concurrency_slots
-- Serialise fetchers of queues with a global concurrency limit, so counting active jobs cannot race.
SELECT pg_advisory_xact_lock(hashtextextended(%(lock_prefix)s || n, 0)) FROM unnest(%(names)s::text[]) AS n

-- name: fetch_jobs
-- Lock the next runnable jobs of some queues (priority, then age) and mark them active, as pg-boss fetch does.
WITH queues AS (
  -- CASE, not a filtered LATERAL: the planner ran that count of active jobs for every queue, limit or not.
  SELECT n.name,
    CASE WHEN %(limits)s::jsonb ? n.name THEN GREATEST(0, (%(limits)s::jsonb ->> n.name)::int - (
      SELECT count(*) FROM {schema}.job a WHERE a.name = n.name AND a.state = 'active'))::int END AS cap
  FROM unnest(%(names)s::text[]) AS n(name)
),
candidates AS (
  SELECT c.tid, c.ctid, c.name, c.id, c.priority, c.created_on,
    -- singleton/stately: one active job per key, so at most one per key in a batch (pg-boss 12.38)
    CASE WHEN c.policy IN ('singleton', 'stately') THEN row_number() OVER (
      PARTITION BY c.name, c.policy, COALESCE(c.singleton_key, '') ORDER BY c.priority DESC, c.created_on)
    ELSE 1 END AS key_rank
  FROM queues q
  CROSS JOIN LATERAL (
    SELECT j.tableoid AS tid, j.ctid, j.name, j.id, j.priority, j.created_on, j.policy, j.singleton_key
    FROM {schema}.job j
    WHERE j.name = q.name
      AND j.state < 'active'
      /*if:blocked*/AND NOT j.blocked/*end*/
      AND j.start_after <= {now}
      -- a key whose active slot is taken is skipped, not left to fail on job_i2/job_i3
      AND (j.policy IS NULL OR j.policy NOT IN ('singleton', 'stately') OR NOT EXISTS (
        SELECT 1 FROM {schema}.job s
        WHERE s.name = j.name AND s.state = 'active' AND s.policy = j.policy
          AND COALESCE(s.singleton_key, '') = COALESCE(j.singleton_key, '')))
    ORDER BY j.priority DESC, j.created_on
    LIMIT LEAST(%(batch_size)s, COALESCE(q.cap, %(batch_size)s))
    FOR UPDATE OF j SKIP LOCKED
  ) c
),
next AS (
  SELECT tid, ctid FROM candidates WHERE key_rank = 1 ORDER BY priority DESC, created_on LIMIT %(batch_size)s
),
{_claim_next}

-- name: fetch_plain_jobs
-- fetch_jobs for queues whose policy needs no per-key check (standard, short, exclusive) and that have no concurrency limit: no window over the batch and no singleton probe, about 0.1-0.2 ms less per fetch. pg-boss too picks its fetch statement by the queue's policy, which cannot change after creation.
WITH next AS (
  SELECT c.tid, c.ctid
  FROM unnest(%(names)s::text[]) AS n(name)
  CROSS JOIN LATERAL (
    SELECT j.tableoid AS tid, j.ctid, j.priority, j.created_on
    FROM {schema}.job j
    WHERE j.name = n.name
      AND j.state < 'active'
      /*if:blocked*/AND NOT j.blocked/*end*/
      AND j.start_after <= {now}
    ORDER BY j.priority DESC, j.created_on
    LIMIT %(batch_size)s
    FOR UPDATE OF j SKIP LOCKED
  ) c
  ORDER BY c.priority DESC, c.created_on
  LIMIT %(batch_size)s
),
{_claim_next}

-- name: _claim_next
-- Shared by fetch_jobs and fetch_plain_jobs: mark the rows of CTE next (locked by the caller) active and return them.
-- The 'active' notices go out only while a LISTEN session wants them (a result waiter, an SSE hub): it
-- holds advisory lock state_presence shared (transport.listener). Every NOTIFY signals every listening
-- session of the database at commit, which an idle worker's pickup pays for. A claim that takes the lock
-- exclusively has no one to tell, and holds it until its commit, so a session that starts holding it
-- meanwhile waits for that commit: what it reads afterwards shows the claim.
updated AS (
UPDATE {schema}.job j SET
  state = 'active',
  started_on = {now},
  /*if:heartbeat*/heartbeat_on = {now},/*end*/
  retry_count = CASE WHEN j.started_on IS NOT NULL THEN j.retry_count + 1 ELSE j.retry_count END
FROM next
-- The locked row itself (a TID scan), not a key lookup: a generic plan made while the table was
-- empty looked (name, id) up through an index on name alone, scanning the whole queue per fetch.
WHERE j.tableoid = next.tid AND j.ctid = next.ctid
-- In transport.jobrows.FetchedJob's order: the fetch reads its rows as tuples.
RETURNING j.id, j.name, j.data, j.priority, j.retry_count, j.retry_limit, j.expire_seconds,
  /*if:heartbeat*/j.heartbeat_seconds/*else*/NULL::int AS heartbeat_seconds/*end*/,
  j.created_on, j.start_after, j.keep_until, j.singleton_key
),
notified AS (
  SELECT pg_notify(%(state_channel)s, id::text || ' active') FROM updated
  WHERE NOT pg_try_advisory_xact_lock(%(state_presence)s)
)
SELECT * FROM updated WHERE (SELECT count(*) FROM notified) >= 0

-- name: next_start_after
-- When the earliest not-yet-runnable job of some queues becomes runnable.
SELECT min(start_after) AS at FROM {schema}.job
WHERE name = ANY(%(names)s::text[]) AND state < 'active' /*if:blocked*/AND NOT blocked/*end*/ AND start_after > {now}

-- name: complete_jobs
-- Complete active jobs with their outputs, each fenced on the attempt (retry_count) that ran it.
WITH input AS (
  SELECT * FROM jsonb_to_recordset(%(jobs)s::text::jsonb) AS x (id uuid, retry_count int, output jsonb, ignored bool)
),
results AS (
  UPDATE {schema}.job j SET completed_on = {now}, state = 'completed', output = i.output,
    -- a Celery result the task ignores: say so in the envelope, so any reader finds it PENDING
    data = CASE WHEN i.ignored AND jsonb_typeof(j.data -> '__celery') = 'object'
      THEN jsonb_set(j.data, '{__celery,headers}',
        COALESCE(j.data #> '{__celery,headers}', '{}'::jsonb) || '{"ignore_result": true}'::jsonb)
      ELSE j.data END
  FROM input i
  WHERE j.name = %(name)s AND j.id = i.id AND j.state = 'active'
    AND (i.retry_count IS NULL OR j.retry_count = i.retry_count)
  RETURNING j.id, j.state
),
{_notify_states}
SELECT id FROM results WHERE (SELECT count(*) FROM notified) >= 0

-- name: _announce
-- Shared CTE: the jobs of CTE made_runnable (name, start_after) are news to their queues' consumers in
-- every worker. Runnable now: pg-boss's insert channel (they fetch); later: a timer notice on the
-- transport's channel (they set a timer). Identical notifications of one transaction are delivered
-- once, so a queue hears once per statement.
announced AS (
  SELECT pg_notify(CASE WHEN start_after <= {now} THEN %(wake_channel)s ELSE %(timer_channel)s END,
    CASE WHEN start_after <= {now} THEN name ELSE %(timer_notice)s || name END)
  FROM made_runnable
),

-- name: _notify_states
-- Shared CTE: tell LISTENers of the zeke state channel (SSE streams, result waiters) which jobs moved.
notified AS (
  SELECT pg_notify(%(state_channel)s, id::text || ' ' || state::text) FROM results
)

-- name: _fail_body
-- Shared tail of every failure: delete the doomed rows and re-insert them as retry (with pg-boss's backoff) or failed, plus the dead-letter copy.
-- Parameter retry = false fails for good whatever retries remain (a payload that can never validate).
deleted AS (
  DELETE FROM {schema}.job j USING doomed d
  WHERE j.name = d.name AND j.id = d.id AND j.state < 'completed'
  RETURNING j.*
),
retried AS (
  INSERT INTO {schema}.job ({copy_columns}, state, start_after, completed_on, output/*if:heartbeat*/, heartbeat_on/*end*/)
  SELECT {copy_columns},
    CASE WHEN retry_count < retry_limit AND %(retry)s THEN 'retry'::{schema}.job_state ELSE 'failed'::{schema}.job_state END,
    CASE WHEN retry_count = retry_limit OR NOT %(retry)s THEN start_after
         WHEN NOT retry_backoff THEN {now} + retry_delay * interval '1s'
         ELSE {now} + LEAST(retry_delay_max, GREATEST(retry_delay, 1) * (
           2 ^ LEAST(16, retry_count + 1) / 2 + 2 ^ LEAST(16, retry_count + 1) / 2 * random()
         )) * interval '1s'
    END,
    CASE WHEN retry_count < retry_limit AND %(retry)s THEN NULL ELSE {now} END,
    %(output)s::jsonb/*if:heartbeat*/,
    NULL/*end*/
  FROM deleted
  ON CONFLICT DO NOTHING
  RETURNING *
),
failed AS (
  -- A stately queue may refuse the retry row: then the job fails at once, as pg-boss does.
  INSERT INTO {schema}.job ({copy_columns}, state, start_after, completed_on, output/*if:heartbeat*/, heartbeat_on/*end*/)
  SELECT {copy_columns}, 'failed'::{schema}.job_state, start_after, {now}, %(output)s::jsonb/*if:heartbeat*/, NULL/*end*/
  FROM deleted
  WHERE id NOT IN (SELECT id FROM retried)
  RETURNING *
),
results AS (
  SELECT * FROM retried UNION ALL SELECT * FROM failed
),
dead_lettered AS (
  INSERT INTO {schema}.job (name, data, retry_limit, retry_backoff, retry_delay, start_after, created_on,
    keep_until, deletion_seconds, expire_seconds
    /*if:heartbeat*/, heartbeat_seconds/*end*/
    /*if:source*/, source_name, source_id, source_created_on, source_retry_count/*end*/
    /*if:job_now*/, priority, singleton_key, group_id, group_tier/*end*/
    /*if:source_output*/, source_output, source_root_id/*else*/, output/*end*/)
  SELECT r.dead_letter, r.data, q.retry_limit, q.retry_backoff, q.retry_delay, {now}, {now},
    {now} + q.retention_seconds * interval '1s', q.deletion_seconds, q.expire_seconds
    /*if:heartbeat*/, q.heartbeat_seconds/*end*/
    /*if:source*/, r.name, r.id, r.created_on, r.retry_count/*end*/
    /*if:job_now*/, r.priority, r.singleton_key, r.group_id, r.group_tier/*end*/
    /*if:source_output*/, r.output, COALESCE(r.source_root_id, r.id)/*else*/, r.output/*end*/
  FROM results r
  JOIN {schema}.queue q ON q.name = r.dead_letter
  WHERE r.state = 'failed' AND r.dead_letter IS NOT NULL AND r.dead_letter <> r.name
),
made_runnable AS (
  SELECT name, start_after FROM retried WHERE state = 'retry'
),
{_announce}
{_notify_states}
SELECT id, state, start_after, retry_count FROM results
WHERE (SELECT count(*) FROM notified) >= 0 AND (SELECT count(*) FROM announced) >= 0

-- name: fail_jobs
-- Fail jobs by id (any unfinished state), optionally fenced on the attempt that ran them.
WITH doomed AS (
  SELECT j.name, j.id FROM {schema}.job j
  LEFT JOIN json_to_recordset(%(attempts)s::text::json) AS a (id uuid, retry_count int) ON a.id = j.id
  WHERE j.name = %(name)s AND j.id = ANY(%(ids)s::uuid[]) AND j.state < 'completed'
    AND (a.id IS NULL OR (j.state = 'active' AND j.retry_count = a.retry_count))
),
{_fail_body}

-- name: expire_jobs
-- Fail a batch of active jobs that ran past expire_seconds (pg-boss's supervisor "job timed out").
WITH doomed AS (
  SELECT name, id FROM {schema}.job
  WHERE name = ANY(%(names)s::text[]) AND state = 'active'
    AND started_on + expire_seconds * interval '1s' < {now}
  LIMIT %(limit)s
),
{_fail_body}

-- name: fail_lost_heartbeats
-- Fail a batch of active jobs whose heartbeat is older than heartbeat_seconds.
WITH doomed AS (
  SELECT name, id FROM {schema}.job
  WHERE name = ANY(%(names)s::text[]) AND state = 'active'
    /*if:heartbeat*/AND heartbeat_seconds IS NOT NULL AND heartbeat_on + heartbeat_seconds * interval '1s' < {now}/*else*/AND false/*end*/
  LIMIT %(limit)s
),
{_fail_body}

-- name: retry_in_place
-- Move an active job back to retry at a chosen time with new data (Celery's Task.retry keeps the task id), fenced on the attempt that asks when it is known.
WITH results AS (
  UPDATE {schema}.job j SET
    state = 'retry',
    start_after = %(start_after)s::timestamptz,
    keep_until = GREATEST(j.keep_until, %(start_after)s::timestamptz + (j.keep_until - j.start_after)),
    data = %(data)s::jsonb,
    output = %(output)s::jsonb,
    -- the attempt Celery asked for is allowed: retry_count stays within retry_limit
    retry_limit = GREATEST(j.retry_limit, j.retry_count + 1)
    /*if:heartbeat*/, heartbeat_on = NULL/*end*/
  WHERE j.name = %(name)s AND j.id = %(id)s::uuid AND j.state = 'active'
    AND (%(retry_count)s::int IS NULL OR j.retry_count = %(retry_count)s::int)
  RETURNING j.id, j.state, j.name, j.start_after
),
made_runnable AS (SELECT name, start_after FROM results),
{_announce}
{_notify_states}
SELECT id FROM results WHERE (SELECT count(*) FROM notified) >= 0 AND (SELECT count(*) FROM announced) >= 0

-- name: renew_replaced
-- Reopen the completed row of a task Celery replaced (its output marks it so) for the replacement's final task, which inherits the id: runnable again with the new data, announced like any runnable job.
WITH results AS (
  UPDATE {schema}.job j SET
    state = 'created',
    start_after = GREATEST(%(start_after)s::timestamptz, {now}),
    keep_until = GREATEST(j.keep_until, %(start_after)s::timestamptz + (j.keep_until - j.start_after)),
    data = %(data)s::jsonb,
    output = NULL,
    retry_count = 0,
    started_on = NULL,
    completed_on = NULL
    /*if:heartbeat*/, heartbeat_on = NULL/*end*/
  WHERE j.name = %(name)s AND j.id = %(id)s::uuid AND j.state = 'completed'
    AND j.output -> '__celery' ->> 'replaced' = 'true'
  RETURNING j.id, j.state, j.name, j.start_after
),
made_runnable AS (SELECT name, start_after FROM results),
{_announce}
{_notify_states}
SELECT id FROM results WHERE (SELECT count(*) FROM notified) >= 0 AND (SELECT count(*) FROM announced) >= 0

-- name: set_retry_output
-- Record why a job waiting in retry is retried (Celery's self.retry(exc=...)), fenced on the attempt that asked.
WITH results AS (
  UPDATE {schema}.job j SET output = %(output)s::jsonb
  WHERE j.name = %(name)s AND j.id = %(id)s::uuid AND j.state = 'retry'
    AND (%(retry_count)s::int IS NULL OR j.retry_count = %(retry_count)s::int)
  RETURNING j.id, j.state
),
{_notify_states}
SELECT id FROM results WHERE (SELECT count(*) FROM notified) >= 0

-- name: list_scheduled_jobs
-- Jobs of some queues waiting for a later start_after (Celery's ETA tasks held by the database), soonest first.
SELECT * FROM {schema}.job
WHERE name = ANY(%(names)s::text[]) AND state < 'active' /*if:blocked*/AND NOT blocked/*end*/ AND start_after > {now}
ORDER BY start_after, priority DESC
LIMIT %(limit)s

-- name: touch_jobs
-- Refresh heartbeat_on of active jobs; returns the ids still active.
UPDATE {schema}.job SET /*if:heartbeat*/heartbeat_on = {now}/*else*/state = state/*end*/
WHERE name = %(name)s AND id = ANY(%(ids)s::uuid[]) AND state = 'active'
RETURNING id

-- name: cancel_jobs
-- Cancel created, retry or active jobs.
WITH results AS (
  UPDATE {schema}.job SET completed_on = {now}, state = 'cancelled'
  WHERE name = %(name)s AND id = ANY(%(ids)s::uuid[]) AND state < 'completed'
  RETURNING id, state
),
{_notify_states}
SELECT id FROM results WHERE (SELECT count(*) FROM notified) >= 0

-- name: resume_jobs
-- Put cancelled jobs back in the queue.
WITH results AS (
  UPDATE {schema}.job SET completed_on = NULL, state = 'created', start_after = GREATEST(start_after, {now})
    /*if:upsert*/, upsert_by_key = NULL/*end*/
  WHERE name = %(name)s AND id = ANY(%(ids)s::uuid[]) AND state = 'cancelled'
  RETURNING id, state, name, start_after
),
made_runnable AS (SELECT name, start_after FROM results),
{_announce}
{_notify_states}
SELECT id FROM results WHERE (SELECT count(*) FROM notified) >= 0 AND (SELECT count(*) FROM announced) >= 0

-- name: retry_jobs
-- Give failed jobs one more attempt (pg-boss retry()).
WITH results AS (
  UPDATE {schema}.job SET state = 'retry', retry_limit = retry_limit + 1, completed_on = NULL,
    start_after = GREATEST(start_after, {now})
  WHERE name = %(name)s AND id = ANY(%(ids)s::uuid[]) AND state = 'failed'
  RETURNING id, state, name, start_after
),
made_runnable AS (SELECT name, start_after FROM results),
{_announce}
{_notify_states}
SELECT id FROM results WHERE (SELECT count(*) FROM notified) >= 0 AND (SELECT count(*) FROM announced) >= 0

-- name: restore_jobs
-- Hand active jobs back untouched (a worker's warm shutdown): created, as if never fetched.
WITH results AS (
  UPDATE {schema}.job SET state = 'created', started_on = NULL/*if:heartbeat*/, heartbeat_on = NULL/*end*/
  WHERE name = %(name)s AND id = ANY(%(ids)s::uuid[]) AND state = 'active'
    AND (%(retry_count)s::int IS NULL OR retry_count = %(retry_count)s::int)
  RETURNING id, state, name, start_after
),
made_runnable AS (SELECT name, start_after FROM results),
{_announce}
{_notify_states}
SELECT id FROM results WHERE (SELECT count(*) FROM notified) >= 0 AND (SELECT count(*) FROM announced) >= 0

-- name: delete_jobs
-- Delete jobs by id.
DELETE FROM {schema}.job WHERE name = %(name)s AND id = ANY(%(ids)s::uuid[]) RETURNING id

-- name: get_job
-- One job by id; the queue is found through the primary key (name, id) of every queue. Newest first: a Celery task replaced (Task.replace) on another queue leaves two rows with its id.
SELECT j.* FROM {schema}.queue q
JOIN {schema}.job j ON j.name = q.name AND j.id = %(id)s::uuid
ORDER BY j.created_on DESC

-- name: get_jobs
-- Several jobs by id, in any queues.
SELECT j.* FROM {schema}.queue q
JOIN {schema}.job j ON j.name = q.name AND j.id = ANY(%(ids)s::uuid[])

-- name: delete_finished_jobs
-- pg-boss deletion: finished jobs past deletion_seconds, and queued jobs past keep_until.
WITH doomed AS (
  SELECT name, id FROM {schema}.job
  WHERE name = ANY(%(names)s::text[]) AND (
    (deletion_seconds > 0 AND completed_on + deletion_seconds * interval '1s' < {now})
    OR (state < 'active' AND keep_until < {now}))
  LIMIT %(limit)s
)
DELETE FROM {schema}.job j USING doomed d WHERE j.name = d.name AND j.id = d.id

-- name: count_ready_jobs
-- Jobs of a queue that could be fetched now.
SELECT count(*) AS n FROM {schema}.job
WHERE name = %(name)s AND state < 'active' /*if:blocked*/AND NOT blocked/*end*/ AND start_after <= {now}

-- name: purge_queued_jobs
-- Delete a queue's jobs that have not started.
DELETE FROM {schema}.job WHERE name = %(name)s AND state < 'active'

-- name: count_jobs_by_state
-- Job counts per queue and state.
SELECT name, state::text AS state, count(*) AS n FROM {schema}.job
WHERE %(name)s::text IS NULL OR name = %(name)s
GROUP BY name, state ORDER BY name, state

-- name: list_jobs
-- Recent jobs, newest first, optionally of one state and queue.
SELECT * FROM {schema}.job
WHERE (%(state)s::text IS NULL OR state::text = %(state)s) AND (%(name)s::text IS NULL OR name = %(name)s)
ORDER BY created_on DESC
LIMIT %(limit)s
