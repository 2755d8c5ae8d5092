INSERT INTO bench.participants_bare (room_id, user_id, name) VALUES (nextval('bench.fresh_room_bare'), 1, 'first');
