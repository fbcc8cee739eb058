-- The supervisor's upkeep beyond job sweeps, written to leave a pg-boss schema as a Node pg-boss
-- supervisor of the same schema version leaves it: the queue statistics Node's getQueues(),
-- getQueueStats() and dashboard read, the retained count behind total_count, the flow resolver,
-- dependency rows of deleted jobs, and the instance registry's retention. Callers:
-- transport.upkeep.Upkeep (queue rows, registry) and transport.manager.JobManager (job rows).

-- name: _try_lock
-- pg-boss's advisory lock for %(schema)s + %(key)s, tried without waiting (a boolean).
pg_try_advisory_xact_lock(('x' || encode(sha224((current_database() || '.pgboss.' || %(schema)s || %(key)s)::bytea), 'hex'))::bit(64)::bigint)

-- name: cache_queue_stats
-- Count the queues' jobs into their queue rows under the "queue-stats" try-lock; no rows back when another supervisor holds it (46: that releases the monitor claim, so the next pass claims again).
WITH lock AS (
  SELECT {_try_lock} AS got
),
/*if:retained*/released AS (
  UPDATE {schema}.queue SET monitor_claim_on = NULL
  FROM (
    SELECT name FROM {schema}.queue
    WHERE name = ANY(%(names)s::text[]) AND NOT (SELECT got FROM lock)
    ORDER BY name FOR NO KEY UPDATE
  ) r
  WHERE queue.name = r.name
),
/*end*/counted AS (
  -- Schema 46 counts the live jobs only (the retained ones are kept apart); older ones count every row.
  SELECT j.name,
    count(*) FILTER (WHERE /*if:queue_ready*/j.state < 'active' AND /*end*//*if:queue_blocked*/NOT j.blocked AND /*end*/j.start_after > {now})::int AS deferred,
    /*if:queue_blocked*/count(*) FILTER (WHERE j.state < 'active' AND j.blocked)::int/*else*/0/*end*/ AS blocked,
    count(*) FILTER (WHERE j.state < 'active')::int AS queued,
    count(*) FILTER (WHERE j.state < 'active' /*if:queue_blocked*/AND NOT j.blocked /*end*/AND j.start_after <= {now})::int AS ready,
    count(*) FILTER (WHERE j.state = 'active')::int AS active,
    count(*) FILTER (WHERE j.state = 'failed')::int AS failed,
    count(*)::int AS total,
    array_agg(j.singleton_key) FILTER (WHERE j.state = 'active' AND j.policy IN ('singleton', 'stately')) AS singletons
  FROM {schema}.job j
  WHERE j.name = ANY(%(names)s::text[])
    /*if:retained*/AND j.state IN ('created', 'retry', 'active', 'failed')/*end*/
  GROUP BY j.name
),
stats AS (
  SELECT n.name, c.deferred, c.blocked, c.queued, c.ready, c.active, c.failed, c.total, c.singletons
    /*if:retained*/, r.retained_from, r.retained_since, r.retained_recent/*end*/
  FROM unnest(%(names)s::text[]) AS n(name)
  LEFT JOIN counted c ON c.name = n.name
  /*if:retained*/LEFT JOIN LATERAL (
    -- Completed and cancelled jobs since the queue's retained_on: up to 10 s ago (a completion stamped
    -- earlier but committed later is still ahead of the watermark), and the ones after that.
    SELECT q.retained_on AS retained_from,
      (SELECT count(*)::int FROM {schema}.job j
       WHERE j.name = q.name AND j.state IN ('completed', 'cancelled')
         AND j.completed_on > q.retained_on AND j.completed_on <= {now} - interval '10 seconds') AS retained_since,
      (SELECT count(*)::int FROM {schema}.job j
       WHERE j.name = q.name AND j.state IN ('completed', 'cancelled')
         AND j.completed_on > GREATEST(q.retained_on, {now} - interval '10 seconds') AND j.completed_on <= {now}) AS retained_recent
    FROM {schema}.queue q WHERE q.name = n.name
  ) r ON true/*end*/
  WHERE (SELECT got FROM lock)
)
UPDATE {schema}.queue SET
  deferred_count = COALESCE(s.deferred, 0),
  /*if:queue_blocked*/blocked_count = COALESCE(s.blocked, 0),/*end*/
  queued_count = COALESCE(s.queued, 0),
  /*if:queue_ready*/ready_count = COALESCE(s.ready, 0),
  failed_count = COALESCE(s.failed, 0),/*end*/
  active_count = COALESCE(s.active, 0),
  /*if:retained*/retained_count = CASE WHEN queue.retained_on IS NOT DISTINCT FROM s.retained_from
    THEN queue.retained_count + COALESCE(s.retained_since, 0) ELSE queue.retained_count END,
  retained_on = CASE WHEN queue.retained_on IS NOT DISTINCT FROM s.retained_from AND queue.retained_on IS NOT NULL
    THEN GREATEST(queue.retained_on, {now} - interval '10 seconds') ELSE queue.retained_on END,
  total_count = CASE
    WHEN queue.retained_count IS NULL THEN GREATEST(queue.total_count, COALESCE(s.total, 0))
    WHEN queue.retained_on IS NOT DISTINCT FROM s.retained_from
      THEN COALESCE(s.total, 0) + queue.retained_count + COALESCE(s.retained_since, 0) + COALESCE(s.retained_recent, 0)
    ELSE queue.total_count END,
  /*else*/total_count = COALESCE(s.total, 0),/*end*/
  /*if:ready_history*/ready_history = (
    -- The newest ready count first, then the previous samples, 60 at most.
    SELECT COALESCE(array_agg(h.v ORDER BY h.i), '{}'::int[])
    FROM (
      SELECT v, i FROM (
        SELECT COALESCE(s.ready, 0) AS v, 0::bigint AS i
        UNION ALL
        SELECT p.v, p.i FROM unnest(COALESCE(queue.ready_history, '{}'::int[])) WITH ORDINALITY AS p(v, i)
      ) merged
      ORDER BY i LIMIT 60
    ) h
  ),/*end*/
  /*if:monitor_claim*/monitor_on = {now},/*end*/
  singletons_active = s.singletons
FROM (
  -- Rows locked in name order, after the counts are done, as every multi-queue writer locks them.
  SELECT name FROM {schema}.queue
  WHERE name = ANY(%(names)s::text[]) AND (SELECT got FROM lock) AND (SELECT count(*) FROM stats) >= 0
  ORDER BY name FOR NO KEY UPDATE
) q
LEFT JOIN stats s ON s.name = q.name
WHERE queue.name = q.name
RETURNING queue.name, queue.queued_count, queue.warning_queued,
  EXTRACT(EPOCH FROM (clock_timestamp() - transaction_timestamp()))::float8 AS pin_seconds

-- name: monitor_backoff_active
-- Whether the vacuum-safety backoff a supervisor set is still in force (stats then wait; sweeps do not).
SELECT /*if:monitor_backoff*/EXISTS (SELECT 1 FROM {schema}.version WHERE monitor_backoff_on > {now})/*else*/false/*end*/ AS active

-- name: set_monitor_backoff
-- After a pass whose counting held a snapshot longer than a tenth of autovacuum_naptime, defer the next counting by max(2 naptimes, that time up to 600 s), 3600 s at most; the deadline only moves out. A row back when it engaged.
/*if:monitor_backoff*/WITH budget AS (
  SELECT naptime, LEAST(GREATEST(2 * naptime, LEAST(%(seconds)s::float8, 600)), 3600) AS backoff
  FROM (SELECT EXTRACT(EPOCH FROM current_setting('autovacuum_naptime')::interval)::float8 AS naptime) n
)
UPDATE {schema}.version v
SET monitor_backoff_on = GREATEST(COALESCE(v.monitor_backoff_on, {now}), {now} + make_interval(secs => b.backoff))
FROM budget b
WHERE %(seconds)s::float8 > 0.1 * b.naptime
RETURNING b.naptime AS naptime_seconds, EXTRACT(EPOCH FROM (v.monitor_backoff_on - {now}))::float8 AS backoff_seconds/*else*/SELECT 1 WHERE false/*end*/

-- name: set_retained_count
-- After a full deletion pass of a queue (schema 46): the completed and cancelled jobs it kept that finished 10 s ago or earlier become retained_count as of then, and total_count follows.
WITH mark AS (
  SELECT {now} - interval '10 seconds' AS before
),
kept AS (
  SELECT count(*)::int AS n FROM {schema}.job j, mark
  WHERE j.name = %(name)s AND j.state IN ('completed', 'cancelled') AND j.completed_on <= mark.before
)
UPDATE {schema}.queue
SET retained_count = kept.n, retained_on = mark.before,
  total_count = queued_count + active_count + failed_count + kept.n + (
    SELECT count(*)::int FROM {schema}.job j
    WHERE j.name = %(name)s AND j.state IN ('completed', 'cancelled')
      AND j.completed_on > mark.before AND j.completed_on <= {now})
FROM mark, kept
WHERE queue.name = %(name)s

-- name: cleanup_dependencies
-- Delete a queue's job_dependency rows (either side) whose job no longer exists; run under the table's "cleanupDependencies" lock.
WITH gone_parent AS (
  DELETE FROM {schema}.job_dependency d
  WHERE d.parent_name = %(name)s
    AND NOT EXISTS (SELECT 1 FROM {schema}.job j WHERE j.name = d.parent_name AND j.id = d.parent_id)
  RETURNING 1
),
gone_child AS (
  DELETE FROM {schema}.job_dependency d
  WHERE d.child_name = %(name)s
    AND NOT EXISTS (SELECT 1 FROM {schema}.job j WHERE j.name = d.child_name AND j.id = d.child_id)
  RETURNING 1
)
SELECT (SELECT count(*) FROM gone_parent)::int + (SELECT count(*) FROM gone_child)::int AS deleted

-- name: claim_flow_pass
-- pg-boss's flow-resolver claim: whoever moves version.flow_on owns this interval's pass.
UPDATE {schema}.version SET flow_on = {now}
WHERE EXTRACT(EPOCH FROM ({now} - COALESCE(flow_on, {now} - interval '1 week'))) >= %(seconds)s
RETURNING true AS claimed

-- name: resolve_flows
-- One batch of flow resolution: completed parents still marked blocking take one dependency off each child (a child with none left is unblocked; schema 46 moves its start_after up to now), then stop blocking. Children runnable now wake their queues.
WITH parents AS (
  SELECT j.name, j.id FROM {schema}.job j
  WHERE j.blocking AND j.state = 'completed' AND j.name = ANY(%(names)s::text[])
  ORDER BY j.name, j.id
  FOR UPDATE OF j SKIP LOCKED
  LIMIT %(limit)s
),
released AS (
  SELECT d.child_name, d.child_id, count(*)::int AS n
  FROM {schema}.job_dependency d
  JOIN parents p ON d.parent_name = p.name AND d.parent_id = p.id
  GROUP BY d.child_name, d.child_id
),
children AS (
  SELECT j.name, j.id, r.n FROM {schema}.job j
  JOIN released r ON r.child_name = j.name AND r.child_id = j.id
  WHERE j.blocked
  ORDER BY j.name, j.id
  FOR UPDATE OF j
),
unblocked AS (
  UPDATE {schema}.job j
  SET pending_dependencies = GREATEST(j.pending_dependencies - c.n, 0),
    blocked = GREATEST(j.pending_dependencies - c.n, 0) > 0
    /*if:retained*/, start_after = CASE WHEN GREATEST(j.pending_dependencies - c.n, 0) = 0
      THEN GREATEST(j.start_after, {now}) ELSE j.start_after END/*end*/
  FROM children c
  WHERE j.name = c.name AND j.id = c.id
  RETURNING j.name, j.start_after, j.blocked
),
cleared AS (
  UPDATE {schema}.job j SET blocking = false
  FROM parents p WHERE j.name = p.name AND j.id = p.id
  RETURNING 1
),
made_runnable AS (
  SELECT name, start_after FROM unblocked WHERE NOT blocked
),
{_announce}
resolved AS (
  SELECT (SELECT count(*) FROM cleared)::int AS parents, (SELECT count(*) FROM made_runnable)::int AS unblocked
)
SELECT parents, unblocked FROM resolved WHERE (SELECT count(*) FROM announced) >= 0

-- name: live_node_supervisors
-- Node pg-boss instances registered as supervising whose heartbeat is recent (within 3 of their beats) and that have not stopped.
SELECT /*if:instances*/count(*)::int AS n FROM {schema}.instance
WHERE supervise AND stopped_on IS NULL AND heartbeat_on >= {now} - heartbeat_seconds * 3 * interval '1 second'/*else*/0 AS n/*end*/

-- name: delete_old_instances
-- The Node instance registry's retention: rows quiet for 7 days go, then dead rows beyond the newest 1000.
/*if:instances*/WITH old AS (
  DELETE FROM {schema}.instance WHERE heartbeat_on < {now} - interval '7 days' RETURNING 1
),
dead AS (
  SELECT id FROM (
    SELECT id, row_number() OVER (ORDER BY started_on DESC, id DESC) AS n
    FROM {schema}.instance
    WHERE stopped_on IS NOT NULL OR heartbeat_on < {now} - heartbeat_seconds * 3 * interval '1 second'
  ) ranked
  WHERE n > 1000
),
trimmed AS (
  DELETE FROM {schema}.instance
  WHERE id IN (SELECT i.id FROM {schema}.instance i JOIN dead USING (id) FOR UPDATE OF i SKIP LOCKED)
  RETURNING 1
)
SELECT (SELECT count(*) FROM old)::int + (SELECT count(*) FROM trimmed)::int AS deleted/*else*/SELECT 0 AS deleted/*end*/
