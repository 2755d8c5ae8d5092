// libFuzzer target over the core's Stripe event parsing and mapping: any
// input either prepares (event, stored payload, facts, ordering stage) or is
// refused with billing::Error 22023 / 54000. Anything else (another
// exception, a crash, a sanitizer report, unbounded recursion) is a finding.
#include "core/error.hpp"
#include "core/stripe_event.hpp"
#include "core/stripe_signature.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string_view input(reinterpret_cast<const char *>(data), size);
	using namespace billing::stripe;
	try {
		Prepared prepared = Prepare(input);
		// what is stored and what SQL reads are valid JSON, and no card object survives
		auto stored = nlohmann::json::parse(prepared.stored_payload);
		auto facts = nlohmann::json::parse(prepared.facts);
		if (!facts.is_object() || prepared.stage < 0 || prepared.stage > 3)
			std::abort();
		if (prepared.stored_payload.find("\"card\":{") != std::string::npos)
			std::abort();
		if (prepared.event.object.status) {
			MapSubscriptionStatus(*prepared.event.object.status);
			MapInvoiceStatus(*prepared.event.object.status);
		}
		MapBillingReason(prepared.event.object.billing_reason);
		if (auto mirror = MirrorSubscription(prepared.event); mirror && mirror->rule.empty())
			std::abort();  // every mirrored status names its rule
		// what can apply, and the row a subscription event stores: consistent times
		Precheck(prepared.event, [](const std::string &) { return true; });
		if (auto row = DecideSubscriptionRow(prepared.event, std::nullopt)) {
			if ((row->period_end && *row->period_end < row->period_start) ||
				(row->trial_end && (!row->trial_start || *row->trial_end < *row->trial_start)) ||
				(row->ended_at && *row->ended_at < row->started))
				std::abort();
		}
		Watermark w{prepared.event.created, prepared.stage};
		if (!IsNewer(w, w))  // the same event again is never stale
			std::abort();
	} catch (const billing::Error &e) {
		if (std::strcmp(e.sqlstate().c_str(), "22023") != 0 && std::strcmp(e.sqlstate().c_str(), "54000") != 0)
			std::abort();
	}
	// the signature header parser sees the same bytes
	ParseSignatureHeader(input);
	VerifySignature(input, input, {"whsec_fuzz"}, 300000000, 1700000000000000);
	return 0;
}
