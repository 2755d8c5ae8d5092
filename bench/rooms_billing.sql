\set owner random(101, 10000)
INSERT INTO rooms_billing (owner_id, name) VALUES (:owner, 'bench');
