\set room random(1, 1000)
INSERT INTO participants_plpgsql (room_id, name) VALUES (:room, 'bench');
