-- Schema statements: detect what a pg-boss schema is (version, catalog) and install one under
-- pg-boss's advisory lock. They run before the schema's features are known, so transport.schema,
-- their only caller, renders each on its own (transport.sql.statement) with {schema} quoted.

-- name: _lock_key
-- pg-boss's advisory lock key: the first 64 bits of sha224('<database>.pgboss.<schema><key>'); the text after the database name is the parameter lock_name, so a key never needs quoting.
('x' || encode(sha224((current_database() || '.pgboss.' || %(lock_name)s)::bytea), 'hex'))::bit(64)::bigint

-- name: schema_lock
-- Take pg-boss's transaction-scoped advisory lock for lock_name (schema + pg-boss's key suffix), waiting for it.
SELECT pg_advisory_xact_lock(
  {_lock_key}
)

-- name: schema_try_lock
-- The same lock without waiting: answers whether this transaction got it.
SELECT pg_try_advisory_xact_lock(
  {_lock_key}
)

-- name: schema_install_timeouts
-- The install transaction's timeouts, Node pg-boss's: 30 s to get a lock, 30 s idle at most.
SET LOCAL lock_timeout = 30000;
SET LOCAL idle_in_transaction_session_timeout = 30000

-- name: schema_version_table_exists
-- Whether the schema's version table exists (relation is the quoted schema plus ".version").
SELECT to_regclass(%(relation)s) IS NOT NULL

-- name: schema_version
-- The schema's version rows (pg-boss keeps exactly one).
SELECT version FROM {schema}.version

-- name: schema_columns
-- Columns of the schema's tables that feature probes read, in attnum order (catalog names are exact: the schema is always used quoted).
SELECT c.relname, a.attname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname IN ('job', 'queue', 'schedule', 'version', 'job_dependency', 'instance')
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum

-- name: schema_functions
-- Names of the functions in the schema.
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s
