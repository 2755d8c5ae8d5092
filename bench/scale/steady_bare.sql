\set room random(1, :hot)
INSERT INTO bench.participants_bare (room_id, user_id, name) VALUES (:room, 2, 'steady');
