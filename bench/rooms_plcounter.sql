\set owner random(101, 10000)
INSERT INTO rooms_plcounter (owner_id, name) VALUES (:owner, 'bench');
