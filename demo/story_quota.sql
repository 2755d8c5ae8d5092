-- Quotas: the application's own INSERTs meet the plan's limits.
\pset footer off
\echo
\echo '== 4. The application attaches the quotas to its rooms and participants'
SELECT billing.attach_room_quota('public.rooms', owner_column => 'owner_id') AS rooms_counted;
SELECT billing.attach_participant_quota('public.participants', room_column => 'room_id',
		rooms => 'public.rooms', room_owner_column => 'owner_id') AS participants_counted;
\echo
\echo '== 5. Ada (user 1, Free: 3 rooms) creates rooms until she is refused'
INSERT INTO public.rooms (owner_id, name) VALUES (1, 'Monday standup');
INSERT INTO public.rooms (owner_id, name) VALUES (1, 'Design review');
INSERT INTO public.rooms (owner_id, name) VALUES (1, 'All hands');
INSERT INTO public.rooms (owner_id, name) VALUES (1, 'Book club');
\echo '   ^ exactly what the application sees, with SQLSTATE' :LAST_ERROR_SQLSTATE
SELECT * FROM billing.quota('1', 'rooms');
\echo
\echo '== 6. Participants are limited per room (Free: 50)'
INSERT INTO public.participants (room_id, name)
SELECT r.id, 'guest ' || g FROM public.rooms r, generate_series(1, 50) g WHERE r.name = 'All hands';
INSERT INTO public.participants (room_id, name)
SELECT r.id, 'guest 51' FROM public.rooms r WHERE r.name = 'All hands';
SELECT * FROM billing.quota('1', 'participants_per_room');
