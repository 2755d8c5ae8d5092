-- Benchmark schema: the same tables four times: bare; enforced by billing's
-- C++ triggers; by a hand-written PL/pgSQL trigger that keeps a counter row
-- per owner (or room), the best a careful developer writes by hand; and by a
-- PL/pgSQL trigger that counts with count(*), the one most write first.
CREATE EXTENSION billing;
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, limits)
VALUES ('bench', 'Bench', 'custom', 'monthly', 0, 'usd', '{"rooms": 1000000, "participants_per_room": 1000000}');
CREATE TABLE users (id int PRIMARY KEY);
INSERT INTO users SELECT g FROM generate_series(1, 10000) g;
SELECT billing.attach_users('users', 'id');
UPDATE billing.subscriptions s SET plan_id = (SELECT id FROM billing.subscription_plans WHERE code = 'bench')
 WHERE s.user_id::int > 100;  -- owners 1..100 stay on Free for the race

CREATE TABLE rooms_bare (id bigserial PRIMARY KEY, owner_id int NOT NULL, name text, deleted_at timestamptz);
CREATE TABLE rooms_billing (LIKE rooms_bare INCLUDING ALL);
CREATE TABLE rooms_plpgsql (LIKE rooms_bare INCLUDING ALL);
CREATE TABLE rooms_plcounter (LIKE rooms_bare INCLUDING ALL);
CREATE INDEX ON rooms_bare (owner_id);
CREATE INDEX ON rooms_plcounter (owner_id);
CREATE INDEX ON rooms_billing (owner_id);
CREATE INDEX ON rooms_plpgsql (owner_id);

CREATE TABLE participants_bare (id bigserial PRIMARY KEY, room_id bigint NOT NULL, name text, deleted_at timestamptz);
CREATE TABLE participants_billing (LIKE participants_bare INCLUDING ALL);
CREATE TABLE participants_plpgsql (LIKE participants_bare INCLUDING ALL);
CREATE TABLE participants_plcounter (LIKE participants_bare INCLUDING ALL);
CREATE INDEX ON participants_bare (room_id);
CREATE INDEX ON participants_plcounter (room_id);
CREATE INDEX ON participants_billing (room_id);
CREATE INDEX ON participants_plpgsql (room_id);

-- 1,000 rooms with 500 participants each, in every variant
INSERT INTO rooms_bare (owner_id, name) SELECT 101 + (g % 9900), 'room' FROM generate_series(1, 1000) g;
INSERT INTO rooms_billing SELECT * FROM rooms_bare;
INSERT INTO rooms_plpgsql SELECT * FROM rooms_bare;
INSERT INTO rooms_plcounter SELECT * FROM rooms_bare;
SELECT setval(pg_get_serial_sequence(t, 'id'), 1000) FROM unnest(ARRAY['rooms_billing', 'rooms_plpgsql', 'rooms_plcounter']) t;
INSERT INTO participants_bare (room_id, name) SELECT r, 'guest' FROM generate_series(1, 1000) r, generate_series(1, 500);
INSERT INTO participants_billing SELECT * FROM participants_bare;
INSERT INTO participants_plpgsql SELECT * FROM participants_bare;
INSERT INTO participants_plcounter SELECT * FROM participants_bare;

SELECT billing.attach_room_quota('rooms_billing', 'owner_id');
SELECT billing.attach_participant_quota('participants_billing', 'room_id', 'rooms_billing', 'owner_id');

-- What a careful developer would write by hand: look up the limit, count.
CREATE FUNCTION rooms_plpgsql_quota() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	cap bigint;
	n bigint;
BEGIN
	SELECT (p.limits ->> 'rooms')::bigint INTO cap FROM billing.effective_plan(NEW.owner_id::text) p;
	SELECT count(*) INTO n FROM rooms_plpgsql WHERE owner_id = NEW.owner_id AND deleted_at IS NULL;
	IF cap IS NOT NULL AND n >= cap THEN
		RAISE EXCEPTION 'quota "rooms" exceeded' USING ERRCODE = 'QB001';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER quota BEFORE INSERT ON rooms_plpgsql FOR EACH ROW EXECUTE FUNCTION rooms_plpgsql_quota();

CREATE FUNCTION participants_plpgsql_quota() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	owner int;
	cap bigint;
	n bigint;
BEGIN
	SELECT owner_id INTO owner FROM rooms_plpgsql WHERE id = NEW.room_id;
	SELECT (p.limits ->> 'participants_per_room')::bigint INTO cap FROM billing.effective_plan(owner::text) p;
	SELECT count(*) INTO n FROM participants_plpgsql WHERE room_id = NEW.room_id AND deleted_at IS NULL;
	IF cap IS NOT NULL AND n >= cap THEN
		RAISE EXCEPTION 'quota "participants_per_room" exceeded' USING ERRCODE = 'QB001';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER quota BEFORE INSERT ON participants_plpgsql FOR EACH ROW EXECUTE FUNCTION participants_plpgsql_quota();

-- The best by hand: a counter row per owner (or room) holding the count and
-- the limit; one UPDATE per insert, refused when the count reached the limit.
CREATE TABLE room_counts (owner_id int PRIMARY KEY, n bigint NOT NULL, cap bigint) WITH (fillfactor = 50);
INSERT INTO room_counts SELECT u.id, (SELECT count(*) FROM rooms_plcounter r WHERE r.owner_id = u.id),
       (SELECT (p.limits ->> 'rooms')::bigint FROM billing.effective_plan(u.id::text) p) FROM users u;
CREATE FUNCTION rooms_plcounter_quota() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE room_counts SET n = n + 1 WHERE owner_id = NEW.owner_id AND (cap IS NULL OR n < cap);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'quota "rooms" exceeded' USING ERRCODE = 'QB001';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER quota BEFORE INSERT ON rooms_plcounter FOR EACH ROW EXECUTE FUNCTION rooms_plcounter_quota();

CREATE TABLE participant_counts (room_id bigint PRIMARY KEY, n bigint NOT NULL, cap bigint) WITH (fillfactor = 50);
INSERT INTO participant_counts SELECT r.id, (SELECT count(*) FROM participants_plcounter p WHERE p.room_id = r.id),
       (SELECT (p.limits ->> 'participants_per_room')::bigint FROM billing.effective_plan(r.owner_id::text) p)
  FROM rooms_plcounter r;
CREATE FUNCTION participants_plcounter_quota() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE participant_counts SET n = n + 1 WHERE room_id = NEW.room_id AND (cap IS NULL OR n < cap);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'quota "participants_per_room" exceeded' USING ERRCODE = 'QB001';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER quota BEFORE INSERT ON participants_plcounter FOR EACH ROW EXECUTE FUNCTION participants_plcounter_quota();
-- Warm-up, the same for every variant: one room per owner and one more
-- participant per room, so every billing counter exists (steady state).
INSERT INTO rooms_bare (owner_id, name) SELECT g, 'warm-up' FROM generate_series(1, 10000) g;
INSERT INTO rooms_billing (owner_id, name) SELECT g, 'warm-up' FROM generate_series(1, 10000) g;
INSERT INTO rooms_plpgsql (owner_id, name) SELECT g, 'warm-up' FROM generate_series(1, 10000) g;
INSERT INTO rooms_plcounter (owner_id, name) SELECT g, 'warm-up' FROM generate_series(1, 10000) g;
INSERT INTO participants_bare (room_id, name) SELECT g, 'warm-up' FROM generate_series(1, 1000) g;
INSERT INTO participants_billing (room_id, name) SELECT g, 'warm-up' FROM generate_series(1, 1000) g;
INSERT INTO participants_plpgsql (room_id, name) SELECT g, 'warm-up' FROM generate_series(1, 1000) g;
INSERT INTO participants_plcounter (room_id, name) SELECT g, 'warm-up' FROM generate_series(1, 1000) g;
-- The application tables are vacuumed now and not again during the runs, the
-- same for every variant; billing's counters (and the hand-written counter
-- tables) keep autovacuum: their upkeep is part of what is measured.
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['rooms', 'participants'] LOOP
		EXECUTE format('ALTER TABLE %I SET (autovacuum_enabled = off)', t || '_bare');
		EXECUTE format('ALTER TABLE %I SET (autovacuum_enabled = off)', t || '_billing');
		EXECUTE format('ALTER TABLE %I SET (autovacuum_enabled = off)', t || '_plcounter');
		EXECUTE format('ALTER TABLE %I SET (autovacuum_enabled = off)', t || '_plpgsql');
	END LOOP;
END
$$;
VACUUM ANALYZE;
CHECKPOINT;

-- The race: 100 Free owners (3 rooms each), 8 clients inserting at once.
-- (attached by run.sh before the race: billing counts rooms in one table)
CREATE TABLE rooms_race (id bigserial PRIMARY KEY, owner_id int NOT NULL, name text);
CREATE FUNCTION race_insert(owner int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO rooms_race (owner_id, name) VALUES (owner, 'race');
	RETURN true;
EXCEPTION WHEN sqlstate 'QB001' THEN
	RETURN false;
END
$$;
