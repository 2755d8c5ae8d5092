INSERT INTO app.participants (room_id, user_id, name) VALUES (nextval('bench.fresh_room'), 1, 'first');
