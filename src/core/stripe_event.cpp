#include "core/stripe_event.hpp"

#include "core/error.hpp"
#include "core/calendar.hpp"
#include "core/lifecycle.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>

#include "core/pure.hpp"

namespace billing::stripe {
namespace {

using nlohmann::json;

const json *
Member(const json &object, std::string_view key)
{
	if (!object.is_object())
		return nullptr;
	auto it = object.find(key);
	if (it == object.end() || it->is_null())
		return nullptr;
	return &*it;
}

// The object at a path of keys, or nullptr if any step is absent or not an object.
const json *
Path(const json &root, std::initializer_list<std::string_view> keys)
{
	const json *node = &root;
	for (auto key : keys) {
		node = Member(*node, key);
		if (node == nullptr)
			return nullptr;
	}
	return node;
}

// A string field; an expanded object stands for its id.
std::optional<std::string>
Str(const json *value)
{
	if (value == nullptr)
		return std::nullopt;
	if (value->is_string()) {
		auto s = value->get<std::string>();
		if (s.empty())
			return std::nullopt;
		return s;
	}
	if (value->is_object())
		return Str(Member(*value, "id"));
	// metadata values are strings, but an application may have put a number
	if (value->is_number_integer())
		return value->dump();
	return std::nullopt;
}

std::optional<std::string>
Str(const json &object, std::string_view key)
{
	return Str(Member(object, key));
}

[[noreturn]] void
OutOfRange(std::string_view name, const char *range)
{
	throw InvalidParameter("invalid stripe event",
						   "Field \"" + std::string(name) + "\" is not an integer " + range + ".",
						   "Pass the request body exactly as Stripe sent it.");
}

enum class Sign { kAny, kNonNegative };

// An integer field: absent or null is nullopt; anything else that is not an
// integer in range (a float such as 1e30, a string, a bool) is refused, never
// coerced.
std::optional<int64_t>
Int(const json *value, std::string_view name, Sign sign = Sign::kNonNegative)
{
	if (value == nullptr)
		return std::nullopt;
	const char *range = sign == Sign::kAny ? "between -2^63 and 2^63-1" : "between 0 and 2^63-1";
	int64_t result = 0;
	if (value->is_number_unsigned()) {
		auto u = value->get<uint64_t>();
		if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
			OutOfRange(name, range);
		result = static_cast<int64_t>(u);
	} else if (value->is_number_integer())
		result = value->get<int64_t>();
	else
		OutOfRange(name, range);
	if (sign == Sign::kNonNegative && result < 0)
		OutOfRange(name, range);
	return result;
}

std::optional<int64_t>
Int(const json &object, std::string_view key, Sign sign = Sign::kNonNegative)
{
	return Int(Member(object, key), key, sign);
}

// A Unix time in whole seconds, 1970-01-01 to 9999-12-31 (UTC); anything
// else present is refused.
constexpr int64_t kMaxUnixSeconds = 253402300799;  // 9999-12-31 23:59:59 UTC

std::optional<int64_t>
Time(const json *value, std::string_view name)
{
	if (value == nullptr)
		return std::nullopt;
	if (!value->is_number_integer() || (value->is_number_unsigned() && value->get<uint64_t>() > kMaxUnixSeconds) ||
		value->get<int64_t>() < 0 || value->get<int64_t>() > kMaxUnixSeconds)
		OutOfRange(name, "of seconds between 1970 and 9999 (a Unix time)");
	return value->get<int64_t>();
}

std::optional<int64_t>
Time(const json &object, std::string_view key)
{
	return Time(Member(object, key), key);
}

bool
Bool(const json &object, std::string_view key)
{
	const json *value = Member(object, key);
	return value != nullptr && value->is_boolean() && value->get<bool>();
}

// The elements of a Stripe list ({"object": "list", "data": [...]}) or a bare array.
const json *
ListData(const json &object, std::string_view key)
{
	const json *list = Member(object, key);
	if (list == nullptr)
		return nullptr;
	if (list->is_array())
		return list;
	const json *data = Member(*list, "data");
	return data != nullptr && data->is_array() ? data : nullptr;
}

template <typename T>
void
FirstOf(std::optional<T> &target, std::optional<T> candidate)
{
	if (!target && candidate)
		target = std::move(candidate);
}

json
ParseJson(std::string_view payload)
{
	try {
		return json::parse(payload.begin(), payload.end());
	} catch (const json::parse_error &e) {
		throw InvalidParameter("malformed JSON in stripe event payload",
							   "The payload is not valid JSON at byte " + std::to_string(e.byte) + ".",
							   "Pass the request body exactly as Stripe sent it.");
	} catch (const json::exception &e) {
		throw InvalidParameter("malformed JSON in stripe event payload", "The payload is not valid JSON.",
							   "Pass the request body exactly as Stripe sent it.");
	}
}

void
ReadSubscription(const json &o, EventObject &out)
{
	if (const json *items = ListData(o, "items")) {
		for (const auto &item : *items) {
			if (!out.price_id) {
				FirstOf(out.price_id, Str(Path(item, {"price", "id"})));
				FirstOf(out.price_id, Str(Path(item, {"plan", "id"})));
			}
			FirstOf(out.current_period_start, Time(item, "current_period_start"));
			FirstOf(out.current_period_end, Time(item, "current_period_end"));
		}
	}
	// older API versions: on the subscription itself
	FirstOf(out.current_period_start, Time(o, "current_period_start"));
	FirstOf(out.current_period_end, Time(o, "current_period_end"));
	FirstOf(out.price_id, Str(Path(o, {"plan", "id"})));
	out.subscription = out.id;
	out.cancel_at_period_end = Bool(o, "cancel_at_period_end");
	out.cancel_at = Time(o, "cancel_at");
	out.canceled_at = Time(o, "canceled_at");
	out.ended_at = Time(o, "ended_at");
	out.trial_start = Time(o, "trial_start");
	out.trial_end = Time(o, "trial_end");
	out.start_date = Time(o, "start_date");
}

void
ReadInvoice(const json &o, EventObject &out)
{
	FirstOf(out.subscription, Str(Path(o, {"parent", "subscription_details", "subscription"})));
	FirstOf(out.subscription, Str(o, "subscription"));
	FirstOf(out.metadata_user_id, Str(Path(o, {"parent", "subscription_details", "metadata", "user_id"})));
	FirstOf(out.metadata_user_id, Str(Path(o, {"subscription_details", "metadata", "user_id"})));
	out.number = Str(o, "number");
	out.billing_reason = Str(o, "billing_reason");
	out.subtotal = Int(o, "subtotal", Sign::kAny);
	out.total = Int(o, "total", Sign::kAny);
	out.amount_paid = Int(o, "amount_paid");
	out.amount_due = Int(o, "amount_due");
	out.period_start = Time(o, "period_start");
	out.period_end = Time(o, "period_end");
	out.paid_at = Time(Path(o, {"status_transitions", "paid_at"}), "status_transitions.paid_at");
	out.charge = Str(o, "charge");
	FirstOf(out.payment_intent, Str(o, "payment_intent"));
	if (const json *payments = ListData(o, "payments")) {
		for (const auto &p : *payments)
			FirstOf(out.payment_intent, Str(Path(p, {"payment", "payment_intent"})));
	}
	if (const json *lines = ListData(o, "lines")) {
		for (const auto &l : *lines) {
			InvoiceLine line;
			line.description = Str(l, "description");
			line.amount = Int(l, "amount", Sign::kAny);
			line.currency = Str(l, "currency");
			line.period_start = Time(Path(l, {"period", "start"}), "lines.period.start");
			line.period_end = Time(Path(l, {"period", "end"}), "lines.period.end");
			FirstOf(line.price_id, Str(Path(l, {"pricing", "price_details", "price"})));
			FirstOf(line.price_id, Str(Path(l, {"price", "id"})));
			out.lines.push_back(std::move(line));
		}
	}
}

void
ReadPaymentIntent(const json &o, EventObject &out)
{
	out.payment_intent = out.id;
	out.amount = Int(o, "amount");
	out.amount_received = Int(o, "amount_received");
	out.charge = Str(o, "latest_charge");
	out.invoice = Str(o, "invoice");
	if (const json *error = Path(o, {"last_payment_error"})) {
		out.failure_code = Str(*error, "code");
		out.failure_message = Str(*error, "message");
	}
}

void
ReadCharge(const json &o, EventObject &out)
{
	out.charge = out.id;
	out.payment_intent = Str(o, "payment_intent");
	out.amount = Int(o, "amount");
	out.amount_refunded = Int(o, "amount_refunded");
	out.invoice = Str(o, "invoice");
	out.failure_code = Str(o, "failure_code");
	out.failure_message = Str(o, "failure_message");
}

void
ReadCheckoutSession(const json &o, EventObject &out)
{
	out.mode = Str(o, "mode");
	out.client_reference_id = Str(o, "client_reference_id");
	out.subscription = Str(o, "subscription");
	out.payment_intent = Str(o, "payment_intent");
	out.invoice = Str(o, "invoice");
	out.subscription_data_user_id = Str(Path(o, {"subscription_data", "metadata", "user_id"}));
	out.amount = Int(o, "amount_total");
}

// Removes "card" objects everywhere (recursion bounded by CheckBounds).
void
StripCards(json &node)
{
	if (node.is_object()) {
		for (auto it = node.begin(); it != node.end();) {
			if (it.key() == "card" && it->is_object())
				it = node.erase(it);
			else {
				StripCards(*it);
				++it;
			}
		}
	} else if (node.is_array()) {
		for (auto &element : node)
			StripCards(element);
	}
}

// Card data is never kept: data.object.payment_method_details and every
// "card" object go.
void
StripCardData(json &root)
{
	if (root.is_object()) {
		auto data = root.find("data");
		if (data != root.end() && data->is_object()) {
			auto object = data->find("object");
			if (object != data->end() && object->is_object())
				object->erase("payment_method_details");
		}
	}
	StripCards(root);
}


// The event inside an already parsed payload.
Event
ReadEvent(const json &root)
{
	if (!root.is_object())
		throw InvalidParameter("invalid stripe event", "The payload is not a JSON object.");
	Event event;
	auto id = Str(root, "id");
	auto type = Str(root, "type");
	auto created = Time(root, "created");
	const json *object = Path(root, {"data", "object"});
	if (!id || !Member(root, "id")->is_string())
		throw InvalidParameter("invalid stripe event", "The event has no \"id\" string.");
	if (!type || !Member(root, "type")->is_string())
		throw InvalidParameter("invalid stripe event", "The event has no \"type\" string.");
	if (!created)
		throw InvalidParameter("invalid stripe event", "The event has no \"created\" time in whole seconds between 1970 and 9999.");
	if (object == nullptr || !object->is_object())
		throw InvalidParameter("invalid stripe event", "The event has no \"data.object\" object.");
	event.id = *id;
	event.type = *type;
	event.created = *created;
	event.api_version = Str(root, "api_version");

	const json &o = *object;
	EventObject &out = event.object;
	out.object = Str(o, "object");
	out.id = Str(o, "id");
	out.customer = Str(o, "customer");
	out.status = Str(o, "status");
	out.currency = Str(o, "currency");
	out.created = Time(o, "created");
	out.metadata_user_id = Str(Path(o, {"metadata", "user_id"}));

	std::string kind = out.object.value_or("");
	if (kind == "subscription")
		ReadSubscription(o, out);
	else if (kind == "invoice")
		ReadInvoice(o, out);
	else if (kind == "payment_intent")
		ReadPaymentIntent(o, out);
	else if (kind == "charge")
		ReadCharge(o, out);
	else if (kind == "checkout.session")
		ReadCheckoutSession(o, out);
	return event;
}

bool
EndsWith(std::string_view text, std::string_view suffix)
{
	return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

std::string
LowerAscii(std::string text)
{
	for (char &c : text) {
		if (c >= 'A' && c <= 'Z')
			c = static_cast<char>(c - 'A' + 'a');
	}
	return text;
}

}  // namespace

void
CheckBounds(std::string_view payload)
{
	if (payload.size() > kMaxPayloadBytes)
		throw Error(sqlstate::kProgramLimitExceeded, "stripe event payload is too large",
					"The payload has " + std::to_string(payload.size()) + " bytes; at most " +
						std::to_string(kMaxPayloadBytes) + " are accepted.",
					"Stripe's events are far smaller; check what is posted to the webhook endpoint.");
	int depth = 0;
	bool in_string = false;
	for (size_t i = 0; i < payload.size(); ++i) {
		char c = payload[i];
		if (in_string) {
			if (c == '\\')
				++i;
			else if (c == '"')
				in_string = false;
		} else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[') {
			if (++depth > kMaxNesting)
				throw Error(sqlstate::kProgramLimitExceeded, "stripe event payload is nested too deeply",
							"Objects and arrays nest more than " + std::to_string(kMaxNesting) + " levels deep.",
							"Stripe's events are far shallower; check what is posted to the webhook endpoint.");
		} else if (c == '}' || c == ']')
			--depth;
	}
}

Event
ParseEvent(std::string_view payload)
{
	CheckBounds(payload);
	return ReadEvent(ParseJson(payload));
}

Prepared
Prepare(std::string_view payload)
{
	CheckBounds(payload);
	json root = ParseJson(payload);
	Prepared prepared;
	prepared.event = ReadEvent(root);
	prepared.stage = EventStage(prepared.event);
	StripCardData(root);
	prepared.stored_payload = root.dump();
	return prepared;
}

int
EventStage(const Event &event)
{
	const std::string &type = event.type;
	const EventObject &o = event.object;
	if (EndsWith(type, ".deleted"))
		return 3;
	std::string_view kind = o.object ? std::string_view(*o.object) : std::string_view();
	std::string_view status = o.status ? std::string_view(*o.status) : std::string_view();
	bool terminal = false;
	if (kind == "subscription")
		terminal = status == "canceled" || status == "incomplete_expired";
	else if (kind == "invoice")
		terminal = status == "paid" || status == "void" || type == "invoice.paid" ||
				   type == "invoice.payment_succeeded" || type == "invoice.voided";
	else if (kind == "payment_intent")
		terminal = status == "succeeded" || status == "canceled" || type == "payment_intent.succeeded" ||
				   type == "payment_intent.canceled";
	else if (kind == "charge")
		terminal = o.amount && o.amount_refunded && *o.amount > 0 && *o.amount_refunded >= *o.amount;
	else if (kind == "checkout.session")
		terminal = status == "complete" || status == "expired";
	if (terminal)
		return 2;
	return EndsWith(type, ".created") ? 0 : 1;
}

bool
IsNewer(const std::optional<Watermark> &last, const Watermark &incoming)
{
	if (!last || incoming.created > last->created)
		return true;
	return incoming.created == last->created && incoming.stage >= last->stage;
}

Handler
HandlerOf(std::string_view type)
{
	static constexpr std::pair<std::string_view, Handler> kHandled[] = {
		{"checkout.session.completed", Handler::kCheckout},
		{"customer.subscription.created", Handler::kSubscription},
		{"customer.subscription.updated", Handler::kSubscription},
		{"customer.subscription.deleted", Handler::kSubscription},
		{"customer.subscription.paused", Handler::kSubscription},
		{"customer.subscription.resumed", Handler::kSubscription},
		{"customer.subscription.trial_will_end", Handler::kSubscription},
		{"invoice.created", Handler::kInvoice},
		{"invoice.finalized", Handler::kInvoice},
		{"invoice.paid", Handler::kInvoice},
		{"invoice.payment_succeeded", Handler::kInvoice},
		{"invoice.payment_failed", Handler::kInvoice},
		{"invoice.voided", Handler::kInvoice},
		{"invoice.marked_uncollectible", Handler::kInvoice},
		{"payment_intent.succeeded", Handler::kPaymentIntent},
		{"payment_intent.payment_failed", Handler::kPaymentIntent},
		{"charge.succeeded", Handler::kChargeSucceeded},
		{"charge.refunded", Handler::kChargeRefunded},
	};
	for (const auto &[name, handler] : kHandled) {
		if (type == name)
			return handler;
	}
	return Handler::kNone;
}

std::optional<std::string>
Precheck(const Event &event, const std::function<bool(const std::string &price_id)> &has_plan)
{
	const EventObject &o = event.object;
	Handler handler = HandlerOf(event.type);
	if (!o.id)
		return "the event's object has no id";
	auto is = [&o](const char *kind) { return o.object && *o.object == kind; };
	switch (handler) {
	case Handler::kSubscription:
		if (!is("subscription"))
			return "the event's object is not a subscription";
		if (!o.price_id)
			return "the stripe subscription has no price";
		if (!has_plan(*o.price_id))
			return "no plan has stripe price \"" + *o.price_id +
				   "\"; set billing.subscription_plans.stripe_price_id";
		if (!MirrorSubscription(event))
			return "unknown stripe subscription status \"" + o.status.value_or("") + "\"";
		return std::nullopt;
	case Handler::kInvoice:
		if (!is("invoice"))
			return "the event's object is not an invoice";
		break;
	case Handler::kPaymentIntent:
		if (!is("payment_intent"))
			return "the event's object is not a payment intent";
		break;
	case Handler::kChargeSucceeded:
	case Handler::kChargeRefunded:
		if (!is("charge"))
			return "the event's object is not a charge";
		break;
	case Handler::kCheckout:
	case Handler::kNone:
		return std::nullopt;
	}
	bool currency = o.currency && o.currency->size() == 3 &&
					std::all_of(o.currency->begin(), o.currency->end(),
								[](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); });
	if (!currency)
		return "the stripe object has no currency";
	return std::nullopt;
}

namespace {

// The action of billing's state machine a Stripe status stands for, or none
// (a mirror rule: Stripe reached a state billing's own operations reach
// differently, or not at all).
struct StatusRow {
	std::string_view stripe;
	Status billing;
	std::optional<Action> action;
	const char *mirror;  // why it is mirrored, when there is no action
};

constexpr StatusRow kStatusRows[] = {
	{"trialing", Status::kTrialing, std::nullopt, "mirror: Stripe runs the trial (start_trial's state)"},
	{"active", Status::kActive, Action::kPaymentSucceeded, nullptr},
	{"past_due", Status::kPastDue, Action::kPaymentFailed, nullptr},
	{"unpaid", Status::kPastDue, std::nullopt, "mirror: Stripe stopped retrying; billing's grace period decides"},
	{"paused", Status::kPaused, Action::kPause, nullptr},
	{"incomplete", Status::kIncomplete, std::nullopt, "mirror: the first payment is pending (subscribe's state)"},
	{"incomplete_expired", Status::kExpired, Action::kIncompleteTimeout, nullptr},
	{"canceled", Status::kCanceled, Action::kCancelNow, nullptr},
};

const StatusRow *
FindStatus(std::string_view stripe_status)
{
	for (const auto &row : kStatusRows) {
		if (row.stripe == stripe_status)
			return &row;
	}
	return nullptr;
}

std::string
RuleName(const StatusRow &row)
{
	return row.action ? std::string(ToString(*row.action)) : std::string(row.mirror);
}

}  // namespace

const std::vector<StripeStatusRule> &
StripeStatusTable()
{
	static const std::vector<StripeStatusRule> table = [] {
		std::vector<StripeStatusRule> rows;
		static std::vector<std::string> names;  // keeps the rule strings alive
		names.reserve(std::size(kStatusRows) + 2);
		for (const auto &row : kStatusRows) {
			names.push_back(RuleName(row));
			rows.push_back({row.stripe.data(), ToString(row.billing), names.back().c_str()});
		}
		names.push_back(ToString(Action::kCancelAtPeriodEnd));
		rows.push_back({"active + cancel_at_period_end", ToString(Status::kCanceled), names.back().c_str()});
		names.push_back(ToString(Action::kCancelNow));
		rows.push_back({"customer.subscription.deleted (any status)", ToString(Status::kCanceled), names.back().c_str()});
		return rows;
	}();
	return table;
}

std::optional<SubscriptionMirror>
MirrorSubscription(const Event &event)
{
	const EventObject &o = event.object;
	SubscriptionMirror m;
	m.stripe_status = o.status.value_or("");
	const StatusRow *row = FindStatus(m.stripe_status);
	bool deleted = event.type == "customer.subscription.deleted";
	if (row == nullptr && !deleted)
		return std::nullopt;
	Status status = row ? row->billing : Status::kCanceled;
	m.rule = row ? RuleName(*row) : ToString(Action::kCancelNow);
	m.cancel_at_period_end = o.cancel_at_period_end;
	if (deleted && status != Status::kCanceled && status != Status::kExpired) {
		status = Status::kCanceled;
		m.rule = ToString(Action::kCancelNow);
	}
	// Stripe keeps a subscription that cancels at period end "active"; in
	// billing that is a pending cancel: canceled, cancel_at_period_end, not ended.
	bool pending_cancel = status == Status::kActive && o.cancel_at_period_end;
	if (pending_cancel) {
		status = Status::kCanceled;
		m.rule = ToString(Action::kCancelAtPeriodEnd);
	}
	if ((status == Status::kCanceled && !pending_cancel) || status == Status::kExpired) {
		m.ended_at = o.ended_at ? o.ended_at : o.canceled_at ? o.canceled_at : std::optional<int64_t>(event.created);
		m.end_reason = status == Status::kExpired ? "incomplete_expired" : "canceled";
	}
	if (status == Status::kCanceled)
		m.canceled_at = o.canceled_at ? o.canceled_at : m.ended_at ? m.ended_at : std::optional<int64_t>(event.created);
	m.status = ToString(status);
	return m;
}

std::optional<SubscriptionRow>
DecideSubscriptionRow(const Event &event, std::optional<int64_t> started)
{
	auto mirror = MirrorSubscription(event);
	if (!mirror)
		return std::nullopt;
	const EventObject &o = event.object;
	SubscriptionRow row;
	row.mirror = *mirror;
	row.started = started ? *started : o.start_date ? *o.start_date : o.created ? *o.created : event.created;
	row.period_start = o.current_period_start.value_or(row.started);
	if (o.current_period_end && *o.current_period_end >= row.period_start)
		row.period_end = o.current_period_end;
	row.trial_start = o.trial_start;
	row.trial_end = o.trial_end;
	if (row.trial_end) {
		if (!row.trial_start)
			row.trial_start = std::min(row.started, *row.trial_end);
		row.trial_end = std::max(*row.trial_end, *row.trial_start);
	}
	if (mirror->ended_at)
		row.ended_at = std::max(*mirror->ended_at, row.started);
	if (mirror->status == "past_due")
		row.past_due_since = event.created;
	if (mirror->status == "paused")
		row.paused_at = event.created;
	return row;
}

std::optional<std::string>
NamedUser(const EventObject &o)
{
	std::optional<std::string> user = o.metadata_user_id;
	FirstOf(user, o.subscription_data_user_id);
	FirstOf(user, o.client_reference_id);
	return user;
}

std::optional<std::string>
MapSubscriptionStatus(std::string_view s)
{
	const StatusRow *row = FindStatus(s);
	return row ? std::optional<std::string>(ToString(row->billing)) : std::nullopt;
}

InvoiceDecision
DecideInvoice(const Event &event)
{
	const EventObject &o = event.object;
	InvoiceDecision d;
	std::optional<std::string> mapped = o.status ? MapInvoiceStatus(*o.status) : std::nullopt;
	if (event.type == "invoice.paid" || event.type == "invoice.payment_succeeded")
		d.status = "paid";
	else if (mapped)
		d.status = *mapped;
	else
		d.status = event.type == "invoice.created" ? "draft" : "open";
	if (d.status == "paid")
		d.paid_at = o.paid_at.value_or(event.created);
	const InvoiceLine *first = o.lines.empty() ? nullptr : &o.lines.front();
	d.period_start = first && first->period_start ? first->period_start : o.period_start;
	d.period_end = first && first->period_end ? first->period_end : o.period_end;
	if (d.period_start && d.period_end && *d.period_end < *d.period_start)
		d.period_end.reset();
	d.issued_at = o.created.value_or(event.created);
	d.billing_reason = MapBillingReason(o.billing_reason);
	d.currency = LowerAscii(o.currency.value_or(""));
	d.subtotal = o.subtotal;
	d.total = o.total;
	d.amount_paid = o.amount_paid;
	d.amount_due = o.amount_due;
	d.lines = InvoiceLinesJson(o.lines);
	return d;
}

std::string
JsonTime(int64_t unix_seconds)
{
	std::string t = FormatTimestamp(unix_seconds * kMicrosPerSecond);  // "2026-01-31 09:00:00+00"
	t[10] = 'T';
	return t + ":00";
}

std::string
InvoiceLinesJson(const std::vector<InvoiceLine> &lines)
{
	json out = json::array();
	auto time = [](const std::optional<int64_t> &t) { return t ? json(JsonTime(*t)) : json(nullptr); };
	for (const auto &l : lines) {
		out.push_back({{"description", l.description ? json(*l.description) : json(nullptr)},
					   {"amount_cents", l.amount ? json(*l.amount) : json(nullptr)},
					   {"currency", l.currency ? json(LowerAscii(*l.currency)) : json(nullptr)},
					   {"period_start", time(l.period_start)},
					   {"period_end", time(l.period_end)},
					   {"stripe_price_id", l.price_id ? json(*l.price_id) : json(nullptr)}});
	}
	return out.dump();
}

std::optional<std::string>
UserOf(const EventObject &object, const UserCandidates &held)
{
	std::optional<std::string> user = held.of_subscription;
	FirstOf(user, held.of_invoice);
	FirstOf(user, NamedUser(object));
	FirstOf(user, held.linked_to_customer);
	FirstOf(user, held.of_customers_subscription);
	return user;
}

bool
SeeksOwnInvoice(const Event &event, const StoredInvoice &stored)
{
	std::string reason = MapBillingReason(event.object.billing_reason);
	return !stored.invoice_id && stored.subscription_id &&
		   (reason == "subscription_create" || reason == "subscription_cycle") && DecideInvoice(event).period_start;
}

InvoiceAction
DecideInvoice(const Event &event, const StoredInvoice &stored)
{
	InvoiceAction action;
	if (!stored.user_id) {
		action.pending_reason = PendingReason(event);
		return action;
	}
	action.row = DecideInvoice(event);
	std::optional<int64_t> target = stored.invoice_id;
	if (!target && SeeksOwnInvoice(event, stored) && stored.own_invoice_id) {
		bool closed = stored.own_invoice_status && (*stored.own_invoice_status == "void" || *stored.own_invoice_status == "paid");
		if (stored.own_invoice_taken || closed)
			action.row.billing_reason = "manual";  // kept beside the invoice that holds the period
		else
			target = stored.own_invoice_id;
	}
	action.write = target ? InvoiceWrite::kUpdate : InvoiceWrite::kInsert;
	action.invoice_id = target;
	if (stored.invoice_id && stored.period_held_by_another) {
		action.row.billing_reason = "manual";  // kept beside the invoice that holds the period
		action.becomes_manual = true;
	}
	action.replace_lines = !event.object.lines.empty();
	return action;
}

std::optional<std::string>
InvoiceNumber(const Event &event, bool stripe_number_taken)
{
	if (!event.object.number || stripe_number_taken)
		return std::nullopt;
	return event.object.number;
}

std::optional<InvoicePaymentPlan>
InvoicePayment(const Event &event, const InvoiceDecision &row)
{
	const EventObject &o = event.object;
	if (event.type != "invoice.paid" && event.type != "invoice.payment_succeeded")
		return std::nullopt;
	if (!row.amount_paid || *row.amount_paid <= 0 || !row.paid_at)
		return std::nullopt;
	InvoicePaymentPlan plan;
	plan.amount = *row.amount_paid;
	plan.currency = row.currency;
	plan.paid_at = *row.paid_at;
	plan.charge = o.charge;
	if (o.payment_intent) {
		plan.kind = InvoicePaymentPlan::Kind::kUnderIntent;
		plan.external_id = *o.payment_intent;
		plan.payment_intent = o.payment_intent;
	} else {
		plan.kind = InvoicePaymentPlan::Kind::kAdoptOrRecord;
		plan.external_id = "stripe_invoice:" + o.id.value_or("");
	}
	return plan;
}

std::string
PendingReason(const Event &event)
{
	const EventObject &o = event.object;
	switch (HandlerOf(event.type)) {
	case Handler::kInvoice:
		return "no billing user for stripe invoice \"" + o.id.value_or("") +
			   "\": neither its subscription nor its customer is known";
	case Handler::kChargeRefunded:
		return "no billing user for stripe charge \"" + o.id.value_or("") +
			   "\": it has no metadata.user_id and its customer is not linked";
	case Handler::kSubscription:
		return "no billing user for stripe subscription \"" + o.id.value_or("") +
			   "\": it has no metadata.user_id and its customer is not linked";
	default: {
		// a payment: named by its payment intent (a charge without one: the charge)
		std::optional<std::string> id = o.payment_intent ? o.payment_intent : o.id;
		return "no billing user for stripe payment intent \"" + id.value_or("") +
			   "\": it has no metadata.user_id and its customer is not linked";
	}
	}
}

std::optional<PaymentRecord>
DecidePayment(const Event &event)
{
	Handler handler = HandlerOf(event.type);
	std::optional<std::string> status = PaymentStatus(event.type);
	if ((handler != Handler::kPaymentIntent && handler != Handler::kChargeSucceeded) || !status)
		return std::nullopt;
	const EventObject &o = event.object;
	PaymentRecord p;
	p.succeeded = *status == "succeeded";
	p.currency = LowerAscii(o.currency.value_or(""));
	p.paid_at = event.created;
	p.payment_intent = o.payment_intent;
	if (handler == Handler::kChargeSucceeded) {
		// the payment the charge is, as its payment intent's event records it
		p.charge = o.id;
		p.amount = o.amount.value_or(0);
	} else {
		p.charge = o.charge;
		if (p.succeeded)
			p.amount = o.amount_received && *o.amount_received != 0 ? *o.amount_received : o.amount.value_or(0);
		else
			p.amount = o.amount.value_or(0);
		if (!p.succeeded) {
			p.failure_code = o.failure_code.value_or("payment_failed");
			p.failure_message = o.failure_message;
		}
	}
	p.external_id = p.payment_intent ? *p.payment_intent : p.charge.value_or("");
	return p;
}

PaymentRecord
PaymentOfRefundedCharge(const Event &event)
{
	const EventObject &o = event.object;
	PaymentRecord p;
	p.succeeded = true;
	p.payment_intent = o.payment_intent;
	p.charge = o.id;
	p.external_id = p.payment_intent ? *p.payment_intent : p.charge.value_or("");
	p.amount = o.amount.value_or(0);
	p.currency = LowerAscii(o.currency.value_or(""));
	p.paid_at = o.created.value_or(event.created);
	return p;
}

bool
OutcomeReplaces(const StoredPayment &stored, const PaymentRecord &)
{
	// a succeeded payment stays succeeded; anything else takes the newer outcome
	return !stored.succeeded;
}

PaymentRow
MergePayment(const StoredPayment &stored, const PaymentRecord &incoming, std::optional<int64_t> subscription_id,
			 std::optional<int64_t> invoice_id)
{
	PaymentRow row;
	row.subscription_id = stored.subscription_id ? stored.subscription_id : subscription_id;
	row.invoice_id = stored.invoice_id ? stored.invoice_id : invoice_id;
	row.payment_intent = stored.payment_intent ? stored.payment_intent : incoming.payment_intent;
	row.charge = incoming.charge ? incoming.charge : stored.charge;
	row.replaces_outcome = OutcomeReplaces(stored, incoming);
	return row;
}

std::optional<Adoption>
AdoptionOf(const Event & /*event: the payment has its time*/, const PaymentRecord &payment)
{
	if (!payment.succeeded)
		return std::nullopt;
	Adoption a;
	a.external_id = payment.external_id;
	a.payment_intent = payment.payment_intent;
	a.charge = payment.charge;
	a.amount = payment.amount;
	a.currency = payment.currency;
	a.at = payment.paid_at;
	return a;
}

bool
RefundAwaitsPlacement(bool payment_placed_now, bool refund_has_entries)
{
	return payment_placed_now && !refund_has_entries;
}

Takeover
TakeoverOf(bool has_current, bool current_on_stripe, bool same_plan, bool plan_free, bool arrives_ended,
		   bool older_than_current, bool awaits_payment, bool current_predates_arriving)
{
	if (!has_current)
		return Takeover::kNone;
	if (awaits_payment && !current_on_stripe)
		return Takeover::kAwait;
	if (!current_on_stripe && same_plan && !plan_free)
		return Takeover::kAdopt;
	// first seen ended (O2): billing's own subscription, current when the
	// Stripe one started, is ended as Stripe's order ends it (then Free)
	if (arrives_ended)
		return !current_on_stripe && current_predates_arriving ? Takeover::kEnd : Takeover::kNone;
	return current_on_stripe && older_than_current ? Takeover::kAside : Takeover::kEnd;
}

bool
CurrentPredatesArriving(int64_t current_started, int64_t arriving_started)
{
	return current_started < arriving_started;
}

bool
Unpaid(std::string_view stripe_status)
{
	return stripe_status == "incomplete" || stripe_status == "incomplete_expired";
}

bool
PaidOwn(bool current_on_stripe, bool current_plan_free, std::string_view current_status)
{
	return !current_on_stripe && !current_plan_free && current_status != "incomplete" &&
		   current_status != "trialing" && current_status != "expired";
}

bool
AwaitsPayment(std::string_view arriving_stripe_status, bool arrives_ended, bool kept_aside_unpaid, bool has_current,
			  bool current_on_stripe, bool current_plan_free, std::string_view current_status)
{
	return has_current && (Unpaid(arriving_stripe_status) || (kept_aside_unpaid && arrives_ended)) &&
		   PaidOwn(current_on_stripe, current_plan_free, current_status);
}

SubscriptionRow
AwaitingPayment(SubscriptionRow row)
{
	bool ended_by_stripe = row.ended_at.has_value();
	if (!ended_by_stripe) {
		row.mirror.status = "canceled";
		row.mirror.end_reason = "plan_changed";
		row.mirror.canceled_at = row.started;
	}
	row.mirror.rule = ended_by_stripe
		? "mirror: an unpaid subscription ended by Stripe while kept aside replaces nothing"
		: "mirror: an unpaid subscription is kept aside, ended at its start, until it is paid or started";
	row.awaiting_payment = !ended_by_stripe;
	row.ended_at = row.started;
	row.past_due_since.reset();
	row.paused_at.reset();
	return row;
}

bool
OlderThanCurrent(const std::optional<std::string> &arriving_customer, int64_t arriving_started,
				 const std::optional<std::string> &current_customer, int64_t current_started)
{
	return arriving_customer && current_customer && *arriving_customer == *current_customer &&
		   arriving_started < current_started;
}

SubscriptionRow
KeptAside(SubscriptionRow row)
{
	row.mirror.status = "canceled";
	row.mirror.end_reason = "plan_changed";
	row.mirror.rule = "mirror: an older subscription delivered late is kept aside, ended at its start";
	row.ended_at = row.started;
	row.past_due_since.reset();
	row.paused_at.reset();
	return row;
}

std::optional<int64_t>
RefundedPayment(const std::vector<RefundCandidate> &candidates)
{
	const RefundCandidate *best = nullptr;
	for (const auto &c : candidates) {
		if (best == nullptr || (c.by_charge && !best->by_charge) || (c.by_charge == best->by_charge && c.id < best->id))
			best = &c;
	}
	return best ? std::optional<int64_t>(best->id) : std::nullopt;
}

std::optional<Refund>
DecideRefund(const Event &event, int64_t paid, int64_t already_refunded, std::optional<int64_t> paid_at)
{
	const EventObject &o = event.object;
	int64_t total = std::min(o.amount_refunded.value_or(0), paid);
	if (total <= already_refunded)
		return std::nullopt;
	return Refund{total - already_refunded, total, "stripe_refund:" + o.id.value_or("") + ":" + std::to_string(total),
				  std::max(event.created, paid_at.value_or(event.created))};
}

bool
EndsSubscription(const Event &event)
{
	if (HandlerOf(event.type) != Handler::kSubscription)
		return false;
	std::optional<SubscriptionMirror> m = MirrorSubscription(event);
	return m && m->ended_at.has_value();
}

std::optional<std::string>
HeldForDeletedUser(const Event &event, const std::optional<ClosedCustomer> &closed, bool subscription_held)
{
	if (!closed)
		return std::nullopt;
	if (subscription_held && EndsSubscription(event))
		return std::nullopt;  // the deleted user's Stripe subscription ends, as the deletion left it to
	return "stripe customer \"" + closed->customer + "\" belonged to user \"" + closed->user_id +
		   "\", deleted at " + FormatTimestamp(closed->user_deleted_at * kMicrosPerSecond) +
		   ": not applied to whoever holds the id now";
}

CheckoutLink
DecideCheckout(const Event &event)
{
	const EventObject &o = event.object;
	CheckoutLink link;
	std::optional<std::string> user = NamedUser(o);
	if (!user) {
		link.ignored = "the checkout session has no client_reference_id or metadata.user_id";
		return link;
	}
	link.user_id = *user;
	link.customer = o.customer;
	if (o.customer)
		link.subscription = o.subscription;
	return link;
}

std::optional<std::string>
PaymentStatus(std::string_view event_type)
{
	if (event_type == "payment_intent.succeeded" || event_type == "charge.succeeded")
		return "succeeded";
	if (event_type == "payment_intent.payment_failed")
		return "failed";
	return std::nullopt;
}

std::optional<std::string>
MapInvoiceStatus(std::string_view s)
{
	if (s == "draft" || s == "open" || s == "paid" || s == "void" || s == "uncollectible")
		return std::string(s);
	return std::nullopt;
}

std::string
MapBillingReason(const std::optional<std::string> &reason)
{
	if (reason && (*reason == "subscription_create" || *reason == "subscription_cycle" ||
				   *reason == "subscription_update"))
		return *reason;
	return "manual";
}

std::string
SanitizedPayload(std::string_view payload)
{
	CheckBounds(payload);
	json root = ParseJson(payload);
	StripCardData(root);
	return root.dump();
}

int64_t
StartAfterReplaced(int64_t stripe_started, std::optional<int64_t> replaced_ended_micros, bool replaced_free)
{
	if (!replaced_ended_micros || replaced_free)
		return stripe_started;
	constexpr int64_t kPerSecond = 1000000;
	int64_t ended = *replaced_ended_micros / kPerSecond;
	if (*replaced_ended_micros % kPerSecond > 0)
		ended += 1;  // rounded up: never before the end
	return std::max(stripe_started, ended);
}

}  // namespace billing::stripe
