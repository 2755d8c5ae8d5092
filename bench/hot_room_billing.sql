INSERT INTO participants_billing (room_id, name) VALUES (1, 'bench');
