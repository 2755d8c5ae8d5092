// Stripe webhook events, parsed into the facts billing needs.
//
// Stripe objects change shape between API versions and fields may be null,
// empty or absent: every field here is optional and absence is never an error.
// Only JSON that does not parse, or an event without id, type, created or
// data.object, is refused (22023).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace billing::stripe {

// One invoice line, as much of it as an invoice row keeps.
struct InvoiceLine {
	std::optional<std::string> description;
	std::optional<int64_t> amount;
	std::optional<std::string> currency;
	std::optional<int64_t> period_start;
	std::optional<int64_t> period_end;
	std::optional<std::string> price_id;
};

// The fields of data.object that billing reads. Times are Unix seconds,
// amounts integer minor units, exactly as Stripe sends them.
struct EventObject {
	std::optional<std::string> object;  // "subscription", "invoice", ...
	std::optional<std::string> id;
	std::optional<std::string> customer;
	// subscription: the subscription's id; invoice: parent.subscription_details
	// .subscription (current API) or the top-level subscription (older API);
	// checkout.session: its subscription.
	std::optional<std::string> subscription;
	std::optional<std::string> status;  // Stripe's own status string
	std::optional<std::string> price_id;  // subscription: items.data[0].price.id
	std::optional<int64_t> current_period_start;  // items.data[].current_period_* or top-level
	std::optional<int64_t> current_period_end;
	bool cancel_at_period_end = false;
	std::optional<int64_t> cancel_at;
	std::optional<int64_t> canceled_at;
	std::optional<int64_t> ended_at;
	std::optional<int64_t> trial_start;
	std::optional<int64_t> trial_end;
	std::optional<int64_t> start_date;
	std::optional<int64_t> created;
	// invoices
	std::optional<std::string> number;
	std::optional<std::string> billing_reason;
	std::optional<int64_t> subtotal;
	std::optional<int64_t> total;
	std::optional<int64_t> amount_paid;
	std::optional<int64_t> amount_due;
	std::optional<int64_t> period_start;
	std::optional<int64_t> period_end;
	std::optional<int64_t> paid_at;  // status_transitions.paid_at
	std::vector<InvoiceLine> lines;
	// payment intents and charges
	std::optional<std::string> currency;
	std::optional<int64_t> amount;
	std::optional<int64_t> amount_received;
	std::optional<int64_t> amount_refunded;
	std::optional<std::string> payment_intent;
	std::optional<std::string> charge;  // charge: its id; payment intent: latest_charge
	std::optional<std::string> invoice;
	std::optional<std::string> failure_code;
	std::optional<std::string> failure_message;
	// checkout sessions and metadata
	std::optional<std::string> mode;
	std::optional<std::string> client_reference_id;
	std::optional<std::string> metadata_user_id;  // metadata.user_id (or the invoice's subscription_details.metadata)
	std::optional<std::string> subscription_data_user_id;  // checkout: subscription_data.metadata.user_id
};

struct Event {
	std::string id;
	std::string type;
	int64_t created = 0;  // Unix seconds
	std::optional<std::string> api_version;
	EventObject object;
};

// Parses a webhook payload. Throws billing::Error 22023 for JSON that does
// not parse or an event without id, type, created or data.object.
Event ParseEvent(std::string_view payload);

// Stripe subscription status -> billing.subscription_status:
// trialing, active, past_due, canceled, incomplete, paused map to themselves,
// unpaid -> past_due, incomplete_expired -> expired; anything else nullopt.
std::optional<std::string> MapSubscriptionStatus(std::string_view stripe_status);

// Stripe invoice status (draft, open, paid, void, uncollectible); nullopt otherwise.
std::optional<std::string> MapInvoiceStatus(std::string_view stripe_status);

// Stripe billing_reason -> the invoices.billing_reason values billing knows.
std::string MapBillingReason(const std::optional<std::string> &stripe_reason);

// The payload to keep: the same JSON without data.object.payment_method_details
// and without any "card" object anywhere (card data is never stored).
// Throws 22023 for JSON that does not parse.
std::string SanitizedPayload(std::string_view payload);

// The facts of an event as one JSON object (for the SQL side): every field of
// EventObject that has a value, times as Unix seconds, plus "status" mapped to
// billing's and "stripe_status" as sent.
std::string FactsJson(const Event &event);

}  // namespace billing::stripe
