INSERT INTO participants_bare (room_id, name) VALUES (1, 'bench');
