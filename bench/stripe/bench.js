// Stripe webhook throughput: billing.stripe_ingest against
// @supabase/stripe-sync-engine's processWebhook (its CommonJS build,
// backfillRelatedEntities: false, so it calls no Stripe API), the same stream
// of signed events from Stripe's own objects (STRIPE_FIXTURES), the same Node
// process and 4 connections each, alternating in one run. Prints events/s per
// round and the billing / sync-engine ratio as min / median / max.
//   node bench.js [subscriptions per round] [rounds]     (PG* environment)
'use strict';

const fs = require('node:fs');
const { Pool } = require('pg');
const Stripe = require('stripe');
const { StripeSync, runMigrations } = require('@supabase/stripe-sync-engine');

const perRound = Number(process.argv[2] || 1000);
const rounds = Number(process.argv[3] || 3);
const connections = 4;
const secret = 'whsec_bench_secret';
const fixtures = JSON.parse(fs.readFileSync(process.env.STRIPE_FIXTURES, 'utf8'));
const stripe = new Stripe('sk_test_bench_no_network');
const price = fixtures.subscription.items.data[0].price.id;
// Two databases of one cluster: the sync engine's migrations skip creating
// its enums when a type of that name exists in any schema (billing has
// subscription_status), so it gets a database of its own.
const url = (db) => `postgresql://${process.env.PGUSER || 'postgres'}@${encodeURIComponent(process.env.PGHOST || 'localhost')}:${process.env.PGPORT || 5432}/${db}`;
const connection = url(process.env.PGDATABASE);
const syncConnection = url(process.env.SYNC_DATABASE);

// One subscription's life: created, two updates, its first invoice paid, and
// ~10% of all deliveries again (Stripe redelivers); ids unique per round.
// Each event carries `step` (1-4: its place in the life; 'redelivery').
function stream(round) {
	const events = [];
	const now = Math.floor(Date.now() / 1000);
	for (let i = 0; i < perRound; i++) {
		const sub = `sub_b${round}_${i}`, cus = `cus_b${round}_${i}`, t = now - 1000 + (i % 500);
		const object = (status, extra = {}) => {
			const s = structuredClone(fixtures.subscription);
			Object.assign(s, { id: sub, customer: cus, status, created: t, start_date: t, billing_cycle_anchor: t,
				cancel_at: null, canceled_at: null, ended_at: null, cancel_at_period_end: false, trial_start: null,
				trial_end: null, metadata: { user_id: `user_b${round}_${i}` } }, extra);
			s.items.data[0].current_period_start = t;
			s.items.data[0].current_period_end = t + 30 * 86400;
			s.items.data[0].subscription = sub;
			return s;
		};
		const inv = structuredClone(fixtures.invoice);
		Object.assign(inv, { id: `in_b${round}_${i}`, customer: cus, status: 'paid', amount_due: 2999, amount_paid: 2999,
			amount_remaining: 0, subtotal: 2999, total: 2999, number: null, created: t + 2, period_start: t, period_end: t,
			billing_reason: 'subscription_create', parent: { type: 'subscription_details', quote_details: null,
				subscription_details: { metadata: {}, subscription: sub } } });
		inv.status_transitions.paid_at = t + 2;
		inv.lines.data[0].period = { start: t, end: t + 30 * 86400 };
		const evt = (n, type, obj, created) => JSON.stringify({ ...fixtures.event, id: `evt_b${round}_${i}_${n}`, type,
			created, api_version: '2025-06-30.basil', data: { object: obj } });
		events.push(evt(1, 'customer.subscription.created', object('incomplete'), t));
		events.push(evt(2, 'customer.subscription.updated', object('active'), t + 1));
		events.push(evt(3, 'invoice.paid', inv, t + 2));
		events.push(evt(4, 'customer.subscription.updated', object('active', { cancel_at_period_end: true }), t + 3));
	}
	const redelivered = [];
	for (let k = 0; k < events.length / 10; k++) redelivered.push(events[(k * 7919) % events.length]);
	const steps = events.map((_, k) => k % 4 + 1).concat(redelivered.map(() => 'redelivery'));
	return events.concat(redelivered).map((payload, k) => ({ payload, step: steps[k],
		header: stripe.webhooks.generateTestHeaderString({ payload, secret }) }));
}

// Runs `send` over the events with `connections` in flight; events/s.
async function drive(events, send) {
	let next = 0;
	const start = process.hrtime.bigint();
	await Promise.all(Array.from({ length: connections }, async () => {
		while (next < events.length) {
			const e = events[next++];
			await send(e);
		}
	}));
	return events.length / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function main() {
	if (process.argv[4] === '--emit') {  // the stream as JSON lines, for bench/stripe/profile.sh
		const lines = stream(process.argv[5] || 'p').map((e) => JSON.stringify(e) + '\n').join('');
		process.stdout.write(lines, () => process.exit(0));
		return;
	}
	const pool = new Pool({ connectionString: connection, max: connections });
	await pool.query(`UPDATE billing.subscription_plans SET stripe_price_id = $1 WHERE code = 'pro_monthly'`, [price]);
	await pool.query(`SELECT billing.configure('stripe_webhook_secret', $1)`, [secret]);
	await runMigrations({ databaseUrl: syncConnection, schema: 'stripe', logger: { info() {}, warn() {}, error: console.error } });
	const sync = new StripeSync({ poolConfig: { connectionString: syncConnection, max: connections }, schema: 'stripe',
		stripeSecretKey: 'sk_test_bench_no_network', stripeWebhookSecret: secret, backfillRelatedEntities: false,
		logger: { info() {}, warn() {}, error() {}, debug() {}, trace() {}, child() { return this; } } });
	const billing = (e) => pool.query('SELECT billing.stripe_ingest($1, $2)', [e.payload, e.header]);
	const engine = (e) => sync.processWebhook(e.payload, e.header);
	// warm both (plans, caches) on a round of their own
	const warm = stream('w').slice(0, 200);
	await drive(warm, billing);
	await drive(warm, engine);
	const ratios = [];
	for (let r = 0; r < rounds; r++) {
		const events = stream(r);
		const b = await drive(events, billing);
		const s = await drive(stream(`s${r}`), engine);
		ratios.push(b / s);
		console.log(`round ${r + 1}: ${events.length} events; billing ${b.toFixed(0)}/s, stripe-sync-engine ${s.toFixed(0)}/s, ratio ${(b / s).toFixed(2)}`);
	}
	ratios.sort((a, b) => a - b);
	console.log(`billing / stripe-sync-engine: min ${ratios[0].toFixed(2)}, median ${ratios[Math.floor(ratios.length / 2)].toFixed(2)}, max ${ratios[ratios.length - 1].toFixed(2)}`);
	const check = await pool.query(`SELECT count(*) FILTER (WHERE status = 'canceled' AND cancel_at_period_end) AS pending_cancel,
		count(*) AS subs FROM billing.subscriptions WHERE stripe_subscription_id LIKE 'sub_b%'`);
	console.log(`billing holds ${check.rows[0].subs} Stripe subscriptions, ${check.rows[0].pending_cancel} with a pending cancel`);
	await pool.end();
	await sync.postgresClient?.pool?.end?.();
	process.exit(0);
}

main().catch((err) => { console.error(err); process.exit(1); });
