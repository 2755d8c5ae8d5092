\set owner random(1, 10000)
INSERT INTO rooms_plpgsql (owner_id, name) VALUES (:owner, 'bench');
