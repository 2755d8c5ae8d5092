\set room random(1, 1000)
INSERT INTO participants_plcounter (room_id, name) VALUES (:room, 'bench');
