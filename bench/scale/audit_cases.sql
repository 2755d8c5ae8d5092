-- The scale audit's cases (bench/scale/audit.py): one statement each, timed
-- inside BEGIN ... ROLLBACK; lines before "-- go" are the case's untimed
-- set-up. Users: see audit.py (:free, :pro, :pro30, :yearly, :trial, :ent,
-- :pastdue in the middle of the id range); times inside the book's year.

-- case: effective_plan_pro
SELECT * FROM billing.effective_plan(:'pro', '2026-11-30 12:00+00');
-- case: effective_plan_free
SELECT * FROM billing.effective_plan(:'free', '2026-11-30 12:00+00');
-- case: effective_plan_pastdue
SELECT * FROM billing.effective_plan(:'pastdue', '2026-11-30 12:00+00');
-- case: _entitled_plan_id
SELECT billing._entitled_plan_id(:'pro30', '2026-11-30 12:00+00');
-- case: _entitlement_changes_at
SELECT billing._entitlement_changes_at(:'pro30', '2026-11-30 12:00+00');
-- case: quota_rooms
SELECT * FROM billing.quota(:'pro', 'rooms', '2026-11-30 12:00+00');
-- case: quota_participants
SELECT * FROM billing.quota(:'pro', 'participants_per_room', '2026-11-30 12:00+00');
-- case: has_feature
SELECT billing.has_feature(:'pro', 'recording', '2026-11-30 12:00+00');
-- case: credit_balance
SELECT billing.credit_balance(:'pro', 'usd');
-- case: usage_whole_days
SELECT billing.usage(:'pro', 'api_calls', '2026-01-01 00:00+00', '2026-12-01 00:00+00');
-- case: usage_partial_days
SELECT billing.usage(:'pro', 'api_calls', '2026-01-01 06:00+00', '2026-11-30 18:00+00');
-- case: _usage_span
SELECT * FROM billing._usage_span('2026-01-01 06:00+00', '2026-11-30 18:00+00', 'api_calls');
-- case: _usage_partial_days
SELECT billing._usage_partial_days(:'pro', 'api_calls', '2026-06-01 06:00+00', '2026-06-02 00:00+00', '2026-06-20 00:00+00', '2026-06-20 18:00+00');
-- case: record_usage
SELECT billing.record_usage(:'pro', 'api_calls', 5, '2026-11-30 12:00+00');
-- case: record_usage_key
SELECT billing.record_usage(:'pro', 'api_calls', 5, '2026-11-30 12:00+00', 'audit-key-1');
-- case: record_usage_key_repeat
SELECT billing.record_usage(:'pro', 'api_calls', 5, '2026-11-30 12:00+00', 'key-' || :'pro');
-- case: usage_record_update_trigger
UPDATE billing.usage_records SET quantity = quantity + 1
 WHERE id = (SELECT record_id FROM billing.usage_keys WHERE user_id = :'pro' AND idempotency_key = 'key-' || :'pro');
-- case: usage_record_delete_trigger
DELETE FROM billing.usage_records
 WHERE id = (SELECT record_id FROM billing.usage_keys WHERE user_id = :'pro' AND idempotency_key = 'key-' || :'pro');
-- case: _usage_pending_add
SELECT billing._usage_pending_add(ARRAY[:'pro'], ARRAY['api_calls'], ARRAY['2026-11-30'::date], ARRAY[3::numeric]);
-- case: _usage_daily_add
SELECT billing._usage_daily_add(ARRAY[:'pro'], ARRAY['api_calls'], ARRAY['2026-11-29'::date], ARRAY[3::numeric]);
-- case: rollup_usage_nothing_new
SELECT billing.rollup_usage('2026-11-29 00:00+00');
-- case: _usage_partitions
SELECT * FROM billing._usage_partitions('2026-11-30 12:00+00');
-- case: _quota_metric
SELECT billing._quota_metric((SELECT id FROM billing.attachments WHERE kind = 'rooms'));
-- case: _quota_prepare
SELECT * FROM billing._quota_prepare((SELECT id FROM billing.attachments WHERE kind = 'rooms'), :'pro', '2026-11-30 12:00+00', NULL);
-- case: _quota_invalidate_one
SELECT billing._quota_invalidate(ARRAY[:'pro']);
-- case: _plan_limit
SELECT billing._plan_limit('{"rooms": 3}', 'rooms');
-- case: _plan_used
SELECT billing._plan_used(2);
-- case: stripe_checkout_params
UPDATE billing.subscription_plans SET stripe_price_id = 'price_audit' WHERE code = 'pro_monthly';
-- go
SELECT billing.stripe_checkout_params(:'free', 'pro_monthly');
-- case: _stripe_trial_available
SELECT billing._stripe_trial_available(:'pro', 'pro');
-- case: _stripe_stored
SELECT * FROM billing._stripe_stored('evt_book_' || :'mid' || '_1');
-- case: _stripe_prune
SELECT billing._stripe_prune('2026-11-30 12:00+00', 100);
-- case: configure
SELECT billing.configure('past_due_grace', '14 days');
-- case: _setting
SELECT billing._setting('past_due_grace');
-- case: transitions
SELECT count(*) FROM billing.transitions();
-- case: subscribe_free_to_pro
SELECT billing.subscribe(:'free', 'pro_monthly', '2026-11-30 12:00+00');
-- case: subscribe_no_trial
SELECT billing.subscribe(:'free', 'pro_monthly', '2026-11-30 12:00+00', false);
-- case: start_trial
SELECT billing.start_trial(:'free', 'pro_monthly', '2026-11-30 12:00+00');
-- case: record_payment_pastdue
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = :'pastdue' AND ended_at IS NULL), 2999, 'usd', true, '2026-11-20 12:00+00');
-- case: record_payment_failed
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), 2999, 'usd', false, '2026-11-30 12:00+00');
-- case: record_payment_trial
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = :'trial' AND ended_at IS NULL), 2999, 'usd', true, '2026-11-30 12:00+00');
-- case: record_payment_external_repeat
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), 100, 'usd', true, '2026-11-30 12:00+00', 'ext-audit');
-- go
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), 100, 'usd', true, '2026-11-30 12:00+00', 'ext-audit');
-- case: cancel_at_period_end
SELECT billing.cancel((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), true, '2026-11-30 12:00+00');
-- case: cancel_now
SELECT billing.cancel((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), false, '2026-11-30 12:00+00');
-- case: reactivate
SELECT billing.cancel((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), true, '2026-11-30 12:00+00');
-- go
SELECT billing.reactivate((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), '2026-11-30 13:00+00');
-- case: pause
SELECT billing.pause((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), '2026-11-30 12:00+00');
-- case: resume
SELECT billing.pause((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), '2026-11-30 12:00+00');
-- go
SELECT billing.resume((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), '2026-11-30 13:00+00');
-- case: change_plan_upgrade
SELECT billing.change_plan((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), 'enterprise_yearly', '2026-11-30 12:00+00');
-- case: change_plan_downgrade
SELECT billing.change_plan((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), 'free', '2026-11-30 12:00+00');
-- case: preview_change
SELECT * FROM billing.preview_change((SELECT id FROM billing.subscriptions WHERE user_id = :'pro30' AND ended_at IS NULL), 'enterprise_yearly', '2026-11-30 12:00+00');
-- case: refund
SELECT billing.refund((SELECT max(id) FROM billing.payments WHERE user_id = :'pro30'), 100, '2026-11-30 12:00+00');
-- case: run_maintenance_page_due
SELECT * FROM billing.run_maintenance('2026-12-01 00:00+00', 100);
-- case: run_maintenance_quiet
SELECT * FROM billing.run_maintenance('2026-11-20 00:00+00', 100);
-- case: _queue_upcoming
SELECT * FROM billing._queue_upcoming('2026-11-20 00:00+00');
-- case: _notify
SELECT billing._notify(:'pro', NULL, 'renewal_upcoming', 'audit-notify', '2026-11-30 12:00+00');
-- case: _next_invoice_number
SELECT billing._next_invoice_number('2026-11-30 12:00+00');
-- case: _start_free_new_user
SELECT billing._start_free('audit-new-user', '2026-11-30 12:00+00');
-- case: _start_free_many
SELECT billing._start_free_many(ARRAY['audit-a', 'audit-b', :'free'], '2026-11-30 12:00+00');
-- case: _history_backfill_nothing_missing
SELECT billing._history_backfill();
-- case: trigger_subscription_dba_update
UPDATE billing.subscriptions SET metadata = '{"a": 1}' WHERE user_id = :'pro' AND ended_at IS NULL;
-- case: trigger_plan_rename
UPDATE billing.subscription_plans SET name = 'Pro!' WHERE code = 'pro_monthly';
-- case: trigger_user_insert
INSERT INTO app.users VALUES (:newuser, 'new@example.com', '2026-11-30');
-- case: trigger_user_delete
DELETE FROM app.users WHERE id = :pro30;
-- case: trigger_user_update_email
UPDATE app.users SET email = 'x@example.com' WHERE id = :pro;
-- case: trigger_room_insert
INSERT INTO app.rooms VALUES (:n + 5, :pro, 'r', NULL);
-- case: trigger_room_insert_free_owner
INSERT INTO app.rooms VALUES (:n + 5, :free, 'r', NULL);
-- case: trigger_room_delete
DELETE FROM app.rooms WHERE id = :freshroom;
-- case: trigger_room_soft_delete
UPDATE app.rooms SET deleted_at = '2026-11-30' WHERE id = :freshroom;
-- case: trigger_room_owner_change
UPDATE app.rooms SET owner_id = :pro WHERE id = :room;
-- case: trigger_participant_insert
INSERT INTO app.participants (room_id, user_id, name) VALUES (:room, 1, 'g');
-- case: trigger_participant_first
INSERT INTO app.participants (room_id, user_id, name) VALUES (:freshroom, 1, 'g');
-- case: trigger_participant_delete
DELETE FROM app.participants WHERE id = (:room - 1) * 5 + 1;
-- case: event_trigger_drop_table
CREATE TABLE audit_tmp (a int);
-- go
DROP TABLE audit_tmp;
-- case: event_trigger_alter_table
CREATE TABLE audit_tmp (a int);
-- go
ALTER TABLE audit_tmp ADD COLUMN b int;
-- case: mrr
SELECT * FROM billing.mrr('2026-06-15 00:00+00');
-- case: mrr_before_book
SELECT * FROM billing.mrr('2020-01-01 00:00+00');
-- case: arr
SELECT * FROM billing.arr('2026-06-15 00:00+00');
-- case: active_subscriptions
SELECT * FROM billing.active_subscriptions('2026-06-15 00:00+00');
-- case: active_subscriptions_before_book
SELECT * FROM billing.active_subscriptions('2020-01-01 00:00+00');
-- case: plan_distribution
SELECT * FROM billing.plan_distribution('2026-06-15 00:00+00');
-- case: plan_distribution_before_book
SELECT * FROM billing.plan_distribution('2020-01-01 00:00+00');
-- case: churn
SELECT * FROM billing.churn('2026-05-01 00:00+00', '2026-06-01 00:00+00');
-- case: churn_before_book
SELECT * FROM billing.churn('2020-01-01 00:00+00', '2020-02-01 00:00+00');
-- case: arpu
SELECT * FROM billing.arpu('2026-05-01 00:00+00', '2026-06-01 00:00+00');
-- case: arpu_before_book
SELECT * FROM billing.arpu('2020-01-01 00:00+00', '2020-02-01 00:00+00');
-- case: revenue
SELECT count(*) FROM billing.revenue('2026-05-01 00:00+00', '2026-06-01 00:00+00', 'day');
-- case: revenue_before_book
SELECT count(*) FROM billing.revenue('2020-01-01 00:00+00', '2020-02-01 00:00+00', 'day');
-- case: trial_conversion
SELECT * FROM billing.trial_conversion('2026-11-17 00:00+00', '2026-12-01 00:00+00');
-- case: trial_conversion_before_book
SELECT * FROM billing.trial_conversion('2020-01-01 00:00+00', '2020-02-01 00:00+00');
-- case: usage_trends
SELECT count(*) FROM billing.usage_trends('2026-05-01 00:00+00', '2026-06-01 00:00+00', 'day');
-- case: usage_trends_before_book
SELECT count(*) FROM billing.usage_trends('2020-01-01 00:00+00', '2020-02-01 00:00+00', 'day');
-- case: daily_report
SELECT * FROM billing.daily_report('2026-11-25');
-- case: daily_report_before_book
SELECT * FROM billing.daily_report('2020-01-15');
-- case: over_quota
SELECT count(*) FROM billing.over_quota('2026-11-30 12:00+00');
-- case: _net_payments_before_book
SELECT count(*) FROM billing._net_payments('2020-01-01 00:00+00', '2020-02-01 00:00+00');
-- case: _book_at_before_book
SELECT count(*) FROM billing._book_at('2020-01-01 00:00+00');
-- case: _trials_started_before_book
SELECT count(*) FROM billing._trials_started('2020-01-01 00:00+00', '2020-02-01 00:00+00');
-- case: _buckets
SELECT count(*) FROM billing._buckets('2026-05-01 00:00+00', '2026-06-01 00:00+00', 'day');
-- case: reconcile_quotas
SELECT count(*) FROM billing.reconcile_quotas();
-- case: _stripe_prune_nothing_left
SELECT billing._stripe_prune('2026-11-20 00:00+00', 1000000);
-- go
SELECT billing._stripe_prune('2026-11-20 00:00+00', 10000);
-- case: record_usage_after_import
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at, idempotency_key)
SELECT g::text, 'api_calls', 1, '2026-11-30 12:00+00', 'import-' || g FROM generate_series(1, 3000) g;
-- go
SELECT billing.record_usage(:'pro', 'api_calls', 5, '2026-11-30 12:00+00', 'audit-key-2');
-- case: mrr_recent
SELECT * FROM billing.mrr('2026-11-15 00:00+00');
-- case: _stripe_prune_after_pruned
-- (run once the book's old events are pruned and vacuumed, as a steady state)
SELECT billing._stripe_prune('2026-11-20 00:00+00', 10000);
-- case: trigger_plan_limits_change
UPDATE billing.subscription_plans SET limits = '{"rooms": 4, "participants_per_room": 50}' WHERE code = 'free';
-- case: trigger_truncate_participants
TRUNCATE app.participants;
-- case: attach_users_again
SELECT billing.attach_users('app.users', 'id');
-- case: scalars
SELECT billing._valid_time('2026-11-30', 'at'), billing._required(1, 'x'), billing._valid_period('2026-01-01', '2026-02-01'),
	   billing._usage_grain('day'), billing._valid_user_id('u'), billing._restoring(), billing._set_change_at('2026-11-30'),
	   billing._grants_plan_core('active', NULL, NULL, NULL, '2026-11-30'), billing._micros('2026-11-30'),
	   billing._due_at('active', '2026-12-01', NULL, '2026-01-01'), billing._check_session_owns('app.rooms'),
	   billing._has_deleted_at('app.rooms'), billing._base_type('int8'), billing._check_column('app.rooms', 'owner_id');
-- case: usage_record_update_after_bulk
UPDATE billing.usage_records SET quantity = quantity + 1 WHERE recorded_at >= '2026-06-01' AND recorded_at < '2026-07-01';
-- go
UPDATE billing.usage_records SET quantity = quantity + 1
 WHERE id = (SELECT record_id FROM billing.usage_keys WHERE user_id = :'pro' AND idempotency_key = 'key-' || :'pro');
