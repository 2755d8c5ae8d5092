// Stripe webhooks (SPEC §5): billing.stripe_verify and billing.stripe_ingest.
// Verification and parsing are the core's (src/core/stripe_*.hpp); ingest
// hands the parsed facts to billing._stripe_apply, which records the event
// once and applies it to billing's tables.
#include "glue/args.hpp"
#include "glue/guard.hpp"
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

// billing.stripe_ingest(payload, signature_header, at): verifies against the
// configured secrets (QB020 otherwise), parses (22023 for malformed JSON) and
// applies the event exactly once. Returns applied, duplicate, stale or ignored.
BILLING_FUNCTION(billing_stripe_ingest)
{
	std::string payload = glue::TextArgRequired(fcinfo, 0, "payload");
	std::optional<std::string> header = glue::TextArgOptional(fcinfo, 1);
	billing::Micros at = glue::TimeArgRequired(fcinfo, 2, "at");

	glue::Spi spi;
	auto settings = spi.Query(
		"SELECT billing._setting('stripe_webhook_secret'), "
		"(EXTRACT(epoch FROM billing._setting('stripe_tolerance', '5 minutes')::pg_catalog.interval)"
		" * 1000000)::pg_catalog.int8");
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

	stripe::Event event = stripe::ParseEvent(payload);
	std::string stored = stripe::SanitizedPayload(payload);
	std::string facts = stripe::FactsJson(event);

	auto rows = spi.Query(
		"SELECT billing._stripe_apply($1, $2, pg_catalog.to_timestamp($3), $4, $5, $6)",
		{glue::SqlArg::Text(event.id), glue::SqlArg::Text(event.type), glue::SqlArg::Int64(event.created),
		 glue::SqlArg::Jsonb(facts), glue::SqlArg::Jsonb(stored), glue::SqlArg::Timestamp(glue::ToPgTime(at))});
	std::string result = rows.at(0).text_or(0, "ignored");
	spi.Finish();
	return glue::TextResult(result);
}
