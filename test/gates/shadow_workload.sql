-- The shadowing gate's trigger paths, run by the caller (owner of the test
-- application's tables, member of every billing role) after it planted its
-- shadows: each statement may succeed or fail (a refusal is expected); the
-- gate only looks for planted objects that ran. Its own operators are
-- qualified: only billing's code may meet the planted ones.
-- new users (a Free subscription each), a new owner's first rooms (the slow
-- path), then the fast path, then a refusal past Free's limit
INSERT INTO app.users VALUES (100, 'a'), (101, 'b');
INSERT INTO app.rooms VALUES (100, 100, NULL);
INSERT INTO app.rooms VALUES (101, 100, NULL), (102, 100, NULL);
INSERT INTO app.rooms VALUES (103, 100, NULL), (104, 100, NULL), (105, 100, NULL);
INSERT INTO app.participants (room_id, person) VALUES (100, 'p1'), (100, 'p2');
-- a room changes owner (its participants' counter follows), is soft-deleted, deleted
UPDATE app.rooms SET owner_id = 101 WHERE id OPERATOR(pg_catalog.=) 100;
UPDATE app.rooms SET deleted_at = pg_catalog.now() WHERE id OPERATOR(pg_catalog.=) 101;
DELETE FROM app.rooms WHERE id OPERATOR(pg_catalog.=) 102;
INSERT INTO app.rooms VALUES (106, 101, NULL) ON CONFLICT (id) DO UPDATE SET owner_id = EXCLUDED.owner_id;
-- a subscription change clears the cached limits; a plan's limits change too
SELECT billing.subscribe('101', 'pro_monthly', pg_catalog.now(), with_trial => false) IS NOT NULL AS subscribed;
INSERT INTO app.rooms VALUES (107, 101, NULL);
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, limits)
VALUES ('shadow_plan', 'Shadow', 'custom', 'monthly', 100, 'usd', '{"rooms": 5}');
UPDATE billing.subscription_plans SET limits = '{"rooms": 6}' WHERE code OPERATOR(pg_catalog.=) 'shadow_plan';
-- maintenance, usage rollup, reconcile, and TRUNCATE (counters to zero)
SELECT count(*) AS maintained FROM billing.run_maintenance('2026-07-15 00:00+00');
SELECT billing.rollup_usage('2026-07-15 00:00+00') AS rolled_up;
SELECT count(*) AS reconciled FROM billing.reconcile_quotas();
TRUNCATE app.participants;
-- detach and attach again
SELECT billing.detach('app.participants');
SELECT billing.attach_participant_quota('app.participants', 'room_id', 'app.rooms', 'owner_id') AS attached;
