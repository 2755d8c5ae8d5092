SELECT (billing.cancel(p.id, true, '2026-12-01 00:00+00')).id
  FROM bench.paid p WHERE p.n = (SELECT nextval('bench.paid_seq'));
