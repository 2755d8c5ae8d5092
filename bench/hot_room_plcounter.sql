INSERT INTO participants_plcounter (room_id, name) VALUES (1, 'bench');
