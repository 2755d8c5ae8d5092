INSERT INTO participants_plpgsql (room_id, name) VALUES (1, 'bench');
