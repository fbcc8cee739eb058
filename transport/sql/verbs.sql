-- The rest of pg-boss 12.38's public API (transport.verbs, mixed into JobManager): pub/sub,
-- queue edits, job search, bulk deletes, in-place job edits and the flow reads.

-- name: subscribe
-- pg-boss subscribe(event, name): the queue hears the event from now on (idempotent).
INSERT INTO {schema}.subscription (event, name, created_on, updated_on)
VALUES (%(event)s, %(name)s, {now}, {now})
ON CONFLICT (event, name) DO UPDATE SET updated_on = {now}

-- name: unsubscribe
-- pg-boss unsubscribe(event, name).
DELETE FROM {schema}.subscription WHERE event = %(event)s AND name = %(name)s

-- name: queues_for_event
-- The queues publish(event) sends to.
SELECT name FROM {schema}.subscription WHERE event = %(event)s ORDER BY name

-- name: update_queue
-- pg-boss updateQueue: only the options given (keys of the JSON, Node's camelCase) change; a present null clears retryDelayMax, heartbeatSeconds and deadLetter. Returns the queue's name when it exists.
WITH o AS (SELECT %(options)s::jsonb AS data)
UPDATE {schema}.queue SET
  retry_limit = COALESCE((o.data->>'retryLimit')::int, retry_limit),
  retry_delay = COALESCE((o.data->>'retryDelay')::int, retry_delay),
  retry_backoff = COALESCE((o.data->>'retryBackoff')::bool, retry_backoff),
  retry_delay_max = CASE WHEN o.data ? 'retryDelayMax' THEN (o.data->>'retryDelayMax')::int ELSE retry_delay_max END,
  expire_seconds = COALESCE((o.data->>'expireInSeconds')::int, expire_seconds),
  retention_seconds = COALESCE((o.data->>'retentionSeconds')::int, retention_seconds),
  deletion_seconds = COALESCE((o.data->>'deleteAfterSeconds')::int, deletion_seconds),
  warning_queued = COALESCE((o.data->>'warningQueueSize')::int, warning_queued),
  /*if:heartbeat*/heartbeat_seconds = CASE WHEN o.data ? 'heartbeatSeconds' THEN (o.data->>'heartbeatSeconds')::int ELSE heartbeat_seconds END,/*end*/
  /*if:notify*/notify = COALESCE((o.data->>'notify')::bool, notify),/*end*/
  dead_letter = CASE WHEN o.data ? 'deadLetter' THEN o.data->>'deadLetter' ELSE dead_letter END,
  updated_on = {now}
FROM o
WHERE name = %(name)s
RETURNING name

-- name: find_jobs
-- pg-boss findJobs: a queue's jobs by id, singleton key, data containment (@>) and/or not yet active, in (created_on, id) order, paged after a job.
SELECT j.* FROM {schema}.job j
WHERE j.name = %(name)s
  AND (%(id)s::uuid IS NULL OR j.id = %(id)s::uuid)
  AND (%(key)s::text IS NULL OR j.singleton_key = %(key)s::text)
  AND (%(data)s::text IS NULL OR j.data @> %(data)s::text::jsonb)
  AND (NOT %(queued)s OR j.state < 'active')
  AND (%(after_created)s::timestamptz IS NULL
    OR (j.created_on, j.id) > (%(after_created)s::timestamptz, %(after_id)s::uuid))
ORDER BY j.created_on, j.id
LIMIT %(limit)s

-- name: find_jobs_anchor
-- When the job a findJobs page ends on was created (no row: it was deleted since).
SELECT created_on FROM {schema}.job WHERE name = %(name)s AND id = %(id)s::uuid

-- name: delete_jobs_in_states
-- One batch of pg-boss deleteQueuedJobs / deleteStoredJobs / deleteAllJobs for one queue: delete up to batch of its jobs in the given states, then take them off the queue's cached total (and retained) counts at once, as Node does. Returns how many went; the caller repeats while a batch is full, so no transaction holds more than a batch of row locks.
WITH removed AS (
  DELETE FROM {schema}.job
  WHERE name = %(name)s AND id IN (
    SELECT id FROM {schema}.job WHERE name = %(name)s AND state::text = ANY(%(states)s::text[]) LIMIT %(batch)s)
    AND state::text = ANY(%(states)s::text[])
  RETURNING state, completed_on
),
counted AS (
  UPDATE {schema}.queue q SET
    /*if:retained*/retained_count = CASE WHEN q.retained_count IS NULL THEN NULL ELSE GREATEST(q.retained_count - (
      SELECT count(*) FROM removed r WHERE r.state IN ('completed', 'cancelled') AND r.completed_on <= q.retained_on)::int, 0) END,/*end*/
    total_count = GREATEST(q.total_count - (SELECT count(*) FROM removed)::int, 0)
  WHERE q.name = %(name)s AND EXISTS (SELECT 1 FROM removed)
  RETURNING 1
)
SELECT (SELECT count(*) FROM removed)::int AS deleted WHERE (SELECT count(*) FROM counted) >= 0

-- name: get_blocked_keys
-- pg-boss getBlockedKeys: a key_strict_fifo queue's keys held back by a failed job, in order, paged after a key.
SELECT DISTINCT singleton_key FROM {schema}.job
WHERE name = %(name)s AND state = 'failed' AND policy = 'key_strict_fifo'
  AND (%(after)s::text IS NULL OR singleton_key > %(after)s::text)
ORDER BY singleton_key
LIMIT %(limit)s

-- name: get_dependencies
-- pg-boss getDependencies: the jobs (name, id) a flow job waits for, paged after one.
SELECT parent_name AS name, parent_id::text AS id FROM {schema}.job_dependency
WHERE child_name = %(name)s AND child_id = %(id)s::uuid
  AND (%(after_name)s::text IS NULL OR (parent_name, parent_id) > (%(after_name)s::text, %(after_id)s::uuid))
ORDER BY parent_name, parent_id
LIMIT %(limit)s

-- name: get_dependents
-- pg-boss getDependents: the jobs (name, id) that wait for a flow job, paged after one.
SELECT child_name AS name, child_id::text AS id FROM {schema}.job_dependency
WHERE parent_name = %(name)s AND parent_id = %(id)s::uuid
  AND (%(after_name)s::text IS NULL OR (child_name, child_id) > (%(after_name)s::text, %(after_id)s::uuid))
ORDER BY child_name, child_id
LIMIT %(limit)s

-- name: update_jobs
-- pg-boss update(): edit not-yet-active jobs in place, found by id or by singleton key (newest, oldest or all); only the keys present in the JSON change (Node's camelCase names). A new startAfter moves keep_until with it. NOTIFY when an edited job is runnable.
WITH o AS (SELECT %(job)s::jsonb AS data),
target AS (
  SELECT j.id FROM {schema}.job j, o
  WHERE j.name = %(name)s AND j.state < 'active'
    AND CASE WHEN %(by_id)s THEN j.id = (o.data->>'id')::uuid ELSE j.singleton_key = o.data->>'singletonKey' END
  ORDER BY CASE WHEN %(match)s = 'oldest' THEN j.created_on END ASC,
    CASE WHEN %(match)s = 'newest' THEN j.created_on END DESC
  LIMIT CASE WHEN %(by_id)s OR %(match)s = 'all' THEN NULL ELSE 1 END
),
upd AS (
  UPDATE {schema}.job j SET
    data = CASE WHEN o.data ? 'data' THEN o.data->'data' ELSE j.data END,
    priority = COALESCE((o.data->>'priority')::int, j.priority),
    start_after = CASE WHEN o.data ? 'startAfterAt' THEN (o.data->>'startAfterAt')::timestamptz
      WHEN o.data ? 'startAfterSeconds' THEN {now} + (o.data->>'startAfterSeconds')::float8 * interval '1s'
      ELSE j.start_after END,
    keep_until = CASE
      WHEN o.data ? 'retentionSeconds' THEN (CASE WHEN o.data ? 'startAfterAt' THEN (o.data->>'startAfterAt')::timestamptz
        WHEN o.data ? 'startAfterSeconds' THEN {now} + (o.data->>'startAfterSeconds')::float8 * interval '1s'
        ELSE j.start_after END) + (o.data->>'retentionSeconds')::int * interval '1s'
      WHEN o.data ? 'startAfterAt' THEN (o.data->>'startAfterAt')::timestamptz + (j.keep_until - j.start_after)
      WHEN o.data ? 'startAfterSeconds' THEN {now} + (o.data->>'startAfterSeconds')::float8 * interval '1s' + (j.keep_until - j.start_after)
      ELSE j.keep_until END,
    expire_seconds = COALESCE((o.data->>'expireInSeconds')::int, j.expire_seconds),
    deletion_seconds = COALESCE((o.data->>'deleteAfterSeconds')::int, j.deletion_seconds),
    retry_limit = COALESCE((o.data->>'retryLimit')::int, j.retry_limit),
    retry_delay = COALESCE((o.data->>'retryDelay')::int, j.retry_delay),
    retry_backoff = COALESCE((o.data->>'retryBackoff')::bool, j.retry_backoff),
    retry_delay_max = CASE WHEN o.data ? 'retryDelayMax' THEN (o.data->>'retryDelayMax')::int ELSE j.retry_delay_max END,
    dead_letter = CASE WHEN o.data ? 'deadLetter' THEN o.data->>'deadLetter' ELSE j.dead_letter END
    /*if:heartbeat*/, heartbeat_seconds = CASE WHEN o.data ? 'heartbeatSeconds' THEN (o.data->>'heartbeatSeconds')::int ELSE j.heartbeat_seconds END/*end*/
    /*if:group*/, group_id = CASE WHEN o.data ? 'groupId' THEN o.data->>'groupId' ELSE j.group_id END,
    group_tier = CASE WHEN o.data ? 'groupTier' THEN o.data->>'groupTier' ELSE j.group_tier END/*end*/
  FROM o
  WHERE j.name = %(name)s AND j.id IN (SELECT id FROM target) AND j.state < 'active'
  RETURNING j.id, j.start_after
),
notified AS (
  SELECT pg_notify(%(channel)s, %(name)s) FROM upd WHERE start_after <= {now} LIMIT 1
)
SELECT id::text FROM upd WHERE (SELECT count(*) FROM notified) >= 0

-- name: mark_upsert_by_key
-- An upsert that inserted a job by singleton key marks it upsert_by_key (schema 45+), so job_i13 keeps one such created job per key, as Node's upsert insert does.
UPDATE {schema}.job SET upsert_by_key = true
WHERE name = %(name)s AND id = ANY(%(ids)s::uuid[]) AND state = 'created'

-- name: get_instances
-- pg-boss getInstances (schema 44+): the registered Node PgBoss objects, oldest first, paged after one; live = not stopped and heard from within quiet_beats heartbeats.
SELECT i.*, i.stopped_on IS NULL
    AND i.heartbeat_on >= {now} - i.heartbeat_seconds * %(quiet_beats)s * interval '1s' AS live
FROM {schema}.instance i
WHERE %(after)s::uuid IS NULL
  OR (i.started_on, i.id) > ((SELECT started_on FROM {schema}.instance WHERE id = %(after)s::uuid), %(after)s::uuid)
ORDER BY i.started_on, i.id
LIMIT %(limit)s

-- name: fetch_grouped_jobs
-- pg-boss fetch with groupConcurrency (schema 27+): claim up to batch_size runnable jobs of one queue, at most limits(group_tier) active per group_id at once (default_limit, or the tier's entry in tiers). Jobs without a group are not limited. Rows in transport.jobrows.FetchedJob's order.
WITH active_groups AS MATERIALIZED (
  SELECT COALESCE(jsonb_object_agg(group_id, n), '{}'::jsonb) AS counts FROM (
    SELECT group_id, count(*)::int AS n FROM {schema}.job
    WHERE name = %(name)s AND state = 'active' AND group_id IS NOT NULL
    GROUP BY group_id
  ) a
),
next AS (
  SELECT j.id, j.group_id,
    COALESCE(((SELECT counts FROM active_groups) ->> j.group_id)::int, 0) AS active_cnt,
    COALESCE((%(tiers)s::jsonb ->> j.group_tier)::int, %(default_limit)s) AS group_limit
  FROM {schema}.job j
  WHERE j.name = %(name)s
    AND j.state < 'active'
    /*if:blocked*/AND NOT j.blocked/*end*/
    AND j.start_after <= {now}
    AND (j.group_id IS NULL OR COALESCE(((SELECT counts FROM active_groups) ->> j.group_id)::int, 0)
      < COALESCE((%(tiers)s::jsonb ->> j.group_tier)::int, %(default_limit)s))
  ORDER BY j.priority DESC, j.created_on
  LIMIT %(batch_size)s
  FOR UPDATE OF j SKIP LOCKED
),
chosen AS (
  SELECT id FROM (
    SELECT id, group_id, active_cnt, group_limit,
      row_number() OVER (PARTITION BY group_id ORDER BY id) AS group_rn
    FROM next
  ) ranked
  WHERE group_id IS NULL OR active_cnt + group_rn <= group_limit
),
updated AS (
  UPDATE {schema}.job j SET
    state = 'active',
    started_on = {now},
    /*if:heartbeat*/heartbeat_on = {now},/*end*/
    retry_count = CASE WHEN j.started_on IS NOT NULL THEN j.retry_count + 1 ELSE j.retry_count END
  WHERE j.name = %(name)s AND j.id = ANY(ARRAY(SELECT id FROM chosen))
  RETURNING j.id, j.name, j.data, j.priority, j.retry_count, j.retry_limit, j.expire_seconds,
    /*if:heartbeat*/j.heartbeat_seconds/*else*/NULL::int AS heartbeat_seconds/*end*/,
    j.created_on, j.start_after, j.keep_until, j.singleton_key
),
-- only while a LISTEN session wants them, as in job.sql's _claim_next
notified AS (
  SELECT pg_notify(%(state_channel)s, id::text || ' active') FROM updated
  WHERE NOT pg_try_advisory_xact_lock(%(state_presence)s)
)
SELECT * FROM updated WHERE (SELECT count(*) FROM notified) >= 0

-- name: flow_mark_jobs
-- pg-boss flow(): the jobs just inserted for a flow wait for their pending_dependencies (blocked) and/or hold others back (blocking). Input: JSON [{id, blocked, blocking, pending}].
UPDATE {schema}.job j SET blocked = x.blocked, blocking = x.blocking, pending_dependencies = x.pending
FROM json_to_recordset(%(marks)s::text::json) AS x (id uuid, blocked bool, blocking bool, pending int)
WHERE j.name = %(name)s AND j.id = x.id

-- name: flow_insert_dependencies
-- pg-boss flow(): the edges child waits for parent.
INSERT INTO {schema}.job_dependency (child_name, child_id, parent_name, parent_id)
SELECT child_name, child_id, parent_name, parent_id
FROM json_to_recordset(%(edges)s::text::json) AS x (child_name text, child_id uuid, parent_name text, parent_id uuid)
ON CONFLICT DO NOTHING

-- name: _redrive_where
-- Shared filter of redrive_jobs and preview_redrive: a dead letter queue's waiting jobs (not a key_strict_fifo key still held back by an active, retrying or failed job), narrowed by source queue, data containment, age and ids.
j.name = %(name)s
  AND j.state < 'active'
  AND NOT EXISTS (
    SELECT 1 FROM {schema}.job k
    WHERE j.policy = 'key_strict_fifo' AND k.name = j.name AND k.singleton_key = j.singleton_key
      AND k.policy = 'key_strict_fifo' AND k.state IN ('active', 'retry', 'failed'))
  AND (%(source_name)s::text IS NULL OR j.source_name = %(source_name)s::text)
  AND (%(data)s::text IS NULL OR j.data @> %(data)s::text::jsonb)
  AND (%(created_before)s::timestamptz IS NULL OR j.created_on < %(created_before)s::timestamptz)
  AND (%(ids)s::uuid[] IS NULL OR j.id = ANY(%(ids)s::uuid[]))

-- name: redrive_jobs
-- pg-boss redrive (schema 43+): move up to limit waiting jobs out of a dead letter queue, oldest first, re-created as new jobs (new id, retry_count 0, the destination queue's current settings; priority, key and group kept; source_root_id carries the chain's first job) in their source queue or the destination given. A job the destination refuses (a policy conflict) is failed in place with the reason. Returns how many moved.
WITH candidates AS (
  SELECT j.id, gen_random_uuid() AS new_id
  FROM {schema}.job j
  JOIN {schema}.queue q ON q.name = COALESCE(%(destination)s::text, j.source_name)
  WHERE {_redrive_where}
  ORDER BY j.created_on
  LIMIT %(limit)s
  FOR UPDATE OF j SKIP LOCKED
),
ins AS (
  INSERT INTO {schema}.job (id, name, data, priority, retry_limit, retry_backoff, retry_delay, retry_delay_max,
    expire_seconds, start_after, created_on, keep_until, deletion_seconds, policy, singleton_key, group_id, group_tier,
    heartbeat_seconds, dead_letter, source_root_id)
  SELECT c.new_id, q.name, m.data, m.priority, q.retry_limit, q.retry_backoff, q.retry_delay, q.retry_delay_max,
    q.expire_seconds, {now}, {now}, {now} + q.retention_seconds * interval '1s', q.deletion_seconds, q.policy,
    m.singleton_key, m.group_id, m.group_tier, q.heartbeat_seconds, q.dead_letter, COALESCE(m.source_root_id, m.source_id)
  FROM candidates c
  JOIN {schema}.job m ON m.name = %(name)s AND m.id = c.id
  JOIN {schema}.queue q ON q.name = COALESCE(%(destination)s::text, m.source_name)
  ORDER BY m.created_on
  ON CONFLICT DO NOTHING
  RETURNING id, name, start_after
),
settled AS (
  SELECT c.id, (i.id IS NOT NULL) AS inserted FROM candidates c LEFT JOIN ins i ON i.id = c.new_id
),
removed AS (
  DELETE FROM {schema}.job WHERE name = %(name)s AND id IN (SELECT id FROM settled WHERE inserted)
),
conflicted AS (
  UPDATE {schema}.job j SET
    state = 'failed',
    completed_on = {now},
    source_output = COALESCE(j.source_output, j.output),
    output = jsonb_build_object(
      'message', 'Not redriven: queue ' || q.name || CASE
        WHEN j.singleton_key IS NULL THEN ' already has a job this one conflicts with'
        ELSE ' already has a job with singletonKey ' || j.singleton_key
      END || ' under its ' || COALESCE(q.policy, 'standard') || ' policy',
      'reason', 'redrive_conflict', 'destination', q.name, 'policy', q.policy, 'singletonKey', j.singleton_key)
  FROM settled s, {schema}.queue q
  WHERE j.name = %(name)s AND j.id = s.id AND NOT s.inserted
    AND q.name = COALESCE(%(destination)s::text, j.source_name)
    -- two failed key_strict_fifo jobs of one key would break job_i8: only the oldest is failed
    AND (j.policy IS DISTINCT FROM 'key_strict_fifo' OR j.singleton_key IS NULL OR j.id IN (
      SELECT DISTINCT ON (m.singleton_key) m.id FROM {schema}.job m
      WHERE m.name = %(name)s AND m.id IN (SELECT id FROM settled WHERE NOT inserted) AND m.policy = 'key_strict_fifo'
      ORDER BY m.singleton_key, m.created_on, m.id))
),
notified AS (
  -- one notice per queue (identical notices of a transaction are delivered once anyway)
  SELECT pg_notify(%(wake_channel)s, name) FROM ins WHERE start_after <= {now}
)
SELECT count(*)::int AS moved FROM ins WHERE (SELECT count(*) FROM notified) >= 0

-- name: preview_redrive
-- pg-boss previewRedrive: up to limit jobs a redrive would move (with the queue each lands in) and up to limit it would leave (no source and no destination, or the queue is gone).
(SELECT q.name AS destination FROM {schema}.job j
  LEFT JOIN {schema}.queue q ON q.name = COALESCE(%(destination)s::text, j.source_name)
  WHERE {_redrive_where} AND q.name IS NOT NULL LIMIT %(limit)s)
UNION ALL
(SELECT NULL AS destination FROM {schema}.job j
  LEFT JOIN {schema}.queue q ON q.name = COALESCE(%(destination)s::text, j.source_name)
  WHERE {_redrive_where} AND q.name IS NULL LIMIT %(limit)s)

-- name: count_queue_now
-- A queue's gauges counted from its jobs now, as pg-boss's monitor counts them (queued = not yet active; blocked = waiting on a flow; deferred/ready = the rest, by start_after). Read only: the cached counts on the queue row stay the monitor's.
SELECT
  (count(*) FILTER (WHERE state < 'active' /*if:blocked*/AND NOT blocked/*end*/ AND start_after > {now}))::int AS deferred_count,
  (count(*) FILTER (WHERE state < 'active' /*if:blocked*/AND blocked/*else*/AND false/*end*/))::int AS blocked_count,
  (count(*) FILTER (WHERE state < 'active'))::int AS queued_count,
  (count(*) FILTER (WHERE state < 'active' /*if:blocked*/AND NOT blocked/*end*/ AND start_after <= {now}))::int AS ready_count,
  (count(*) FILTER (WHERE state = 'active'))::int AS active_count,
  (count(*) FILTER (WHERE state = 'failed'))::int AS failed_count,
  count(*)::int AS total_count,
  {now} AS captured_on
FROM {schema}.job WHERE name = %(name)s
