-- Benchmark schema: the same tables three times (bare, enforced by billing's
-- C++ triggers, enforced by a hand-written PL/pgSQL count(*) trigger).
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
CREATE INDEX ON rooms_bare (owner_id);
CREATE INDEX ON rooms_billing (owner_id);
CREATE INDEX ON rooms_plpgsql (owner_id);

CREATE TABLE participants_bare (id bigserial PRIMARY KEY, room_id bigint NOT NULL, name text, deleted_at timestamptz);
CREATE TABLE participants_billing (LIKE participants_bare INCLUDING ALL);
CREATE TABLE participants_plpgsql (LIKE participants_bare INCLUDING ALL);
CREATE INDEX ON participants_bare (room_id);
CREATE INDEX ON participants_billing (room_id);
CREATE INDEX ON participants_plpgsql (room_id);

-- 1,000 rooms with 500 participants each, in every variant
INSERT INTO rooms_bare (owner_id, name) SELECT 101 + (g % 9900), 'room' FROM generate_series(1, 1000) g;
INSERT INTO rooms_billing SELECT * FROM rooms_bare;
INSERT INTO rooms_plpgsql SELECT * FROM rooms_bare;
SELECT setval(pg_get_serial_sequence(t, 'id'), 1000) FROM unnest(ARRAY['rooms_billing', 'rooms_plpgsql']) t;
INSERT INTO participants_bare (room_id, name) SELECT r, 'guest' FROM generate_series(1, 1000) r, generate_series(1, 500);
INSERT INTO participants_billing SELECT * FROM participants_bare;
INSERT INTO participants_plpgsql SELECT * FROM participants_bare;

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
-- Warm-up, the same for every variant: one room per owner and one more
-- participant per room, so every billing counter exists (steady state).
INSERT INTO rooms_bare (owner_id, name) SELECT g, 'warm-up' FROM generate_series(1, 10000) g;
INSERT INTO rooms_billing (owner_id, name) SELECT g, 'warm-up' FROM generate_series(1, 10000) g;
INSERT INTO rooms_plpgsql (owner_id, name) SELECT g, 'warm-up' FROM generate_series(1, 10000) g;
INSERT INTO participants_bare (room_id, name) SELECT g, 'warm-up' FROM generate_series(1, 1000) g;
INSERT INTO participants_billing (room_id, name) SELECT g, 'warm-up' FROM generate_series(1, 1000) g;
INSERT INTO participants_plpgsql (room_id, name) SELECT g, 'warm-up' FROM generate_series(1, 1000) g;
VACUUM ANALYZE;
CHECKPOINT;

-- The race: 100 Free owners (3 rooms each), 8 clients inserting at once.
CREATE TABLE rooms_race (id bigserial PRIMARY KEY, owner_id int NOT NULL, name text);
SELECT billing.attach_room_quota('rooms_race', 'owner_id');
CREATE FUNCTION race_insert(owner int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO rooms_race (owner_id, name) VALUES (owner, 'race');
	RETURN true;
EXCEPTION WHEN sqlstate 'QB001' THEN
	RETURN false;
END
$$;
