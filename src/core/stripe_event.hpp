// Stripe webhook events, parsed into the facts billing needs.
//
// Stripe objects change shape between API versions and fields may be null,
// empty or absent: every field here is optional and absence is never an error.
// Refused: a payload larger than kMaxPayloadBytes or nested deeper than
// kMaxNesting (54000, checked before anything is parsed); JSON that does not
// parse, an event without id, type, created or data.object, and a number or
// time billing reads that is not an integer in range (22023).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace billing::stripe {

// Stripe's events are a few kilobytes and a handful of levels deep; these
// bounds leave ample room and keep every recursion over the JSON shallow.
inline constexpr size_t kMaxPayloadBytes = 1024 * 1024;
inline constexpr int kMaxNesting = 64;

// Throws 54000 when the payload is too large or nested too deeply. Scans the
// bytes once without recursion (strings are skipped, escapes respected).
void CheckBounds(std::string_view payload);

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

// Parses a webhook payload (CheckBounds first). Throws billing::Error 22023
// for JSON that does not parse, an event without id, type, created or
// data.object, or a read number out of range (amounts: 0..2^63-1, except
// invoice totals and line amounts, which may be negative; times: 1970..9999).
Event ParseEvent(std::string_view payload);

// What ingesting keeps of a payload: the parsed event and the payload to
// store (SanitizedPayload), from one parse.
struct Prepared {
	Event event;
	std::string stored_payload;
	int stage = 0;  // EventStage(event)
};
Prepared Prepare(std::string_view payload);

// Ordering (per Stripe object). Stripe's `created` is whole seconds, so two
// events of one object often share it; then the object's own state decides:
//   0 creation  the object's *.created event (its first state)
//   1 change    any other event that leaves the object in a non-terminal state
//   2 terminal  a final state: subscription canceled / incomplete_expired,
//               invoice paid / void, payment intent succeeded / canceled,
//               charge fully refunded, checkout session complete / expired
//   3 deletion  customer.subscription.deleted, *.deleted
int EventStage(const Event &event);

struct Watermark {
	int64_t created = 0;  // Unix seconds of the newest applied event
	int stage = 0;        // its stage
};

// True when an event (created, stage) may be applied over the last applied
// one: newer in seconds, or the same second and a stage at least as far.
// So a terminal state is never undone by a non-terminal one of the same
// second, whatever the delivery order, and a creation never overwrites a
// change of its own second; same-second changes apply in delivery order.
bool IsNewer(const std::optional<Watermark> &last, const Watermark &incoming);

// The event types billing applies, by the handler that applies them; any
// other type is kNone and recorded as ignored.
enum class Handler { kNone, kCheckout, kSubscription, kInvoice, kPaymentIntent, kChargeSucceeded, kChargeRefunded };
Handler HandlerOf(std::string_view type);
inline bool Handled(std::string_view type) { return HandlerOf(type) != Handler::kNone; }

// Why a handled event cannot be applied whatever billing holds (its object is
// not of the event's kind, has no id, no price, a price no plan has, an
// unknown subscription status, no currency), or nullopt when it can. The
// reasons are stored with the ignored event. `has_plan` answers whether a
// plan has a Stripe price (the one fact the core cannot know).
std::optional<std::string> Precheck(const Event &event,
									const std::function<bool(const std::string &price_id)> &has_plan);

// One state machine: what a Stripe subscription event makes of billing's
// subscription. Stripe is the source of truth for the subscriptions it
// manages, so the target does not depend on billing's current status; each
// Stripe status (and event type) is named onto a transition of billing's
// table (lifecycle.hpp) or an explicit mirror rule, and SQL stores the result.
struct SubscriptionMirror {
	std::string status;                    // billing.subscription_status
	std::string stripe_status;             // as Stripe sent it ("" when absent)
	bool cancel_at_period_end = false;
	std::optional<int64_t> canceled_at;    // Unix seconds
	std::optional<int64_t> ended_at;
	std::optional<std::string> end_reason; // canceled, incomplete_expired
	std::string rule;                      // the transition (action name) or "mirror: ..."
};

// The table behind MirrorSubscription, one row per Stripe status / event
// (the README shows it): Stripe status, billing status, rule.
struct StripeStatusRule {
	const char *stripe;
	const char *billing;
	const char *rule;
};
const std::vector<StripeStatusRule> &StripeStatusTable();

// nullopt when the Stripe status is unknown (the event is then ignored).
std::optional<SubscriptionMirror> MirrorSubscription(const Event &event);

// What billing stores for a Stripe subscription event: the mirror and the
// times, made consistent with each other (Unix seconds). `started` is when
// billing's subscription started if it exists (its start never moves).
struct SubscriptionRow {
	SubscriptionMirror mirror;
	int64_t started = 0;                    // existing start, else start_date, created, the event's time
	int64_t period_start = 0;               // current_period_start, else started
	std::optional<int64_t> period_end;      // dropped when before period_start
	std::optional<int64_t> trial_start;     // defaults to min(started, trial_end) when a trial end is known
	std::optional<int64_t> trial_end;       // never before trial_start
	std::optional<int64_t> ended_at;        // never before started
	std::optional<int64_t> past_due_since;  // the event's time when past_due (kept if already past due)
	std::optional<int64_t> paused_at;       // the event's time when paused (likewise)
	// kept aside until Stripe says it is paid or started (AwaitingPayment):
	// a later event of it decides again, as if it were first seen (O1)
	bool awaiting_payment = false;
};
// nullopt when the Stripe status is unknown (Precheck has refused it).
std::optional<SubscriptionRow> DecideSubscriptionRow(const Event &event, std::optional<int64_t> started);

// When a Stripe subscription that replaces billing's own (Takeover::kEnd)
// starts, in epoch seconds: Stripe's start, or the end of the replaced one
// when that is later (ReplaceByStripe ends it no earlier than its latest
// recorded change, which may be after Stripe's start). The user has one
// current subscription at any instant: the two never overlap, so mrr and
// plan_distribution of a past date count one (review X3). `replaced_ended`
// is in microseconds since the epoch, rounded up to the second. A replaced
// Free subscription (`replaced_free`) keeps Stripe's start: a Free one is
// often started by billing itself at the real time (a user first seen), long
// after Stripe's start, and it neither counts in mrr nor was paid for.
int64_t StartAfterReplaced(int64_t stripe_started, std::optional<int64_t> replaced_ended_micros,
						   bool replaced_free = false);

// What a Stripe subscription billing does not hold yet does to the user's
// current subscription: nothing (there is none, or the new one arrives
// ended); adopts it, when it is the same paid plan not yet linked to Stripe
// (its own open invoices become void, what was paid toward them the
// customer's credit: Stripe bills the subscription from now on); otherwise
// ends it as a plan change (billing::ReplaceByStripe, the rule change_plan
// ends a subscription by: its open invoices void, its unused paid time
// credited).
//
// kAside: the user's current subscription is a Stripe subscription of the
// same customer that started after the arriving one (`older_than_current`,
// see OlderThanCurrent): an older subscription delivered late (Stripe
// replaced it by the current one; its creation or its last events came
// after) replaces nothing. It is recorded aside (KeptAside) and the user
// stays on the newer one (review D1, session 9).
//
// kAwait: the arriving Stripe subscription is not paid yet (Unpaid: Stripe's
// incomplete or incomplete_expired) and the user's current subscription is
// one of billing's own the customer has paid for (PaidOwn): it neither adopts
// nor replaces that plan. It is recorded aside (AwaitingPayment), billing's
// own plan stays current, nothing is credited; a later event of it that says
// it is paid or started (active, trialing, ...) decides again, as if it were
// first seen (review O1, session 10). On anything else (Free, billing's own
// trial or incomplete, a Stripe subscription) an unpaid one takes over as
// before.
//
// First seen ended (`arrives_ended`: its earlier events late), another plan
// than billing's own current one: in Stripe's order (created, then ended) it
// replaced that subscription at its start and its end put the user on Free,
// so it does the same when billing's own subscription was current when it
// started (`current_predates_arriving`, CurrentPredatesArriving): kEnd, and
// the glue starts Free at its end. One that started later (the Stripe one
// could not have replaced it), or a current Stripe subscription, is left
// alone (kNone). Before, it replaced nothing in any case, and the outcome
// depended on the delivery order (review O2, session 11).
enum class Takeover { kNone, kAdopt, kEnd, kAside, kAwait };
Takeover TakeoverOf(bool has_current, bool current_on_stripe, bool same_plan, bool plan_free, bool arrives_ended,
					bool older_than_current = false, bool awaits_payment = false,
					bool current_predates_arriving = false);

// Whether the user's current subscription started (epoch seconds) before an
// arriving Stripe subscription did: strictly before (a tie: not replaced).
bool CurrentPredatesArriving(int64_t current_started, int64_t arriving_started);

// Whether a Stripe subscription status says its first payment has not been
// made: incomplete, incomplete_expired.
bool Unpaid(std::string_view stripe_status);

// Whether the user's current subscription is billing's own (not on Stripe)
// for a paid plan (`current_plan_free` false) the customer has paid for: its
// status is past its first payment (not incomplete, not trialing).
bool PaidOwn(bool current_on_stripe, bool current_plan_free, std::string_view current_status);

// Whether a Stripe subscription billing does not hold yet (or holds aside,
// awaiting payment: `kept_aside_unpaid`) waits aside (Takeover::kAwait): the
// current subscription is PaidOwn and the arriving one is Unpaid, or was kept
// aside unpaid and Stripe now ends it (`arrives_ended`: canceled, deleted;
// never paid, it then stays aside for good rather than adopt and end the paid
// plan).
bool AwaitsPayment(std::string_view arriving_stripe_status, bool arrives_ended, bool kept_aside_unpaid,
				   bool has_current, bool current_on_stripe, bool current_plan_free, std::string_view current_status);

// The row of a Stripe subscription kept aside while unpaid (Takeover::kAwait):
// Stripe's data as sent, ended at its own start so that it is the user's
// current subscription at no instant (one current subscription, no overlap):
// canceled (end_reason plan_changed) while Stripe still waits for its first
// payment, with awaiting_payment set; as Stripe ended it (expired,
// incomplete_expired; canceled) once it did, and then for good.
SubscriptionRow AwaitingPayment(SubscriptionRow row);

// Whether a Stripe subscription billing does not hold yet is older than the
// user's current Stripe subscription: the same customer (both known), and its
// own start (SubscriptionRow::started: start_date, else created) before the
// current one's start (Stripe's: the glue passes the earlier of its started_at
// and billing_anchor, its first period start as Stripe sent it, since
// StartAfterReplaced may have started it later). A tie is not older (the
// later delivery replaces).
bool OlderThanCurrent(const std::optional<std::string> &arriving_customer, int64_t arriving_started,
					  const std::optional<std::string> &current_customer, int64_t current_started);

// The row of a subscription kept aside (Takeover::kAside): Stripe's data as
// sent, but ended at its own start (canceled, end_reason plan_changed: the
// customer moved to the newer one), so it is visible in the history yet was
// the user's current subscription at no instant (the user keeps one current
// subscription, and the two never overlap). Its later events find it ended
// and change nothing (Stripe cannot bring an ended subscription back).
SubscriptionRow KeptAside(SubscriptionRow row);

// The billing user an object names itself (metadata.user_id, the checkout's
// subscription_data.metadata.user_id, client_reference_id), in that order.
std::optional<std::string> NamedUser(const EventObject &object);

// Stripe subscription status -> billing.subscription_status:
// trialing, active, past_due, canceled, incomplete, paused map to themselves,
// unpaid -> past_due, incomplete_expired -> expired; anything else nullopt.
std::optional<std::string> MapSubscriptionStatus(std::string_view stripe_status);

// What billing stores for a Stripe invoice event (Unix seconds). Status:
// Stripe's (MapInvoiceStatus) when known, else by the event (created: draft,
// paid: paid, otherwise open); invoice.paid and invoice.payment_succeeded
// always make it paid. Paid at status_transitions.paid_at, else the event's
// time. Period from the first line, else the invoice's own, the end dropped
// when before the start. Issued when Stripe created it, else the event's time.
// Also the rest of the row, as stored: billing_reason (MapBillingReason),
// currency lower-cased, the amounts as sent, and the lines as a JSON array
// (InvoiceLinesJson: times in UTC whatever the session's TimeZone).
struct InvoiceDecision {
	std::string status;
	std::optional<int64_t> paid_at;
	std::optional<int64_t> period_start;
	std::optional<int64_t> period_end;
	int64_t issued_at = 0;
	std::string billing_reason;
	std::string currency;
	std::optional<int64_t> subtotal;
	std::optional<int64_t> total;
	std::optional<int64_t> amount_paid;
	std::optional<int64_t> amount_due;
	std::string lines;  // JSON array; "[]" when the event has no lines
};
InvoiceDecision DecideInvoice(const Event &event);

// A Unix time as PostgreSQL writes a timestamptz into JSON in UTC:
// "2026-01-15T00:00:00+00:00" (whole seconds, years 1970..9999).
std::string JsonTime(int64_t unix_seconds);

// The invoice lines billing keeps, as a JSON array of objects with
// description, amount_cents, currency (lower-cased), period_start,
// period_end (JsonTime, or null) and stripe_price_id; absent values are null.
std::string InvoiceLinesJson(const std::vector<InvoiceLine> &lines);

// The billing user a Stripe object belongs to, from what billing holds, in
// order of trust: the user of the subscription it names, of the invoice it
// names, the user the object names itself (NamedUser), the user its customer
// was linked to (checkout), the user of the customer's latest subscription.
struct UserCandidates {
	std::optional<std::string> of_subscription;
	std::optional<std::string> of_invoice;
	std::optional<std::string> linked_to_customer;
	std::optional<std::string> of_customers_subscription;
};
std::optional<std::string> UserOf(const EventObject &object, const UserCandidates &held);

// What billing holds for an invoice event (the glue's lookups, in order).
struct StoredInvoice {
	std::optional<int64_t> subscription_id;  // billing's subscription with the invoice's Stripe subscription id
	std::optional<std::string> user_id;      // UserOf the invoice
	std::optional<int64_t> invoice_id;       // billing's invoice with this stripe_invoice_id
	// billing's own invoice of the subscription for the invoice's period
	// (looked up only when SeeksOwnInvoice), and whether another Stripe
	// invoice already took it
	std::optional<int64_t> own_invoice_id;
	bool own_invoice_taken = false;
	// its status: a void one (Stripe adopted its subscription; what it held
	// went back as credit) or a paid one (it holds billing's own payments) is
	// never taken either: Stripe's is kept beside it
	std::optional<std::string> own_invoice_status;
	// the invoice stored under its Stripe id (invoice_id) is a first-period or
	// renewal one, and once it takes the event's subscription and period
	// another such invoice holds them (invoices_one_per_period): it was stored
	// before its subscription arrived, then another Stripe invoice of that
	// subscription and period took the period (review D2, session 9)
	bool period_held_by_another = false;
};

// Whether billing's own invoice of the period may become this Stripe invoice:
// none is stored under its id yet, billing holds its subscription, and it is
// a first-period or renewal invoice with a known period start.
bool SeeksOwnInvoice(const Event &event, const StoredInvoice &stored);

// What an invoice event does: wait for its user (kPending, with the reason),
// insert a new invoice, or update the stored one (invoice_id): the one stored
// under its Stripe id, else billing's own invoice of the period. Another
// Stripe invoice for a period whose invoice a Stripe invoice already took is
// inserted as a manual one; so is a stored one whose period another took
// (StoredInvoice::period_held_by_another: it becomes manual, kept beside).
enum class InvoiceWrite { kPending, kInsert, kUpdate };
struct InvoiceAction {
	InvoiceWrite write = InvoiceWrite::kPending;
	std::string pending_reason;
	std::optional<int64_t> invoice_id;  // kUpdate
	InvoiceDecision row;
	bool replace_lines = false;  // kUpdate: the event's lines replace the stored ones (it has some)
	bool becomes_manual = false;  // kUpdate: billing_reason becomes manual (row.billing_reason says so)
};
InvoiceAction DecideInvoice(const Event &event, const StoredInvoice &stored);

// The number a new invoice takes: Stripe's, unless it has none or another
// invoice has it (nullopt: billing's next INV-YYYYMM-NNNNNN at issued_at).
std::optional<std::string> InvoiceNumber(const Event &event, bool stripe_number_taken);

// The payment a paid invoice event records, once: invoice.paid and
// invoice.payment_succeeded with an amount paid. Under its payment intent
// when the invoice names one (older API versions: the external id
// payment_intent.succeeded uses); otherwise (kAdoptOrRecord) an unplaced
// Stripe payment of the same user, amount and currency within a day of
// paid_at is that payment (when the invoice has no payment yet), and failing
// that it is recorded under "stripe_invoice:<id>" (which a later
// payment_intent.succeeded adopts).
struct InvoicePaymentPlan {
	enum class Kind { kUnderIntent, kAdoptOrRecord } kind = Kind::kAdoptOrRecord;
	std::string external_id;  // the payment intent, or stripe_invoice:<id>
	std::optional<std::string> payment_intent;
	std::optional<std::string> charge;
	int64_t amount = 0;
	std::string currency;
	int64_t paid_at = 0;  // Unix seconds
	int64_t window = 86400;  // seconds either side of paid_at an unplaced payment may be
};
std::optional<InvoicePaymentPlan> InvoicePayment(const Event &event, const InvoiceDecision &row);

// The payment a payment_intent.succeeded / .payment_failed or
// charge.succeeded stores, once per payment intent: external_id is the
// payment intent (a charge without one: the charge), the amount the amount
// received (else the amount; a failed one: the amount), paid at the event's
// time; a failure keeps its code (payment_failed when Stripe gives none) and
// message. nullopt for other events.
struct PaymentRecord {
	std::string external_id;
	std::optional<std::string> payment_intent;
	std::optional<std::string> charge;
	bool succeeded = false;
	int64_t amount = 0;
	std::string currency;  // lower-cased
	std::optional<std::string> failure_code;
	std::optional<std::string> failure_message;
	int64_t paid_at = 0;  // Unix seconds
};
std::optional<PaymentRecord> DecidePayment(const Event &event);

// The payment a charge.refunded refunds when billing never received it: the
// charge as a succeeded payment (under its payment intent, else its own id),
// its amount, paid when the charge was created (else the event's time).
PaymentRecord PaymentOfRefundedCharge(const Event &event);

// A payment as billing holds it, and what storing an incoming outcome over it
// makes of it. A succeeded payment never turns back into a failed one: it
// keeps its status, amount and paid time (and has no failure); otherwise the
// incoming outcome replaces it. Links are kept once set (subscription,
// invoice, payment intent); the charge is the newest known.
struct StoredPayment {
	std::optional<int64_t> subscription_id;
	std::optional<int64_t> invoice_id;
	bool succeeded = false;
	std::optional<std::string> payment_intent;
	std::optional<std::string> charge;
};
struct PaymentRow {
	std::optional<int64_t> subscription_id;
	std::optional<int64_t> invoice_id;
	std::optional<std::string> payment_intent;
	std::optional<std::string> charge;
	// true: status, amount, paid time and failure are the incoming ones;
	// false: the stored outcome stays (a succeeded payment has no failure)
	bool replaces_outcome = false;
};
bool OutcomeReplaces(const StoredPayment &stored, const PaymentRecord &incoming);
PaymentRow MergePayment(const StoredPayment &stored, const PaymentRecord &incoming,
						std::optional<int64_t> subscription_id, std::optional<int64_t> invoice_id);

// A succeeded payment intent (or charge) that billing recorded under its
// invoice first (stripe_invoice:<id>, current API versions name no payment
// intent on the invoice) is that payment: an unplaced-on-an-intent payment of
// the same user, amount and currency within `window` seconds of the event
// takes its external id, unless one is stored under it already.
struct Adoption {
	std::string external_id;
	std::optional<std::string> payment_intent;
	std::optional<std::string> charge;
	int64_t amount = 0;
	std::string currency;
	int64_t at = 0;  // the payment's time (the event's; a refunded charge's creation)
	int64_t window = 86400;
};
// Also for charge.refunded, when the refunded payment never arrived: the
// charge (PaymentOfRefundedCharge) adopts the invoice's row first, so a
// refund between invoice.paid and payment_intent.succeeded does not record
// the payment twice.
std::optional<Adoption> AdoptionOf(const Event &event, const PaymentRecord &payment);

// A refund Stripe delivered before its payment was placed on an invoice took
// back nothing then (the payment held nothing yet). When the payment is
// placed, such a refund (one with no ledger entries) is taken back as if it
// had come after: the same TakeBackForRefund, on the payment's invoice, so
// the ledger does not depend on the delivery order.
bool RefundAwaitsPlacement(bool payment_placed_now, bool refund_has_entries);

// Which stored payment a charge.refunded refunds: among the succeeded
// payments that are not refunds and match the charge id or its payment
// intent, the one with the charge id, else the oldest.
struct RefundCandidate {
	int64_t id = 0;
	bool by_charge = false;
};
std::optional<int64_t> RefundedPayment(const std::vector<RefundCandidate> &candidates);

// charge.refunded carries the cumulative amount refunded: the refund to
// record is what is not recorded yet, the total never above what was paid.
// nullopt when nothing new. Its external id names the charge and the total
// (stripe_refund:<charge>:<total>), so a redelivery records nothing twice.
// Dated at the event's time, or at the refunded payment's time (`paid_at`,
// Unix seconds) when that is later: a refund is never before its payment.
// (A charge whose payment never arrived adopts the row a paid invoice
// recorded under stripe_invoice:<id>, which is dated at the invoice's payment,
// up to 86,400 s after the charge's refund event; review D3, session 9.)
struct Refund {
	int64_t amount = 0;  // positive; stored negative
	int64_t total = 0;   // refunded in all once recorded
	std::string external_id;
	int64_t at = 0;      // Unix seconds: max(event.created, paid_at)
};
std::optional<Refund> DecideRefund(const Event &event, int64_t paid, int64_t already_refunded,
								   std::optional<int64_t> paid_at = std::nullopt);

// checkout.session.completed: the user it names is linked to its customer
// (and the customer to its subscription, when both are known); without a
// user it is ignored with this reason.
struct CheckoutLink {
	std::optional<std::string> ignored;
	std::string user_id;
	std::optional<std::string> customer;
	std::optional<std::string> subscription;  // set when the customer is known too
};
CheckoutLink DecideCheckout(const Event &event);

// The message of an event that waits for its user (kept as its reason).
std::string PendingReason(const Event &event);

// A Stripe customer whose link to its billing user was closed when the
// application deleted that user from the users table attach_users watches
// (billing.stripe_customers.user_deleted_at). Billing keys everything by the
// id's text: whoever registers the same id next is another person.
struct ClosedCustomer {
	std::string customer;
	std::string user_id;
	int64_t user_deleted_at = 0;  // Unix seconds
};

// Whether an event ends the Stripe subscription it is about (a subscription
// event whose mirror ends it: canceled, incomplete_expired, .deleted).
bool EndsSubscription(const Event &event);

// What an event of a customer closed by its user's deletion (its own
// customer, else the customer of the subscription it names) does: nullopt
// when it applies, otherwise why it is kept pending (the DBA's
// billing.stripe_pending shows it; stripe_replay applies it once a DBA
// reopens the link). Only the event that ends the deleted user's Stripe
// subscription billing still holds (`subscription_held`) applies: the
// deletion left that subscription for Stripe's own event. Anything else (an
// update or a new subscription, also one naming the id in metadata.user_id,
// an invoice, a payment, a refund, a checkout) would land on the id's new
// holder (money on the wrong person). `closed` absent: applies.
std::optional<std::string> HeldForDeletedUser(const Event &event, const std::optional<ClosedCustomer> &closed,
											  bool subscription_held);

// What a payment event says of its payment: "succeeded" for
// payment_intent.succeeded and charge.succeeded, "failed" for
// payment_intent.payment_failed; nullopt for other events.
std::optional<std::string> PaymentStatus(std::string_view event_type);

// Stripe invoice status (draft, open, paid, void, uncollectible); nullopt otherwise.
std::optional<std::string> MapInvoiceStatus(std::string_view stripe_status);

// Stripe billing_reason -> the invoices.billing_reason values billing knows.
std::string MapBillingReason(const std::optional<std::string> &stripe_reason);

// The payload to keep: the same JSON without data.object.payment_method_details
// and without any "card" object anywhere (card data is never stored).
// Throws 22023 for JSON that does not parse.
std::string SanitizedPayload(std::string_view payload);

}  // namespace billing::stripe
