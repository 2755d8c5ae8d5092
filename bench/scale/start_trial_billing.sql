SELECT (billing.start_trial(f.user_id, 'pro_monthly', '2026-12-01 00:00+00')).id
  FROM bench.free f WHERE f.n = (SELECT nextval('bench.free_seq'));
