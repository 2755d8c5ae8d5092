// Events built from Stripe's own example objects (../shared/stripe/fixtures.json,
// read at test time), with realistic timestamps put in place of placeholders.
#include "core/error.hpp"
#include "core/lifecycle.hpp"
#include "core/stripe_event.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <limits>
#include <sstream>

namespace billing::stripe {
namespace {

using nlohmann::json;

constexpr int64_t kCreated = 1767225600;  // 2026-01-01 00:00:00 UTC
constexpr int64_t kPeriodEnd = 1769904000;  // 2026-02-01 00:00:00 UTC

const json &
Fixtures()
{
	static const json fixtures = [] {
		std::string path = std::string(BILLING_SHARED_DIR) + "/stripe/fixtures.json";
		std::ifstream in(path);
		if (!in)
			throw std::runtime_error("cannot open " + path);
		std::stringstream text;
		text << in.rdbuf();
		return json::parse(text.str());
	}();
	return fixtures;
}

std::string
MakeEvent(const std::string &type, const json &object, int64_t created = kCreated)
{
	json event = Fixtures().at("event");
	event["id"] = "evt_unit_" + type;
	event["type"] = type;
	event["created"] = created;
	event["data"] = json::object();
	event["data"]["object"] = object;
	return event.dump();
}

json
Subscription()
{
	json s = Fixtures().at("subscription");
	s["created"] = kCreated;
	s["start_date"] = kCreated;
	s["billing_cycle_anchor"] = kCreated;
	s["items"]["data"][0]["current_period_start"] = kCreated;
	s["items"]["data"][0]["current_period_end"] = kPeriodEnd;
	s["trial_start"] = nullptr;
	s["trial_end"] = nullptr;
	s["cancel_at"] = nullptr;
	s["canceled_at"] = nullptr;
	s["ended_at"] = nullptr;
	s["cancel_at_period_end"] = false;
	s["metadata"] = {{"user_id", "user_42"}};
	return s;
}

TEST(StripeEvent, ReadsTheEnvelope)
{
	Event e = ParseEvent(MakeEvent("customer.subscription.updated", Subscription()));
	EXPECT_EQ(e.id, "evt_unit_customer.subscription.updated");
	EXPECT_EQ(e.type, "customer.subscription.updated");
	EXPECT_EQ(e.created, kCreated);
	EXPECT_FALSE(e.api_version);  // null in the fixture
}

TEST(StripeEvent, SubscriptionPeriodFromItems)
{
	Event e = ParseEvent(MakeEvent("customer.subscription.created", Subscription()));
	const EventObject &o = e.object;
	EXPECT_EQ(o.object, "subscription");
	EXPECT_EQ(o.id, "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
	EXPECT_EQ(o.subscription, "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
	EXPECT_EQ(o.customer, "cus_QXg1o8vcGmoR32");
	EXPECT_EQ(o.status, "active");
	EXPECT_EQ(o.price_id, "price_1PgafmB7WZ01zgkW6dKueIc5");
	EXPECT_EQ(o.current_period_start, kCreated);
	EXPECT_EQ(o.current_period_end, kPeriodEnd);
	EXPECT_FALSE(o.cancel_at_period_end);
	EXPECT_FALSE(o.trial_start);
	EXPECT_EQ(o.metadata_user_id, "user_42");
	EXPECT_EQ(o.currency, "usd");
}

TEST(StripeEvent, SubscriptionPeriodFromOldTopLevelFields)
{
	json s = Subscription();
	s["items"]["data"][0].erase("current_period_start");
	s["items"]["data"][0].erase("current_period_end");
	s["current_period_start"] = kCreated + 10;
	s["current_period_end"] = kPeriodEnd + 10;
	Event e = ParseEvent(MakeEvent("customer.subscription.updated", s));
	EXPECT_EQ(e.object.current_period_start, kCreated + 10);
	EXPECT_EQ(e.object.current_period_end, kPeriodEnd + 10);
}

TEST(StripeEvent, SubscriptionTrialAndCancelFields)
{
	json s = Subscription();
	s["status"] = "trialing";
	s["trial_start"] = kCreated;
	s["trial_end"] = kCreated + 14 * 86400;
	s["cancel_at_period_end"] = true;
	Event e = ParseEvent(MakeEvent("customer.subscription.updated", s));
	EXPECT_EQ(e.object.trial_start, kCreated);
	EXPECT_EQ(e.object.trial_end, kCreated + 14 * 86400);
	EXPECT_TRUE(e.object.cancel_at_period_end);
	EXPECT_EQ(MirrorSubscription(e)->status, "trialing");
	EXPECT_EQ(NamedUser(e.object), "user_42");
}

TEST(StripeEvent, EmptyItemsAndNullsAreAbsenceNotErrors)
{
	json s = Subscription();
	s["items"]["data"] = json::array();
	s["metadata"] = nullptr;
	s["customer"] = nullptr;
	s["status"] = nullptr;
	Event e = ParseEvent(MakeEvent("customer.subscription.updated", s));
	EXPECT_FALSE(e.object.price_id);
	EXPECT_FALSE(e.object.current_period_start);
	EXPECT_FALSE(e.object.customer);
	EXPECT_FALSE(e.object.metadata_user_id);
	EXPECT_FALSE(e.object.status);
	s.erase("items");
	s.erase("metadata");
	EXPECT_NO_THROW(ParseEvent(MakeEvent("customer.subscription.updated", s)));
	Event bare = ParseEvent(MakeEvent("customer.subscription.updated", s));
	EXPECT_FALSE(MirrorSubscription(bare));
	EXPECT_FALSE(NamedUser(bare.object));
}

TEST(StripeEvent, InvoiceSubscriptionFromParentDetails)
{
	json in = Fixtures().at("invoice");
	in["parent"]["subscription_details"]["subscription"] = "sub_new_api";
	in["status"] = "paid";
	in["amount_paid"] = 2999;
	in["amount_due"] = 2999;
	in["total"] = 2999;
	in["number"] = "7FE1103-0001";
	in["status_transitions"]["paid_at"] = kCreated + 60;
	Event e = ParseEvent(MakeEvent("invoice.paid", in));
	const EventObject &o = e.object;
	EXPECT_EQ(o.object, "invoice");
	EXPECT_EQ(o.id, "in_1Pgc6tB7WZ01zgkWu9fdqL6I");
	EXPECT_EQ(o.subscription, "sub_new_api");
	EXPECT_EQ(o.customer, "cus_QXg1o8vcGmoR32");
	EXPECT_EQ(o.amount_paid, 2999);
	EXPECT_EQ(o.number, "7FE1103-0001");
	EXPECT_EQ(o.paid_at, kCreated + 60);
	ASSERT_EQ(o.lines.size(), 1u);
	EXPECT_EQ(o.lines[0].amount, 1000);
	EXPECT_EQ(o.lines[0].period_start, 1721954054);
	InvoiceDecision d = DecideInvoice(e);
	EXPECT_EQ(d.status, "paid");
	EXPECT_EQ(d.billing_reason, "manual");
	EXPECT_EQ(json::parse(d.lines).size(), 1u);
}

TEST(StripeInvoice, TheCoreDecidesStatusPaidTimeAndPeriod)
{
	json in = Fixtures().at("invoice");
	in["status"] = "open";
	in["created"] = kCreated;
	in["status_transitions"]["paid_at"] = nullptr;
	in["lines"]["data"][0]["period"] = {{"start", kCreated}, {"end", kPeriodEnd}};
	InvoiceDecision d = DecideInvoice(ParseEvent(MakeEvent("invoice.finalized", in, kCreated + 5)));
	EXPECT_EQ(d.status, "open");
	EXPECT_FALSE(d.paid_at);
	EXPECT_EQ(d.period_start, kCreated);
	EXPECT_EQ(d.period_end, kPeriodEnd);
	EXPECT_EQ(d.issued_at, kCreated);
	// invoice.paid is paid whatever the object says, at the event's time when Stripe gives none
	d = DecideInvoice(ParseEvent(MakeEvent("invoice.paid", in, kCreated + 7)));
	EXPECT_EQ(d.status, "paid");
	EXPECT_EQ(d.paid_at, kCreated + 7);
	in["status_transitions"]["paid_at"] = kCreated + 6;
	EXPECT_EQ(DecideInvoice(ParseEvent(MakeEvent("invoice.payment_succeeded", in))).paid_at, kCreated + 6);
	// an unknown status falls back on the event; a period ending before it starts has no end
	in["status"] = "weird";
	in["lines"]["data"][0]["period"] = {{"start", kPeriodEnd}, {"end", kCreated}};
	d = DecideInvoice(ParseEvent(MakeEvent("invoice.created", in)));
	EXPECT_EQ(d.status, "draft");
	EXPECT_FALSE(d.period_end);
	EXPECT_EQ(DecideInvoice(ParseEvent(MakeEvent("invoice.voided", in))).status, "open");
	in["status"] = "void";
	EXPECT_EQ(DecideInvoice(ParseEvent(MakeEvent("invoice.voided", in))).status, "void");
	EXPECT_EQ(PaymentStatus("charge.succeeded"), "succeeded");
	EXPECT_EQ(PaymentStatus("payment_intent.payment_failed"), "failed");
	EXPECT_FALSE(PaymentStatus("charge.refunded"));
}

json
PaidInvoice(const std::string &reason = "subscription_cycle")
{
	json in = Fixtures().at("invoice");
	in["parent"]["subscription_details"]["subscription"] = "sub_unit";
	in["status"] = "paid";
	in["currency"] = "USD";
	in["billing_reason"] = reason;
	in["amount_paid"] = 2999;
	in["amount_due"] = 2999;
	in["created"] = kCreated;
	in["status_transitions"]["paid_at"] = kCreated + 60;
	in["lines"]["data"][0]["period"] = {{"start", kCreated}, {"end", kPeriodEnd}};
	in["lines"]["data"][0]["currency"] = "USD";
	return in;
}

TEST(StripeInvoice, WithoutAUserTheEventWaits)
{
	Event e = ParseEvent(MakeEvent("invoice.paid", PaidInvoice()));
	InvoiceAction a = DecideInvoice(e, StoredInvoice{});
	EXPECT_EQ(a.write, InvoiceWrite::kPending);
	EXPECT_EQ(a.pending_reason, "no billing user for stripe invoice \"in_1Pgc6tB7WZ01zgkWu9fdqL6I\": "
								"neither its subscription nor its customer is known");
}

TEST(StripeInvoice, UpdatesTheStoredInvoiceElseBillingsOwnForThePeriodElseInserts)
{
	Event e = ParseEvent(MakeEvent("invoice.paid", PaidInvoice()));
	StoredInvoice stored;
	stored.user_id = "u1";
	// no subscription: nothing to seek, a new invoice
	EXPECT_FALSE(SeeksOwnInvoice(e, stored));
	InvoiceAction a = DecideInvoice(e, stored);
	EXPECT_EQ(a.write, InvoiceWrite::kInsert);
	EXPECT_EQ(a.row.billing_reason, "subscription_cycle");
	EXPECT_EQ(a.row.currency, "usd");
	EXPECT_TRUE(a.replace_lines);
	// with the subscription, billing's own invoice of the period becomes Stripe's
	stored.subscription_id = 7;
	EXPECT_TRUE(SeeksOwnInvoice(e, stored));
	stored.own_invoice_id = 41;
	a = DecideInvoice(e, stored);
	EXPECT_EQ(a.write, InvoiceWrite::kUpdate);
	EXPECT_EQ(a.invoice_id, 41);
	// ... unless another Stripe invoice took it: then this one is a manual one beside it
	stored.own_invoice_taken = true;
	a = DecideInvoice(e, stored);
	EXPECT_EQ(a.write, InvoiceWrite::kInsert);
	EXPECT_EQ(a.row.billing_reason, "manual");
	// the invoice stored under its Stripe id wins, and no other is sought
	stored.invoice_id = 40;
	EXPECT_FALSE(SeeksOwnInvoice(e, stored));
	a = DecideInvoice(e, stored);
	EXPECT_EQ(a.write, InvoiceWrite::kUpdate);
	EXPECT_EQ(a.invoice_id, 40);
	EXPECT_EQ(a.row.billing_reason, "subscription_cycle");
	EXPECT_FALSE(a.becomes_manual);
	// D2: stored before its subscription, and another invoice took the
	// subscription's period since: it is updated as a manual one beside it
	// (not a 23505 from invoices_one_per_period, retried by Stripe for days)
	stored.period_held_by_another = true;
	a = DecideInvoice(e, stored);
	EXPECT_EQ(a.write, InvoiceWrite::kUpdate);
	EXPECT_EQ(a.invoice_id, 40);
	EXPECT_TRUE(a.becomes_manual);
	EXPECT_EQ(a.row.billing_reason, "manual");
	stored.period_held_by_another = false;
	// an upgrade's or a manual invoice never takes billing's period invoice
	stored.invoice_id.reset();
	for (const char *reason : {"subscription_update", "manual", "upcoming"})
		EXPECT_FALSE(SeeksOwnInvoice(ParseEvent(MakeEvent("invoice.paid", PaidInvoice(reason))), stored)) << reason;
	// an invoice without lines keeps the stored lines
	json no_lines = PaidInvoice();
	no_lines["lines"]["data"] = json::array();
	stored.invoice_id = 40;
	EXPECT_FALSE(DecideInvoice(ParseEvent(MakeEvent("invoice.paid", no_lines)), stored).replace_lines);
}

TEST(StripeInvoice, NumberIsStripesUnlessAbsentOrTaken)
{
	json in = PaidInvoice();
	in["number"] = "STRIPE-1";
	Event e = ParseEvent(MakeEvent("invoice.paid", in));
	EXPECT_EQ(InvoiceNumber(e, false), "STRIPE-1");
	EXPECT_FALSE(InvoiceNumber(e, true));
	in["number"] = nullptr;
	EXPECT_FALSE(InvoiceNumber(ParseEvent(MakeEvent("invoice.paid", in)), false));
}

TEST(StripeInvoice, LinesAreJsonWithUtcTimes)
{
	EXPECT_EQ(JsonTime(kCreated), "2026-01-01T00:00:00+00:00");
	EXPECT_EQ(JsonTime(0), "1970-01-01T00:00:00+00:00");
	EXPECT_EQ(JsonTime(253402300799), "9999-12-31T23:59:59+00:00");
	json in = PaidInvoice();
	in["lines"]["data"][0]["period"] = {{"start", kCreated + 3661}, {"end", nullptr}};
	Event e = ParseEvent(MakeEvent("invoice.paid", in));
	json lines = json::parse(DecideInvoice(e).lines);
	ASSERT_EQ(lines.size(), 1u);
	EXPECT_EQ(lines[0]["period_start"], "2026-01-01T01:01:01+00:00");
	EXPECT_TRUE(lines[0]["period_end"].is_null());
	EXPECT_EQ(lines[0]["currency"], "usd");
	EXPECT_EQ(lines[0]["amount_cents"], 1000);
	EXPECT_EQ(lines[0]["description"], "My First Invoice Item (created for API docs)");
	EXPECT_TRUE(lines[0].contains("stripe_price_id"));
	EXPECT_EQ(InvoiceLinesJson({}), "[]");
}

TEST(StripeInvoice, UserOfIsTheSubscriptionsThenTheInvoicesThenNamedThenTheCustomers)
{
	EventObject o;
	UserCandidates held{"sub_user", "inv_user", "linked", "latest"};
	o.metadata_user_id = "named";
	EXPECT_EQ(UserOf(o, held), "sub_user");
	held.of_subscription.reset();
	EXPECT_EQ(UserOf(o, held), "inv_user");
	held.of_invoice.reset();
	EXPECT_EQ(UserOf(o, held), "named");
	o.metadata_user_id.reset();
	EXPECT_EQ(UserOf(o, held), "linked");
	held.linked_to_customer.reset();
	EXPECT_EQ(UserOf(o, held), "latest");
	held.of_customers_subscription.reset();
	EXPECT_FALSE(UserOf(o, held));
}

TEST(StripeInvoice, APaidInvoiceRecordsItsPaymentOnce)
{
	json in = PaidInvoice();
	Event e = ParseEvent(MakeEvent("invoice.paid", in, kCreated + 70));
	auto plan = InvoicePayment(e, DecideInvoice(e));
	ASSERT_TRUE(plan);
	// current API versions name no payment intent: adopt an unplaced payment, or record under the invoice
	EXPECT_EQ(plan->kind, InvoicePaymentPlan::Kind::kAdoptOrRecord);
	EXPECT_EQ(plan->external_id, "stripe_invoice:in_1Pgc6tB7WZ01zgkWu9fdqL6I");
	EXPECT_EQ(plan->amount, 2999);
	EXPECT_EQ(plan->currency, "usd");
	EXPECT_EQ(plan->paid_at, kCreated + 60);
	EXPECT_EQ(plan->window, 86400);
	// older versions name it: the payment intent's own external id
	in["payment_intent"] = "pi_1";
	in["charge"] = "ch_1";
	e = ParseEvent(MakeEvent("invoice.payment_succeeded", in));
	plan = InvoicePayment(e, DecideInvoice(e));
	ASSERT_TRUE(plan);
	EXPECT_EQ(plan->kind, InvoicePaymentPlan::Kind::kUnderIntent);
	EXPECT_EQ(plan->external_id, "pi_1");
	EXPECT_EQ(plan->charge, "ch_1");
	// nothing paid, or an event that is not a payment: no payment
	for (const char *type : {"invoice.finalized", "invoice.payment_failed", "invoice.voided", "invoice.created"}) {
		e = ParseEvent(MakeEvent(type, in));
		EXPECT_FALSE(InvoicePayment(e, DecideInvoice(e))) << type;
	}
	in["amount_paid"] = 0;
	e = ParseEvent(MakeEvent("invoice.paid", in));
	EXPECT_FALSE(InvoicePayment(e, DecideInvoice(e)));
}

TEST(StripeEvent, InvoiceSubscriptionFromOldTopLevelField)
{
	json in = Fixtures().at("invoice");
	in.erase("parent");
	in["subscription"] = "sub_old_api";
	in["billing_reason"] = "subscription_cycle";
	in["payment_intent"] = "pi_old_api";
	Event e = ParseEvent(MakeEvent("invoice.paid", in));
	EXPECT_EQ(e.object.subscription, "sub_old_api");
	EXPECT_EQ(e.object.payment_intent, "pi_old_api");
	EXPECT_EQ(DecideInvoice(e).billing_reason, "subscription_cycle");
	// neither: no subscription, no error
	in.erase("subscription");
	EXPECT_FALSE(ParseEvent(MakeEvent("invoice.created", in)).object.subscription);
}

TEST(StripeEvent, PaymentIntent)
{
	json pi = Fixtures().at("payment_intent");
	pi["status"] = "succeeded";
	pi["amount_received"] = 1099;
	pi["customer"] = "cus_QXg1o8vcGmoR32";
	Event e = ParseEvent(MakeEvent("payment_intent.succeeded", pi));
	EXPECT_EQ(e.object.payment_intent, "pi_1PgafyB7WZ01zgkWSjxsAJo3");
	EXPECT_EQ(e.object.amount, 1099);
	EXPECT_EQ(e.object.amount_received, 1099);
	EXPECT_EQ(e.object.customer, "cus_QXg1o8vcGmoR32");
	EXPECT_FALSE(e.object.failure_code);  // last_payment_error has only a type
	pi["last_payment_error"] = {{"code", "card_declined"}, {"message", "Your card was declined."}};
	e = ParseEvent(MakeEvent("payment_intent.payment_failed", pi));
	EXPECT_EQ(e.object.failure_code, "card_declined");
	EXPECT_EQ(e.object.failure_message, "Your card was declined.");
}

TEST(StripeEvent, ChargeRefunded)
{
	json ch = Fixtures().at("charge");
	ch["amount_refunded"] = 40;
	ch["refunded"] = false;
	ch["payment_intent"] = "pi_1PgafyB7WZ01zgkWSjxsAJo3";
	Event e = ParseEvent(MakeEvent("charge.refunded", ch));
	EXPECT_EQ(e.object.charge, "ch_1PgafuB7WZ01zgkWXYmPNZs8");
	EXPECT_EQ(e.object.payment_intent, "pi_1PgafyB7WZ01zgkWSjxsAJo3");
	EXPECT_EQ(e.object.amount, 100);
	EXPECT_EQ(e.object.amount_refunded, 40);
	EXPECT_EQ(e.object.currency, "usd");
}

TEST(StripePayment, OnePaymentPerPaymentIntentWhateverEventRecordsIt)
{
	json pi = Fixtures().at("payment_intent");
	pi["status"] = "succeeded";
	pi["amount"] = 2999;
	pi["amount_received"] = 2999;
	pi["currency"] = "USD";
	pi["latest_charge"] = "ch_1";
	auto p = DecidePayment(ParseEvent(MakeEvent("payment_intent.succeeded", pi, kCreated + 5)));
	ASSERT_TRUE(p);
	EXPECT_EQ(p->external_id, "pi_1PgafyB7WZ01zgkWSjxsAJo3");
	EXPECT_EQ(p->payment_intent, "pi_1PgafyB7WZ01zgkWSjxsAJo3");
	EXPECT_EQ(p->charge, "ch_1");
	EXPECT_TRUE(p->succeeded);
	EXPECT_EQ(p->amount, 2999);
	EXPECT_EQ(p->currency, "usd");
	EXPECT_EQ(p->paid_at, kCreated + 5);
	EXPECT_FALSE(p->failure_code);
	// nothing received yet: the amount asked
	pi["amount_received"] = 0;
	EXPECT_EQ(DecidePayment(ParseEvent(MakeEvent("payment_intent.succeeded", pi)))->amount, 2999);
	// a failure keeps its code (payment_failed when Stripe gives none) and message
	pi["last_payment_error"] = {{"message", "Your card was declined."}};
	p = DecidePayment(ParseEvent(MakeEvent("payment_intent.payment_failed", pi)));
	ASSERT_TRUE(p);
	EXPECT_FALSE(p->succeeded);
	EXPECT_EQ(p->failure_code, "payment_failed");
	EXPECT_EQ(p->failure_message, "Your card was declined.");
	// charge.succeeded is the same payment: under its payment intent, the charge beside it
	json ch = Fixtures().at("charge");
	ch["payment_intent"] = "pi_1PgafyB7WZ01zgkWSjxsAJo3";
	ch["failure_code"] = "ignored_on_success";
	p = DecidePayment(ParseEvent(MakeEvent("charge.succeeded", ch)));
	ASSERT_TRUE(p);
	EXPECT_EQ(p->external_id, "pi_1PgafyB7WZ01zgkWSjxsAJo3");
	EXPECT_EQ(p->charge, "ch_1PgafuB7WZ01zgkWXYmPNZs8");
	EXPECT_EQ(p->amount, 100);
	EXPECT_FALSE(p->failure_code);
	// a charge without a payment intent is its own payment
	ch["payment_intent"] = nullptr;
	EXPECT_EQ(DecidePayment(ParseEvent(MakeEvent("charge.succeeded", ch)))->external_id, "ch_1PgafuB7WZ01zgkWXYmPNZs8");
	// other events record no payment this way
	EXPECT_FALSE(DecidePayment(ParseEvent(MakeEvent("charge.refunded", ch))));
	EXPECT_FALSE(DecidePayment(ParseEvent(MakeEvent("invoice.paid", PaidInvoice()))));
}

TEST(StripePayment, ASucceededPaymentNeverTurnsBackIntoAFailedOne)
{
	PaymentRecord failed;
	failed.succeeded = false;
	failed.charge = "ch_new";
	PaymentRecord succeeded;
	succeeded.succeeded = true;
	succeeded.payment_intent = "pi_new";
	StoredPayment stored;
	stored.succeeded = true;
	stored.charge = "ch_old";
	EXPECT_FALSE(OutcomeReplaces(stored, failed));
	EXPECT_FALSE(OutcomeReplaces(stored, succeeded));
	PaymentRow row = MergePayment(stored, failed, 3, 4);
	EXPECT_FALSE(row.replaces_outcome);
	EXPECT_EQ(row.charge, "ch_new");  // the newest charge
	EXPECT_EQ(row.subscription_id, 3);  // links fill in once
	EXPECT_EQ(row.invoice_id, 4);
	stored.succeeded = false;
	stored.subscription_id = 1;
	stored.invoice_id = 2;
	stored.payment_intent = "pi_old";
	EXPECT_TRUE(OutcomeReplaces(stored, failed));
	EXPECT_TRUE(OutcomeReplaces(stored, succeeded));
	row = MergePayment(stored, succeeded, 3, 4);
	EXPECT_TRUE(row.replaces_outcome);
	EXPECT_EQ(row.subscription_id, 1);  // kept once set
	EXPECT_EQ(row.invoice_id, 2);
	EXPECT_EQ(row.payment_intent, "pi_old");
	EXPECT_EQ(row.charge, "ch_old");  // the event names none: kept
}

TEST(StripePayment, OnlyASucceededPaymentAdoptsItsInvoicesRow)
{
	json pi = Fixtures().at("payment_intent");
	pi["amount"] = 2999;
	pi["amount_received"] = 2999;
	Event e = ParseEvent(MakeEvent("payment_intent.succeeded", pi, kCreated + 9));
	auto a = AdoptionOf(e, *DecidePayment(e));
	ASSERT_TRUE(a);
	EXPECT_EQ(a->external_id, "pi_1PgafyB7WZ01zgkWSjxsAJo3");
	EXPECT_EQ(a->amount, 2999);
	EXPECT_EQ(a->at, kCreated + 9);
	EXPECT_EQ(a->window, 86400);
	e = ParseEvent(MakeEvent("payment_intent.payment_failed", pi));
	EXPECT_FALSE(AdoptionOf(e, *DecidePayment(e)));
}

// S7 (session 8 money review): a refund whose payment never arrived adopts the
// row invoice.paid recorded under its invoice, at the charge's time, as
// payment_intent.succeeded would: one payment, not two.
TEST(StripePayment, ARefundedChargeAdoptsItsInvoicesRowAtTheChargesTime)
{
	json ch = Fixtures().at("charge");
	ch["amount"] = 2999;
	ch["amount_refunded"] = 1000;
	ch["created"] = kCreated + 62;
	Event e = ParseEvent(MakeEvent("charge.refunded", ch, kCreated + 3600));
	PaymentRecord charged = PaymentOfRefundedCharge(e);
	auto a = AdoptionOf(e, charged);
	ASSERT_TRUE(a);
	EXPECT_EQ(a->external_id, charged.external_id);
	EXPECT_EQ(a->amount, 2999);
	EXPECT_EQ(a->at, kCreated + 62);  // the payment's time, not the refund's
}

// S5/S8: a refund that arrived before its payment was placed is taken back when
// the payment is placed; one already taken back (it has entries) is not again.
TEST(StripeRefund, ARefundBeforeItsPaymentWasPlacedIsTakenBackOnPlacement)
{
	EXPECT_TRUE(RefundAwaitsPlacement(true, false));
	EXPECT_FALSE(RefundAwaitsPlacement(true, true));
	EXPECT_FALSE(RefundAwaitsPlacement(false, false));
}

// S1/S2/S3/S6: what a new Stripe subscription does to the user's current one.
TEST(StripeSubscription, TakeoverAdoptsTheSamePaidPlanElseEndsTheCurrentOne)
{
	// (has_current, current_on_stripe, same_plan, plan_free, arrives_ended)
	EXPECT_EQ(TakeoverOf(false, false, false, false, false), Takeover::kNone);
	EXPECT_EQ(TakeoverOf(true, false, true, false, false), Takeover::kAdopt);
	EXPECT_EQ(TakeoverOf(true, false, true, false, true), Takeover::kAdopt);
	EXPECT_EQ(TakeoverOf(true, true, true, false, false), Takeover::kEnd);   // another Stripe subscription
	EXPECT_EQ(TakeoverOf(true, false, true, true, false), Takeover::kEnd);   // a free plan is never adopted
	EXPECT_EQ(TakeoverOf(true, false, false, false, false), Takeover::kEnd); // another plan
	EXPECT_EQ(TakeoverOf(true, false, false, false, true), Takeover::kNone); // arrives ended: nothing replaced
	// D1: an older subscription of the customer than the current Stripe one replaces nothing
	EXPECT_EQ(TakeoverOf(true, true, false, false, false, true), Takeover::kAside);
	EXPECT_EQ(TakeoverOf(true, true, true, false, false, true), Takeover::kAside);
	EXPECT_EQ(TakeoverOf(true, true, false, false, true, true), Takeover::kNone);  // arrives ended
	EXPECT_EQ(TakeoverOf(true, false, false, false, false, true), Takeover::kEnd); // billing's own: replaced
	EXPECT_EQ(TakeoverOf(true, false, true, false, false, true), Takeover::kAdopt);
}

// O2 (session 11): a Stripe subscription of another plan first seen ended
// ends billing's own subscription current at its start, as Stripe's order
// (created, then ended) does; one that started after it, or a Stripe one, stays
TEST(StripeSubscription, FirstSeenEndedEndsTheOwnPlanItWouldHaveReplaced)
{
	EXPECT_TRUE(CurrentPredatesArriving(100, 101));
	EXPECT_FALSE(CurrentPredatesArriving(101, 101));  // a tie: not replaced
	EXPECT_FALSE(CurrentPredatesArriving(102, 101));
	// (has_current, current_on_stripe, same_plan, plan_free, arrives_ended, older, awaits, predates)
	EXPECT_EQ(TakeoverOf(true, false, false, false, true, false, false, true), Takeover::kEnd);   // billing's own paid plan
	EXPECT_EQ(TakeoverOf(true, false, false, false, true, false, false, false), Takeover::kNone); // started after it
	EXPECT_EQ(TakeoverOf(true, false, true, true, true, false, false, true), Takeover::kEnd);     // Free, as in Stripe's order
	EXPECT_EQ(TakeoverOf(true, true, false, false, true, false, false, true), Takeover::kNone);   // a Stripe one: as before
	EXPECT_EQ(TakeoverOf(true, true, false, false, true, true, false, true), Takeover::kNone);    // older than a Stripe one
	EXPECT_EQ(TakeoverOf(true, false, true, false, true, false, false, true), Takeover::kAdopt);  // the same plan: adopted
	EXPECT_EQ(TakeoverOf(true, false, false, false, true, false, true, true), Takeover::kAwait);  // unpaid (O1) first
	EXPECT_EQ(TakeoverOf(false, false, false, false, true, false, false, true), Takeover::kNone);
}

// O1 (session 10): a Stripe subscription not paid yet over billing's own paid plan
TEST(StripeSubscription, AnUnpaidSubscriptionWaitsAsideOverAPaidOwnPlan)
{
	EXPECT_TRUE(Unpaid("incomplete"));
	EXPECT_TRUE(Unpaid("incomplete_expired"));
	EXPECT_FALSE(Unpaid("active"));
	EXPECT_FALSE(Unpaid("trialing"));
	EXPECT_FALSE(Unpaid("past_due"));
	EXPECT_FALSE(Unpaid(""));
	// billing's own, paid plan, past its first payment
	EXPECT_TRUE(PaidOwn(false, false, "active"));
	EXPECT_TRUE(PaidOwn(false, false, "past_due"));
	EXPECT_TRUE(PaidOwn(false, false, "canceled"));  // canceled at period end: paid to its end
	EXPECT_TRUE(PaidOwn(false, false, "paused"));
	EXPECT_FALSE(PaidOwn(false, false, "incomplete"));
	EXPECT_FALSE(PaidOwn(false, false, "trialing"));
	EXPECT_FALSE(PaidOwn(false, true, "active"));  // Free
	EXPECT_FALSE(PaidOwn(true, false, "active"));  // on Stripe
	// (arriving stripe status, arrives ended, kept aside unpaid, has_current, current_on_stripe,
	//  current_plan_free, current_status)
	EXPECT_TRUE(AwaitsPayment("incomplete", false, false, true, false, false, "active"));
	EXPECT_TRUE(AwaitsPayment("incomplete_expired", true, false, true, false, false, "active"));
	EXPECT_TRUE(AwaitsPayment("incomplete", false, true, true, false, false, "active"));  // still unpaid
	EXPECT_FALSE(AwaitsPayment("active", false, false, true, false, false, "active"));
	EXPECT_FALSE(AwaitsPayment("active", false, true, true, false, false, "active"));    // paid: decides again
	EXPECT_FALSE(AwaitsPayment("trialing", false, true, true, false, false, "active"));  // started: likewise
	EXPECT_FALSE(AwaitsPayment("canceled", true, false, true, false, false, "active"));  // first seen canceled: as before
	EXPECT_TRUE(AwaitsPayment("canceled", true, true, true, false, false, "active"));    // never paid, ended: aside for good
	EXPECT_FALSE(AwaitsPayment("incomplete", false, false, true, false, true, "active"));   // Free: taken over as before
	EXPECT_FALSE(AwaitsPayment("incomplete", false, false, false, false, false, "active")); // no current
	EXPECT_FALSE(AwaitsPayment("incomplete", false, false, true, true, false, "active"));   // a Stripe subscription
	// it neither adopts (same plan) nor replaces (another plan), arriving ended or not
	EXPECT_EQ(TakeoverOf(true, false, true, false, false, false, true), Takeover::kAwait);
	EXPECT_EQ(TakeoverOf(true, false, true, false, true, false, true), Takeover::kAwait);
	EXPECT_EQ(TakeoverOf(true, false, false, false, false, false, true), Takeover::kAwait);
	EXPECT_EQ(TakeoverOf(true, false, false, false, true, false, true), Takeover::kAwait);
	EXPECT_EQ(TakeoverOf(false, false, false, false, false, false, true), Takeover::kNone);
	// paid or started later: the existing rules
	EXPECT_EQ(TakeoverOf(true, false, true, false, false, false, false), Takeover::kAdopt);
	EXPECT_EQ(TakeoverOf(true, false, false, false, false, false, false), Takeover::kEnd);

	json s = Subscription();
	s["status"] = "incomplete";
	auto row = DecideSubscriptionRow(ParseEvent(MakeEvent("customer.subscription.created", s)), std::nullopt);
	ASSERT_TRUE(row);
	ASSERT_FALSE(row->ended_at);
	SubscriptionRow aside = AwaitingPayment(*row);
	EXPECT_TRUE(aside.awaiting_payment);  // a later event decides again
	EXPECT_EQ(aside.mirror.status, "canceled");
	EXPECT_EQ(aside.mirror.stripe_status, "incomplete");  // Stripe's own status kept, visible
	EXPECT_EQ(aside.mirror.end_reason, "plan_changed");
	EXPECT_EQ(aside.ended_at, row->started);  // current at no instant
	EXPECT_EQ(aside.started, row->started);

	s["status"] = "incomplete_expired";
	row = DecideSubscriptionRow(ParseEvent(MakeEvent("customer.subscription.updated", s)), std::nullopt);
	ASSERT_TRUE(row);
	ASSERT_TRUE(row->ended_at);
	aside = AwaitingPayment(*row);
	EXPECT_FALSE(aside.awaiting_payment);  // Stripe ended it: for good
	EXPECT_EQ(aside.mirror.status, "expired");
	EXPECT_EQ(aside.mirror.end_reason, "incomplete_expired");
	EXPECT_EQ(aside.ended_at, row->started);
}

// D1 (session 9): an older Stripe subscription delivered after the newer one.
TEST(StripeSubscription, AnOlderSubscriptionDeliveredLateIsKeptAsideEndedAtItsStart)
{
	const std::optional<std::string> cus = "cus_1", other = "cus_2", none;
	EXPECT_TRUE(OlderThanCurrent(cus, 100, cus, 103));
	EXPECT_FALSE(OlderThanCurrent(cus, 103, cus, 103));   // a tie: the later delivery replaces
	EXPECT_FALSE(OlderThanCurrent(cus, 104, cus, 103));   // newer: replaces
	EXPECT_FALSE(OlderThanCurrent(cus, 100, other, 103)); // another customer
	EXPECT_FALSE(OlderThanCurrent(none, 100, cus, 103));
	EXPECT_FALSE(OlderThanCurrent(cus, 100, none, 103));
	json s = Subscription();
	s["status"] = "past_due";
	auto row = DecideSubscriptionRow(ParseEvent(MakeEvent("customer.subscription.created", s)), std::nullopt);
	ASSERT_TRUE(row);
	ASSERT_FALSE(row->ended_at);
	SubscriptionRow aside = KeptAside(*row);
	EXPECT_EQ(aside.mirror.status, "canceled");
	EXPECT_EQ(aside.mirror.stripe_status, "past_due");  // Stripe's own status kept, visible
	EXPECT_EQ(aside.mirror.end_reason, "plan_changed");
	EXPECT_EQ(aside.started, row->started);
	EXPECT_EQ(aside.ended_at, row->started);  // current at no instant: never overlaps the newer one
	EXPECT_FALSE(aside.past_due_since);
	EXPECT_EQ(aside.period_start, row->period_start);
}

// S3: billing's own invoice of the period that adoption voided, or that
// billing's own payments paid, is not taken by Stripe's (it holds the local
// payments): Stripe's is kept beside it. An open one is taken.
TEST(StripeInvoice, AVoidedOrPaidOwnInvoiceIsNotTaken)
{
	Event e = ParseEvent(MakeEvent("invoice.paid", PaidInvoice()));
	StoredInvoice stored;
	stored.user_id = "u1";
	stored.subscription_id = 7;
	stored.own_invoice_id = 41;
	for (const char *status : {"void", "paid"}) {
		stored.own_invoice_status = status;
		InvoiceAction a = DecideInvoice(e, stored);
		EXPECT_EQ(a.write, InvoiceWrite::kInsert) << status;
		EXPECT_EQ(a.row.billing_reason, "manual") << status;
	}
	stored.own_invoice_status = "open";
	EXPECT_EQ(DecideInvoice(e, stored).invoice_id, 41);
}

TEST(StripeRefund, TheChargesPaymentAndOnlyTheNewPartNeverAboveWhatWasPaid)
{
	EXPECT_FALSE(RefundedPayment({}));
	EXPECT_EQ(RefundedPayment({{5, false}, {3, false}}), 3);  // the oldest
	EXPECT_EQ(RefundedPayment({{5, false}, {9, true}, {7, true}}), 7);  // the charge's own first
	json ch = Fixtures().at("charge");
	ch["amount"] = 1000;
	ch["amount_refunded"] = 400;
	Event e = ParseEvent(MakeEvent("charge.refunded", ch));
	auto r = DecideRefund(e, 1000, 0);
	ASSERT_TRUE(r);
	EXPECT_EQ(r->amount, 400);
	EXPECT_EQ(r->total, 400);
	EXPECT_EQ(r->external_id, "stripe_refund:ch_1PgafuB7WZ01zgkWXYmPNZs8:400");
	EXPECT_FALSE(DecideRefund(e, 1000, 400));  // a redelivery: nothing new
	EXPECT_FALSE(DecideRefund(e, 1000, 600));  // never negative
	ch["amount_refunded"] = 1500;  // more than billing recorded as paid: capped
	e = ParseEvent(MakeEvent("charge.refunded", ch));
	r = DecideRefund(e, 1000, 400);
	ASSERT_TRUE(r);
	EXPECT_EQ(r->amount, 600);
	EXPECT_EQ(r->total, 1000);
	EXPECT_EQ(r->at, e.created);  // dated at the event
	// D3: never before the payment it refunds (a charge adopting an invoice's later payment row)
	r = DecideRefund(e, 1000, 400, e.created + 58);
	ASSERT_TRUE(r);
	EXPECT_EQ(r->at, e.created + 58);
	EXPECT_EQ(DecideRefund(e, 1000, 400, e.created - 58)->at, e.created);
	// a charge whose payment never arrived is recorded from the charge, at its creation
	ch["created"] = kCreated - 100;
	ch["payment_intent"] = "pi_x";
	PaymentRecord p = PaymentOfRefundedCharge(ParseEvent(MakeEvent("charge.refunded", ch, kCreated)));
	EXPECT_TRUE(p.succeeded);
	EXPECT_EQ(p.external_id, "pi_x");
	EXPECT_EQ(p.charge, "ch_1PgafuB7WZ01zgkWXYmPNZs8");
	EXPECT_EQ(p.amount, 1000);
	EXPECT_EQ(p.paid_at, kCreated - 100);
	EXPECT_EQ(PendingReason(ParseEvent(MakeEvent("charge.refunded", ch))),
			  "no billing user for stripe charge \"ch_1PgafuB7WZ01zgkWXYmPNZs8\": it has no metadata.user_id "
			  "and its customer is not linked");
}

// A customer whose link a user deletion closed: only the event ending the
// deleted user's Stripe subscription billing holds applies; the rest waits
// (it would land on whoever registers the id next).
TEST(StripeDeletedUser, OnlyTheEndOfTheHeldSubscriptionApplies)
{
	ClosedCustomer closed{"cus_old", "d1", kCreated};
	json s = Subscription();
	s["customer"] = "cus_old";
	Event updated = ParseEvent(MakeEvent("customer.subscription.updated", s));
	Event deleted = ParseEvent(MakeEvent("customer.subscription.deleted", s));
	EXPECT_FALSE(EndsSubscription(updated));
	EXPECT_TRUE(EndsSubscription(deleted));
	// not closed: everything applies as before
	EXPECT_FALSE(HeldForDeletedUser(updated, std::nullopt, true));
	// the deletion-ending event of the held subscription applies
	EXPECT_FALSE(HeldForDeletedUser(deleted, closed, true));
	json canceled = s;
	canceled["status"] = "canceled";
	EXPECT_FALSE(HeldForDeletedUser(ParseEvent(MakeEvent("customer.subscription.updated", canceled)), closed, true));
	// a subscription billing does not hold, even ending, is not created for the id
	EXPECT_TRUE(HeldForDeletedUser(deleted, closed, false));
	// an update (renewal, plan change, cancel at period end) waits
	std::optional<std::string> reason = HeldForDeletedUser(updated, closed, true);
	ASSERT_TRUE(reason);
	EXPECT_EQ(*reason, "stripe customer \"cus_old\" belonged to user \"d1\", deleted at 2026-01-01 00:00:00+00: "
					   "not applied to whoever holds the id now");
	json pending_cancel = s;
	pending_cancel["cancel_at_period_end"] = true;
	EXPECT_TRUE(HeldForDeletedUser(ParseEvent(MakeEvent("customer.subscription.updated", pending_cancel)), closed, true));
	s["metadata"] = json{{"user_id", "d1"}};  // naming the reused id changes nothing
	EXPECT_TRUE(HeldForDeletedUser(ParseEvent(MakeEvent("customer.subscription.created", s)), closed, false));
	// money and links wait too
	json in = Fixtures().at("invoice");
	in["customer"] = "cus_old";
	EXPECT_TRUE(HeldForDeletedUser(ParseEvent(MakeEvent("invoice.paid", in)), closed, true));
	json ch = Fixtures().at("charge");
	EXPECT_TRUE(HeldForDeletedUser(ParseEvent(MakeEvent("charge.refunded", ch)), closed, true));
	json cs = Fixtures().at("checkout.session");
	cs["client_reference_id"] = "d1";
	EXPECT_TRUE(HeldForDeletedUser(ParseEvent(MakeEvent("checkout.session.completed", cs)), closed, false));
}

TEST(StripeCheckout, LinksTheNamedUserOrIsIgnored)
{
	json cs = Fixtures().at("checkout.session");
	cs["client_reference_id"] = "u42";
	cs["customer"] = "cus_1";
	cs["subscription"] = "sub_1";
	cs["metadata"] = json::object();
	CheckoutLink link = DecideCheckout(ParseEvent(MakeEvent("checkout.session.completed", cs)));
	EXPECT_FALSE(link.ignored);
	EXPECT_EQ(link.user_id, "u42");
	EXPECT_EQ(link.customer, "cus_1");
	EXPECT_EQ(link.subscription, "sub_1");
	cs["customer"] = nullptr;  // no customer: nothing to link the subscription to
	EXPECT_FALSE(DecideCheckout(ParseEvent(MakeEvent("checkout.session.completed", cs))).subscription);
	cs["client_reference_id"] = nullptr;
	link = DecideCheckout(ParseEvent(MakeEvent("checkout.session.completed", cs)));
	EXPECT_EQ(link.ignored, "the checkout session has no client_reference_id or metadata.user_id");
}

TEST(StripeEvent, CheckoutSession)
{
	json cs = Fixtures().at("checkout.session");
	cs["mode"] = "subscription";
	cs["client_reference_id"] = "user_42";
	cs["customer"] = "cus_QXg1o8vcGmoR32";
	cs["subscription"] = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw";
	Event e = ParseEvent(MakeEvent("checkout.session.completed", cs));
	EXPECT_EQ(e.object.client_reference_id, "user_42");
	EXPECT_EQ(e.object.customer, "cus_QXg1o8vcGmoR32");
	EXPECT_EQ(e.object.subscription, "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
	EXPECT_EQ(e.object.mode, "subscription");
	EXPECT_EQ(NamedUser(e.object), "user_42");
	// an expanded customer object stands for its id
	cs["customer"] = Fixtures().at("customer");
	EXPECT_EQ(ParseEvent(MakeEvent("checkout.session.completed", cs)).object.customer, "cus_QXg1o8vcGmoR32");
}

TEST(StripePrecheck, WhatCanNeverApplyIsIgnoredWithItsReason)
{
	auto any_plan = [](const std::string &) { return true; };
	auto no_plan = [](const std::string &) { return false; };
	json s = Subscription();
	s["status"] = "active";
	EXPECT_EQ(Precheck(ParseEvent(MakeEvent("customer.subscription.updated", s)), any_plan), std::nullopt);
	EXPECT_EQ(Precheck(ParseEvent(MakeEvent("customer.subscription.updated", s)), no_plan),
			  "no plan has stripe price \"" + s["items"]["data"][0]["price"]["id"].get<std::string>() +
				  "\"; set billing.subscription_plans.stripe_price_id");
	json unknown = s;
	unknown["status"] = "frozen";
	EXPECT_EQ(Precheck(ParseEvent(MakeEvent("customer.subscription.updated", unknown)), any_plan),
			  "unknown stripe subscription status \"frozen\"");
	json no_price = s;
	no_price["items"]["data"] = json::array();
	EXPECT_EQ(Precheck(ParseEvent(MakeEvent("customer.subscription.updated", no_price)), any_plan),
			  "the stripe subscription has no price");
	// an invoice event whose object is a subscription, a payment intent without currency
	EXPECT_EQ(Precheck(ParseEvent(MakeEvent("invoice.paid", s)), any_plan), "the event's object is not an invoice");
	json pi = Fixtures().at("payment_intent");
	EXPECT_EQ(Precheck(ParseEvent(MakeEvent("payment_intent.succeeded", pi)), any_plan), std::nullopt);
	pi["currency"] = "us";
	EXPECT_EQ(Precheck(ParseEvent(MakeEvent("payment_intent.succeeded", pi)), any_plan),
			  "the stripe object has no currency");
	json ch = Fixtures().at("charge");
	EXPECT_EQ(Precheck(ParseEvent(MakeEvent("charge.refunded", ch)), any_plan), std::nullopt);
	EXPECT_EQ(Precheck(ParseEvent(MakeEvent("charge.refunded", pi)), any_plan), "the event's object is not a charge");
	EXPECT_EQ(HandlerOf("charge.refunded"), Handler::kChargeRefunded);
	EXPECT_EQ(HandlerOf("customer.created"), Handler::kNone);
	EXPECT_FALSE(Handled("customer.created"));
}

TEST(StripeSubscriptionRow, TimesAreMadeConsistentAndTheStartNeverMoves)
{
	json s = Subscription();
	s["status"] = "trialing";
	s["trial_end"] = kCreated + 14 * 86400;  // no trial_start: the trial starts with the subscription
	auto row = DecideSubscriptionRow(ParseEvent(MakeEvent("customer.subscription.created", s)), std::nullopt);
	ASSERT_TRUE(row);
	EXPECT_EQ(row->mirror.status, "trialing");
	EXPECT_EQ(row->started, kCreated);
	EXPECT_EQ(row->period_start, kCreated);
	EXPECT_EQ(row->period_end, kPeriodEnd);
	EXPECT_EQ(row->trial_start, kCreated);
	EXPECT_EQ(row->trial_end, kCreated + 14 * 86400);
	EXPECT_FALSE(row->ended_at);
	// an existing subscription keeps its start; a period end before its start is dropped
	s["items"]["data"][0]["current_period_end"] = kCreated - 1;
	s["trial_start"] = kCreated + 100;
	s["trial_end"] = kCreated + 50;  // before its start: held at the start
	row = DecideSubscriptionRow(ParseEvent(MakeEvent("customer.subscription.updated", s)), kCreated - 3600);
	EXPECT_EQ(row->started, kCreated - 3600);
	EXPECT_FALSE(row->period_end);
	EXPECT_EQ(row->trial_start, kCreated + 100);
	EXPECT_EQ(row->trial_end, kCreated + 100);
	// ended before billing's start: it ends at the start; past due and paused date from the event
	s["status"] = "canceled";
	s["ended_at"] = kCreated - 7200;
	row = DecideSubscriptionRow(ParseEvent(MakeEvent("customer.subscription.deleted", s, kCreated + 5)), kCreated - 3600);
	EXPECT_EQ(row->ended_at, kCreated - 3600);
	EXPECT_EQ(row->mirror.end_reason, "canceled");
	s["status"] = "past_due";
	s["ended_at"] = nullptr;
	row = DecideSubscriptionRow(ParseEvent(MakeEvent("customer.subscription.updated", s, kCreated + 9)), std::nullopt);
	EXPECT_EQ(row->past_due_since, kCreated + 9);
	EXPECT_FALSE(row->paused_at);
	s["status"] = "paused";
	row = DecideSubscriptionRow(ParseEvent(MakeEvent("customer.subscription.paused", s, kCreated + 9)), std::nullopt);
	EXPECT_EQ(row->paused_at, kCreated + 9);
	EXPECT_FALSE(row->past_due_since);
	s["status"] = "frozen";
	EXPECT_FALSE(DecideSubscriptionRow(ParseEvent(MakeEvent("customer.subscription.updated", s)), std::nullopt));
}

TEST(StripeEvent, UnhandledObjectsStillParse)
{
	// the fixture event itself: a plan.created event
	Event e = ParseEvent(Fixtures().at("event").dump());
	EXPECT_EQ(e.type, "plan.created");
	EXPECT_EQ(e.object.object, "plan");
	EXPECT_EQ(e.object.id, "price_1PgafmB7WZ01zgkW6dKueIc5");
}

void
ExpectInvalid(const std::string &payload)
{
	try {
		ParseEvent(payload);
		FAIL() << "accepted " << payload;
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), "22023") << payload;
		EXPECT_FALSE(std::string(e.what()).empty());
		EXPECT_TRUE(std::islower(static_cast<unsigned char>(e.what()[0]))) << e.what();
	}
}

TEST(StripeEvent, MalformedJsonAndMissingEnvelopeAre22023)
{
	ExpectInvalid("");
	ExpectInvalid("{");
	ExpectInvalid("not json");
	ExpectInvalid("[]");
	ExpectInvalid("null");
	ExpectInvalid(R"({"type":"x","created":1,"data":{"object":{}}})");
	ExpectInvalid(R"({"id":5,"type":"x","created":1,"data":{"object":{}}})");
	ExpectInvalid(R"({"id":"evt","created":1,"data":{"object":{}}})");
	ExpectInvalid(R"({"id":"evt","type":"x","created":"1","data":{"object":{}}})");
	ExpectInvalid(R"({"id":"evt","type":"x","created":1.5,"data":{"object":{}}})");
	ExpectInvalid(R"({"id":"evt","type":"x","created":-1,"data":{"object":{}}})");
	ExpectInvalid(R"({"id":"evt","type":"x","created":99999999999999,"data":{"object":{}}})");
	ExpectInvalid(R"({"id":"evt","type":"x","created":1,"data":{}})");
	ExpectInvalid(R"({"id":"evt","type":"x","created":1,"data":{"object":null}})");
	EXPECT_NO_THROW(ParseEvent(R"({"id":"evt","type":"x","created":1,"data":{"object":{}}})"));
}

TEST(StripeEvent, NumbersOutOfRangeAreRefusedNotCoerced)
{
	auto refused = [](const std::string &type, json object, const char *field, json value) {
		object[field] = value;
		try {
			ParseEvent(MakeEvent(type, object));
			ADD_FAILURE() << field << " = " << value.dump() << " was accepted";
		} catch (const Error &e) {
			EXPECT_EQ(e.sqlstate(), "22023") << field;
			EXPECT_NE(e.detail().find(field), std::string::npos) << e.detail();
		}
	};
	json ch = Fixtures().at("charge");
	refused("charge.refunded", ch, "amount", 1e30);
	refused("charge.refunded", ch, "amount", 10.5);
	refused("charge.refunded", ch, "amount", -1);
	refused("charge.refunded", ch, "amount", json::parse("9223372036854775808"));
	refused("charge.refunded", ch, "amount_refunded", "40");
	json pi = Fixtures().at("payment_intent");
	refused("payment_intent.succeeded", pi, "amount_received", true);
	json sub = Subscription();
	refused("customer.subscription.updated", sub, "current_period_end", json::parse("253402300800"));
	refused("customer.subscription.updated", sub, "trial_end", -5);
	refused("customer.subscription.updated", sub, "canceled_at", 1.5);
	sub["items"]["data"][0]["current_period_end"] = 1e30;
	EXPECT_THROW(ParseEvent(MakeEvent("customer.subscription.updated", sub)), Error);
	// the extremes that are in range
	ch["amount"] = json::parse("9223372036854775807");
	EXPECT_EQ(ParseEvent(MakeEvent("charge.refunded", ch)).object.amount, std::numeric_limits<int64_t>::max());
	json inv = Fixtures().at("invoice");
	inv["total"] = -500;  // a credit
	EXPECT_EQ(ParseEvent(MakeEvent("invoice.finalized", inv)).object.total, -500);
	sub = Subscription();
	sub["ended_at"] = 253402300799;
	EXPECT_EQ(ParseEvent(MakeEvent("customer.subscription.deleted", sub)).object.ended_at, 253402300799);
}

TEST(StripeBounds, DeepNestingAndHugePayloadsAre54000BeforeParsing)
{
	auto limit = [](const std::string &payload) {
		try {
			Prepare(payload);
			ADD_FAILURE() << "accepted " << payload.size() << " bytes";
		} catch (const Error &e) {
			EXPECT_EQ(e.sqlstate(), "54000") << e.what();
		}
	};
	// a value nested n levels below data.object.metadata (itself 4 levels deep)
	auto nested = [](int levels) {
		json sub = Subscription();
		sub["metadata"]["x"] = "PLACEHOLDER";
		std::string event = MakeEvent("customer.subscription.updated", sub);
		event.replace(event.find("\"PLACEHOLDER\""), 13, std::string(levels, '[') + std::string(levels, ']'));
		return event;
	};
	limit(nested(100000));
	limit(std::string(100000, '{'));  // not even valid JSON: the bound is checked first
	// exactly the limit is fine; one more level is not
	ASSERT_NO_THROW(json::parse(nested(kMaxNesting - 4)));
	EXPECT_NO_THROW(Prepare(nested(kMaxNesting - 4)));
	limit(nested(kMaxNesting - 3));
	json sub = Subscription();
	// brackets inside strings (and escaped quotes) do not count
	sub["metadata"]["note"] = std::string(500, '[') + "\"" + std::string(500, '{');
	EXPECT_NO_THROW(Prepare(MakeEvent("customer.subscription.updated", sub)));
	sub["metadata"]["note"] = std::string(kMaxPayloadBytes, 'x');
	limit(MakeEvent("customer.subscription.updated", sub));
}

// Pairs of events of one object that Stripe can send in the same second,
// delivered in both orders: what the rule keeps.
struct Delivered {
	const char *type;
	const char *status;
	bool final = false;  // the object's state is final (independent of EventStage)
};

Event
SameSecond(const Delivered &d, const char *object_fixture)
{
	json o = std::string(object_fixture) == "subscription" ? Subscription() : Fixtures().at(object_fixture);
	o["status"] = std::string(d.status) == "refunded" ? "succeeded" : d.status;
	if (std::string(object_fixture) == "charge" && std::string(d.type) == "charge.refunded")
		o["amount_refunded"] = o["amount"];
	else if (std::string(object_fixture) == "charge")
		o["amount_refunded"] = 0;
	json e = json::parse(MakeEvent(d.type, o));
	return ParseEvent(e.dump());
}

// Applies a then b (both in the same second) and returns the one in force.
const Delivered &
Survivor(const Delivered &a, const Delivered &b, const char *fixture)
{
	std::optional<Watermark> last;
	const Delivered *in_force = nullptr;
	for (const Delivered *d : {&a, &b}) {
		Watermark w{kCreated, EventStage(SameSecond(*d, fixture))};
		if (IsNewer(last, w)) {
			last = w;
			in_force = d;
		}
	}
	return *in_force;
}

bool
Final(const Delivered &d)
{
	return d.final || std::string(d.type).ends_with(".deleted");
}

void
EveryPairBothOrders(const std::vector<Delivered> &events, const char *fixture)
{
	for (const auto &a : events) {
		for (const auto &b : events) {
			const Delivered &kept = Survivor(a, b, fixture);
			std::string pair = std::string(a.type) + "/" + a.status + " then " + b.type + "/" + b.status;
			// a final state is never undone by a non-final one of the same second
			if (Final(a) || Final(b))
				EXPECT_TRUE(Final(kept)) << pair;
			// a creation never overwrites a later state of its own second
			bool a_creates = std::string(a.type).ends_with(".created") && !Final(a);
			bool b_creates = std::string(b.type).ends_with(".created") && !Final(b);
			if (a_creates != b_creates && !Final(a) && !Final(b))
				EXPECT_EQ(&kept, a_creates ? &b : &a) << pair;
			// a deletion is the last word
			if (std::string(a.type).ends_with(".deleted") || std::string(b.type).ends_with(".deleted"))
				EXPECT_TRUE(std::string(kept.type).ends_with(".deleted")) << pair;
			// otherwise the state delivered last is Stripe's latest
			if (Final(a) == Final(b) && a_creates == b_creates &&
				std::string(a.type).ends_with(".deleted") == std::string(b.type).ends_with(".deleted"))
				EXPECT_EQ(&kept, &b) << pair;
		}
	}
}

TEST(StripeOrder, SubscriptionEventsOfTheSameSecondInBothOrders)
{
	EveryPairBothOrders({{"customer.subscription.created", "incomplete"},
						 {"customer.subscription.created", "trialing"},
						 {"customer.subscription.created", "active"},
						 {"customer.subscription.updated", "active"},
						 {"customer.subscription.updated", "trialing"},
						 {"customer.subscription.updated", "past_due"},
						 {"customer.subscription.updated", "unpaid"},
						 {"customer.subscription.updated", "paused"},
						 {"customer.subscription.updated", "canceled", true},
						 {"customer.subscription.updated", "incomplete_expired", true},
						 {"customer.subscription.trial_will_end", "trialing"},
						 {"customer.subscription.deleted", "canceled", true}},
						"subscription");
}

TEST(StripeOrder, TheIssuesCaseUpdatedAndDeletedInTheSameSecond)
{
	Delivered updated{"customer.subscription.updated", "active"};
	Delivered deleted{"customer.subscription.deleted", "canceled", true};
	EXPECT_STREQ(Survivor(updated, deleted, "subscription").type, "customer.subscription.deleted");
	EXPECT_STREQ(Survivor(deleted, updated, "subscription").type, "customer.subscription.deleted");
}

TEST(StripeOrder, InvoicePaymentIntentChargeAndCheckoutEventsInBothOrders)
{
	EveryPairBothOrders({{"invoice.created", "draft"},
						 {"invoice.finalized", "open"},
						 {"invoice.payment_failed", "open"},
						 {"invoice.paid", "paid", true},
						 {"invoice.payment_succeeded", "paid", true},
						 {"invoice.voided", "void", true},
						 {"invoice.marked_uncollectible", "uncollectible"}},
						"invoice");
	EveryPairBothOrders({{"payment_intent.created", "requires_payment_method"},
						 {"payment_intent.processing", "processing"},
						 {"payment_intent.payment_failed", "requires_payment_method"},
						 {"payment_intent.succeeded", "succeeded", true},
						 {"payment_intent.canceled", "canceled", true}},
						"payment_intent");
	EveryPairBothOrders({{"charge.succeeded", "succeeded"}, {"charge.refund.updated", "succeeded"}, {"charge.refunded", "refunded", true}}, "charge");
	EveryPairBothOrders({{"checkout.session.completed", "complete", true}, {"checkout.session.expired", "expired", true}},
						"checkout.session");
}

TEST(StripeOrder, SecondsDecideFirst)
{
	EXPECT_TRUE(IsNewer(std::nullopt, {kCreated, 0}));
	EXPECT_TRUE(IsNewer(Watermark{kCreated, 3}, {kCreated + 1, 0}));
	EXPECT_FALSE(IsNewer(Watermark{kCreated, 0}, {kCreated - 1, 3}));
	EXPECT_TRUE(IsNewer(Watermark{kCreated, 1}, {kCreated, 1}));
	EXPECT_FALSE(IsNewer(Watermark{kCreated, 2}, {kCreated, 1}));
}

TEST(StripeStatus, MapsStripeStatusesToBillings)
{
	EXPECT_EQ(MapSubscriptionStatus("trialing"), "trialing");
	EXPECT_EQ(MapSubscriptionStatus("active"), "active");
	EXPECT_EQ(MapSubscriptionStatus("past_due"), "past_due");
	EXPECT_EQ(MapSubscriptionStatus("canceled"), "canceled");
	EXPECT_EQ(MapSubscriptionStatus("unpaid"), "past_due");
	EXPECT_EQ(MapSubscriptionStatus("incomplete"), "incomplete");
	EXPECT_EQ(MapSubscriptionStatus("incomplete_expired"), "expired");
	EXPECT_EQ(MapSubscriptionStatus("paused"), "paused");
	EXPECT_FALSE(MapSubscriptionStatus("bogus"));
	EXPECT_FALSE(MapSubscriptionStatus(""));
	EXPECT_EQ(MapInvoiceStatus("uncollectible"), "uncollectible");
	EXPECT_FALSE(MapInvoiceStatus("deleted"));
	EXPECT_EQ(MapBillingReason(std::string("subscription_threshold")), "manual");
	EXPECT_EQ(MapBillingReason(std::nullopt), "manual");
}

// One state machine: every Stripe status and the deletion event, onto a
// transition of billing's table or a named mirror rule.
TEST(StripeMirror, EveryStripeStatusAndEventHasARule)
{
	struct Case {
		const char *type;
		const char *status;
		bool cancel_at_period_end;
		const char *billing;
		const char *rule;
		bool ended;
	};
	const Case cases[] = {
		{"customer.subscription.created", "trialing", false, "trialing", "mirror: Stripe runs the trial", false},
		{"customer.subscription.updated", "active", false, "active", "payment_succeeded", false},
		{"customer.subscription.updated", "active", true, "canceled", "cancel_at_period_end", false},
		{"customer.subscription.updated", "past_due", false, "past_due", "payment_failed", false},
		{"customer.subscription.updated", "unpaid", false, "past_due", "mirror: Stripe stopped retrying", false},
		{"customer.subscription.paused", "paused", false, "paused", "pause", false},
		{"customer.subscription.created", "incomplete", false, "incomplete", "mirror: the first payment", false},
		{"customer.subscription.updated", "incomplete_expired", false, "expired", "incomplete_timeout", true},
		{"customer.subscription.updated", "canceled", false, "canceled", "cancel_now", true},
		{"customer.subscription.updated", "canceled", true, "canceled", "cancel_now", true},
		{"customer.subscription.deleted", "canceled", false, "canceled", "cancel_now", true},
		{"customer.subscription.deleted", "active", true, "canceled", "cancel_now", true},
		{"customer.subscription.deleted", "incomplete_expired", false, "expired", "incomplete_timeout", true},
	};
	for (const auto &c : cases) {
		json sub = Subscription();
		sub["status"] = c.status;
		sub["cancel_at_period_end"] = c.cancel_at_period_end;
		auto m = MirrorSubscription(ParseEvent(MakeEvent(c.type, sub, kCreated + 5)));
		std::string what = std::string(c.type) + " " + c.status;
		ASSERT_TRUE(m) << what;
		EXPECT_EQ(m->status, c.billing) << what;
		EXPECT_EQ(m->stripe_status, c.status) << what;
		EXPECT_TRUE(m->rule.starts_with(c.rule)) << what << ": " << m->rule;
		EXPECT_EQ(m->ended_at.has_value(), c.ended) << what;
		if (c.ended) {
			EXPECT_EQ(m->ended_at, kCreated + 5) << what;  // no ended_at / canceled_at sent: the event's time
			EXPECT_EQ(m->end_reason, std::string(c.billing) == "expired" ? "incomplete_expired" : "canceled");
		}
		if (m->status == "canceled")
			EXPECT_TRUE(m->canceled_at) << what;
		// a transition rule names an action of billing's own table with that target
		if (!m->rule.starts_with("mirror")) {
			bool found = false;
			for (const auto &t : TransitionTable())
				found = found || (ToString(t.action) == m->rule && ToString(t.to) == m->status);
			EXPECT_TRUE(found) << what << " -> " << m->rule;
		}
	}
	json sub = Subscription();
	sub["status"] = "bogus";
	EXPECT_FALSE(MirrorSubscription(ParseEvent(MakeEvent("customer.subscription.updated", sub))));
	// Stripe's own times win over the event's
	sub = Subscription();
	sub["status"] = "canceled";
	sub["canceled_at"] = kCreated + 1;
	sub["ended_at"] = kCreated + 2;
	auto m = MirrorSubscription(ParseEvent(MakeEvent("customer.subscription.deleted", sub, kCreated + 9)));
	EXPECT_EQ(m->canceled_at, kCreated + 1);
	EXPECT_EQ(m->ended_at, kCreated + 2);
	// the table the README shows covers every status MapSubscriptionStatus knows
	for (const char *status : {"trialing", "active", "past_due", "unpaid", "paused", "incomplete",
							   "incomplete_expired", "canceled"}) {
		bool listed = false;
		for (const auto &row : StripeStatusTable())
			listed = listed || std::string(row.stripe) == status;
		EXPECT_TRUE(listed) << status;
	}
}

TEST(StripeSanitize, CardDetailsAreNotKept)
{
	json ch = Fixtures().at("charge");
	std::string payload = MakeEvent("charge.refunded", ch);
	ASSERT_NE(payload.find("4242"), std::string::npos);
	ASSERT_NE(payload.find("AOB934RVNwzk6xtn"), std::string::npos);
	std::string kept = SanitizedPayload(payload);
	EXPECT_EQ(kept.find("payment_method_details"), std::string::npos);
	EXPECT_EQ(kept.find("4242"), std::string::npos);
	EXPECT_EQ(kept.find("AOB934RVNwzk6xtn"), std::string::npos);
	EXPECT_EQ(kept.find("\"card\":{"), std::string::npos);
	// what billing needs is still there
	json back = json::parse(kept);
	EXPECT_EQ(back["data"]["object"]["id"], "ch_1PgafuB7WZ01zgkWXYmPNZs8");
	EXPECT_EQ(back["data"]["object"]["amount"], 100);
	// a refund's destination_details.card goes too
	std::string refund = SanitizedPayload(MakeEvent("charge.refund.updated", Fixtures().at("refund")));
	EXPECT_EQ(json::parse(refund)["data"]["object"]["destination_details"].count("card"), 0u);
	EXPECT_THROW(SanitizedPayload("{"), Error);
}

// Review X3: a Stripe subscription replacing billing's own starts when the
// replaced one ended if that is later than Stripe's start (never overlapping).
TEST(StripeTakeover, ReplacementStartsNoEarlierThanTheReplacedEnd)
{
	const int64_t t0 = 1893456000;  // 2030-01-01
	const int64_t day = 86400;
	EXPECT_EQ(StartAfterReplaced(t0 + 5 * day, std::nullopt), t0 + 5 * day);
	EXPECT_EQ(StartAfterReplaced(t0 + 5 * day, (t0 + 10 * day) * int64_t{1000000}), t0 + 10 * day);
	EXPECT_EQ(StartAfterReplaced(t0 + 5 * day, (t0 + 10 * day) * int64_t{1000000} + 1), t0 + 10 * day + 1);
	EXPECT_EQ(StartAfterReplaced(t0 + 12 * day, (t0 + 10 * day) * int64_t{1000000}), t0 + 12 * day);
	EXPECT_EQ(StartAfterReplaced(t0 + 5 * day, (t0 + 10 * day) * int64_t{1000000}, true), t0 + 5 * day);  // Free
}

}  // namespace
}  // namespace billing::stripe
