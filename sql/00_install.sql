-- The extension installs its schema, shipped plans, roles and settings.
CREATE EXTENSION billing;
SELECT extversion FROM pg_extension WHERE extname = 'billing';
SELECT code, tier, billing_interval, price_cents, currency, trial_days, limits
  FROM billing.subscription_plans ORDER BY id;
SELECT * FROM billing.pricing;
SELECT rolname FROM pg_roles WHERE rolname LIKE 'billing\_%' ORDER BY 1;
SELECT key, value FROM billing.settings ORDER BY key;
-- every billing table and sequence is registered for pg_dump
SELECT c.relname
  FROM pg_class c
 WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r', 'S')
   AND c.oid NOT IN (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'billing');
-- every SECURITY DEFINER function pins search_path
SELECT p.oid::regprocedure
  FROM pg_proc p
 WHERE p.pronamespace = 'billing'::regnamespace AND p.prosecdef
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%');
-- every table has created_at, updated_at, deleted_at
SELECT c.relname, want.col
  FROM pg_class c CROSS JOIN (VALUES ('created_at'), ('updated_at'), ('deleted_at')) want(col)
 WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind = 'r'
   AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = want.col);
-- money columns are bigint, never float or money
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind = 'r' AND a.attnum > 0
   AND (a.attname LIKE '%cents%' AND a.atttypid <> 'bigint'::regtype
        OR a.atttypid IN ('real'::regtype, 'double precision'::regtype, 'money'::regtype));
