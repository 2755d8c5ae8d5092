// Stripe webhooks (SPEC §5): billing.stripe_verify and billing.stripe_ingest.
// Verification and parsing are the core's (src/core/stripe_*.hpp); ingest
// hands the parsed facts to billing._stripe_apply, which records the event
// once and applies it to billing's tables.
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

// Applies a prepared event that is already recorded: locks its object's
// watermark, lets the core decide whether it is newer, and has SQL store what
// follows. `last` is the watermark when the caller already holds it.
std::string
ApplyRecorded(Spi &spi, const stripe::Prepared &prepared, std::optional<stripe::Watermark> last, bool locked)
{
	const stripe::Event &event = prepared.event;
	if (!locked && event.object.id) {
		auto w = spi.QueryPrepared("SELECT last_created, last_stage FROM billing._stripe_lock_object($1)",
								   {SqlArg::Text(*event.object.id)});
		if (!w.at(0).is_null(0))
			last = stripe::Watermark{w.at(0).int64_required(0), static_cast<int>(w.at(0).int64(1).value_or(0))};
	}
	bool stale = !stripe::IsNewer(last, stripe::Watermark{event.created, prepared.stage});
	auto rows = spi.QueryPrepared(
		"SELECT billing._stripe_dispatch($1, $2, pg_catalog.to_timestamp($3), $4, $5, $6)",
		{SqlArg::Text(event.id), SqlArg::Text(event.type), SqlArg::Int64(event.created),
		 SqlArg::Int32(prepared.stage), SqlArg::Jsonb(prepared.facts), SqlArg::Bool(stale)});
	return rows.at(0).text_required(0);
}

// Once an event that can name a customer's user is applied, the events kept
// pending for that customer are applied in order (each as ingesting would).
void
ApplyPending(Spi &spi, const stripe::Event &event)
{
	if (!event.object.customer ||
		!(event.type.starts_with("checkout.session.") || event.type.starts_with("customer.subscription.")))
		return;
	auto pending = spi.QueryPrepared("SELECT id, payload FROM billing._stripe_pending_for($1)",
									 {SqlArg::Text(*event.object.customer)});
	for (const auto &row : pending) {
		stripe::Prepared waiting = stripe::Prepare(row.text_required(1));
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
	auto settings = spi.QueryPrepared(
		"SELECT billing._setting('stripe_webhook_secret'), "
		"(EXTRACT(epoch FROM billing._setting('stripe_tolerance', '5 minutes')::pg_catalog.interval)"
		" * 1000000)::pg_catalog.int8",
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
	auto recorded = spi.QueryPrepared(
		"SELECT recorded, last_created, last_stage FROM billing._stripe_record($1, $2, $3, $4, $5, $6, $7, $8, $9)",
		{glue::SqlArg::Text(event.id), glue::SqlArg::Text(event.type), glue::SqlArg::Text(event.object.id),
		 glue::SqlArg::Text(event.object.customer), glue::SqlArg::Int64(event.created), glue::SqlArg::Int32(prepared.stage),
		 glue::SqlArg::Jsonb(prepared.stored_payload), glue::SqlArg::Timestamp(glue::ToPgTime(at)),
		 glue::SqlArg::Bool(handled)});
	std::string result;
	if (!recorded.at(0).boolean(0))
		result = "duplicate";
	else if (!handled)
		result = "ignored";
	else {
		std::optional<stripe::Watermark> last;
		if (!recorded.at(0).is_null(1))
			last = stripe::Watermark{recorded.at(0).int64_required(1),
									 static_cast<int>(recorded.at(0).int64(2).value_or(0))};
		result = glue::ApplyRecorded(spi, prepared, last, true);
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
