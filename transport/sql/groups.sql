-- name: fetch_group_limited_jobs
-- A consumer's fetch from one queue limited per group (pg-boss's groupConcurrency): up to batch_size runnable jobs, so that no group_id has more active jobs than its limit (tiers ->> group_tier, else default_limit), counting those already active anywhere, and the queue no more than cap (when given). Jobs without a group are not limited by group. Callers hold the queue's lock_concurrency_slots lock, so Python fetchers never count at once. Rows in transport.jobrows.FetchedJob's order.
WITH active AS MATERIALIZED (
  SELECT group_id, count(*)::int AS n FROM {schema}.job
  WHERE name = %(name)s AND state = 'active'
  GROUP BY group_id
),
counts AS MATERIALIZED (
  SELECT COALESCE(jsonb_object_agg(group_id, n) FILTER (WHERE group_id IS NOT NULL), '{}'::jsonb) AS groups,
    COALESCE(sum(n), 0)::int AS total
  FROM active
),
candidates AS (
  SELECT j.tableoid AS tid, j.ctid, j.group_id, j.priority, j.created_on,
    COALESCE(((SELECT groups FROM counts) ->> j.group_id)::int, 0) AS active_cnt,
    COALESCE((%(tiers)s::jsonb ->> j.group_tier)::int, %(default_limit)s) AS group_limit
  FROM {schema}.job j
  WHERE j.name = %(name)s
    AND j.state < 'active'
    /*if:blocked*/AND NOT j.blocked/*end*/
    AND j.start_after <= {now}
    -- a group at its limit is passed over here, so its backlog cannot crowd out other groups' jobs
    AND (j.group_id IS NULL OR COALESCE(((SELECT groups FROM counts) ->> j.group_id)::int, 0)
      < COALESCE((%(tiers)s::jsonb ->> j.group_tier)::int, %(default_limit)s))
  ORDER BY j.priority DESC, j.created_on
  LIMIT %(batch_size)s
  FOR UPDATE OF j SKIP LOCKED
),
next AS (
  SELECT tid, ctid FROM (
    SELECT tid, ctid, group_id, active_cnt, group_limit, priority, created_on,
      -- oldest first within a group (pg-boss ranks a group's candidates by id, in no useful order)
      row_number() OVER (PARTITION BY group_id ORDER BY priority DESC, created_on) AS group_rn
    FROM candidates
  ) ranked
  WHERE group_id IS NULL OR active_cnt + group_rn <= group_limit
  ORDER BY priority DESC, created_on
  LIMIT GREATEST(0, COALESCE(%(cap)s::int - (SELECT total FROM counts), %(batch_size)s))
),
{_claim_next}
