\set room random(1, :hot)
INSERT INTO app.participants (room_id, user_id, name) VALUES (:room, 2, 'steady');
