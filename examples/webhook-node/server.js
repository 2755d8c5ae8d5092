// A minimal Stripe webhook endpoint for billing: the raw request body and the
// Stripe-Signature header go to billing.stripe_ingest unchanged, and the
// answer is 2xx when billing took the event (applied, duplicate, stale,
// ignored or pending) and 400 when it refused it (bad signature, malformed or
// oversized payload). Anything else is 500, so Stripe retries later.
//
//   PGHOST=... PGDATABASE=... PGUSER=... PORT=8080 node server.js
//
// Connection settings come from the usual PG* environment variables; the
// database role needs EXECUTE on billing.stripe_ingest (billing_app has it).
'use strict';

const http = require('node:http');
const { Pool } = require('pg');

const path = process.env.WEBHOOK_PATH || '/stripe/webhook';
const maxBody = 1024 * 1024; // billing refuses larger payloads (54000) anyway
const pool = new Pool({ max: Number(process.env.PG_POOL_SIZE || 4) });

// SQLSTATEs that mean the request itself is at fault.
function refused(code) {
	return code === 'QB020' || code === '54000' || (typeof code === 'string' && code.startsWith('22'));
}

function reply(res, status, body) {
	res.writeHead(status, { 'content-type': 'application/json' });
	res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
	if (req.method !== 'POST' || req.url !== path) {
		reply(res, 404, { error: 'not found' });
		return;
	}
	const chunks = [];
	let size = 0;
	let tooLarge = false;
	req.on('data', (chunk) => {
		size += chunk.length;
		if (size > maxBody) tooLarge = true;
		else chunks.push(chunk);
	});
	req.on('end', async () => {
		if (tooLarge) {
			reply(res, 400, { error: 'payload too large' });
			return;
		}
		const body = Buffer.concat(chunks).toString('utf8');
		const signature = req.headers['stripe-signature'] ?? null;
		try {
			const { rows } = await pool.query('SELECT billing.stripe_ingest($1, $2) AS result', [body, signature]);
			reply(res, 200, { result: rows[0].result });
		} catch (err) {
			reply(res, refused(err.code) ? 400 : 500, { error: err.message, code: err.code });
		}
	});
});

server.listen(Number(process.env.PORT || 8080), process.env.HOST || '127.0.0.1', () => {
	// the test reads the port from this line (PORT=0 picks a free one)
	console.log(`listening on ${server.address().port}`);
});

function shutdown() {
	server.close(() => pool.end().then(() => process.exit(0)));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
