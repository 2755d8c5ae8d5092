// libFuzzer target over the core's Stripe event parsing, mapping and
// decisions (invoices, payments, refunds, checkout): any input either
// prepares (event, stored payload, ordering stage) and every decision
// keeps its promises, or is refused with billing::Error 22023 / 54000. Anything else (another
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
		// what is stored is valid JSON, and no card object survives
		auto stored = nlohmann::json::parse(prepared.stored_payload);
		if (!stored.is_object() || prepared.stage < 0 || prepared.stage > 3)
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
		// issue 12: every Stripe-driven decision is the core's; none may break its promises
		const Event &e = prepared.event;
		InvoiceDecision row = DecideInvoice(e);
		if (!nlohmann::json::parse(row.lines).is_array() || (row.status == "paid") != row.paid_at.has_value())
			std::abort();
		for (int variant = 0; variant < 5; ++variant) {
			StoredInvoice stored;
			if (variant > 0)
				stored.user_id = "u";
			if (variant > 1)
				stored.subscription_id = 1;
			if (variant > 2) {
				stored.own_invoice_id = 2;
				stored.own_invoice_taken = variant == 3;
				if (variant == 4)
					stored.own_invoice_status = "void";
			}
			InvoiceAction a = DecideInvoice(e, stored);
			if ((a.write == InvoiceWrite::kPending) != !stored.user_id ||
				(a.write == InvoiceWrite::kUpdate) != a.invoice_id.has_value())
				std::abort();
			if (a.invoice_id == stored.own_invoice_id && stored.own_invoice_id)
				std::abort();  // an own invoice another took, or adoption voided, is never written over
		}
		InvoiceNumber(e, false);
		if (auto pay = InvoicePayment(e, row); pay && (pay->amount <= 0 || pay->external_id.empty()))
			std::abort();
		if (auto p = DecidePayment(e)) {
			if (p->amount < 0 || (p->succeeded && p->failure_code) || (!p->succeeded && !p->failure_code))
				std::abort();
			StoredPayment kept;
			kept.succeeded = true;
			if (MergePayment(kept, *p, 1, 2).replaces_outcome)
				std::abort();  // a succeeded payment never turns back
			if (auto a = AdoptionOf(e, *p); a && !p->succeeded)
				std::abort();
		}
		PaymentRecord charge = PaymentOfRefundedCharge(e);
		if (charge.amount < 0 || !charge.succeeded)
			std::abort();
		// the refunded charge adopts invoice.paid's row as the payment itself would: same id, amount, time
		if (auto a = AdoptionOf(e, charge);
			!a || a->external_id != charge.external_id || a->amount != charge.amount || a->at != charge.paid_at)
			std::abort();
		for (int64_t paid : {int64_t{0}, int64_t{1}, charge.amount}) {
			for (int64_t already : {int64_t{0}, paid / 2, paid}) {
				if (auto r = DecideRefund(e, paid, already); r && (r->amount <= 0 || r->total > paid ||
																  r->total - already != r->amount))
					std::abort();  // refunds never above what was paid
			}
		}
		RefundedPayment({{2, false}, {1, true}});
		CheckoutLink link = DecideCheckout(e);
		if (link.ignored.has_value() == !link.user_id.empty())
			std::abort();
		PendingReason(e);
		UserOf(e.object, UserCandidates{});
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
