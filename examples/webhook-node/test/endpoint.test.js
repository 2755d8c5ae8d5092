// End to end through the example endpoint: starts server.js, posts events
// built from Stripe's own objects (STRIPE_FIXTURES, never copied) and signed
// by Stripe's official library (stripe.webhooks.generateTestHeaderString),
// checks their effects in the database, and checks that every request the
// library's constructEvent rejects is refused (400) and changes nothing.
// Needs PGHOST/PGPORT/PGUSER/PGDATABASE for a database with billing installed.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { Client } = require('pg');
const Stripe = require('stripe');

const stripe = new Stripe('sk_test_not_used_no_network_calls');
const fixtures = JSON.parse(fs.readFileSync(process.env.STRIPE_FIXTURES, 'utf8'));
const secret = 'whsec_node_endpoint_test';
const price = fixtures.subscription.items.data[0].price.id;
let checks = 0;
let failures = 0;

function check(name, got, want) {
	checks++;
	const ok = JSON.stringify(got) === JSON.stringify(want);
	if (!ok) failures++;
	console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : `: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`}`);
}

const now = Math.floor(Date.now() / 1000);
function event(id, type, object, created = now) {
	return JSON.stringify({ ...structuredClone(fixtures.event), id, type, created, data: { object } });
}
function subscription(id, customer, status, user, extra = {}) {
	const s = structuredClone(fixtures.subscription);
	Object.assign(s, { id, customer, status, created: now - 60, start_date: now - 60, cancel_at: null, canceled_at: null,
		ended_at: null, cancel_at_period_end: false, trial_start: null, trial_end: null,
		metadata: user ? { user_id: user } : {} }, extra);
	s.items.data[0].current_period_start = now - 60;
	s.items.data[0].current_period_end = now + 30 * 86400;
	s.items.data[0].price.id = price;
	return s;
}
function signed(payload, opts = {}) {
	return stripe.webhooks.generateTestHeaderString({ payload, secret: opts.secret || secret, timestamp: opts.timestamp || now });
}
// What Stripe's own library says about a request: true when constructEvent accepts it.
function libraryAccepts(payload, header) {
	try {
		stripe.webhooks.constructEvent(payload, header, secret);
		return true;
	} catch (err) {
		return false;
	}
}

async function main() {
	const db = new Client();
	await db.connect();
	const q = async (sql, args) => (await db.query(sql, args)).rows;
	await q(`UPDATE billing.subscription_plans SET stripe_price_id = $1 WHERE code = 'pro_monthly'`, [price]);
	await q(`SELECT billing.configure('stripe_webhook_secret', $1)`, [secret]);

	const server = spawn(process.execPath, [path.join(__dirname, '..', 'server.js')], {
		env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] });
	const port = await new Promise((resolve, reject) => {
		server.stdout.on('data', (d) => { const m = /listening on (\d+)/.exec(String(d)); if (m) resolve(Number(m[1])); });
		server.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
	});
	const post = async (payload, header, url = '/stripe/webhook') => {
		const headers = { 'content-type': 'application/json' };
		if (header !== undefined) headers['stripe-signature'] = header;
		const res = await fetch(`http://127.0.0.1:${port}${url}`, { method: 'POST', headers, body: payload });
		return [res.status, await res.json()];
	};
	const current = async (user) => (await q(
		`SELECT p.code || ' ' || s.status AS c FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
		  WHERE s.user_id = $1 AND s.ended_at IS NULL`, [user])).map((r) => r.c).join(',');
	const stored = async () => Number((await q('SELECT count(*) AS n FROM billing.stripe_events'))[0].n);

	try {
		// accepted: a checkout, then the subscription it created (no metadata: found through the checkout)
		const cs = Object.assign(structuredClone(fixtures['checkout.session']), { mode: 'subscription',
			client_reference_id: 'u_node', customer: 'cus_node', subscription: 'sub_node', status: 'complete', created: now });
		const checkout = event('evt_node_1', 'checkout.session.completed', cs, now - 2);
		const h1 = signed(checkout);
		check('constructEvent accepts the signed checkout', libraryAccepts(checkout, h1), true);
		check('checkout.session.completed -> 200 applied', await post(checkout, h1), [200, { result: 'applied' }]);
		const created = event('evt_node_2', 'customer.subscription.created', subscription('sub_node', 'cus_node', 'active'), now - 1);
		check('customer.subscription.created -> 200 applied', await post(created, signed(created)), [200, { result: 'applied' }]);
		check('the user is on Pro', await current('u_node'), 'pro_monthly active');
		check('redelivery -> 200 duplicate', await post(created, signed(created)), [200, { result: 'duplicate' }]);
		// out of order: the deletion first, then an update of the same second
		const del = event('evt_node_4', 'customer.subscription.deleted',
			subscription('sub_node', 'cus_node', 'canceled', null, { ended_at: now, canceled_at: now }), now);
		const upd = event('evt_node_3', 'customer.subscription.updated', subscription('sub_node', 'cus_node', 'active'), now);
		check('deletion -> 200 applied', await post(del, signed(del)), [200, { result: 'applied' }]);
		check('an update of the same second after it -> 200 stale', await post(upd, signed(upd)), [200, { result: 'stale' }]);
		check('the user is back on Free', await current('u_node'), 'free active');
		const unknown = event('evt_node_5', 'customer.created', fixtures.customer);
		check('an unhandled type -> 200 ignored', await post(unknown, signed(unknown)), [200, { result: 'ignored' }]);

		// refused: whatever constructEvent rejects is refused with 400, and nothing is stored
		const before = await stored();
		const probe = event('evt_node_bad', 'customer.subscription.updated', subscription('sub_node_bad', 'cus_x', 'active', 'u_bad'));
		const cases = [
			['a wrong secret', probe, signed(probe, { secret: 'whsec_someone_else' })],
			['a tampered body', probe.replace('"active"', '"canceled"'), signed(probe)],
			['a timestamp 10 minutes old', probe, signed(probe, { timestamp: now - 600 })],
			['no v1 signature', probe, signed(probe).replace('v1=', 'v0=')],
			['a malformed header', probe, 'garbage'],
			['an empty header', probe, ''],
		];
		for (const [name, payload, header] of cases) {
			check(`constructEvent rejects ${name}`, libraryAccepts(payload, header), false);
			const [status, body] = await post(payload, header);
			check(`the endpoint refuses ${name} (400 ${body.code})`, status, 400);
		}
		// billing is stricter than the library here: a timestamp from the future
		// is outside the tolerance too (SPEC: in either direction)
		check('constructEvent accepts a timestamp 10 minutes ahead',
			libraryAccepts(probe, signed(probe, { timestamp: now + 600 })), true);
		check('the endpoint refuses it', (await post(probe, signed(probe, { timestamp: now + 600 })))[0], 400);
		check('constructEvent rejects a missing header', libraryAccepts(probe, undefined), false);
		check('the endpoint refuses a missing header', (await post(probe))[0], 400);
		const deep = event('evt_node_deep', 'customer.updated', { id: 'cus_deep', object: 'customer', x: JSON.parse('['.repeat(100) + ']'.repeat(100)) });
		check('a validly signed but deeply nested payload -> 400', (await post(deep, signed(deep)))[0], 400);
		check('nothing refused was stored', await stored(), before);
		check('another path -> 404', (await post(probe, signed(probe), '/other'))[0], 404);
	} finally {
		server.kill('SIGTERM');
		await db.end();
	}
	console.log(`${checks - failures} of ${checks} checks passed`);
	process.exit(failures ? 1 : 0);
}

main().catch((err) => {
	console.error(err);
	process.exit(1);
});
