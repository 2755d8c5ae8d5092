-- Session 11 (attack finding 7 N2): billing.configure stores an interval
-- setting as text and every reader parses it under its own IntervalStyle.
-- '-1 26:00:00' is +2 hours under postgres and -50 hours under
-- sql_standard (a leading sign carries to the unsigned fields), so a grace
-- that passed configure's checks could be negative in another session. Such
-- a value is refused, whichever style the admin's session uses; a value
-- written with a sign per field, or in units, is stored as given.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
\set VERBOSITY default
SELECT value FROM billing.settings WHERE key = 'past_due_grace';
SET IntervalStyle = postgres;
SELECT billing.configure('past_due_grace', '-1 26:00:00');
SET IntervalStyle = sql_standard;
SELECT billing.configure('past_due_grace', '-1 26:00:00');
SET IntervalStyle = iso_8601;
SELECT billing.configure('stripe_tolerance', '-1 26:00:00');
-- nothing stored, and the session's own style is back after the refusal
SHOW IntervalStyle;
SELECT key, value FROM billing.settings WHERE key IN ('past_due_grace', 'stripe_tolerance') ORDER BY key;
-- unambiguous: accepted, stored as given, the session's style unchanged
SET IntervalStyle = sql_standard;
SELECT billing.configure('past_due_grace', '-1 days +26:00:00');
SHOW IntervalStyle;
SELECT billing.configure('stripe_tolerance', '2 hours');
SELECT key, value, value::interval = interval '2 hours' AS two_hours FROM billing.settings
 WHERE key IN ('past_due_grace', 'stripe_tolerance') ORDER BY key;
RESET IntervalStyle;
SELECT key, value::interval = interval '2 hours' AS two_hours FROM billing.settings
 WHERE key IN ('past_due_grace', 'stripe_tolerance') ORDER BY key;
-- a negative one is still refused
SELECT billing.configure('past_due_grace', '-2 hours');
SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;
RESET client_min_messages;
