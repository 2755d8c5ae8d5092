// Stripe webhooks (SPEC §5): billing.stripe_verify and billing.stripe_ingest.
// Verification, parsing, ordering, what can apply and every decision an event
// makes are the core's (src/core/stripe_*.hpp); ingest records the event once,
// reads what billing holds, asks the core and stores its answer, all with
// kept prepared statements (no PL/pgSQL on this path).
#include "glue/args.hpp"
#include "glue/audit.hpp"
#include "glue/guard.hpp"
#include "glue/lifecycle.hpp"
#include "glue/settings.hpp"
#include "glue/spi.hpp"

#include "core/error.hpp"
#include "core/stripe_event.hpp"
#include "core/stripe_signature.hpp"

#include <algorithm>
#include <limits>
#include <string>

namespace billing::glue {

constexpr const char *kSecretHint =
	"Check that billing.configure('stripe_webhook_secret', ...) holds this endpoint's signing secret "
	"(several, separated by commas, while rotating) and that the request body is passed unmodified.";

namespace {

// An interval as microseconds (a month counts 30 days, as PostgreSQL's
// interval arithmetic does); negative is refused.
Micros
ToleranceArg(FunctionCallInfo fcinfo, int n, const char *name)
{
	RequireArg(fcinfo, n, name);
	const auto *interval = reinterpret_cast<const ::Interval *>(DatumGetPointer(PG_GETARG_DATUM(n)));
	__int128 micros = static_cast<__int128>(interval->time) +
					  static_cast<__int128>(interval->day) * USECS_PER_DAY +
					  static_cast<__int128>(interval->month) * DAYS_PER_MONTH * USECS_PER_DAY;
	if (micros < 0)
		throw InvalidParameter(std::string("argument \"") + name + "\" must not be negative");
	if (micros > std::numeric_limits<int64_t>::max())
		micros = std::numeric_limits<int64_t>::max();
	return static_cast<Micros>(micros);
}

Datum
TextResult(const std::string &value)
{
	Datum d = 0;
	const char *data = value.data();
	int len = static_cast<int>(value.size());
	PgCall([&] { d = PointerGetDatum(cstring_to_text_with_len(data, len)); });
	return d;
}

}  // namespace
}  // namespace billing::glue

using billing::Error;
namespace glue = billing::glue;
namespace stripe = billing::stripe;

// billing.stripe_verify(payload, signature_header, secret, tolerance, at):
// false for a missing (NULL) or malformed header, a bad signature or a
// timestamp outside the tolerance, as a request without the header is;
// an absent payload, secret, tolerance or time is an error (22004).
BILLING_FUNCTION(billing_stripe_verify)
{
	std::string payload = glue::TextArgRequired(fcinfo, 0, "payload");
	std::string secret = glue::TextArgRequired(fcinfo, 2, "secret");
	if (secret.empty())
		throw billing::InvalidParameter("webhook secret must not be empty");
	billing::Micros tolerance = glue::ToleranceArg(fcinfo, 3, "tolerance");
	billing::Micros at = glue::TimeArgRequired(fcinfo, 4, "at");
	if (PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	std::string header = glue::TextArg(fcinfo, 1);
	PG_RETURN_BOOL(stripe::Verify(payload, header, secret, tolerance, at));
}

namespace billing::glue {
namespace {

// Every statement below is prepared once per backend and kept (glue/spi.hpp).

SqlArg
EventTime(int64_t unix_seconds)
{
	return SqlArg::Timestamp(ToPgTime(unix_seconds * kMicrosPerSecond));
}

SqlArg
EventTime(const std::optional<int64_t> &unix_seconds)
{
	return unix_seconds ? EventTime(*unix_seconds) : SqlArg::Null(TIMESTAMPTZOID);
}

// The plan a Stripe price stands for (Precheck has found one).
struct StripePlan {
	int64_t id = 0;
	bool free = false;
	std::string code;
};

// A Stripe object's watermark, read under its lock, and why an event that is
// not newer is stale (formatted by the statement that takes the lock); with
// it, what the event's checks read (one statement, not three): the plan of
// the price a subscription event names (stripe::Precheck) and the customer
// whose link its user's deletion closed (stripe::HeldForDeletedUser).
struct ObjectLock {
	std::optional<stripe::Watermark> last;
	std::optional<std::string> stale_reason;
	std::optional<StripePlan> plan;
	std::optional<stripe::ClosedCustomer> closed;
	bool closed_subscription_held = false;
	// the row was made by this event, with this event's watermark (an event
	// that does not apply clears it: ApplyRecorded)
	bool made = false;
};

// What the lock statements read besides the watermark, columns 0-6: the
// closed customer (its own, else the customer of the subscription it names:
// the held subscription's, for a subscription event; by the customer's
// primary key), whether that subscription is held, and the price's plan.
// $1 object, $2 customer, $3 subscription, $4 price.
constexpr const char *kObjectContext =
	"ctx AS (SELECT c.customer_id, c.user_id, EXTRACT(epoch FROM c.user_deleted_at)::pg_catalog.int8 AS deleted, "
	"c.customer_id IS NOT NULL AND EXISTS (SELECT FROM billing.subscriptions s "
	"WHERE s.stripe_subscription_id OPERATOR(pg_catalog.=) $3 AND s.deleted_at IS NULL) AS held, "
	"p.id AS plan_id, p.tier OPERATOR(pg_catalog.=) 'free' AS plan_free, p.code AS plan_code "
	"FROM (SELECT) AS one LEFT JOIN billing.stripe_customers c "
	"ON c.customer_id OPERATOR(pg_catalog.=) COALESCE($2, (SELECT s.stripe_customer_id FROM billing.subscriptions s "
	"WHERE s.stripe_subscription_id OPERATOR(pg_catalog.=) $3 AND s.deleted_at IS NULL LIMIT 1)) "
	"AND c.user_deleted_at IS NOT NULL AND c.deleted_at IS NOT NULL "
	"LEFT JOIN billing.subscription_plans p ON p.stripe_price_id OPERATOR(pg_catalog.=) $4 AND p.deleted_at IS NULL)";

void
ReadObjectContext(const Row &r, ObjectLock &held)
{
	if (!r.is_null(0)) {
		held.closed = stripe::ClosedCustomer{r.text_required(0), r.text_required(1), r.int64_required(2)};
		held.closed_subscription_held = r.boolean(3);
	}
	if (!r.is_null(4))
		held.plan = StripePlan{r.int64_required(4), r.boolean(5), r.text_required(6)};
}

// Locks a Stripe object's watermark (one event per object at a time: a
// concurrent event of the same object waits here) and returns it. The row
// is locked where it is, else made first, with this event as its watermark
// (`stage` its stripe::EventStage): nothing older can apply to an object seen
// first, and the usual outcome is written once; the insert of a concurrent first event is waited for by
// ON CONFLICT, which locks the row that event committed (DO UPDATE ... WHERE
// false: locked, not written), and the lock query reads it (one statement
// for an object seen before, two for its first, three when two first events
// meet).
ObjectLock
LockObject(Spi &spi, const stripe::Event &event, int stage)
{
	static const std::string lock =
		std::string("WITH ") + kObjectContext +
		" SELECT ctx.*, EXTRACT(epoch FROM o.last_event_created)::pg_catalog.int8, o.last_event_stage, "
		"pg_catalog.format('event \"%s\" of %s is as new or newer for this object', "
		"o.last_event_id, o.last_event_created) "
		"FROM billing.stripe_objects o, ctx WHERE o.object_id OPERATOR(pg_catalog.=) $1 FOR UPDATE OF o";
	static const std::string make =
		std::string("WITH ") + kObjectContext +
		", made AS (INSERT INTO billing.stripe_objects AS o (object_id, object_type, last_event_created, last_event_id, "
		"last_event_stage) VALUES ($1, $5, $6, $7, $8) "
		"ON CONFLICT ON CONSTRAINT stripe_objects_pkey DO UPDATE SET object_id = o.object_id WHERE false "
		"RETURNING true) SELECT ctx.* FROM made, ctx";
	const stripe::EventObject &o = event.object;
	bool of_subscription = stripe::HandlerOf(event.type) == stripe::Handler::kSubscription;
	std::vector<SqlArg> args{SqlArg::Text(o.id), SqlArg::Text(o.customer),
							 SqlArg::Text(of_subscription ? o.id : o.subscription),
							 SqlArg::Text(of_subscription ? o.price_id : std::nullopt)};
	ObjectLock held;
	auto w = spi.Query(lock, args);
	if (w.empty()) {
		std::vector<SqlArg> watermark = args;
		watermark.insert(watermark.end(), {SqlArg::Text(o.object), EventTime(event.created), SqlArg::Text(event.id),
										   SqlArg::Int32(stage)});
		auto made = spi.Query(make, watermark);
		if (!made.empty()) {
			ReadObjectContext(made.at(0), held);
			held.made = true;
			return held;  // made here: no event applied before
		}
		w = spi.Query(lock, args);
	}
	if (w.empty())
		return held;
	ReadObjectContext(w.at(0), held);
	if (w.at(0).is_null(7))
		return held;
	held.last = stripe::Watermark{w.at(0).int64_required(7), static_cast<int>(w.at(0).int64(8).value_or(0))};
	held.stale_reason = w.at(0).text(9);
	return held;
}

// Remembers that a Stripe customer is a billing user.
void
LinkCustomer(Spi &spi, const std::optional<std::string> &customer, const std::string &user_id)
{
	if (!customer)
		return;
	// (IS DISTINCT FROM looks = up through search_path: written out; both user ids are NOT NULL)
	spi.Execute("INSERT INTO billing.stripe_customers AS c (customer_id, user_id) VALUES ($1, $2) "
				"ON CONFLICT (customer_id) DO UPDATE SET user_id = EXCLUDED.user_id, deleted_at = NULL "
				// a link its user's deletion closed stays closed (stripe::HeldForDeletedUser)
				"WHERE c.user_deleted_at IS NULL "
				"AND (c.user_id OPERATOR(pg_catalog.<>) EXCLUDED.user_id OR c.deleted_at IS NOT NULL)",
				{SqlArg::Text(*customer), SqlArg::Text(user_id)});
}

// A Stripe subscription kept aside while unpaid (stripe::AwaitingPayment) is
// paid or started and adopts billing's own subscription of the same plan
// (stripe::Takeover::kAdopt): the row kept aside gives the adopted one its
// Stripe id (unique), then its invoices (those whose period the adopted one
// does not hold already) and the payments of those (or of no invoice); it
// stays in the history, ended at its start, without a Stripe id.
void
MoveAwaitingInto(Spi &spi, int64_t awaiting, int64_t adopted)
{
	spi.Execute("UPDATE billing.subscriptions s SET stripe_subscription_id = NULL, "
				"metadata = (s.metadata OPERATOR(pg_catalog.-) 'awaiting_payment'::pg_catalog.text) "
				"OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('adopted_by', $2) "
				"WHERE s.id OPERATOR(pg_catalog.=) $1",
				{SqlArg::Int64(awaiting), SqlArg::Int64(adopted)});
	spi.Execute("UPDATE billing.invoices i SET subscription_id = $2 WHERE i.subscription_id OPERATOR(pg_catalog.=) $1 "
				"AND NOT EXISTS (SELECT FROM billing.invoices o WHERE o.subscription_id OPERATOR(pg_catalog.=) $2 "
				"AND o.period_start OPERATOR(pg_catalog.=) i.period_start AND o.deleted_at IS NULL "
				"AND o.billing_reason OPERATOR(pg_catalog.=) ANY ('{subscription_create,subscription_cycle}'::pg_catalog.text[]))",
				{SqlArg::Int64(awaiting), SqlArg::Int64(adopted)});
	// a payment stays with its invoice (attack finding 7 N1: one whose invoice
	// stayed aside moved without it)
	spi.Execute("UPDATE billing.payments p SET subscription_id = $2 WHERE p.subscription_id OPERATOR(pg_catalog.=) $1 "
				"AND (p.invoice_id IS NULL OR EXISTS (SELECT FROM billing.invoices i "
				"WHERE i.id OPERATOR(pg_catalog.=) p.invoice_id AND i.subscription_id OPERATOR(pg_catalog.=) $2))",
				{SqlArg::Int64(awaiting), SqlArg::Int64(adopted)});
}

// customer.subscription.*: billing's subscription mirrors Stripe's. The core
// decides what it becomes (stripe::DecideSubscriptionRow over
// stripe::MirrorSubscription); these statements store it. Found by
// stripe_subscription_id, else created for the user the object names (or the
// customer's linked user), ending the user's current subscription as a plan
// change or adopting it when it is the same paid plan not yet on Stripe. A
// subscription Stripe ended puts the user back on Free.
std::optional<std::string>
ApplySubscription(Spi &spi, const stripe::Prepared &prepared, const StripePlan &plan)
{
	const stripe::Event &event = prepared.event;
	const stripe::EventObject &o = event.object;
	// FOR NO KEY UPDATE: the subscription's key never changes here, and an
	// invoice or payment of the same subscription (its foreign key check takes
	// FOR KEY SHARE) need not wait for this event to commit.
	// (and whether the customer is linked to its user already: most events of
	// a subscription find it so, and LinkCustomer would change nothing)
	auto found = spi.Query("SELECT s.id, s.user_id, EXTRACT(epoch FROM s.started_at)::pg_catalog.int8, "
						   "s.ended_at IS NOT NULL, EXISTS (SELECT FROM billing.stripe_customers c "
						   "WHERE c.customer_id OPERATOR(pg_catalog.=) $2 AND c.user_id OPERATOR(pg_catalog.=) s.user_id "
						   "AND c.deleted_at IS NULL), s.metadata OPERATOR(pg_catalog.?) 'awaiting_payment' "
						   "FROM billing.subscriptions s "
						   "WHERE s.stripe_subscription_id OPERATOR(pg_catalog.=) $1 AND s.deleted_at IS NULL FOR NO KEY UPDATE OF s",
						   {SqlArg::Text(o.id), SqlArg::Text(o.customer)});
	std::optional<int64_t> id;
	std::optional<int64_t> started;
	std::string user_id;
	bool linked = false;
	// kept aside while unpaid (stripe::AwaitingPayment): this event decides
	// again, as if the subscription were first seen, over this row
	std::optional<int64_t> awaiting;
	if (!found.empty()) {
		id = found.at(0).int64_required(0);
		user_id = found.at(0).text_required(1);
		started = found.at(0).int64_required(2);
		linked = found.at(0).boolean(4);
		if (found.at(0).boolean(3) && found.at(0).boolean(5)) {
			awaiting = id;
			id.reset();
			started.reset();
		} else if (found.at(0).boolean(3)) {
			// billing already ended it (e.g. a plan change); Stripe cannot bring
			// an ended subscription back: only the links are kept up to date
			if (!linked)
				LinkCustomer(spi, o.customer, user_id);
			if (o.customer)  // (IS DISTINCT FROM $2, written out: $2 is not NULL)
				spi.Execute("UPDATE billing.subscriptions s SET stripe_customer_id = $2 WHERE s.id OPERATOR(pg_catalog.=) $1 "
							"AND (s.stripe_customer_id OPERATOR(pg_catalog.<>) $2) IS NOT FALSE",
							{SqlArg::Int64(*id), SqlArg::Text(o.customer)});
			return std::nullopt;
		}
	} else {
		std::optional<std::string> named = stripe::NamedUser(o);
		if (!named && o.customer) {
			auto linked = spi.Query(
				"SELECT COALESCE((SELECT c.user_id FROM billing.stripe_customers c "
				"WHERE c.customer_id OPERATOR(pg_catalog.=) $1 AND c.deleted_at IS NULL), "
				"(SELECT s.user_id FROM billing.subscriptions s WHERE s.stripe_customer_id OPERATOR(pg_catalog.=) $1 "
				"AND s.deleted_at IS NULL ORDER BY s.started_at DESC, s.id DESC LIMIT 1))",
				{SqlArg::Text(o.customer)});
			named = linked.at(0).text(0);
		}
		if (!named)
			return "pending: " + stripe::PendingReason(event);
		user_id = *named;
	}
	if (!linked)
		LinkCustomer(spi, o.customer, user_id);
	bool aside = false;  // stripe::Takeover::kAside: recorded ended (stripe::KeptAside)
	bool awaits_aside = false;  // stripe::Takeover::kAwait: recorded ended (stripe::AwaitingPayment)
	if (!id) {
		auto arrives = stripe::DecideSubscriptionRow(event, std::nullopt);
		// the user's lock before the current subscription's, as billing's own
		// operations take them (CatchUpBeforeStripe takes it); what time made
		// due before Stripe's subscription takes over comes first (review X2)
		bool has_current = CatchUpBeforeStripe(
			spi, user_id, (arrives ? std::min(arrives->started, event.created) : event.created) * kMicrosPerSecond);
		SetChangeAt(event.created * kMicrosPerSecond);  // a catch-up's PersistOutcome cleared it
		// (a user without a current subscription has none now: not looked for again)
		auto current = !has_current ? std::vector<Row>() : spi.Query("SELECT s.id, s.plan_id OPERATOR(pg_catalog.=) $2, "
								 "EXTRACT(epoch FROM s.started_at)::pg_catalog.int8, s.stripe_subscription_id IS NOT NULL, "
								 "s.stripe_customer_id, EXTRACT(epoch FROM LEAST(s.started_at, s.billing_anchor))::pg_catalog.int8, "
								 "s.status::pg_catalog.text, EXISTS (SELECT FROM billing.subscription_plans p "
								 "WHERE p.id OPERATOR(pg_catalog.=) s.plan_id AND p.tier OPERATOR(pg_catalog.=) 'free') "
								 "FROM billing.subscriptions s "
								 "WHERE s.user_id OPERATOR(pg_catalog.=) $1 AND s.ended_at IS NULL AND s.deleted_at IS NULL "
								 "FOR UPDATE OF s",
								 {SqlArg::Text(user_id), SqlArg::Int64(plan.id)});
		// an older Stripe subscription of the customer delivered late replaces nothing
		// (stripe::OlderThanCurrent); the current one's own start: a Stripe subscription's
		// billing_anchor is Stripe's first period start, its started_at may be later
		// (stripe::StartAfterReplaced)
		bool older = arrives && !current.empty() &&
					 stripe::OlderThanCurrent(o.customer, arrives->started, current.at(0).text(4),
											  current.at(0).int64_required(5));
		// an unpaid one over billing's own paid plan waits aside (stripe::AwaitsPayment, review O1)
		bool awaits = arrives && !current.empty() &&
					  stripe::AwaitsPayment(arrives->mirror.stripe_status, arrives->ended_at.has_value(), awaiting.has_value(),
											true, current.at(0).boolean(3), current.at(0).boolean(7),
											current.at(0).text(6).value_or(""));
		// first seen ended over billing's own subscription current at its start (review O2)
		bool predates = arrives && !current.empty() &&
						stripe::CurrentPredatesArriving(current.at(0).int64_required(2), arrives->started);
		auto takeover = stripe::TakeoverOf(!current.empty(), !current.empty() && current.at(0).boolean(3),
										   !current.empty() && current.at(0).boolean(1), plan.free,
										   !arrives || arrives->ended_at.has_value(), older, awaits, predates);
		if (takeover != stripe::Takeover::kAdopt && awaiting)
			id = awaiting;  // the row kept aside is the subscription's (its start is decided here)
		switch (takeover) {
		case stripe::Takeover::kNone:
			break;
		case stripe::Takeover::kAside:
			aside = true;
			break;
		case stripe::Takeover::kAwait:
			awaits_aside = true;
			break;
		case stripe::Takeover::kAdopt:
			id = current.at(0).int64_required(0);
			started = current.at(0).int64_required(2);
			VoidForStripeAdoption(spi, user_id, *id, event.created * kMicrosPerSecond);
			if (awaiting)  // the row kept aside gives its Stripe id, invoices and payments to the adopted one
				MoveAwaitingInto(spi, *awaiting, *id);
			break;
		case stripe::Takeover::kEnd:
			// the rule change_plan ends a subscription by (billing::ReplaceByStripe)
			// Stripe's starts when the replaced one ended, if later (stripe::StartAfterReplaced)
			if (auto replaced = EndForStripeSubscription(spi, user_id, arrives->started * kMicrosPerSecond))
				started = stripe::StartAfterReplaced(arrives->started, replaced->ended_at, replaced->free);
			SetChangeAt(event.created * kMicrosPerSecond);  // PersistOutcome cleared it
			break;
		}
	}
	auto row = stripe::DecideSubscriptionRow(event, started);
	if (!row)
		return "unknown stripe subscription status \"" + o.status.value_or("") + "\"";
	if (aside)
		row = stripe::KeptAside(*row);
	if (awaits_aside)
		row = stripe::AwaitingPayment(*row);
	const stripe::SubscriptionMirror &m = row->mirror;
	std::vector<SqlArg> args{SqlArg::Int64(plan.id),
							 SqlArg::Text(m.status),
							 EventTime(row->started),
							 EventTime(row->period_start),
							 EventTime(row->period_end),
							 EventTime(row->trial_start),
							 EventTime(row->trial_end),
							 SqlArg::Bool(m.cancel_at_period_end),
							 EventTime(m.canceled_at),
							 EventTime(row->ended_at),
							 SqlArg::Text(m.end_reason),
							 EventTime(row->past_due_since),
							 EventTime(row->paused_at),
							 SqlArg::Text(o.customer),
							 SqlArg::Text(o.id),
							 SqlArg::Text(m.stripe_status.empty() ? std::optional<std::string>() : m.stripe_status),
							 SqlArg::Text(user_id),
							 SqlArg::Text(row->awaiting_payment ? R"({"source": "stripe", "awaiting_payment": true})"
																: R"({"source": "stripe"})")};
	if (!id) {
		static const std::string insert = AuditedChange(
			"'subscriptions'", false,
			"changed AS (INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval, "
			"started_at, billing_anchor, current_period_start, current_period_end, trial_start, trial_end, "
			"cancel_at_period_end, canceled_at, ended_at, end_reason, past_due_since, paused_at, "
			"stripe_customer_id, stripe_subscription_id, metadata, stripe_status) "
			"SELECT $17, p.id, $2::billing.subscription_status, p.price_cents, p.currency, p.billing_interval, "
			"$3, $4, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $18::pg_catalog.jsonb, $16 "
			"FROM billing.subscription_plans p WHERE p.id OPERATOR(pg_catalog.=) $1 RETURNING *)", "SELECT FROM changed");
		AuditedScope audited("subscriptions");
		spi.Query(insert, args);
	} else {
		args.push_back(SqlArg::Int64(*id));
		static const std::string update = AuditedChange(
			"'subscriptions'", true,
			"before AS (SELECT s.* FROM billing.subscriptions s WHERE s.id OPERATOR(pg_catalog.=) $19), "
			"changed AS (UPDATE billing.subscriptions x SET plan_id = p.id, "
			"price_cents = CASE WHEN x.plan_id OPERATOR(pg_catalog.=) p.id THEN x.price_cents ELSE p.price_cents END, "
			"currency = CASE WHEN x.plan_id OPERATOR(pg_catalog.=) p.id THEN x.currency ELSE p.currency END, "
			"billing_interval = p.billing_interval, status = $2::billing.subscription_status, "
			// a row kept aside unpaid starts when this event decides (stripe::StartAfterReplaced); any other keeps its start
			"started_at = CASE WHEN x.metadata OPERATOR(pg_catalog.?) 'awaiting_payment' THEN $3 ELSE x.started_at END, "
			"current_period_start = $4, current_period_end = $5, "
			"trial_start = COALESCE($6, x.trial_start), trial_end = COALESCE($7, x.trial_end), "
			"cancel_at_period_end = $8, canceled_at = $9, ended_at = $10, end_reason = $11, "
			"past_due_since = CASE WHEN $12 IS NOT NULL THEN COALESCE(x.past_due_since, $12) END, "
			"paused_at = CASE WHEN $13 IS NOT NULL THEN COALESCE(x.paused_at, $13) END, "
			"scheduled_plan_id = NULL, scheduled_change_at = NULL, "
			"stripe_customer_id = COALESCE($14, x.stripe_customer_id), stripe_subscription_id = $15, "
			"stripe_status = $16, metadata = (x.metadata OPERATOR(pg_catalog.-) 'awaiting_payment'::pg_catalog.text) "
			"OPERATOR(pg_catalog.||) $18::pg_catalog.jsonb "
			"FROM billing.subscription_plans p "
			"WHERE p.id OPERATOR(pg_catalog.=) $1 AND x.id OPERATOR(pg_catalog.=) $19 RETURNING x.*)", "SELECT FROM changed");
		AuditedScope audited("subscriptions");
		spi.Query(update, args);
	}
	if (row->ended_at && !aside && !awaits_aside)  // (kept aside: the user stays on the newer / paid one)
		spi.Execute("SELECT billing._start_free($1, $2)", {SqlArg::Text(user_id), EventTime(row->ended_at)});
	if (event.type == "customer.subscription.trial_will_end")
		spi.Execute("SELECT billing._notify(s.user_id, s.id, 'trial_will_end', $3, $2) FROM billing.subscriptions s "
					"WHERE s.stripe_subscription_id OPERATOR(pg_catalog.=) $1 AND s.deleted_at IS NULL",
					{SqlArg::Text(o.id), EventTime(event.created),
					 SqlArg::Text("stripe:trial_will_end:" + *o.id + ":" +
								  (o.trial_end ? std::to_string(*o.trial_end) : std::string()))});
	return std::nullopt;
}

// What billing holds about the user of a Stripe object (stripe::UserOf picks):
// the user of the subscription it names (and that subscription's id), of the
// invoice it names (and that invoice's id and subscription), of its
// customer's link and of the customer's latest subscription. One statement,
// each on its index.
struct HeldUsers {
	std::optional<int64_t> subscription_id;
	std::optional<int64_t> invoice_id;
	std::optional<int64_t> invoice_subscription_id;
	std::optional<std::string> invoice_user;  // also when the invoice is deleted
	stripe::UserCandidates candidates;
};

HeldUsers
UsersOf(Spi &spi, const stripe::EventObject &o)
{
	auto rows = spi.Query(
		"SELECT s.id, s.user_id, i.id, i.subscription_id, i.user_id, "
		"CASE WHEN i.deleted_at IS NULL THEN i.user_id END, "
		"(SELECT c.user_id FROM billing.stripe_customers c WHERE c.customer_id OPERATOR(pg_catalog.=) $3 "
		"AND c.deleted_at IS NULL), "
		"(SELECT x.user_id FROM billing.subscriptions x WHERE x.stripe_customer_id OPERATOR(pg_catalog.=) $3 "
		"AND x.deleted_at IS NULL ORDER BY x.started_at DESC, x.id DESC LIMIT 1) "
		"FROM (SELECT) AS one LEFT JOIN billing.subscriptions s "
		"ON s.stripe_subscription_id OPERATOR(pg_catalog.=) $1 AND s.deleted_at IS NULL "
		"LEFT JOIN billing.invoices i ON i.stripe_invoice_id OPERATOR(pg_catalog.=) $2 LIMIT 1",
		{SqlArg::Text(o.subscription), SqlArg::Text(o.invoice), SqlArg::Text(o.customer)});
	const Row &r = rows.at(0);
	HeldUsers held;
	held.subscription_id = r.int64(0);
	held.invoice_id = r.int64(2);
	held.invoice_subscription_id = r.int64(3);
	held.invoice_user = r.text(4);
	held.candidates = {r.text(1), r.text(5), r.text(6), r.text(7)};
	return held;
}

// The subscription a Stripe payment of a user belongs to when its invoice
// names none: the user's current (else latest) subscription with its customer.
std::optional<int64_t>
SubscriptionOfCustomer(Spi &spi, const std::string &user_id, const std::optional<std::string> &customer)
{
	if (!customer)
		return std::nullopt;
	auto rows = spi.Query("SELECT s.id FROM billing.subscriptions s WHERE s.user_id OPERATOR(pg_catalog.=) $1 "
						  "AND s.stripe_customer_id OPERATOR(pg_catalog.=) $2 AND s.deleted_at IS NULL "
						  "ORDER BY s.ended_at IS NULL DESC, s.started_at DESC, s.id DESC LIMIT 1",
						  {SqlArg::Text(user_id), SqlArg::Text(customer)});
	return rows.empty() ? std::nullopt : rows.at(0).int64(0);
}

// Stores a Stripe payment once per external id and returns its id: a new one
// is inserted; a stored one is locked and the core decides what the incoming
// outcome makes of it (stripe::MergePayment). A concurrent insert of the same
// id is waited for by ON CONFLICT, then found and locked here.
int64_t
StorePayment(Spi &spi, const std::string &user_id, std::optional<int64_t> subscription_id,
			 std::optional<int64_t> invoice_id, const stripe::PaymentRecord &p)
{
	auto inserted = spi.Query(
		"INSERT INTO billing.payments (user_id, subscription_id, invoice_id, amount_cents, currency, status, "
		"external_id, stripe_payment_intent_id, stripe_charge_id, failure_code, failure_message, paid_at) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
		"ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING RETURNING id",
		{SqlArg::Text(user_id), SqlArg::Int64(subscription_id), SqlArg::Int64(invoice_id), SqlArg::Int64(p.amount),
		 SqlArg::Text(p.currency), SqlArg::Text(p.succeeded ? "succeeded" : "failed"), SqlArg::Text(p.external_id),
		 SqlArg::Text(p.payment_intent), SqlArg::Text(p.charge), SqlArg::Text(p.failure_code),
		 SqlArg::Text(p.failure_message), EventTime(p.paid_at)});
	if (!inserted.empty())
		return inserted.at(0).int64_required(0);
	auto found = spi.Query("SELECT p.id, p.subscription_id, p.invoice_id, p.status OPERATOR(pg_catalog.=) 'succeeded', "
						   "p.stripe_payment_intent_id, p.stripe_charge_id FROM billing.payments p "
						   "WHERE p.external_id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
						   {SqlArg::Text(p.external_id)});
	// (under REPEATABLE READ the INSERT above already failed with 40001 when
	// the row it met is not in this transaction's snapshot; a row deleted
	// since is the same conflict)
	if (found.empty())
		throw Error("40001", "could not serialize access due to concurrent update",
					"Stripe payment \"" + p.external_id + "\" changed while this event was applied.");
	const Row &r = found.at(0);
	int64_t id = r.int64_required(0);
	stripe::StoredPayment stored{r.int64(1), r.int64(2), r.boolean(3), r.text(4), r.text(5)};
	stripe::PaymentRow row = stripe::MergePayment(stored, p, subscription_id, invoice_id);
	std::vector<SqlArg> args{SqlArg::Int64(id), SqlArg::Int64(row.subscription_id), SqlArg::Int64(row.invoice_id),
							 SqlArg::Text(row.payment_intent), SqlArg::Text(row.charge)};
	if (!row.replaces_outcome) {
		spi.Execute("UPDATE billing.payments p SET subscription_id = $2, invoice_id = $3, "
					"stripe_payment_intent_id = $4, stripe_charge_id = $5, failure_code = NULL, failure_message = NULL "
					"WHERE p.id OPERATOR(pg_catalog.=) $1",
					args);
	} else {
		args.insert(args.end(), {SqlArg::Int64(p.amount), SqlArg::Text(p.succeeded ? "succeeded" : "failed"),
								 SqlArg::Text(p.failure_code), SqlArg::Text(p.failure_message), EventTime(p.paid_at)});
		spi.Execute("UPDATE billing.payments p SET subscription_id = $2, invoice_id = $3, "
					"stripe_payment_intent_id = $4, stripe_charge_id = $5, amount_cents = $6, status = $7, "
					"failure_code = $8, failure_message = $9, paid_at = $10 WHERE p.id OPERATOR(pg_catalog.=) $1",
					args);
	}
	return id;
}

// invoice.*: billing's invoice mirrors Stripe's. The core decides whether the
// event waits for its user, which row it writes and what goes in it
// (stripe::DecideInvoice), and the payment a paid invoice records
// (stripe::InvoicePayment); these statements store it.
std::optional<std::string>
ApplyInvoice(Spi &spi, const stripe::Event &event, int64_t &invoice_id)
{
	const stripe::EventObject &o = event.object;
	HeldUsers users = UsersOf(spi, o);
	stripe::StoredInvoice stored;
	stored.subscription_id = users.subscription_id;
	stored.user_id = stripe::UserOf(o, users.candidates);
	if (stored.user_id) {
		const SqlArg period_start = EventTime(stripe::DecideInvoice(event).period_start);
		// (and whether another first-period or renewal invoice holds the
		// subscription and period this one takes: StoredInvoice::period_held_by_another)
		auto found = spi.Query("SELECT i.id, i.billing_reason OPERATOR(pg_catalog.=) ANY (ARRAY['subscription_create', "
							   "'subscription_cycle']) AND i.deleted_at IS NULL AND EXISTS (SELECT FROM billing.invoices h "
							   "WHERE h.id OPERATOR(pg_catalog.<>) i.id "
							   "AND h.subscription_id OPERATOR(pg_catalog.=) COALESCE(i.subscription_id, $2) "
							   "AND h.period_start OPERATOR(pg_catalog.=) COALESCE($3, i.period_start) "
							   "AND h.billing_reason OPERATOR(pg_catalog.=) ANY (ARRAY['subscription_create', 'subscription_cycle']) "
							   "AND h.deleted_at IS NULL) "
							   "FROM billing.invoices i WHERE i.stripe_invoice_id OPERATOR(pg_catalog.=) $1 FOR UPDATE OF i",
							   {SqlArg::Text(o.id), SqlArg::Int64(stored.subscription_id), period_start});
		if (!found.empty()) {
			stored.invoice_id = found.at(0).int64_required(0);
			stored.period_held_by_another = found.at(0).boolean(1);
		}
		if (stripe::SeeksOwnInvoice(event, stored)) {
			// billing's own invoice for this period (one per period: invoices_one_per_period)
			auto own = spi.Query("SELECT i.id, i.stripe_invoice_id IS NOT NULL, i.status::pg_catalog.text "
								 "FROM billing.invoices i "
								 "WHERE i.subscription_id OPERATOR(pg_catalog.=) $1 "
								 "AND i.period_start OPERATOR(pg_catalog.=) $2 "
								 "AND i.billing_reason OPERATOR(pg_catalog.=) ANY (ARRAY['subscription_create', 'subscription_cycle']) "
								 "AND i.deleted_at IS NULL FOR UPDATE",
								 {SqlArg::Int64(*stored.subscription_id), period_start});
			if (!own.empty()) {
				stored.own_invoice_id = own.at(0).int64_required(0);
				stored.own_invoice_taken = own.at(0).boolean(1);
				stored.own_invoice_status = own.at(0).text(2);
			}
		}
	}
	stripe::InvoiceAction action = stripe::DecideInvoice(event, stored);
	if (action.write == stripe::InvoiceWrite::kPending)
		return "pending: " + action.pending_reason;
	const stripe::InvoiceDecision &row = action.row;
	if (action.write == stripe::InvoiceWrite::kInsert) {
		bool taken = false;
		if (o.number)
			taken = spi.Query("SELECT EXISTS (SELECT FROM billing.invoices i WHERE i.number OPERATOR(pg_catalog.=) $1)",
							  {SqlArg::Text(o.number)})
						.at(0)
						.boolean(0);
		auto inserted = spi.Query(
			"INSERT INTO billing.invoices (number, user_id, subscription_id, status, billing_reason, currency, "
			"period_start, period_end, subtotal_cents, total_cents, amount_paid_cents, amount_due_cents, lines, "
			"issued_at, paid_at, stripe_invoice_id) "
			"VALUES (COALESCE($1, billing._next_invoice_number($14)), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
			"$13, $14, $15, $16) RETURNING id",
			{SqlArg::Text(stripe::InvoiceNumber(event, taken)), SqlArg::Text(*stored.user_id),
			 SqlArg::Int64(stored.subscription_id), SqlArg::Text(row.status), SqlArg::Text(row.billing_reason),
			 SqlArg::Text(row.currency), EventTime(row.period_start), EventTime(row.period_end),
			 SqlArg::Int64(row.subtotal.value_or(0)), SqlArg::Int64(row.total.value_or(0)),
			 SqlArg::Int64(row.amount_paid.value_or(0)), SqlArg::Int64(row.amount_due.value_or(0)),
			 SqlArg::Jsonb(row.lines), EventTime(row.issued_at), EventTime(row.paid_at), SqlArg::Text(o.id)});
		invoice_id = inserted.at(0).int64_required(0);
	} else {
		invoice_id = *action.invoice_id;
		spi.Execute("UPDATE billing.invoices x SET subscription_id = COALESCE(x.subscription_id, $2), status = $3, "
					"currency = $4, period_start = COALESCE($5, x.period_start), "
					"period_end = COALESCE($6, x.period_end), subtotal_cents = COALESCE($7, x.subtotal_cents), "
					"total_cents = COALESCE($8, x.total_cents), "
					"amount_paid_cents = COALESCE($9, x.amount_paid_cents), "
					"amount_due_cents = COALESCE($10, x.amount_due_cents), lines = COALESCE($11, x.lines), "
					"paid_at = CASE WHEN $12 THEN COALESCE(x.paid_at, $13) END, stripe_invoice_id = $14, "
					"billing_reason = CASE WHEN $15 THEN 'manual' ELSE x.billing_reason END "
					"WHERE x.id OPERATOR(pg_catalog.=) $1",
					{SqlArg::Int64(invoice_id), SqlArg::Int64(stored.subscription_id), SqlArg::Text(row.status),
					 SqlArg::Text(row.currency), EventTime(row.period_start), EventTime(row.period_end),
					 SqlArg::Int64(row.subtotal), SqlArg::Int64(row.total), SqlArg::Int64(row.amount_paid),
					 SqlArg::Int64(row.amount_due),
					 action.replace_lines ? SqlArg::Jsonb(row.lines) : SqlArg::Null(JSONBOID),
					 SqlArg::Bool(row.status == "paid"), EventTime(row.paid_at), SqlArg::Text(o.id),
					 SqlArg::Bool(action.becomes_manual)});
	}

	auto payment = stripe::InvoicePayment(event, row);
	if (!payment)
		return std::nullopt;
	if (payment->kind == stripe::InvoicePaymentPlan::Kind::kUnderIntent) {
		stripe::PaymentRecord record;
		record.external_id = payment->external_id;
		record.payment_intent = payment->payment_intent;
		record.charge = payment->charge;
		record.succeeded = true;
		record.amount = payment->amount;
		record.currency = payment->currency;
		record.paid_at = payment->paid_at;
		StorePayment(spi, *stored.user_id, stored.subscription_id, invoice_id, record);
		return std::nullopt;
	}
	// (an invoice inserted just now has no payment yet: nothing to look for)
	bool has_payment = action.write != stripe::InvoiceWrite::kInsert && spi.Query("SELECT EXISTS (SELECT FROM billing.payments p WHERE p.invoice_id OPERATOR(pg_catalog.=) $1 "
								 "AND p.refund_of IS NULL AND p.status OPERATOR(pg_catalog.=) 'succeeded' "
								 "AND p.deleted_at IS NULL)",
								 {SqlArg::Int64(invoice_id)})
						   .at(0)
						   .boolean(0);
	if (has_payment)
		return std::nullopt;
	// an unplaced Stripe payment of the user, amount and currency nearest the
	// paid time, else a new one (one statement)
	spi.Execute(
		"WITH adopted AS (UPDATE billing.payments p SET invoice_id = $1, subscription_id = COALESCE(p.subscription_id, $2) "
		"WHERE p.id OPERATOR(pg_catalog.=) (SELECT q.id FROM billing.payments q "
		"WHERE q.user_id OPERATOR(pg_catalog.=) $3 AND q.invoice_id IS NULL AND q.refund_of IS NULL "
		"AND q.status OPERATOR(pg_catalog.=) 'succeeded' AND q.deleted_at IS NULL "
		"AND (q.stripe_payment_intent_id IS NOT NULL OR q.stripe_charge_id IS NOT NULL) "
		"AND q.amount_cents OPERATOR(pg_catalog.=) $4 AND q.currency OPERATOR(pg_catalog.=) $5 "
		"AND q.paid_at OPERATOR(pg_catalog.>=) $7 AND q.paid_at OPERATOR(pg_catalog.<=) $8 "
		"ORDER BY pg_catalog.abs(EXTRACT(epoch FROM q.paid_at OPERATOR(pg_catalog.-) $6)), q.id LIMIT 1) RETURNING p.id) "
		"INSERT INTO billing.payments (user_id, subscription_id, invoice_id, amount_cents, currency, status, "
		"external_id, stripe_charge_id, paid_at) SELECT $3, $2, $1, $4, $5, 'succeeded', $9, $10, $6 "
		"WHERE NOT EXISTS (SELECT FROM adopted) "
		"ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING",
		{SqlArg::Int64(invoice_id), SqlArg::Int64(stored.subscription_id), SqlArg::Text(*stored.user_id),
		 SqlArg::Int64(payment->amount), SqlArg::Text(payment->currency), EventTime(payment->paid_at),
		 EventTime(payment->paid_at - payment->window), EventTime(payment->paid_at + payment->window),
		 SqlArg::Text(payment->external_id), SqlArg::Text(payment->charge)});
	return std::nullopt;
}

// The row invoice.paid recorded under its invoice (stripe_invoice:<id>) is the
// payment `adoption` names (stripe::AdoptionOf): it takes the payment's
// external id, unless a row has it already.
void
AdoptInvoicePayment(Spi &spi, const std::string &user_id, const stripe::Adoption &adoption)
{
	spi.Execute(
		"UPDATE billing.payments p SET external_id = $2, stripe_payment_intent_id = $3, "
		"stripe_charge_id = COALESCE(p.stripe_charge_id, $4) "
		"WHERE p.id OPERATOR(pg_catalog.=) (SELECT q.id FROM billing.payments q "
		"WHERE q.user_id OPERATOR(pg_catalog.=) $1 AND q.external_id OPERATOR(pg_catalog.~~) 'stripe\\_invoice:%' "
		"AND q.refund_of IS NULL AND q.status OPERATOR(pg_catalog.=) 'succeeded' AND q.deleted_at IS NULL "
		"AND q.stripe_payment_intent_id IS NULL AND q.amount_cents OPERATOR(pg_catalog.=) $5 "
		"AND q.currency OPERATOR(pg_catalog.=) $6 AND q.paid_at OPERATOR(pg_catalog.>=) $8 "
		"AND q.paid_at OPERATOR(pg_catalog.<=) $9 "
		"ORDER BY pg_catalog.abs(EXTRACT(epoch FROM q.paid_at OPERATOR(pg_catalog.-) $7)), q.id LIMIT 1) "
		"AND NOT EXISTS (SELECT FROM billing.payments x WHERE x.external_id OPERATOR(pg_catalog.=) $2)",
		{SqlArg::Text(user_id), SqlArg::Text(adoption.external_id), SqlArg::Text(adoption.payment_intent),
		 SqlArg::Text(adoption.charge), SqlArg::Int64(adoption.amount), SqlArg::Text(adoption.currency),
		 EventTime(adoption.at), EventTime(adoption.at - adoption.window),
		 EventTime(adoption.at + adoption.window)});
}

// payment_intent.succeeded / .payment_failed and charge.succeeded: the
// payment, once per payment intent (stripe::DecidePayment). A succeeded one
// first takes over the row its invoice.paid recorded under the invoice
// (stripe::AdoptionOf), so the two events make one payment in any order.
std::optional<std::string>
ApplyPayment(Spi &spi, const stripe::Event &event)
{
	const stripe::EventObject &o = event.object;
	std::optional<stripe::PaymentRecord> payment = stripe::DecidePayment(event);
	if (!payment)
		return "event type not handled";
	HeldUsers users = UsersOf(spi, o);
	// the invoice's user first, also when that invoice is deleted
	if (users.invoice_user)
		users.candidates.of_invoice = users.invoice_user;
	std::optional<std::string> user_id = stripe::UserOf(o, users.candidates);
	if (!user_id)
		return "pending: " + stripe::PendingReason(event);
	std::optional<int64_t> subscription_id = users.invoice_subscription_id;
	if (!subscription_id)
		subscription_id = SubscriptionOfCustomer(spi, *user_id, o.customer);
	if (auto adoption = stripe::AdoptionOf(event, *payment))
		AdoptInvoicePayment(spi, *user_id, *adoption);
	StorePayment(spi, *user_id, subscription_id, users.invoice_id, *payment);
	return std::nullopt;
}

// charge.refunded: the refund not recorded yet (stripe::DecideRefund) on the
// payment the charge is (stripe::RefundedPayment), recorded from the charge
// when it never arrived (stripe::PaymentOfRefundedCharge). The payment's row
// lock serialises refunds of one payment; the refunded sum is read after it.
std::optional<std::string>
ApplyRefund(Spi &spi, const stripe::Event &event)
{
	const stripe::EventObject &o = event.object;
	// The charge's payment: recorded with the charge's id (by Stripe, or by
	// billing.record_payment under the charge id as its external id) or with
	// its payment intent's.
	auto rows = spi.Query("SELECT p.id, COALESCE(p.stripe_charge_id OPERATOR(pg_catalog.=) $1"
						  " OR p.external_id OPERATOR(pg_catalog.=) $1, false), p.user_id, p.currency "
						  "FROM billing.payments p WHERE p.refund_of IS NULL AND p.deleted_at IS NULL "
						  "AND p.status OPERATOR(pg_catalog.=) 'succeeded' AND (p.stripe_charge_id OPERATOR(pg_catalog.=) $1 "
						  "OR p.external_id OPERATOR(pg_catalog.=) $1 "
						  "OR p.external_id OPERATOR(pg_catalog.=) $2 OR p.stripe_payment_intent_id OPERATOR(pg_catalog.=) $2)",
						  {SqlArg::Text(o.id), SqlArg::Text(o.payment_intent)});
	std::vector<stripe::RefundCandidate> candidates;
	for (const auto &r : rows)
		candidates.push_back({r.int64_required(0), r.boolean(1)});
	std::optional<int64_t> payment_id = stripe::RefundedPayment(candidates);
	std::string user_id, currency;  // whose credit the refund may take back from (TakeBackForRefundOf)
	for (const auto &r : rows)
		if (payment_id && r.int64_required(0) == *payment_id) {
			user_id = r.text_required(2);
			currency = r.text_required(3);
		}
	if (!payment_id) {
		// the payment itself never arrived: it is recorded from the charge
		HeldUsers users = UsersOf(spi, o);
		std::optional<std::string> user = stripe::UserOf(o, users.candidates);
		if (!user)
			return "pending: " + stripe::PendingReason(event);
		stripe::PaymentRecord charged = stripe::PaymentOfRefundedCharge(event);
		// invoice.paid may have recorded it under its invoice: that row is this payment
		if (auto adoption = stripe::AdoptionOf(event, charged))
			AdoptInvoicePayment(spi, *user, *adoption);
		payment_id = StorePayment(spi, *user, SubscriptionOfCustomer(spi, *user, o.customer), users.invoice_id, charged);
		auto stored = spi.Query("SELECT p.user_id, p.currency FROM billing.payments p WHERE p.id OPERATOR(pg_catalog.=) $1",
								{SqlArg::Int64(*payment_id)});
		user_id = stored.at(0).text_required(0);
		currency = stored.at(0).text_required(1);
	}
	// The user's lock before the payment's, as billing.refund takes them
	// (with SHARE on billing.maintenance_runs when the refund may reopen an
	// upgrade invoice: LockUserForRefund).
	LockUserForRefund(spi, user_id);
	auto original = spi.Query("SELECT p.amount_cents, p.stripe_charge_id IS NULL, "
							  "pg_catalog.ceil(EXTRACT(epoch FROM p.paid_at))::pg_catalog.int8 FROM billing.payments p "
							  "WHERE p.id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  {SqlArg::Int64(*payment_id)});
	if (original.at(0).boolean(1))
		spi.Execute("UPDATE billing.payments p SET stripe_charge_id = $2 WHERE p.id OPERATOR(pg_catalog.=) $1",
					{SqlArg::Int64(*payment_id), SqlArg::Text(o.id)});
	// read after the lock (a statement of its own: a refund committed while
	// this one waited is seen)
	auto refunded = spi.Query("SELECT COALESCE(OPERATOR(pg_catalog.-) pg_catalog.sum(r.amount_cents), 0)::pg_catalog.int8 "
							  "FROM billing.payments r WHERE r.refund_of OPERATOR(pg_catalog.=) $1 "
							  "AND r.status OPERATOR(pg_catalog.=) 'succeeded' AND r.deleted_at IS NULL",
							  {SqlArg::Int64(*payment_id)});
	// dated at or after the payment it refunds (stripe::DecideRefund)
	auto refund = stripe::DecideRefund(event, original.at(0).int64_required(0), refunded.at(0).int64_required(0),
									   original.at(0).int64(2));
	if (!refund)
		return std::nullopt;
	auto inserted =
		spi.Query("INSERT INTO billing.payments (user_id, subscription_id, invoice_id, amount_cents, currency, status, "
				  "refund_of, external_id, stripe_payment_intent_id, stripe_charge_id, paid_at) "
				  "SELECT p.user_id, p.subscription_id, p.invoice_id, $2, p.currency, 'succeeded', p.id, $3, $4, $5, $6 "
				  "FROM billing.payments p WHERE p.id OPERATOR(pg_catalog.=) $1 "
				  "ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING RETURNING id",
				  {SqlArg::Int64(*payment_id), SqlArg::Int64(-refund->amount), SqlArg::Text(refund->external_id),
				   SqlArg::Text(o.payment_intent), SqlArg::Text(o.id), EventTime(refund->at)});
	// the same take-back as billing.refund: one rule for both routes
	if (!inserted.empty())
		TakeBackForRefundOf(spi, *payment_id, inserted[0].int64_required(0), user_id, currency, refund->amount,
							refund->at * kMicrosPerSecond);
	return std::nullopt;
}

// checkout.session.completed: links the user it names to the Stripe customer,
// and the customer to the subscription when that has already arrived
// (stripe::DecideCheckout).
std::optional<std::string>
ApplyCheckout(Spi &spi, const stripe::Event &event)
{
	stripe::CheckoutLink link = stripe::DecideCheckout(event);
	if (link.ignored)
		return link.ignored;
	LinkCustomer(spi, link.customer, link.user_id);
	if (link.subscription)  // (IS DISTINCT FROM $2, written out: $2 is not NULL)
		spi.Execute("UPDATE billing.subscriptions s SET stripe_customer_id = $2 "
					"WHERE s.stripe_subscription_id OPERATOR(pg_catalog.=) $1 "
					"AND (s.stripe_customer_id OPERATOR(pg_catalog.<>) $2) IS NOT FALSE",
					{SqlArg::Text(link.subscription), SqlArg::Text(link.customer)});
	return std::nullopt;
}

// What RecordSettlements returns of each payment it placed: its id, user,
// currency, invoice, and whether every refund of it already has its ledger
// entries (false: a refund arrived before the payment was placed).
constexpr const char *kPlacedReturning =
	" RETURNING payment_id, user_id, currency, invoice_id, NOT EXISTS (SELECT FROM billing.payments r "
	"WHERE r.refund_of OPERATOR(pg_catalog.=) ledger_entries.payment_id AND r.status OPERATOR(pg_catalog.=) 'succeeded' "
	"AND r.deleted_at IS NULL AND NOT EXISTS (SELECT FROM billing.ledger_entries x "
	"WHERE x.payment_id OPERATOR(pg_catalog.=) r.id AND x.deleted_at IS NULL))";

// The refunds of `payment_id` delivered before it was placed on `invoice_id`
// (stripe::RefundAwaitsPlacement): each now names the invoice and takes back
// what billing.refund would (TakeBackForRefundOf), oldest first, under the
// user's lock and the payment's row lock, as ApplyRefund does.
void
TakeBackEarlierRefunds(Spi &spi, int64_t payment_id, const std::string &user_id, const std::string &currency,
					   int64_t invoice_id)
{
	LockUserForRefund(spi, user_id);
	spi.Execute("SELECT FROM billing.payments p WHERE p.id OPERATOR(pg_catalog.=) $1 FOR UPDATE", {SqlArg::Int64(payment_id)});
	auto refunds = spi.Query("UPDATE billing.payments r SET invoice_id = $2 WHERE r.refund_of OPERATOR(pg_catalog.=) $1 "
							 "AND r.status OPERATOR(pg_catalog.=) 'succeeded' AND r.deleted_at IS NULL "
							 "AND NOT EXISTS (SELECT FROM billing.ledger_entries x WHERE x.payment_id OPERATOR(pg_catalog.=) r.id "
							 "AND x.deleted_at IS NULL) "
							 "RETURNING r.id, OPERATOR(pg_catalog.-) r.amount_cents, billing._micros(r.paid_at)",
							 {SqlArg::Int64(payment_id), SqlArg::Int64(invoice_id)});
	std::sort(refunds.begin(), refunds.end(),
			  [](const Row &a, const Row &b) { return a.int64_required(0) < b.int64_required(0); });
	for (const Row &r : refunds)
		if (stripe::RefundAwaitsPlacement(true, false))
			TakeBackForRefundOf(spi, payment_id, r.int64_required(0), user_id, currency, r.int64_required(1),
								r.int64_required(2));
}

// Stripe settles its own invoices: a succeeded Stripe payment on a Stripe
// invoice goes into billing's ledger as payment_to_invoice, once per payment,
// so the ledger's invariants (every payment placed in full; every paid
// invoice covered) hold for Stripe's payments as for billing's. The payment
// is found by the event's payment (payment intent, else charge) or invoice.
void
RecordSettlements(Spi &spi, const stripe::Event &event, std::optional<int64_t> invoice_id)
{
	const stripe::EventObject &o = event.object;
	bool is_invoice = o.object && *o.object == "invoice";
	std::optional<std::string> payment = is_invoice ? std::nullopt : o.payment_intent ? o.payment_intent : o.charge;
	std::optional<std::string> invoice = is_invoice ? o.id : o.invoice;
	// by the payment's id or by the invoice: two statements, each on its index
	std::string select =
		"INSERT INTO billing.ledger_entries (user_id, currency, kind, amount_cents, payment_id, invoice_id, at) "
		"SELECT p.user_id, p.currency, 'payment_to_invoice', p.amount_cents, p.id, p.invoice_id, COALESCE(p.paid_at, $2) "
		"FROM billing.payments p WHERE p.invoice_id IS NOT NULL AND p.refund_of IS NULL "
		"AND p.status OPERATOR(pg_catalog.=) 'succeeded' AND p.amount_cents OPERATOR(pg_catalog.>) 0 "
		"AND p.deleted_at IS NULL AND NOT EXISTS (SELECT FROM billing.ledger_entries e "
		"WHERE e.payment_id OPERATOR(pg_catalog.=) p.id AND e.deleted_at IS NULL) AND ";
	std::vector<Row> placed;
	auto place = [&](const std::string &where, const std::vector<SqlArg> &args) {
		for (auto &row : spi.Query(select + where + kPlacedReturning, args))
			placed.push_back(std::move(row));
	};
	if (payment)
		place("p.external_id OPERATOR(pg_catalog.=) $1", {SqlArg::Text(*payment), EventTime(event.created)});
	if (invoice_id)  // the invoice the handler wrote: no need to look it up again
		place("p.invoice_id OPERATOR(pg_catalog.=) $1", {SqlArg::Int64(*invoice_id), EventTime(event.created)});
	else if (invoice)
		place("p.invoice_id OPERATOR(pg_catalog.=) (SELECT i.id FROM billing.invoices i "
			  "WHERE i.stripe_invoice_id OPERATOR(pg_catalog.=) $1)",
			  {SqlArg::Text(*invoice), EventTime(event.created)});
	for (const Row &row : placed)
		if (stripe::RefundAwaitsPlacement(true, row.boolean(4)))
			TakeBackEarlierRefunds(spi, row.int64_required(0), row.text_required(1), row.text_required(2),
								   row.int64_required(3));
}

// The SQL handler of an event type: it stores what the event says and returns
// NULL when applied, 'pending: ...' when its billing user is not known yet,
// or why it is ignored.
std::optional<std::string>
RunHandler(Spi &spi, const stripe::Prepared &prepared, const std::optional<StripePlan> &plan)
{
	const stripe::Event &event = prepared.event;
	if (stripe::HandlerOf(event.type) == stripe::Handler::kSubscription) {
		// the subscription history dates what this event changes at the event's time
		// (a direct call, no statement; an error rolls the setting back with the transaction)
		SetChangeAt(event.created * kMicrosPerSecond);
		auto reason = ApplySubscription(spi, prepared, plan.value());
		SetChangeAt(std::nullopt);
		return reason;
	}
	std::optional<std::string> reason;
	int64_t invoice_id = 0;  // the invoice an invoice event wrote (ids start at 1)
	switch (stripe::HandlerOf(event.type)) {
	case stripe::Handler::kCheckout:
		return ApplyCheckout(spi, event);
	case stripe::Handler::kInvoice:
		reason = ApplyInvoice(spi, event, invoice_id);
		break;
	case stripe::Handler::kPaymentIntent:
	case stripe::Handler::kChargeSucceeded:
		reason = ApplyPayment(spi, event);
		break;
	case stripe::Handler::kChargeRefunded:
		reason = ApplyRefund(spi, event);
		break;
	case stripe::Handler::kSubscription:  // above
	case stripe::Handler::kNone:
		return "event type not handled";
	}
	if (!reason)
		RecordSettlements(spi, event, invoice_id > 0 ? std::optional<int64_t>(invoice_id) : std::nullopt);
	return reason;
}

// Why an event of a Stripe customer whose link its user's deletion closed
// waits (stripe::HeldForDeletedUser), or nullopt: the closed customer the
// object's lock statement read (LockObject).
std::optional<std::string>
DeletedUserHold(const stripe::Event &event, const std::optional<ObjectLock> &lock)
{
	if (!lock || !lock->closed)
		return std::nullopt;
	bool of_subscription = stripe::HandlerOf(event.type) == stripe::Handler::kSubscription;
	return stripe::HeldForDeletedUser(event, lock->closed, of_subscription && lock->closed_subscription_held);
}

// Whether an event can name its customer's user (a checkout, a subscription
// event), so that events pending for that customer may apply after it.
bool
NamesUser(const stripe::Event &event)
{
	auto handler = stripe::HandlerOf(event.type);
	return event.object.customer && (handler == stripe::Handler::kCheckout || handler == stripe::Handler::kSubscription);
}

// Applies a recorded event: the core decides whether it can apply at all
// (stripe::Precheck, before the object's lock: it reads no state of the
// object) and whether it is newer than its object's watermark
// (stripe::IsNewer, under the lock); the handler stores it; the outcome is
// recorded on the event. `recorded` says what the event's row holds already
// (stripe_ingest records it as applied): that outcome is not written again.
std::string
ApplyRecorded(Spi &spi, const stripe::Prepared &prepared, const std::optional<std::string> &recorded = std::nullopt,
			  bool *pending_waiting = nullptr)
{
	const stripe::Event &event = prepared.event;
	std::optional<ObjectLock> lock;
	if (event.object.id)
		lock = LockObject(spi, event, prepared.stage);
	// (the lock statement read the plan of the price the core asks for: the event's own)
	std::optional<StripePlan> plan;
	std::optional<std::string> precheck = stripe::Precheck(event, [&event, &lock, &plan](const std::string &price_id) {
		plan = lock && event.object.price_id == price_id ? lock->plan : std::nullopt;
		return plan.has_value();
	});
	std::string result;
	std::optional<std::string> reason;
	if (!stripe::IsNewer(lock ? lock->last : std::nullopt, stripe::Watermark{event.created, prepared.stage})) {
		result = "stale";
		reason = lock ? lock->stale_reason : std::nullopt;
	} else {
		reason = precheck;
		if (!reason) {
			if (auto held = DeletedUserHold(event, lock))
				reason = "pending: " + *held;
		}
		if (!reason)
			reason = RunHandler(spi, prepared, plan);
		constexpr std::string_view kPending = "pending: ";
		if (!reason && lock && lock->made) {
			result = "applied";  // (the watermark was written with the row)
			if (pending_waiting && NamesUser(event))
				*pending_waiting = spi.Query("SELECT EXISTS (SELECT FROM billing.stripe_events e "
											 "WHERE e.result OPERATOR(pg_catalog.=) 'pending' "
											 "AND e.customer_id OPERATOR(pg_catalog.=) $1)",
											 {SqlArg::Text(event.object.customer)})
									   .at(0)
									   .boolean(0);
		} else if (!reason) {
			result = "applied";
			// (and whether events wait for the user this event may have named:
			// ApplyPending reads them only then)
			auto waiting = spi.Query("UPDATE billing.stripe_objects o SET last_event_created = $2, last_event_id = $3, "
									 "last_event_stage = $4, object_type = $5 WHERE o.object_id OPERATOR(pg_catalog.=) $1 "
									 "RETURNING $6::pg_catalog.text IS NOT NULL AND EXISTS (SELECT FROM billing.stripe_events e "
									 "WHERE e.result OPERATOR(pg_catalog.=) 'pending' AND e.customer_id OPERATOR(pg_catalog.=) $6)",
									 {SqlArg::Text(event.object.id), EventTime(event.created), SqlArg::Text(event.id),
									  SqlArg::Int32(prepared.stage), SqlArg::Text(event.object.object),
									  SqlArg::Text(NamesUser(event) ? event.object.customer : std::nullopt)});
			if (pending_waiting)
				*pending_waiting = !waiting.empty() && waiting.at(0).boolean(0);
		} else if (reason->starts_with(kPending)) {
			result = "pending";
			reason = reason->substr(kPending.size());
		} else {
			result = "ignored";
		}
	}
	if (lock && lock->made && result != "applied")  // an object whose first event did not apply has no watermark
		spi.Execute("UPDATE billing.stripe_objects o SET last_event_created = NULL, last_event_id = NULL, "
					"last_event_stage = NULL, object_type = NULL WHERE o.object_id OPERATOR(pg_catalog.=) $1",
					{SqlArg::Text(event.object.id)});
	if (recorded && result == *recorded && !reason)
		return result;
	// (e.result, e.reason) IS DISTINCT FROM ($2, $3), written out: result is NOT NULL
	spi.Execute("UPDATE billing.stripe_events e SET result = $2, reason = $3 WHERE e.id OPERATOR(pg_catalog.=) $1 "
				"AND (e.result OPERATOR(pg_catalog.<>) $2 OR (e.reason OPERATOR(pg_catalog.<>) $3) IS NOT FALSE "
				"AND (e.reason IS NOT NULL OR $3 IS NOT NULL))",
				{SqlArg::Text(event.id), SqlArg::Text(result), SqlArg::Text(reason)});
	return result;
}

// Once an event that can name a customer's user is applied, the events kept
// pending for that customer are applied in order (each as ingesting would).
// ApplyRecorded says whether any wait (`waiting`): only then are they read.
void
ApplyPending(Spi &spi, const stripe::Event &event, bool waiting)
{
	if (!waiting || !NamesUser(event))
		return;
	auto pending = spi.Query("SELECT e.payload::pg_catalog.text FROM billing.stripe_events e "
							 "WHERE e.result OPERATOR(pg_catalog.=) 'pending' AND e.customer_id OPERATOR(pg_catalog.=) $1 "
							 "AND e.payload IS NOT NULL ORDER BY e.created, e.stage, e.received_at, e.id",
							 {SqlArg::Text(*event.object.customer)});
	for (const auto &row : pending) {
		stripe::Prepared held = stripe::Prepare(row.text_required(0));
		ApplyRecorded(spi, held);
	}
}

}  // namespace
}  // namespace billing::glue

// billing.stripe_ingest(payload, signature_header, at): verifies against the
// configured secrets (QB020 otherwise), bounds and parses (54000 / 22023) and
// applies the event exactly once. Returns applied, duplicate, stale, ignored
// or pending.
BILLING_FUNCTION(billing_stripe_ingest)
{
	std::string payload = glue::TextArgRequired(fcinfo, 0, "payload");
	std::optional<std::string> header = glue::TextArgOptional(fcinfo, 1);
	billing::Micros at = glue::TimeArgRequired(fcinfo, 2, "at");

	glue::Spi spi;
	auto settings = spi.Query(
		"SELECT (SELECT s.value FROM billing.settings s WHERE s.key OPERATOR(pg_catalog.=) 'stripe_webhook_secret' "
		"AND s.deleted_at IS NULL), (EXTRACT(epoch FROM (SELECT s.value FROM billing.settings s "
		"WHERE s.key OPERATOR(pg_catalog.=) 'stripe_tolerance' AND s.deleted_at IS NULL)::pg_catalog.interval)"
		" OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8",
		{});
	std::vector<std::string> secrets = stripe::SplitSecrets(settings.at(0).text_or(0, ""));
	billing::Micros tolerance = settings.at(0).int64(1).value_or(300 * billing::kMicrosPerSecond);

	if (secrets.empty())
		throw Error(billing::sqlstate::kSignatureInvalid, "stripe signature does not verify",
					stripe::Describe(stripe::VerifyOutcome::kNoSecret),
					"Set the endpoint's signing secret with billing.configure('stripe_webhook_secret', 'whsec_...').");
	if (!header)
		throw Error(billing::sqlstate::kSignatureInvalid, "stripe signature does not verify",
					"The request has no Stripe-Signature header.", glue::kSecretHint);
	stripe::VerifyOutcome outcome = stripe::VerifySignature(payload, *header, secrets, tolerance, at);
	if (outcome != stripe::VerifyOutcome::kVerified)
		throw Error(billing::sqlstate::kSignatureInvalid, "stripe signature does not verify", stripe::Describe(outcome),
					outcome == stripe::VerifyOutcome::kOutsideTolerance
						? "Check the database clock, or widen billing.configure('stripe_tolerance', ...)."
						: glue::kSecretHint);

	stripe::Prepared prepared = stripe::Prepare(payload);
	const stripe::Event &event = prepared.event;
	bool handled = stripe::Handled(event.type);
	// exactly once: a concurrent delivery of the same id waits on the
	// primary key for the other transaction, then finds the row: a duplicate
	bool recorded =
		spi.Execute("INSERT INTO billing.stripe_events (id, type, object_id, customer_id, created, stage, payload, "
					"result, reason, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
					"ON CONFLICT (id) DO NOTHING",
					{glue::SqlArg::Text(event.id), glue::SqlArg::Text(event.type), glue::SqlArg::Text(event.object.id),
					 glue::SqlArg::Text(event.object.customer), glue::EventTime(event.created),
					 glue::SqlArg::Int32(prepared.stage), glue::SqlArg::Jsonb(prepared.stored_payload),
					 // the usual outcome, so that storing it (below) rarely writes the row again
					 glue::SqlArg::Text(handled ? "applied" : "ignored"),
					 handled ? glue::SqlArg::Null(TEXTOID) : glue::SqlArg::Text("event type not handled"),
					 glue::SqlArg::Timestamp(glue::ToPgTime(at))}) > 0;
	std::string result;
	if (!recorded)
		result = "duplicate";
	else if (!handled)
		result = "ignored";
	else {
		bool waiting = false;
		result = glue::ApplyRecorded(spi, prepared, std::string("applied"), &waiting);
		if (result == "applied")
			glue::ApplyPending(spi, event, waiting);
	}
	spi.Finish();
	return glue::TextResult(result);
}

// billing.stripe_replay(event_id, at): applies a stored event again through
// the same path (ordering, then the handlers, all idempotent); a pending one
// that finds its user is applied. 22023 for an unknown id or a pruned payload.
BILLING_FUNCTION(billing_stripe_replay)
{
	std::string event_id = glue::TextArgRequired(fcinfo, 0, "event_id");
	glue::TimeArgRequired(fcinfo, 1, "at");
	glue::Spi spi;
	auto stored = spi.QueryPrepared("SELECT found, payload FROM billing._stripe_stored($1)",
									{glue::SqlArg::Text(event_id)});
	if (!stored.at(0).boolean(0))
		throw billing::InvalidParameter("stripe event \"" + event_id + "\" was never received",
										{}, "Received events are listed in billing.stripe_events.");
	if (stored.at(0).is_null(1))
		throw billing::InvalidParameter("stripe event \"" + event_id + "\" can no longer be replayed",
										"Its payload was pruned after the stripe_event_retention period.");
	stripe::Prepared prepared = stripe::Prepare(stored.at(0).text_required(1));
	bool waiting = false;
	std::string result = stripe::Handled(prepared.event.type)
							 ? glue::ApplyRecorded(spi, prepared, std::nullopt, &waiting)
							 : std::string("ignored");
	if (result == "applied")
		glue::ApplyPending(spi, prepared.event, waiting);
	spi.Finish();
	return glue::TextResult(result);
}

// billing._stripe_trial_available(user_id, tier): the core's one-trial-per-tier
// rule (the same call subscribe and start_trial make), for
// billing.stripe_checkout_params.
BILLING_FUNCTION(billing_stripe_trial_available)
{
	std::string user_id = glue::TextArgRequired(fcinfo, 0, "user_id");
	std::string tier = glue::TextArgRequired(fcinfo, 1, "tier");
	glue::Spi spi(glue::Spi::Access::kReadOnly);
	bool available = glue::TrialAvailableForTier(spi, user_id, billing::ParseTier(tier));
	spi.Finish();
	PG_RETURN_BOOL(available);
}
