-- billing 0.2.0 -> 0.3.0 (ALTER EXTENSION billing UPDATE).
--
-- Each change to the install script (src/sql/[0-9]*.sql) has its counterpart
-- here, in the section of its area; test/shell/upgrade.sh checks that a
-- database updated from 0.1.0 and from 0.2.0 ends up object for object the same
-- as a fresh install.
\echo Use "ALTER EXTENSION billing UPDATE TO '0.3.0'" to load this file. \quit

SET LOCAL search_path TO pg_catalog, pg_temp;

-- == test gate (issue 8)

-- == security (issue 9)

-- == money and access (issue 10)

-- == reports and history (issue 11)

-- == Stripe (issue 12)

-- == scale (issue 13)
