SELECT (billing.record_payment(t.id, 2999, 'usd', true, '2026-12-01 00:00+00')).id
  FROM bench.trialing t WHERE t.n = (SELECT nextval('bench.trialing_seq'));
