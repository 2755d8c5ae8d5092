\set room random(1, 1000)
INSERT INTO participants_billing (room_id, name) VALUES (:room, 'bench');
