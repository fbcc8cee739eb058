-- Catalog reads for transport.drift (zeke doctor): the parts of a pg-boss schema that define it,
-- with the schema's own name in their text left for the caller to normalise. Queue partitions of
-- the job table and day partitions of queue_stats come and go with use and are left out; job_common,
-- the default partition pg-boss installs, is kept.

-- name: drift_tables
-- The schema's tables (ordinary and partitioned), without the partitions use creates.
SELECT c.relname AS name, c.relkind::text AS kind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
  AND (NOT c.relispartition OR c.relname = 'job_common')
ORDER BY 1

-- name: drift_columns
-- Every column of those tables: type, nullability and default.
SELECT c.relname AS "table", a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
  a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS "default"
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
  AND (NOT c.relispartition OR c.relname = 'job_common')
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, 2

-- name: drift_indexes
-- Every index of those tables, as CREATE INDEX text.
SELECT i.relname AS name, c.relname AS "table", pg_get_indexdef(i.oid) AS definition
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND (NOT c.relispartition OR c.relname = 'job_common')
ORDER BY 1

-- name: drift_constraints
-- Every constraint of those tables (primary and foreign keys, checks, uniques).
SELECT c.relname AS "table", k.conname AS name, pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND (NOT c.relispartition OR c.relname = 'job_common')
ORDER BY 1, 2

-- name: drift_functions
-- Every function of the schema: its signature, result and body (bodies are compared apart, by hash).
SELECT p.proname AS name, pg_get_function_identity_arguments(p.oid) AS arguments,
  pg_get_function_result(p.oid) AS result, p.prosrc AS body
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s
ORDER BY 1, 2

-- name: drift_types
-- The schema's enum types and their labels in order.
SELECT t.typname AS name, array_agg(e.enumlabel ORDER BY e.enumsortorder)::text[] AS labels
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
JOIN pg_enum e ON e.enumtypid = t.oid
WHERE n.nspname = %(schema)s
GROUP BY t.typname
ORDER BY 1
