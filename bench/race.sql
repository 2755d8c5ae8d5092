\set owner random(1, 100)
SELECT race_insert(:owner);
