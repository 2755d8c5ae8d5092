-- A test application, attached to billing: the event platform of demo/schema.sql
-- (users own rooms, rooms hold participants). The gates use it so that the
-- trigger functions billing attaches to application tables exist and fire.
CREATE SCHEMA app;
CREATE TABLE app.users (id bigint PRIMARY KEY, email text);
CREATE TABLE app.rooms (id bigint PRIMARY KEY, owner_id bigint REFERENCES app.users, deleted_at timestamptz);
CREATE TABLE app.participants (id bigserial PRIMARY KEY, room_id bigint REFERENCES app.rooms ON DELETE CASCADE,
							   person text, deleted_at timestamptz);
SELECT billing.attach_users('app.users', 'id');
SELECT billing.attach_room_quota('app.rooms', 'owner_id');
SELECT billing.attach_participant_quota('app.participants', 'room_id', 'app.rooms', 'owner_id');
