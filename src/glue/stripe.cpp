// Stripe webhooks (SPEC §5): billing.stripe_verify and billing.stripe_ingest.
// Verification, parsing, ordering and what can apply are the core's
// (src/core/stripe_*.hpp); ingest records the event once with kept plans and
// hands the core's facts to the SQL handler of its type.
#include "glue/args.hpp"
#include "glue/guard.hpp"
#include "glue/lifecycle.hpp"
#include "glue/spi.hpp"

#include "core/error.hpp"
#include "core/stripe_event.hpp"
#include "core/stripe_signature.hpp"

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
// false for a missing or malformed header, a bad signature or a timestamp
// outside the tolerance; an absent secret, tolerance or time is an error.
BILLING_FUNCTION(billing_stripe_verify)
{
	std::string secret = glue::TextArgRequired(fcinfo, 2, "secret");
	if (secret.empty())
		throw billing::InvalidParameter("webhook secret must not be empty");
	billing::Micros tolerance = glue::ToleranceArg(fcinfo, 3, "tolerance");
	billing::Micros at = glue::TimeArgRequired(fcinfo, 4, "at");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	std::string payload = glue::TextArg(fcinfo, 0);
	std::string header = glue::TextArg(fcinfo, 1);
	PG_RETURN_BOOL(stripe::Verify(payload, header, secret, tolerance, at));
}

namespace billing::glue {
namespace {

// Every statement below is prepared once per backend and kept (glue/spi.hpp).

// Locks a Stripe object's watermark (one event per object at a time: a
// concurrent event of the same object waits here) and returns it.
std::optional<stripe::Watermark>
LockObject(Spi &spi, const std::string &object_id)
{
	spi.Execute("INSERT INTO billing.stripe_objects AS o (object_id) VALUES ($1) "
				"ON CONFLICT ON CONSTRAINT stripe_objects_pkey DO NOTHING",
				{SqlArg::Text(object_id)});
	auto w = spi.Query("SELECT EXTRACT(epoch FROM o.last_event_created)::pg_catalog.int8, o.last_event_stage "
					   "FROM billing.stripe_objects o WHERE o.object_id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
					   {SqlArg::Text(object_id)});
	if (w.empty() || w.at(0).is_null(0))
		return std::nullopt;
	return stripe::Watermark{w.at(0).int64_required(0), static_cast<int>(w.at(0).int64(1).value_or(0))};
}

SqlArg
EventTime(int64_t unix_seconds)
{
	return SqlArg::Timestamp(ToPgTime(unix_seconds * kMicrosPerSecond));
}

// The SQL handler of an event type: it stores what the event says and returns
// NULL when applied, 'pending: ...' when its billing user is not known yet,
// or why it is ignored.
std::optional<std::string>
RunHandler(Spi &spi, const stripe::Prepared &prepared)
{
	const stripe::Event &event = prepared.event;
	SqlArg facts = SqlArg::Jsonb(prepared.facts);
	SqlArg created = EventTime(event.created);
	SqlArg type = SqlArg::Text(event.type);
	std::vector<Row> rows;
	switch (stripe::HandlerOf(event.type)) {
	case stripe::Handler::kCheckout:
		rows = spi.Query("SELECT billing._stripe_checkout_completed($1)", {facts});
		break;
	case stripe::Handler::kSubscription:
		rows = spi.Query("SELECT billing._stripe_subscription($1, $2, $3)", {type, facts, created});
		break;
	case stripe::Handler::kInvoice:
		rows = spi.Query("SELECT billing._stripe_invoice($1, $2, $3)", {type, facts, created});
		break;
	case stripe::Handler::kPaymentIntent:
		rows = spi.Query("SELECT billing._stripe_payment_intent($1, $2, $3)", {type, facts, created});
		break;
	case stripe::Handler::kChargeRefunded:
		rows = spi.Query("SELECT billing._stripe_charge_refunded($1, $2)", {facts, created});
		break;
	case stripe::Handler::kNone:
		return "event type not handled";
	}
	return rows.at(0).text(0);
}

// Applies a recorded event: the core decides whether it is newer than its
// object's watermark (stripe::IsNewer) and whether it can apply at all
// (stripe::Precheck); the handler stores it; the outcome is recorded on the
// event. `last` is the watermark when the caller already holds its lock.
std::string
ApplyRecorded(Spi &spi, const stripe::Prepared &prepared, std::optional<stripe::Watermark> last, bool locked)
{
	const stripe::Event &event = prepared.event;
	if (!locked && event.object.id)
		last = LockObject(spi, *event.object.id);
	std::string result;
	std::optional<std::string> reason;
	if (!stripe::IsNewer(last, stripe::Watermark{event.created, prepared.stage})) {
		result = "stale";
		auto rows = spi.Query("SELECT pg_catalog.format('event \"%s\" of %s is as new or newer for this object', "
							  "o.last_event_id, o.last_event_created) "
							  "FROM billing.stripe_objects o WHERE o.object_id OPERATOR(pg_catalog.=) $1",
							  {SqlArg::Text(event.object.id)});
		if (!rows.empty())
			reason = rows.at(0).text(0);
	} else {
		reason = stripe::Precheck(event, [&spi](const std::string &price_id) {
			return !spi.Query("SELECT 1 FROM billing.subscription_plans p "
							  "WHERE p.stripe_price_id OPERATOR(pg_catalog.=) $1 AND p.deleted_at IS NULL",
							  {SqlArg::Text(price_id)})
						.empty();
		});
		if (!reason)
			reason = RunHandler(spi, prepared);
		constexpr std::string_view kPending = "pending: ";
		if (!reason) {
			result = "applied";
			spi.Execute("UPDATE billing.stripe_objects o SET last_event_created = $2, last_event_id = $3, "
						"last_event_stage = $4, object_type = $5 WHERE o.object_id OPERATOR(pg_catalog.=) $1",
						{SqlArg::Text(event.object.id), EventTime(event.created), SqlArg::Text(event.id),
						 SqlArg::Int32(prepared.stage), SqlArg::Text(event.object.object)});
		} else if (reason->starts_with(kPending)) {
			result = "pending";
			reason = reason->substr(kPending.size());
		} else {
			result = "ignored";
		}
	}
	spi.Execute("UPDATE billing.stripe_events e SET result = $2, reason = $3 WHERE e.id OPERATOR(pg_catalog.=) $1 "
				"AND (e.result, e.reason) IS DISTINCT FROM ($2, $3)",
				{SqlArg::Text(event.id), SqlArg::Text(result), SqlArg::Text(reason)});
	return result;
}

// Once an event that can name a customer's user is applied, the events kept
// pending for that customer are applied in order (each as ingesting would).
void
ApplyPending(Spi &spi, const stripe::Event &event)
{
	auto handler = stripe::HandlerOf(event.type);
	if (!event.object.customer || (handler != stripe::Handler::kCheckout && handler != stripe::Handler::kSubscription))
		return;
	auto pending = spi.Query("SELECT e.payload::pg_catalog.text FROM billing.stripe_events e "
							 "WHERE e.result OPERATOR(pg_catalog.=) 'pending' AND e.customer_id OPERATOR(pg_catalog.=) $1 "
							 "AND e.payload IS NOT NULL ORDER BY e.created, e.stage, e.received_at, e.id",
							 {SqlArg::Text(*event.object.customer)});
	for (const auto &row : pending) {
		stripe::Prepared waiting = stripe::Prepare(row.text_required(0));
		ApplyRecorded(spi, waiting, std::nullopt, false);
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
					"result, reason, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'ignored', $8, $9) "
					"ON CONFLICT (id) DO NOTHING",
					{glue::SqlArg::Text(event.id), glue::SqlArg::Text(event.type), glue::SqlArg::Text(event.object.id),
					 glue::SqlArg::Text(event.object.customer), glue::EventTime(event.created),
					 glue::SqlArg::Int32(prepared.stage), glue::SqlArg::Jsonb(prepared.stored_payload),
					 handled ? glue::SqlArg::Null(TEXTOID) : glue::SqlArg::Text("event type not handled"),
					 glue::SqlArg::Timestamp(glue::ToPgTime(at))}) > 0;
	std::string result;
	if (!recorded)
		result = "duplicate";
	else if (!handled)
		result = "ignored";
	else {
		result = glue::ApplyRecorded(spi, prepared, std::nullopt, false);
		if (result == "applied")
			glue::ApplyPending(spi, event);
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
	std::string result = stripe::Handled(prepared.event.type)
							 ? glue::ApplyRecorded(spi, prepared, std::nullopt, false)
							 : std::string("ignored");
	if (result == "applied")
		glue::ApplyPending(spi, prepared.event);
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
