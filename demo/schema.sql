-- The example event platform: users own rooms, rooms hold participants.
CREATE TABLE public.users (
	id bigserial PRIMARY KEY,
	email text NOT NULL UNIQUE
);
CREATE TABLE public.rooms (
	id bigserial PRIMARY KEY,
	owner_id bigint NOT NULL REFERENCES public.users (id),
	name text NOT NULL,
	deleted_at timestamptz
);
CREATE INDEX ON public.rooms (owner_id);
CREATE TABLE public.participants (
	id bigserial PRIMARY KEY,
	room_id bigint NOT NULL REFERENCES public.rooms (id) ON DELETE CASCADE,
	name text NOT NULL,
	deleted_at timestamptz
);
CREATE INDEX ON public.participants (room_id);
INSERT INTO public.users (email) VALUES ('ada@example.com'), ('grace@example.com');
