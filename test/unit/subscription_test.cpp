// Subscription operations: what each one decides, on simulated time.
#include "core/error.hpp"
#include "core/subscription.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <limits>

namespace billing {
namespace {

using namespace std::chrono;

Micros
At(int y, unsigned m, unsigned d, int hour = 0)
{
	sys_days day = year_month_day{year{y}, month{m}, std::chrono::day{d}};
	return duration_cast<microseconds>((day + hours{hour}).time_since_epoch()).count();
}

Plan
MakePlan(int64_t id, const char *code, Tier tier, Interval interval, int64_t price, int trial_days)
{
	Plan p;
	p.id = id;
	p.code = code;
	p.name = code;
	p.tier = tier;
	p.interval = interval;
	p.price_cents = price;
	p.currency = "usd";
	p.trial_days = trial_days;
	return p;
}

const Plan kFree = MakePlan(1, "free", Tier::kFree, Interval::kMonthly, 0, 0);
const Plan kProMonthly = MakePlan(2, "pro_monthly", Tier::kPro, Interval::kMonthly, 2999, 14);
const Plan kProYearly = MakePlan(3, "pro_yearly", Tier::kPro, Interval::kYearly, 28800, 14);
const Plan kEnterprise = MakePlan(4, "enterprise_yearly", Tier::kEnterprise, Interval::kYearly, 99900, 30);

Subscription
Stored(Outcome out, int64_t id = 10)
{
	out.updated.id = id;
	return out.updated;
}

// An active pro_monthly subscription paid on 31 Jan 2026 at noon.
Subscription
ActiveMonthly()
{
	Subscription s = Stored(Subscribe("u", kProMonthly, At(2026, 1, 31, 12), false, false));
	return Stored(PaymentSucceeded(s, kProMonthly, At(2026, 1, 31, 12), false, 0));
}

void
ExpectSqlState(const std::function<void()> &f, const char *state)
{
	try {
		f();
		ADD_FAILURE() << "no error, expected " << state;
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), state) << e.what();
	}
}

TEST(Subscribe, FreePlanIsActiveWithoutPeriodEnd)
{
	Outcome out = Subscribe("u", kFree, At(2026, 1, 1), true, true);
	EXPECT_EQ(out.updated.status, Status::kActive);
	EXPECT_FALSE(out.updated.period_end);
	EXPECT_FALSE(out.invoice);
}

TEST(Subscribe, PaidPlanWithTrialAvailableStartsTrialing)
{
	Outcome out = Subscribe("u", kProMonthly, At(2026, 1, 31, 9), true, true);
	EXPECT_EQ(out.updated.status, Status::kTrialing);
	EXPECT_EQ(out.updated.trial_end, At(2026, 2, 14, 9));
	EXPECT_EQ(out.updated.period_end, At(2026, 2, 14, 9));
	EXPECT_FALSE(out.invoice);
}

TEST(Subscribe, PaidPlanWithoutTrialIsIncompleteWithFirstInvoice)
{
	for (bool with_trial : {true, false}) {
		Outcome out = Subscribe("u", kProMonthly, At(2026, 1, 31, 9), with_trial, /*trial_available=*/false);
		EXPECT_EQ(out.updated.status, Status::kIncomplete);
		EXPECT_EQ(out.updated.period_end, At(2026, 2, 28, 9));
		ASSERT_TRUE(out.invoice);
		EXPECT_EQ(out.invoice->billing_reason, "subscription_create");
		EXPECT_EQ(out.invoice->total_cents, 2999);
	}
}

TEST(Subscribe, RefusesEmptyUser)
{
	ExpectSqlState([] { Subscribe("", kFree, 0, true, true); }, "22023");
	ExpectSqlState([] { Subscribe(std::string(256, 'u'), kFree, 0, true, true); }, "22023");
	Subscribe(std::string(255, 'u'), kFree, 0, true, true);
}

TEST(StartTrial, SecondTrialOfTheTierIsQB010)
{
	ExpectSqlState([] { StartTrial("u", kProYearly, 0, false); }, "QB010");
	ExpectSqlState([] { StartTrial("u", kFree, 0, true); }, "22023");
}

TEST(Payment, ConvertsTrialAndStartsFirstPeriodNow)
{
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2026, 1, 31, 9), true, true));
	Outcome out = PaymentSucceeded(trial, kProMonthly, At(2026, 2, 3, 9), false, 2999);
	EXPECT_EQ(out.updated.status, Status::kActive);
	EXPECT_EQ(out.updated.trial_end, At(2026, 2, 3, 9));
	EXPECT_EQ(out.updated.period_start, At(2026, 2, 3, 9));
	EXPECT_EQ(out.updated.period_end, At(2026, 3, 3, 9));
	ASSERT_TRUE(out.invoice);
	EXPECT_EQ(out.invoice->total_cents, 2999);
}

// Review Y2: a local payment on a Stripe-managed trial neither converts it
// nor issues billing's own first invoice (Stripe converts its trials); the
// money stays credit. Likewise a Stripe-managed past_due stays past_due
// until Stripe says otherwise.
TEST(Payment, StripeManagedTrialIsNotConverted)
{
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2026, 1, 31, 9), true, true));
	trial.stripe_managed = true;
	Outcome out = PaymentSucceeded(trial, kProMonthly, At(2026, 2, 3, 9), false, 5100);
	EXPECT_EQ(out.updated.status, Status::kTrialing);
	EXPECT_EQ(out.updated.trial_end, trial.trial_end);
	EXPECT_FALSE(out.invoice);
	Subscription past_due = ActiveMonthly();
	past_due.status = Status::kPastDue;
	past_due.past_due_since = At(2026, 3, 1);
	past_due.stripe_managed = true;
	Outcome settled = PaymentSucceeded(past_due, kProMonthly, At(2026, 3, 2), false, 0);
	EXPECT_EQ(settled.updated.status, Status::kPastDue);
	EXPECT_EQ(settled.updated.past_due_since, At(2026, 3, 1));
}

// Review X1: a void long after an unpaid upgrade gives back only the
// replaced period's time still unused at the void.
TEST(Void, CreditLineBackOnlyForTimeStillUnused)
{
	Micros upgrade = At(2030, 1, 2);
	Micros end = At(2031, 1, 1);
	EXPECT_EQ(CreditLineUnusedAt("plan_changed", 28721, upgrade, end, At(2030, 1, 11)), 28011);  // 28721 x 355 / 364
	EXPECT_EQ(CreditLineUnusedAt("plan_changed", 28721, upgrade, end, upgrade), 28721);
	EXPECT_EQ(CreditLineUnusedAt("plan_changed", 28721, upgrade, std::nullopt, At(2030, 1, 11)), 28721);
	EXPECT_EQ(CreditLineUnusedAt("plan_changed", 28721, upgrade, end, end), 0);
	EXPECT_EQ(CreditLineUnusedAt("plan_changed", 0, upgrade, end, At(2030, 1, 11)), 0);
	// the grace-end void keeps the whole line (27_review_money U1 (c))
	EXPECT_EQ(CreditLineUnusedAt("payment_failed", 28721, upgrade, end, At(2030, 1, 20)), 28721);
}

TEST(Payment, TooSmallPaymentLeavesStatusAlone)
{
	Subscription s = Stored(Subscribe("u", kProMonthly, At(2026, 1, 31, 12), false, false));
	EXPECT_EQ(PaymentSucceeded(s, kProMonthly, At(2026, 1, 31, 13), true, 0).updated.status, Status::kIncomplete);
}

TEST(Payment, FailureMovesActiveToPastDueAndNotifies)
{
	Outcome out = PaymentFailed(ActiveMonthly(), At(2026, 3, 1), true);
	EXPECT_EQ(out.updated.status, Status::kPastDue);
	EXPECT_EQ(out.updated.past_due_since, At(2026, 3, 1));
	ASSERT_EQ(out.notifications.size(), 1u);
	EXPECT_EQ(out.notifications[0], "payment_failed");
}

TEST(Payment, FailureWithNothingOwedStartsNoDunning)
{
	Subscription active = ActiveMonthly();
	Outcome out = PaymentFailed(active, At(2026, 3, 1), false);
	EXPECT_EQ(out.updated.status, Status::kActive);
	EXPECT_FALSE(out.updated.past_due_since);
	ASSERT_EQ(out.notifications.size(), 1u);  // the failure is still told
	EXPECT_EQ(out.notifications[0], "payment_failed");
}

TEST(Cancel, AtPeriodEndKeepsEntitlementsThenReactivates)
{
	Subscription s = ActiveMonthly();
	Subscription canceled = Cancel(s, true, At(2026, 2, 10)).updated;
	EXPECT_EQ(canceled.status, Status::kCanceled);
	EXPECT_TRUE(canceled.cancel_at_period_end);
	EXPECT_FALSE(canceled.ended_at);
	Subscription back = Reactivate(canceled, At(2026, 2, 11)).updated;
	EXPECT_EQ(back.status, Status::kActive);
	EXPECT_FALSE(back.cancel_at_period_end);
	// after the period end it is too late
	ExpectSqlState([&] { Reactivate(canceled, At(2026, 2, 28, 12)); }, "QB010");
}

TEST(Cancel, CanceledTrialReactivatesToTrialing)
{
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2026, 1, 1), true, true));
	Subscription canceled = Cancel(trial, true, At(2026, 1, 5)).updated;
	EXPECT_EQ(Reactivate(canceled, At(2026, 1, 6)).updated.status, Status::kTrialing);
}

TEST(Cancel, NowEndsAndFallsBackToFree)
{
	Outcome out = Cancel(ActiveMonthly(), false, At(2026, 2, 10));
	EXPECT_EQ(out.updated.ended_at, At(2026, 2, 10));
	EXPECT_TRUE(out.fall_back_to_free);
	EXPECT_EQ(out.free_from, At(2026, 2, 10));
	ExpectSqlState([&] { Cancel(out.updated, false, At(2026, 2, 11)); }, "QB010");
}

TEST(Cancel, FreeSubscriptionCannotBeCanceled)
{
	Subscription free = Stored(Subscribe("u", kFree, At(2026, 1, 1), true, true));
	ExpectSqlState([&] { Cancel(free, true, At(2026, 1, 2)); }, "QB010");
}

// Attack finding 67 and review D2: a user deleted from the users table.
TEST(Cancel, DeletedUsersPaidSubscriptionEndsAtTheLaterOfNowAndItsLatestChange)
{
	Subscription paid = ActiveMonthly();
	EXPECT_TRUE(CanceledWithItsUser(paid));
	EXPECT_EQ(UserDeletionTime(paid, At(2026, 2, 10)), At(2026, 2, 10));
	// a payment dated ahead of the deletion: the cancel comes no earlier
	paid.last_payment_at = At(2026, 2, 11);
	EXPECT_EQ(UserDeletionTime(paid, At(2026, 2, 10)), At(2026, 2, 11));
	Outcome out = Cancel(paid, false, UserDeletionTime(paid, At(2026, 2, 10)));
	EXPECT_EQ(out.updated.ended_at, At(2026, 2, 11));
	// what stays: a plain Free one, an ended one, a Stripe-managed one
	EXPECT_FALSE(CanceledWithItsUser(Stored(Subscribe("u", kFree, At(2026, 1, 1), true, true))));
	EXPECT_FALSE(CanceledWithItsUser(out.updated));
	Subscription stripe = ActiveMonthly();
	stripe.stripe_managed = true;
	EXPECT_FALSE(CanceledWithItsUser(stripe));
}

// Attack finding 3/6: a deleted user, or an id renamed away while billing
// held nothing live for it, closes its plain Free subscription too (the
// reports count each user once); the paid one is canceled without a Free
// one after it (the user is gone).
TEST(Cancel, DeletedOrRenamedUsersFreeSubscriptionIsClosedWithThem)
{
	Subscription free = Stored(Subscribe("u", kFree, At(2026, 1, 1), true, true));
	EXPECT_TRUE(ClosedWithItsUser(free));
	EXPECT_FALSE(CanceledWithItsUser(free));
	Outcome closed = EndWithItsUser(free, UserDeletionTime(free, At(2026, 2, 10)));
	EXPECT_EQ(closed.updated.ended_at, At(2026, 2, 10));
	EXPECT_EQ(closed.updated.status, Status::kCanceled);
	EXPECT_EQ(closed.updated.end_reason, "user_gone");  // no cancellation in daily_report
	EXPECT_FALSE(closed.fall_back_to_free);
	EXPECT_FALSE(closed.void_reason);
	EXPECT_FALSE(ClosedWithItsUser(closed.updated));  // ended: nothing more
	Subscription paid = ActiveMonthly();
	EXPECT_FALSE(ClosedWithItsUser(paid));
	Outcome canceled = EndWithItsUser(paid, At(2026, 2, 10));
	EXPECT_EQ(canceled.updated.ended_at, At(2026, 2, 10));
	EXPECT_FALSE(canceled.fall_back_to_free);
	Subscription stripe_free = free;
	stripe_free.stripe_managed = true;
	EXPECT_FALSE(ClosedWithItsUser(stripe_free));  // Stripe's own event ends it
	ExpectSqlState([&] { EndWithItsUser(stripe_free, At(2026, 2, 10)); }, "QB010");
	ExpectSqlState([&] { EndWithItsUser(closed.updated, At(2026, 2, 11)); }, "QB010");
}

// Review D1: a deleted user's credit leaves the id with them (owed to the
// deleted customer), whoever takes the id next starts at 0; the same for a
// Stripe-managed customer (billing's own credit).
TEST(Cancel, DeletedUsersCreditLeavesTheId)
{
	EXPECT_EQ(CreditLeavingWithItsUser(5000), 5000);
	EXPECT_EQ(CreditLeavingWithItsUser(0), 0);
	EXPECT_EQ(CreditLeavingWithItsUser(-1), 0);  // never adds to the id
}

// A TRUNCATE of the attached users table (no row trigger fires): refused
// while billing holds anything live, by UserRenameRefusal's measure.
TEST(UserTruncate, RefusedWhileBillingHoldsSomethingLive)
{
	HeldForUser free;
	free.current = Stored(Subscribe("carol", kFree, At(2026, 1, 1), true, true));
	free.credit = {{"usd", 0}};
	EXPECT_FALSE(UsersTruncateRefusal(free, "users"));
	EXPECT_FALSE(UsersTruncateRefusal(HeldForUser{}, "users"));
	HeldForUser paid;
	paid.current = ActiveMonthly();
	std::optional<Error> refusal = UsersTruncateRefusal(paid, "users");
	ASSERT_TRUE(refusal);
	EXPECT_EQ(refusal->sqlstate(), "55000");
	EXPECT_STREQ(refusal->what(), "cannot truncate table \"users\": billing still holds live state for its users");
	// attack finding 4.3: the DETAIL names no user (the truncating role may not read billing)
	EXPECT_EQ(refusal->detail().find("carol"), std::string::npos);
	EXPECT_EQ(refusal->detail().find(std::to_string(paid.current->id)), std::string::npos);
	EXPECT_NE(refusal->hint().find("session_replication_role = replica"), std::string::npos);
	HeldForUser linked;
	linked.stripe_customers = {"cus_1"};
	EXPECT_TRUE(UsersTruncateRefusal(linked, "users"));
	HeldForUser credit;
	credit.credit = {{"usd", -5}};
	EXPECT_TRUE(UsersTruncateRefusal(credit, "users"));
}

// A partition of the users table detached (session 10, attack finding 4.2):
// its users leave the table as a TRUNCATE's would, refused by the same measure.
TEST(UserTruncate, PartitionDetachRefusedWhileBillingHoldsSomethingLive)
{
	HeldForUser free;
	free.current = Stored(Subscribe("carol", kFree, At(2026, 1, 1), true, true));
	EXPECT_FALSE(UsersDetachRefusal(free, "users_us"));
	EXPECT_FALSE(UsersDetachRefusal(HeldForUser{}, "users_us"));
	HeldForUser paid;
	paid.current = ActiveMonthly();
	std::optional<Error> refusal = UsersDetachRefusal(paid, "users_us");
	ASSERT_TRUE(refusal);
	EXPECT_EQ(refusal->sqlstate(), "55000");
	EXPECT_STREQ(refusal->what(),
				 "cannot detach partition \"users_us\" of the users table: billing still holds live state for its users");
	EXPECT_EQ(refusal->detail().find(std::to_string(paid.current->id)), std::string::npos);
	EXPECT_NE(refusal->hint().find("DELETE its users"), std::string::npos);
	HeldForUser credit;
	credit.credit = {{"usd", -5}};
	EXPECT_TRUE(UsersDetachRefusal(credit, "users_us"));
}

// The users table or one of its partitions dropped (session 11): its users
// leave as a TRUNCATE's would, refused by the same measure and DETAIL.
TEST(UserTruncate, UsersTableDropRefusedWhileBillingHoldsSomethingLive)
{
	HeldForUser free;
	free.current = Stored(Subscribe("carol", kFree, At(2026, 1, 1), true, true));
	EXPECT_FALSE(UsersDropRefusal(free, "users_us"));
	EXPECT_FALSE(UsersDropRefusal(HeldForUser{}, "users_us"));
	HeldForUser paid;
	paid.current = ActiveMonthly();
	std::optional<Error> refusal = UsersDropRefusal(paid, "users_us");
	ASSERT_TRUE(refusal);
	EXPECT_EQ(refusal->sqlstate(), "55000");
	EXPECT_STREQ(refusal->what(), "cannot drop table \"users_us\": billing still holds live state for its users");
	EXPECT_EQ(refusal->detail(), UsersTruncateRefusal(paid, "users")->detail());
	EXPECT_EQ(refusal->detail().find(std::to_string(paid.current->id)), std::string::npos);
	EXPECT_NE(refusal->hint().find("DELETE its users"), std::string::npos);
	EXPECT_NE(refusal->hint().find("billing.detach()"), std::string::npos);
	HeldForUser linked;
	linked.stripe_customers = {"cus_1"};
	EXPECT_TRUE(UsersDropRefusal(linked, "users"));
	HeldForUser credit;
	credit.credit = {{"usd", -5}};
	EXPECT_TRUE(UsersDropRefusal(credit, "users"));
}

// Attack finding 70: the application renames a user id (an UPDATE of the
// users table's id column). Refused as a foreign key ON UPDATE RESTRICT
// would, while billing holds anything live for the id; allowed otherwise.
TEST(UserRename, RefusedWhileBillingHoldsSomethingLiveForTheId)
{
	HeldForUser nothing;
	EXPECT_FALSE(UserRenameRefusal(nothing, "users", "id", "carol"));
	// a plain Free subscription, ended subscriptions and a zero balance hold nothing
	HeldForUser free;
	free.current = Stored(Subscribe("carol", kFree, At(2026, 1, 1), true, true));
	free.credit = {{"usd", 0}};
	EXPECT_FALSE(UserRenameRefusal(free, "users", "id", "carol"));
	Subscription ended = Cancel(ActiveMonthly(), false, At(2026, 2, 10)).updated;
	HeldForUser only_ended;
	only_ended.current = ended;
	EXPECT_FALSE(UserRenameRefusal(only_ended, "users", "id", "carol"));

	HeldForUser paid;
	paid.current = ActiveMonthly();
	std::optional<Error> refusal = UserRenameRefusal(paid, "app.users", "id", "carol");
	ASSERT_TRUE(refusal);
	EXPECT_EQ(refusal->sqlstate(), "23503");
	EXPECT_STREQ(refusal->what(), "update on table \"app.users\" changes a user id that billing still refers to");
	EXPECT_EQ(refusal->detail(), "Key (id)=(carol) is still referenced by billing: subscription " +
									 std::to_string(paid.current->id) + " (active).");
	EXPECT_FALSE(refusal->hint().empty());

	// each live holding alone refuses, and the DETAIL names it
	HeldForUser trial;
	trial.current = Stored(Subscribe("carol", kProMonthly, At(2026, 1, 1), true, true));
	ASSERT_EQ(trial.current->status, Status::kTrialing);
	EXPECT_TRUE(UserRenameRefusal(trial, "users", "id", "carol"));
	HeldForUser stripe_free = free;
	stripe_free.current->stripe_managed = true;
	EXPECT_TRUE(UserRenameRefusal(stripe_free, "users", "id", "carol"));
	HeldForUser credit;
	credit.credit = {{"eur", 0}, {"usd", 500}};
	EXPECT_NE(UserRenameRefusal(credit, "users", "id", "carol")->detail().find("a credit balance of 500 usd"),
			  std::string::npos);
	HeldForUser invoices;
	invoices.open_invoices = {"INV-1", "INV-2"};
	EXPECT_NE(UserRenameRefusal(invoices, "users", "id", "carol")->detail().find("2 open invoices (INV-1, ...)"),
			  std::string::npos);
	HeldForUser linked;
	linked.stripe_customers = {"cus_1"};
	EXPECT_NE(UserRenameRefusal(linked, "users", "id", "carol")->detail().find("Stripe customer cus_1"),
			  std::string::npos);
	HeldForUser all = paid;
	all.credit = credit.credit;
	all.open_invoices = {"INV-1"};
	all.stripe_customers = {"cus_1"};
	EXPECT_EQ(UserRenameRefusal(all, "users", "id", "carol")->detail(),
			  "Key (id)=(carol) is still referenced by billing: subscription " + std::to_string(paid.current->id) +
				  " (active), a credit balance of 500 usd, open invoice INV-1 and Stripe customer cus_1.");
}

TEST(Operations, TimeBeforeTheStartIs22023)
{
	ExpectSqlState([] { Cancel(ActiveMonthly(), true, At(2026, 1, 1)); }, "22023");
}

// M1: a time after the start but before a later recorded change (a renewal,
// a pause, dunning, a payment) is refused, so no paid period is rewritten.
TEST(Operations, TimeBeforeTheLatestChangeIs22023)
{
	Subscription renewed = ActiveMonthly();
	renewed.period_start = At(2026, 2, 28, 12);  // the February renewal
	EXPECT_EQ(LatestChange(renewed), At(2026, 2, 28, 12));
	ExpectSqlState([&] { Cancel(renewed, false, At(2026, 2, 15)); }, "22023");
	EXPECT_NO_THROW(Cancel(renewed, false, At(2026, 2, 28, 12)));  // at the change itself: allowed

	Subscription paused = Stored(Pause(ActiveMonthly(), At(2026, 2, 10)));
	ExpectSqlState([&] { Resume(paused, At(2026, 2, 9)); }, "22023");

	Subscription paid = ActiveMonthly();
	paid.last_payment_at = At(2026, 2, 5);
	ExpectSqlState([&] { RequirePayable(paid, kProMonthly, true, At(2026, 2, 4)); }, "22023");
	ExpectSqlState([&] { ChangePlan(paid, kProMonthly, kProYearly, At(2026, 2, 4)); }, "22023");

	Subscription reactivated = ActiveMonthly();
	reactivated.history_from = At(2026, 2, 20);  // a reactivate: recorded only in the history
	ExpectSqlState([&] { Pause(reactivated, At(2026, 2, 15)); }, "22023");

	Subscription dunning = ActiveMonthly();
	dunning.past_due_since = At(2026, 3, 3, 12);
	dunning.status = Status::kPastDue;
	ExpectSqlState([&] { Cancel(dunning, false, At(2026, 3, 1)); }, "22023");
	try {
		Cancel(renewed, false, At(2026, 2, 15));
	} catch (const Error &e) {
		EXPECT_FALSE(e.hint().empty());
	}
}

// H1: the catch-up bound's error is 54000 and names the subscription.
TEST(Operations, CatchUpTooLongIs54000)
{
	Error e = CatchUpTooLong(10, At(2030, 1, 1), At(2200, 1, 1));
	EXPECT_EQ(e.sqlstate(), "54000");
	EXPECT_NE(std::string(e.what()).find("subscription 10"), std::string::npos);
	EXPECT_FALSE(e.hint().empty());
}

TEST(PauseResume, PeriodMovesByThePausedTime)
{
	Subscription paused = Pause(ActiveMonthly(), At(2026, 2, 10)).updated;
	EXPECT_EQ(paused.status, Status::kPaused);
	Subscription resumed = Resume(paused, At(2026, 2, 15)).updated;
	EXPECT_EQ(resumed.status, Status::kActive);
	EXPECT_EQ(resumed.period_end, At(2026, 3, 5, 12));  // 28 Feb 12:00 + 5 days
}

// Found by the model test (seed 1): a downgrade scheduled before a pause
// stayed at the old period end, so effective_plan switched to Free while the
// period (moved by the pause) was still paid for.
TEST(PauseResume, ScheduledChangeMovesWithThePeriod)
{
	Subscription sub = ActiveMonthly();
	sub = ChangePlan(sub, kProMonthly, kFree, At(2026, 2, 1)).updated;
	ASSERT_EQ(sub.scheduled_change_at, sub.period_end);
	Subscription paused = Pause(sub, At(2026, 2, 10)).updated;
	Subscription resumed = Resume(paused, At(2026, 2, 15)).updated;
	EXPECT_EQ(resumed.period_end, At(2026, 3, 5, 12));
	EXPECT_EQ(resumed.scheduled_change_at, At(2026, 3, 5, 12));
	EXPECT_EQ(resumed.scheduled_plan_id, kFree.id);
}

TEST(ChangePlan, UpgradeOrDowngrade)
{
	EXPECT_TRUE(IsUpgrade(kFree, kProMonthly));
	EXPECT_TRUE(IsUpgrade(kProMonthly, kEnterprise));
	EXPECT_TRUE(IsUpgrade(kProMonthly, kProYearly));  // longer commitment
	EXPECT_FALSE(IsUpgrade(kProYearly, kProMonthly));
	EXPECT_FALSE(IsUpgrade(kEnterprise, kProYearly));
	Plan custom_cheap = MakePlan(9, "custom", Tier::kCustom, Interval::kMonthly, 1000, 0);
	EXPECT_FALSE(IsUpgrade(kProMonthly, custom_cheap));
	EXPECT_TRUE(IsUpgrade(custom_cheap, kProMonthly));
}

TEST(ChangePlan, UpgradeEndsOldAndStartsNewWithProrationInvoice)
{
	Subscription s = ActiveMonthly();
	Outcome out = ChangePlan(s, kProMonthly, kEnterprise, At(2026, 2, 14, 12));
	EXPECT_EQ(out.updated.end_reason, "plan_changed");
	EXPECT_EQ(out.updated.ended_at, At(2026, 2, 14, 12));
	ASSERT_TRUE(out.successor);
	EXPECT_EQ(out.successor->plan_id, kEnterprise.id);
	EXPECT_EQ(out.successor->status, Status::kActive);
	EXPECT_EQ(out.successor->price_cents, 99900);
	ASSERT_TRUE(out.invoice);
	EXPECT_EQ(out.invoice->billing_reason, "subscription_update");
	// interval changes: a new yearly period starts now, full price minus the credit
	// credit = 2999 * 14 days / 28 days = 1499.5 -> 1500
	EXPECT_EQ(out.invoice->total_cents, 99900 - 1500);
	EXPECT_EQ(out.successor->period_end, At(2027, 2, 14, 12));
}

// S4 (session 8 money review): billing's lifecycle calls on a subscription
// Stripe manages are refused (QB010); payments are still accepted.
TEST(StripeManaged, LifecycleCallsAreRefused)
{
	Subscription s = ActiveMonthly();
	s.stripe_managed = true;
	Micros at = At(2026, 2, 10);
	ExpectSqlState([&] { ChangePlan(s, kProMonthly, kProYearly, at); }, "QB010");
	ExpectSqlState([&] { ChangePlan(s, kProYearly, kProMonthly, at); }, "QB010");
	ExpectSqlState([&] { Cancel(s, true, at); }, "QB010");
	ExpectSqlState([&] { Cancel(s, false, at); }, "QB010");
	ExpectSqlState([&] { Pause(s, at); }, "QB010");
	ExpectSqlState([&] { Replace(s, kProMonthly, kProYearly, at); }, "QB010");
	Subscription paused = s;
	paused.status = Status::kPaused;
	ExpectSqlState([&] { Resume(paused, at); }, "QB010");
	Subscription canceled = s;
	canceled.status = Status::kCanceled;
	canceled.cancel_at_period_end = true;
	ExpectSqlState([&] { Reactivate(canceled, at); }, "QB010");
	EXPECT_NO_THROW(RequirePayable(s, kProMonthly, true, at));
	EXPECT_NO_THROW(PaymentSucceeded(s, kProMonthly, at, false, 0));
}

// S1/S6: a Stripe subscription replacing billing's own one ends it by the
// plan change's rule: plan_changed, its open invoices void, and the unused
// paid time credited as change_plan's credit line would be.
TEST(StripeReplacement, EndsAsAPlanChangeAndCreditsTheUnusedPaidTime)
{
	// pro_yearly paid 1 Jan 2030, replaced 1 Feb: 28800 x 334 / 365 = 26353.97 -> 26354
	Subscription s = Stored(Subscribe("u", kProYearly, At(2030, 1, 1), false, false));
	s = Stored(PaymentSucceeded(s, kProYearly, At(2030, 1, 1), false, 0));
	Outcome out = ReplaceByStripe(s, At(2030, 2, 1), true, 0, 0);
	EXPECT_EQ(out.updated.status, Status::kCanceled);
	EXPECT_EQ(out.updated.end_reason, "plan_changed");
	EXPECT_EQ(out.updated.ended_at, At(2030, 2, 1));
	EXPECT_EQ(out.void_reason, "plan_changed");
	EXPECT_EQ(out.unused_time_credit_cents, 26354);
	// the same figure change_plan nets into the new plan's invoice
	Outcome change = ChangePlan(s, kProYearly, kEnterprise, At(2030, 2, 1));
	ASSERT_TRUE(change.invoice);
	int64_t credit_line = 0;
	for (const auto &line : change.invoice->lines)
		if (line.amount_cents < 0)
			credit_line = -line.amount_cents;
	EXPECT_EQ(credit_line, 26354);
	// an unpaid period (open invoice) credits no time; its void returns what was paid
	EXPECT_EQ(ReplaceByStripe(s, At(2030, 2, 1), false, 0, 0).unused_time_credit_cents, 0);
	// a refund of 10000 leaves 18800 x 334 / 365 = 17203.3 -> 17203
	EXPECT_EQ(ReplaceByStripe(s, At(2030, 2, 1), true, 10000, 0).unused_time_credit_cents, 17203);
	// never before the replaced subscription's latest recorded change (here its start; a payment later)
	EXPECT_EQ(ReplaceByStripe(s, At(2029, 12, 1), true, 0, 0).updated.ended_at, At(2030, 1, 1));
	Subscription later = s;
	later.last_payment_at = At(2030, 1, 1, 5);
	EXPECT_EQ(ReplaceByStripe(later, At(2030, 1, 1, 1), true, 0, 0).updated.ended_at, At(2030, 1, 1, 5));
	// a trial has no paid time
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2030, 1, 1), true, true));
	EXPECT_EQ(ReplaceByStripe(trial, At(2030, 1, 5), true, 0, 0).unused_time_credit_cents, 0);
	// another Stripe subscription: Stripe voids and prorates its own invoices
	s.stripe_managed = true;
	out = ReplaceByStripe(s, At(2030, 2, 1), true, 0, 0);
	EXPECT_EQ(out.updated.end_reason, "plan_changed");
	EXPECT_FALSE(out.void_reason);
	EXPECT_EQ(out.unused_time_credit_cents, 0);
}

TEST(ChangePlan, DowngradeIsScheduledAtPeriodEnd)
{
	Subscription s = ActiveMonthly();
	Outcome out = ChangePlan(s, kProMonthly, kFree, At(2026, 2, 10));
	EXPECT_FALSE(out.successor);
	EXPECT_FALSE(out.invoice);
	EXPECT_EQ(out.updated.scheduled_plan_id, kFree.id);
	EXPECT_EQ(out.updated.scheduled_change_at, At(2026, 2, 28, 12));
}

TEST(ChangePlan, SamePlanIs22023AndPastDueCannotUpgrade)
{
	ExpectSqlState([] { ChangePlan(ActiveMonthly(), kProMonthly, kProMonthly, At(2026, 2, 10)); }, "22023");
	Subscription past_due = PaymentFailed(ActiveMonthly(), At(2026, 2, 1), true).updated;
	ExpectSqlState([&] { ChangePlan(past_due, kProMonthly, kEnterprise, At(2026, 2, 10)); }, "QB010");
}

TEST(Maintenance, RenewalKeepsTheAnchorDay)
{
	Subscription s = ActiveMonthly();  // anchored 31 Jan 12:00
	const Micros grace = 14 * kMicrosPerDay;
	std::vector<Micros> ends;
	Micros at = At(2026, 6, 1);
	for (int i = 0; i < 10; i++) {
		std::optional<Action> action = DueAction(s, at, grace);
		if (!action)
			break;
		EXPECT_EQ(*action, Action::kPeriodEnd);
		Outcome out = ApplyDue(s, *action, kProMonthly, std::nullopt, at, grace);
		ASSERT_TRUE(out.invoice);
		EXPECT_EQ(out.invoice->billing_reason, "subscription_cycle");
		s = out.updated;
		ends.push_back(*s.period_end);
	}
	std::vector<Micros> want = {At(2026, 3, 31, 12), At(2026, 4, 30, 12), At(2026, 5, 31, 12), At(2026, 6, 30, 12)};
	EXPECT_EQ(ends, want);
}

TEST(Maintenance, DueActionsByStatus)
{
	const Micros grace = 14 * kMicrosPerDay;
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2026, 1, 1), true, true));
	EXPECT_FALSE(DueAction(trial, At(2026, 1, 14, 23), grace));
	EXPECT_EQ(DueAction(trial, At(2026, 1, 15), grace), Action::kTrialEnd);

	Subscription incomplete = Stored(Subscribe("u", kProMonthly, At(2026, 1, 1), false, false));
	EXPECT_FALSE(DueAction(incomplete, At(2026, 1, 1, 22), grace));
	EXPECT_EQ(DueAction(incomplete, At(2026, 1, 1, 23), grace), Action::kIncompleteTimeout);

	Subscription past_due = PaymentFailed(ActiveMonthly(), At(2026, 2, 1), true).updated;
	EXPECT_FALSE(DueAction(past_due, At(2026, 2, 14, 23), grace));
	EXPECT_EQ(DueAction(past_due, At(2026, 2, 15), grace), Action::kGraceEnd);
	Outcome expired = ApplyDue(past_due, Action::kGraceEnd, kProMonthly, std::nullopt, At(2026, 2, 20), grace);
	EXPECT_EQ(expired.updated.status, Status::kExpired);
	EXPECT_EQ(expired.updated.ended_at, At(2026, 2, 15));
	EXPECT_TRUE(expired.fall_back_to_free);

	Subscription paused = Pause(ActiveMonthly(), At(2026, 2, 1)).updated;
	EXPECT_FALSE(DueAction(paused, At(2027, 1, 1), grace));
}

TEST(Maintenance, CanceledEndsAtPeriodEndAndScheduledChangeStartsNewPlan)
{
	const Micros grace = 14 * kMicrosPerDay;
	Subscription canceled = Cancel(ActiveMonthly(), true, At(2026, 2, 1)).updated;
	Outcome ended = ApplyDue(canceled, Action::kPeriodEnd, kProMonthly, std::nullopt, At(2026, 3, 1), grace);
	EXPECT_EQ(ended.updated.ended_at, At(2026, 2, 28, 12));
	EXPECT_EQ(ended.updated.end_reason, "canceled");
	EXPECT_TRUE(ended.fall_back_to_free);

	Subscription yearly = Stored(Subscribe("u", kEnterprise, At(2026, 1, 15), false, false));
	yearly = PaymentSucceeded(yearly, kEnterprise, At(2026, 1, 15), false, 0).updated;
	Subscription scheduled = ChangePlan(yearly, kEnterprise, kProMonthly, At(2026, 6, 1)).updated;
	Outcome changed = ApplyDue(scheduled, Action::kPeriodEnd, kEnterprise, kProMonthly, At(2027, 1, 15), grace);
	EXPECT_EQ(changed.updated.end_reason, "plan_changed");
	ASSERT_TRUE(changed.successor);
	EXPECT_EQ(changed.successor->plan_id, kProMonthly.id);
	EXPECT_EQ(changed.successor->period_start, At(2027, 1, 15));
	EXPECT_EQ(changed.successor->period_end, At(2027, 2, 15));
	ASSERT_TRUE(changed.invoice);
	EXPECT_EQ(changed.invoice->total_cents, 2999);
}

TEST(Payment, PartialTrialPaymentsAccumulateAsCredit)
{
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2030, 1, 1), true, true));
	// 1000 is held as credit: still trialing; 1000 + 1999 = 2999 covers the first month.
	EXPECT_EQ(PaymentSucceeded(trial, kProMonthly, At(2030, 1, 2), false, 1000).updated.status, Status::kTrialing);
	Outcome out = PaymentSucceeded(trial, kProMonthly, At(2030, 1, 3), false, 2999);
	EXPECT_EQ(out.updated.status, Status::kActive);
	ASSERT_TRUE(out.invoice);
	EXPECT_EQ(out.invoice->issued_at, At(2030, 1, 3));
}

TEST(Payment, NothingToSettleIsRefused)
{
	Subscription free = Stored(Subscribe("u", kFree, At(2030, 1, 1), true, true));
	ExpectSqlState([&] { RequirePayable(free, kFree, false, At(2030, 1, 2)); }, "QB010");
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2030, 1, 1), true, true));
	Subscription canceled = Cancel(trial, true, At(2030, 1, 2)).updated;
	ExpectSqlState([&] { RequirePayable(canceled, kProMonthly, false, At(2030, 1, 3)); }, "QB010");
	RequirePayable(canceled, kProMonthly, true, At(2030, 1, 3));  // an open invoice can be paid
}

TEST(ChangePlan, FromFreeIsIncompleteUntilPaid)
{
	Subscription free = Stored(Subscribe("u", kFree, At(2030, 1, 1), true, true));
	Outcome out = ChangePlan(free, kFree, kEnterprise, At(2030, 1, 2));
	ASSERT_TRUE(out.successor);
	EXPECT_EQ(out.successor->status, Status::kIncomplete);
	ASSERT_TRUE(out.invoice);
	EXPECT_EQ(out.invoice->total_cents, 99900);
}

TEST(ChangePlan, UnpaidPeriodIsNotCredited)
{
	// Monthly from 2030-01-01, renewed 2030-02-01 (28-day period) and not paid:
	// switching to yearly on 2030-02-02 credits nothing (paid: 27/28 x 2999 = 2892).
	Subscription s = Stored(Subscribe("u", kProMonthly, At(2030, 1, 1), false, false));
	s = PaymentSucceeded(s, kProMonthly, At(2030, 1, 1), false, 0).updated;
	s = ApplyDue(s, Action::kPeriodEnd, kProMonthly, std::nullopt, At(2030, 2, 1), 0).updated;
	Outcome unpaid = ChangePlan(s, kProMonthly, kEnterprise, At(2030, 2, 2), false);
	EXPECT_EQ(unpaid.invoice->total_cents, 99900);
	EXPECT_EQ(unpaid.void_reason, "plan_changed");
	Outcome paid = ChangePlan(s, kProMonthly, kEnterprise, At(2030, 2, 2), true);
	EXPECT_EQ(paid.invoice->total_cents, 99900 - 2892);
	// 966 of the period's 2999 refunded: 27/28 x 2033 = 1960.39 -> 1960
	Outcome refunded = ChangePlan(s, kProMonthly, kEnterprise, At(2030, 2, 2), true, true, 966);
	EXPECT_EQ(refunded.invoice->total_cents, 99900 - 1960);
	// all of it refunded (or more, by data from before): nothing
	EXPECT_EQ(ChangePlan(s, kProMonthly, kEnterprise, At(2030, 2, 2), true, true, 2999).invoice->total_cents, 99900);
	EXPECT_EQ(ChangePlan(s, kProMonthly, kEnterprise, At(2030, 2, 2), true, true, 5000).invoice->total_cents, 99900);
}

TEST(ChangePlan, RefundAfterTheUpgradeTakesTheCreditLineDownToRefundFirst)
{
	// As UnpaidPeriodIsNotCredited: the upgrade on 2030-02-02 credited 2892.
	// A refund afterwards takes the line down to what the same refund before
	// the upgrade gives: the differences from the totals above.
	Subscription s = Stored(Subscribe("u", kProMonthly, At(2030, 1, 1), false, false));
	s = PaymentSucceeded(s, kProMonthly, At(2030, 1, 1), false, 0).updated;
	s = ApplyDue(s, Action::kPeriodEnd, kProMonthly, std::nullopt, At(2030, 2, 1), 0).updated;
	Subscription ended = ChangePlan(s, kProMonthly, kEnterprise, At(2030, 2, 2), true).updated;
	EXPECT_EQ(UpgradeCreditTakenBack(ended, 2892, 0), 0);
	EXPECT_EQ(UpgradeCreditTakenBack(ended, 2892, 966), 2892 - 1960);
	EXPECT_EQ(UpgradeCreditTakenBack(ended, 2892, 2999), 2892);
	EXPECT_EQ(UpgradeCreditTakenBack(ended, 2892, 5000), 2892);
	// never more than the line holds (a line already taken down)
	EXPECT_EQ(UpgradeCreditTakenBack(ended, 100, 2999), 100);
	// nothing credited, or not ended by an upgrade in its period: nothing
	EXPECT_EQ(UpgradeCreditTakenBack(ended, 0, 2999), 0);
	EXPECT_EQ(UpgradeCreditTakenBack(s, 2892, 2999), 0);
}

TEST(ChangePlan, PausedTimeIsNotProrated)
{
	// January paid; paused 2 Jan, resumed 1 Nov: the period end moved by the
	// 303 paused days to 1 Dec. Upgraded on 1 Nov: 30 of the 31 paid days are
	// unused, 2999 x 30 / 31 = 2902.26 -> 2902 (over the 334 days: 269).
	Subscription s = Stored(Subscribe("u", kProMonthly, At(2030, 1, 1), false, false));
	s = PaymentSucceeded(s, kProMonthly, At(2030, 1, 1), false, 0).updated;
	s = Pause(s, At(2030, 1, 2)).updated;
	s = Resume(s, At(2030, 11, 1)).updated;
	ASSERT_EQ(s.period_end, At(2030, 12, 1));
	Micros paused = At(2030, 11, 1) - At(2030, 1, 2);
	EXPECT_EQ(ChangePlan(s, kProMonthly, kEnterprise, At(2030, 11, 1), true, true, 0, paused).invoice->total_cents,
			  99900 - 2902);
	EXPECT_EQ(ChangePlan(s, kProMonthly, kEnterprise, At(2030, 11, 1), true, true, 0, 0).invoice->total_cents,
			  99900 - 269);
	// the proration starts 303 days later, never after the change
	EXPECT_EQ(ProratedPeriodStart(s, At(2030, 11, 1), paused), At(2030, 10, 31));
	EXPECT_EQ(ProratedPeriodStart(s, At(2030, 11, 1), At(2031, 1, 1) - At(2030, 1, 1)), At(2030, 11, 1));
	// a refund after the upgrade recomputes the line over the same 31 days:
	// 2998 x 30 / 31 = 2901.35 -> 2901, 1 comes off (over 334 days: 2633)
	Subscription ended = ChangePlan(s, kProMonthly, kEnterprise, At(2030, 11, 1), true, true, 0, paused).updated;
	EXPECT_EQ(UpgradeCreditTakenBack(ended, 2902, 1, paused), 1);
	EXPECT_EQ(UpgradeCreditTakenBack(ended, 2902, 1, 0), 2902 - 269);
}

TEST(ChangePlan, SwitchDuringTrialToATierAlreadyTrialedMustBePaid)
{
	Subscription trial = Stored(Subscribe("u", kEnterprise, At(2030, 1, 1), true, true));
	Outcome out = ChangePlan(trial, kEnterprise, kProMonthly, At(2030, 1, 2), true, /*trial_available=*/false);
	EXPECT_EQ(out.successor->status, Status::kIncomplete);
	ASSERT_TRUE(out.invoice);
	EXPECT_EQ(out.invoice->total_cents, 2999);
	EXPECT_TRUE(TrialAvailable({Tier::kEnterprise}, Tier::kPro));
	EXPECT_FALSE(TrialAvailable({Tier::kEnterprise, Tier::kPro}, Tier::kPro));
}

TEST(ChangePlan, PassedTrialIsAClearQB010)
{
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2030, 1, 1), true, true));
	ExpectSqlState([&] { ChangePlan(trial, kProMonthly, kEnterprise, At(2030, 3, 1)); }, "QB010");
}

TEST(Dunning, OverdueInvoiceStartsDunningLikeAFailedPayment)
{
	const Micros grace = 14 * kMicrosPerDay;
	Subscription s = ActiveMonthly();
	s.unpaid_due_at = At(2026, 2, 28, 12);
	EXPECT_EQ(DueAction(s, At(2026, 3, 1), grace), Action::kInvoiceOverdue);
	Outcome out = ApplyDue(s, Action::kInvoiceOverdue, kProMonthly, std::nullopt, At(2026, 3, 1), grace);
	EXPECT_EQ(out.updated.status, Status::kPastDue);
	EXPECT_EQ(out.updated.past_due_since, At(2026, 2, 28, 12));
}

TEST(Dunning, CannotBeEscapedByCancelAndReactivate)
{
	const Micros grace = 14 * kMicrosPerDay;
	Subscription past_due = PaymentFailed(ActiveMonthly(), At(2026, 2, 1), true).updated;
	Subscription canceled = Cancel(past_due, true, At(2026, 2, 2)).updated;
	// Grace ends 2026-02-15, before the period end (2026-02-28): that wins.
	EXPECT_EQ(DueAction(canceled, At(2026, 3, 1), grace), Action::kGraceEnd);
	EXPECT_EQ(Reactivate(canceled, At(2026, 2, 3)).updated.status, Status::kPastDue);
}

TEST(Dunning, PastDueKeepsAScheduledDowngradeUntilPaid)
{
	const Micros grace = 30 * kMicrosPerDay;
	Subscription s = ChangePlan(ActiveMonthly(), kProMonthly, kFree, At(2026, 2, 10)).updated;
	s = PaymentFailed(s, At(2026, 2, 20), true).updated;
	Outcome out = ApplyDue(s, Action::kPeriodEnd, kProMonthly, kFree, At(2026, 3, 1), grace);
	EXPECT_FALSE(out.successor);
	EXPECT_EQ(out.updated.status, Status::kPastDue);
}

TEST(Maintenance, EventsAreTakenInTimeOrder)
{
	const Micros grace = 14 * kMicrosPerDay;
	Subscription s = PaymentFailed(ActiveMonthly(), At(2026, 2, 1), true).updated;
	// The period ends 2026-02-28 12:00; grace ends 2026-02-15 first.
	EXPECT_EQ(DueAction(s, At(2026, 6, 1), grace), Action::kGraceEnd);
}


// Lifetime plans (README walk W6): one payment, no period end, no renewals.
const Plan kProLifetime = MakePlan(5, "pro_lifetime", Tier::kPro, Interval::kLifetime, 49900, 0);
const Plan kEntLifetime = MakePlan(6, "ent_lifetime", Tier::kEnterprise, Interval::kLifetime, 199900, 0);

// An active pro_lifetime subscription paid on 1 Mar 2026.
Subscription
ActiveLifetime()
{
	Subscription s = Stored(Subscribe("u", kProLifetime, At(2026, 3, 1), false, false));
	return Stored(PaymentSucceeded(s, kProLifetime, At(2026, 3, 1), false, 0));
}

std::string
QB010Message(const std::function<void()> &f)
{
	try {
		f();
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), "QB010") << e.what();
		return e.what();
	}
	ADD_FAILURE() << "no error, expected QB010";
	return {};
}

TEST(Lifetime, SubscribeBillsTheFullPriceOnceWithoutAPeriodEnd)
{
	Outcome out = Subscribe("u", kProLifetime, At(2026, 3, 1), false, false);
	EXPECT_EQ(out.updated.status, Status::kIncomplete);
	EXPECT_FALSE(out.updated.period_end);
	ASSERT_TRUE(out.invoice);
	EXPECT_EQ(out.invoice->total_cents, 49900);
	Subscription paid = ActiveLifetime();
	EXPECT_EQ(paid.status, Status::kActive);
	EXPECT_FALSE(paid.period_end);
}

TEST(Lifetime, IsTheLongestCommitmentOfItsTier)
{
	EXPECT_TRUE(IsUpgrade(kProMonthly, kProLifetime));
	EXPECT_TRUE(IsUpgrade(kProYearly, kProLifetime));
	EXPECT_FALSE(IsUpgrade(kProLifetime, kProYearly));
	EXPECT_TRUE(IsUpgrade(kProLifetime, kEntLifetime));
	EXPECT_TRUE(IsUpgrade(kProLifetime, kEnterprise));  // a higher tier
	EXPECT_FALSE(IsUpgrade(kEntLifetime, kProLifetime));
}

TEST(Lifetime, UpgradeFromMonthlyCreditsTheUnusedTimeAndChargesTheFullPrice)
{
	ProrationResult r = PreviewChange(ActiveMonthly(), kProMonthly, kProLifetime, At(2026, 2, 14, 12));
	EXPECT_FALSE(r.period_kept);
	EXPECT_FALSE(r.new_period_end);
	EXPECT_EQ(r.amount_due_cents, 49900 - 1500);  // 2999 x 14 / 28 days
}

// A lifetime plan never uses up what was paid for it: an upgrade credits all
// of it, as an upgrade credits a period's unused time.
TEST(Lifetime, UpgradeToAHigherLifetimePlanCreditsWhatWasPaid)
{
	Subscription s = ActiveLifetime();
	ProrationResult r = PreviewChange(s, kProLifetime, kEntLifetime, At(2026, 6, 1));
	ASSERT_EQ(r.lines.size(), 2u);
	EXPECT_EQ(r.lines[0].amount_cents, -49900);
	EXPECT_EQ(r.lines[0].description, "Paid for pro_lifetime");
	EXPECT_EQ(r.lines[1].amount_cents, 199900);
	EXPECT_EQ(r.amount_due_cents, 199900 - 49900);
	EXPECT_FALSE(r.new_period_end);
	Outcome out = ChangePlan(s, kProLifetime, kEntLifetime, At(2026, 6, 1));
	ASSERT_TRUE(out.invoice);
	EXPECT_EQ(out.invoice->total_cents, 150000);
	ASSERT_TRUE(out.successor);
	EXPECT_EQ(out.successor->status, Status::kActive);
	EXPECT_FALSE(out.successor->period_end);
	// what was refunded is not credited; an unpaid lifetime plan credits nothing
	EXPECT_EQ(PreviewChange(s, kProLifetime, kEntLifetime, At(2026, 6, 1), true, 9900).amount_due_cents, 199900 - 40000);
	EXPECT_EQ(PreviewChange(s, kProLifetime, kEntLifetime, At(2026, 6, 1), false).amount_due_cents, 199900);
	// to a higher-tier yearly plan: the credit is what was paid too
	EXPECT_EQ(PreviewChange(s, kProLifetime, kEnterprise, At(2026, 6, 1)).amount_due_cents, 99900 - 49900);
}

TEST(Lifetime, CancelNowIsTheOnlyWayOutBesidesAnUpgrade)
{
	Subscription s = ActiveLifetime();
	EXPECT_EQ(QB010Message([&] { Cancel(s, true, At(2026, 4, 1)); }),
			  "action \"cancel_at_period_end\" is not allowed for a subscription in status \"active\" without a period end");
	EXPECT_EQ(QB010Message([&] { Pause(s, At(2026, 4, 1)); }),
			  "action \"pause\" is not allowed for a subscription in status \"active\" without billing periods");
	EXPECT_EQ(QB010Message([&] { ChangePlan(s, kProLifetime, kProMonthly, At(2026, 4, 1)); }),
			  "action \"schedule_downgrade\" is not allowed for a subscription in status \"active\" without a period end");
	Outcome out = Cancel(s, false, At(2026, 4, 1));
	EXPECT_EQ(out.updated.ended_at, At(2026, 4, 1));
	EXPECT_TRUE(out.fall_back_to_free);
}

// README walk W7: every QB010 names the action and the status (SPEC §3).
TEST(NotAllowed, RefusalsNameTheActionAndTheStatus)
{
	Subscription free = Stored(Subscribe("u", kFree, At(2026, 1, 1), true, true));
	EXPECT_EQ(QB010Message([&] { Cancel(free, false, At(2026, 1, 2)); }),
			  "action \"cancel_now\" is not allowed for a subscription in status \"active\" on a free plan");
	EXPECT_EQ(QB010Message([&] { Pause(free, At(2026, 1, 2)); }),
			  "action \"pause\" is not allowed for a subscription in status \"active\" without billing periods");
	EXPECT_EQ(QB010Message([] { StartTrial("u", kProYearly, 0, false); }),
			  "action \"start_trial\" is not allowed for user \"u\" in trial status \"used\"");
}
}  // namespace
}  // namespace billing

namespace billing {
namespace {

constexpr Micros kGrace = 14 * kMicrosPerDay;

Book
PaidBook(int64_t credit)
{
	Book book;
	book.sub = ActiveMonthly();  // period 31 Jan 12:00 to 28 Feb 12:00, paid
	book.credit_cents = credit;
	return book;
}

// Entitlements are computed, not waited for: the projection is what
// maintenance would leave, so effective_plan needs no maintenance run.
TEST(Projection, UnpaidRenewalLeadsToDunningThenFree)
{
	// 28 Feb 12:00: renewal of 2999, unpaid, due 3 Mar 12:00; grace ends 17 Mar 12:00
	Projection p = Project(PaidBook(0), kProMonthly, std::nullopt, At(2026, 3, 2), kGrace);
	EXPECT_EQ(p.book.sub.status, Status::kActive);
	ASSERT_EQ(p.book.open.size(), 1u);
	EXPECT_EQ(p.book.open[0].due_at, At(2026, 3, 3, 12));
	EXPECT_EQ(EntitledPlanId(p, At(2026, 3, 2), kGrace), kProMonthly.id);
	p = Project(PaidBook(0), kProMonthly, std::nullopt, At(2026, 3, 17, 11), kGrace);
	EXPECT_EQ(p.book.sub.status, Status::kPastDue);
	EXPECT_EQ(p.book.sub.past_due_since, At(2026, 3, 3, 12));
	EXPECT_EQ(EntitledPlanId(p, At(2026, 3, 17, 11), kGrace), kProMonthly.id);
	p = Project(PaidBook(0), kProMonthly, std::nullopt, At(2026, 3, 17, 12), kGrace);
	EXPECT_TRUE(p.fell_back_to_free);
	EXPECT_EQ(p.stored.end_reason, "payment_failed");
	EXPECT_EQ(p.book.credit_cents, 0);
	EXPECT_EQ(EntitledPlanId(p, At(2026, 3, 17, 12), kGrace), std::nullopt);
}

TEST(Projection, CreditPaysRenewalsUntilItRunsOut)
{
	// 7000 of credit pays 28 Feb and 31 Mar (2 x 2999 = 5998, 1002 left); the
	// 30 Apr renewal takes the 1002, 1997 is due 3 May 12:00, grace to 17 May 12:00
	Projection p = Project(PaidBook(7000), kProMonthly, std::nullopt, At(2026, 5, 1), kGrace);
	EXPECT_EQ(p.book.credit_cents, 0);
	ASSERT_EQ(p.book.open.size(), 1u);
	EXPECT_EQ(p.book.open[0].paid_toward_cents, 1002);
	EXPECT_EQ(p.book.sub.period_end, At(2026, 5, 31, 12));
	p = Project(PaidBook(7000), kProMonthly, std::nullopt, At(2026, 5, 17, 11), kGrace);
	EXPECT_EQ(EntitledPlanId(p, At(2026, 5, 17, 11), kGrace), kProMonthly.id);
	p = Project(PaidBook(7000), kProMonthly, std::nullopt, At(2026, 5, 17, 12), kGrace);
	EXPECT_TRUE(p.fell_back_to_free);
	// the 1002 paid toward the voided invoice returns to credit
	EXPECT_EQ(p.book.credit_cents, 1002);
}

TEST(Projection, ScheduledDowngradeStartsTheNewPlan)
{
	Book book = PaidBook(0);
	book.sub = Stored(ChangePlan(book.sub, kProMonthly, kFree, At(2026, 2, 1)));
	Projection p = Project(book, kProMonthly, kFree, At(2026, 2, 28, 11), kGrace);
	EXPECT_EQ(EntitledPlanId(p, At(2026, 2, 28, 11), kGrace), kProMonthly.id);
	p = Project(book, kProMonthly, kFree, At(2026, 2, 28, 12), kGrace);
	EXPECT_EQ(p.stored.end_reason, "plan_changed");
	EXPECT_EQ(p.book.sub.id, 0);  // the successor, not stored yet
	EXPECT_EQ(EntitledPlanId(p, At(2026, 2, 28, 12), kGrace), kFree.id);
	EXPECT_TRUE(p.book.open.empty());
}

TEST(Projection, DunningSettledByACreditPaidRenewal)
{
	// past_due since 25 Feb (a failed payment), 2999 of credit: the 28 Feb
	// renewal is paid from credit, nothing is open: active again, dunning over
	Book book = PaidBook(2999);
	book.sub = Stored(PaymentFailed(book.sub, At(2026, 2, 25), true));
	Projection p = Project(book, kProMonthly, std::nullopt, At(2026, 3, 20), kGrace);
	EXPECT_EQ(p.book.sub.status, Status::kActive);
	EXPECT_FALSE(p.book.sub.past_due_since);
	EXPECT_EQ(EntitledPlanId(p, At(2026, 3, 20), kGrace), kProMonthly.id);
}

TEST(Projection, GrantsAtFollowsStatusAndTimes)
{
	Subscription s = ActiveMonthly();
	EXPECT_TRUE(GrantsAt(s, At(2026, 2, 1), kGrace));
	EXPECT_FALSE(GrantsAt(s, At(2026, 1, 1), kGrace));  // before it started
	s.status = Status::kCanceled;
	EXPECT_TRUE(GrantsAt(s, At(2026, 2, 28, 11), kGrace));
	EXPECT_FALSE(GrantsAt(s, At(2026, 2, 28, 12), kGrace));
	s.past_due_since = At(2026, 2, 1);
	EXPECT_FALSE(GrantsAt(s, At(2026, 2, 15), kGrace));  // grace over before the period end
	s.status = Status::kPaused;
	EXPECT_FALSE(GrantsAt(s, At(2026, 2, 2), kGrace));
}

// The quota cache's rule for a write in place (EntitlementMayDifferFrom):
// from when the plan granted may differ; a cache valid no later than that
// still holds.
TEST(Projection, EntitlementMayDifferFromCancelAtPeriodEndIsThePeriodEnd)
{
	Subscription s = ActiveMonthly();
	Subscription canceled = Cancel(s, true, At(2026, 2, 10)).updated;
	// the same plan until the period end; then the active one renews, the
	// canceled one ends
	EXPECT_EQ(EntitlementMayDifferFrom(s, canceled, kGrace), s.period_end);
	// and back (reactivate): the same
	EXPECT_EQ(EntitlementMayDifferFrom(canceled, s, kGrace), s.period_end);
}

TEST(Projection, EntitlementMayDifferFromTrialConversionIsTheTrialEnd)
{
	Subscription trial = Stored(StartTrial("u", kProMonthly, At(2026, 2, 1), true));
	Subscription paid = PaymentSucceeded(trial, kProMonthly, At(2026, 2, 3, 9), false, 2999).updated;
	ASSERT_EQ(paid.status, Status::kActive);
	ASSERT_TRUE(trial.trial_end);
	EXPECT_EQ(EntitlementMayDifferFrom(trial, paid, kGrace), trial.trial_end);
}

TEST(Projection, EntitlementMayDifferFromTheStartOnAnotherPlanOrAnEnd)
{
	constexpr Micros kFromTheStart = std::numeric_limits<Micros>::min();
	Subscription s = ActiveMonthly();
	Subscription other = s;
	other.plan_id = kProYearly.id;
	EXPECT_EQ(EntitlementMayDifferFrom(s, other, kGrace), kFromTheStart);
	Subscription ended = s;
	ended.status = Status::kCanceled;
	ended.ended_at = At(2026, 2, 10);
	EXPECT_EQ(EntitlementMayDifferFrom(s, ended, kGrace), kFromTheStart);
	// paused: nothing granted from its start on
	Subscription paused = s;
	paused.status = Status::kPaused;
	paused.paused_at = At(2026, 2, 10);
	EXPECT_EQ(EntitlementMayDifferFrom(s, paused, kGrace), s.started_at);
}

TEST(Projection, EntitlementMayDifferFromDunningEndsAtTheFirstDueAction)
{
	Subscription s = ActiveMonthly();
	Subscription past_due = s;
	past_due.status = Status::kPastDue;
	past_due.past_due_since = At(2026, 2, 20);
	// granted the same until the grace ends (after the period end here: the
	// period end comes first)
	EXPECT_EQ(EntitlementMayDifferFrom(past_due, s, kGrace), s.period_end);
	// a grace ending before the period end: granted until then, the other
	// one granted on; differs from the grace end
	Subscription short_grace = past_due;
	short_grace.past_due_since = At(2026, 2, 5);
	Micros grace_end = At(2026, 2, 5) + kGrace;
	ASSERT_LT(grace_end, *s.period_end);
	EXPECT_EQ(EntitlementMayDifferFrom(short_grace, s, kGrace), grace_end);
}

TEST(Projection, EntitlementMayDifferFromNeverWithoutDueTimesAndTheSameGrants)
{
	// a plain Free subscription rewritten without a change of what it grants
	Subscription free = Stored(Subscribe("u", kFree, At(2026, 1, 1), false, false));
	ASSERT_FALSE(free.period_end);
	Subscription touched = free;
	touched.canceled_at = At(2026, 3, 1);  // not read by what it grants
	EXPECT_EQ(EntitlementMayDifferFrom(free, touched, kGrace), std::nullopt);
}

TEST(Projection, JudgedByHistoryBeforeTheLatestChange)
{
	Subscription s = ActiveMonthly();
	// current, asked at or after its latest change: the stored row (fast path)
	EXPECT_FALSE(JudgedByHistory(s, At(2026, 2, 10), At(2026, 2, 10)));
	EXPECT_FALSE(JudgedByHistory(s, At(2026, 2, 10), At(2026, 3, 1)));
	// no history known (older transaction): the stored row
	EXPECT_FALSE(JudgedByHistory(s, std::nullopt, At(2026, 2, 1)));
	// review R1: a date before the latest change (a later pause, resume or
	// first payment) is judged by the history
	EXPECT_TRUE(JudgedByHistory(s, At(2026, 2, 10), At(2026, 2, 9, 23)));
	// ended: always by the history (review H1)
	s.ended_at = At(2026, 3, 1);
	EXPECT_TRUE(JudgedByHistory(s, At(2026, 3, 1), At(2026, 3, 1)));
	EXPECT_TRUE(JudgedByHistory(s, std::nullopt, At(2026, 2, 1)));
}

TEST(Projection, NextEntitlementChangeSeesRenewalsNotIssuedYet)
{
	// paid to 28 Feb 12:00; no maintenance. On 1 Mar the renewal is issued
	// (projected) and unpaid: next is its due date, 3 Mar 12:00; after that,
	// the grace end 17 Mar 12:00
	Projection p = Project(PaidBook(0), kProMonthly, std::nullopt, At(2026, 2, 1), kGrace);
	EXPECT_EQ(NextEntitlementChange(p, At(2026, 2, 1), kGrace), At(2026, 2, 28, 12));
	p = Project(PaidBook(0), kProMonthly, std::nullopt, At(2026, 3, 1), kGrace);
	EXPECT_EQ(NextEntitlementChange(p, At(2026, 3, 1), kGrace), At(2026, 3, 3, 12));
	p = Project(PaidBook(0), kProMonthly, std::nullopt, At(2026, 3, 4), kGrace);
	EXPECT_EQ(NextEntitlementChange(p, At(2026, 3, 4), kGrace), At(2026, 3, 17, 12));
	p = Project(PaidBook(0), kProMonthly, std::nullopt, At(2026, 3, 18), kGrace);
	EXPECT_EQ(NextEntitlementChange(p, At(2026, 3, 18), kGrace), std::nullopt);  // on Free
}

TEST(Projection, AnEndedSubscriptionGrantsUntilItsEndAtMost)
{
	// A Pro trial (1 Jan to 15 Jan) canceled now on 5 Jan, asked about 3 Jan
	// (a transaction older than the cancel): Pro holds until 5 Jan at most,
	// not forever; asked about 4 Jan 12:00, the same end.
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2030, 1, 1), true, true));
	Subscription ended = Cancel(trial, false, At(2030, 1, 5)).updated;
	ASSERT_TRUE(ended.Ended());
	EXPECT_TRUE(GrantsAt(ended, At(2030, 1, 3), kGrace));
	EXPECT_EQ(EndedEntitlementChange(ended, At(2030, 1, 3), kGrace), At(2030, 1, 5));
	EXPECT_EQ(EndedEntitlementChange(ended, At(2030, 1, 4, 12), kGrace), At(2030, 1, 5));
	// an earlier trial end comes first
	Subscription late = Cancel(trial, false, At(2030, 1, 14)).updated;
	late.trial_end = At(2030, 1, 10);
	EXPECT_EQ(EndedEntitlementChange(late, At(2030, 1, 3), kGrace), At(2030, 1, 10));
}

TEST(PauseResume, OpenInvoicesFallDueLaterByThePausedTime)
{
	Subscription sub = ActiveMonthly();
	sub.unpaid_due_at = At(2026, 2, 12);
	Subscription paused = Pause(sub, At(2026, 2, 10)).updated;
	Outcome resumed = Resume(paused, At(2026, 2, 15));
	EXPECT_EQ(resumed.open_invoices_due_later, 5 * kMicrosPerDay);
	EXPECT_EQ(resumed.updated.unpaid_due_at, At(2026, 2, 17));
}

// Review L1: the refusal on an ended subscription names the attempted
// action, payment_failed for a failed payment.
TEST(Payment, RefusalOnAnEndedSubscriptionNamesTheAttemptedAction)
{
	Subscription ended = Stored(Cancel(ActiveMonthly(), false, At(2026, 2, 2)));
	auto message = [&](bool succeeded) {
		try {
			RequirePayable(ended, kProMonthly, false, At(2026, 2, 3), succeeded);
		} catch (const Error &e) {
			EXPECT_EQ(e.sqlstate(), std::string("QB010"));
			return std::string(e.what());
		}
		ADD_FAILURE() << "no error";
		return std::string();
	};
	EXPECT_NE(message(false).find("\"payment_failed\""), std::string::npos) << message(false);
	EXPECT_NE(message(true).find("\"payment_succeeded\""), std::string::npos) << message(true);
}

// Review V1: a switch during a trial to a plan sold without a trial is paid
// for, as subscribing to it is (the tier's trial is not the question).
TEST(ChangePlan, SwitchDuringTrialToAPlanWithoutTrialMustBePaid)
{
	const Plan no_trial = MakePlan(5, "ent_notrial", Tier::kEnterprise, Interval::kMonthly, 50000, 0);
	EXPECT_EQ(Subscribe("u", no_trial, At(2030, 1, 1), true, true).updated.status, Status::kIncomplete);
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2030, 1, 1), true, true));
	Outcome out = ChangePlan(trial, kProMonthly, no_trial, At(2030, 1, 2), true, /*trial_available=*/true);
	ASSERT_TRUE(out.successor);
	EXPECT_EQ(out.successor->status, Status::kIncomplete);
	EXPECT_FALSE(out.successor->trial_end);
	ASSERT_TRUE(out.invoice);
	EXPECT_EQ(out.invoice->total_cents, 50000);
	// the same tier without a trial too
	const Plan pro_no_trial = MakePlan(6, "pro_notrial", Tier::kPro, Interval::kYearly, 28800, 0);
	EXPECT_EQ(ChangePlan(trial, kProMonthly, pro_no_trial, At(2030, 1, 2), true, false).successor->status,
			  Status::kIncomplete);
	// a plan with a trial: the trial goes on
	EXPECT_EQ(ChangePlan(trial, kProMonthly, kEnterprise, At(2030, 1, 2), true, true).successor->status,
			  Status::kTrialing);
}

// Review T1: a trial whose customer's credit covers the first period
// converts at its end (the first invoice is issued then; credit pays it).
TEST(Maintenance, TrialEndConvertsWhenCreditCoversTheFirstPeriod)
{
	const Micros grace = 14 * kMicrosPerDay;
	Subscription trial = Stored(Subscribe("u", kProMonthly, At(2030, 1, 3), true, true));
	ASSERT_EQ(trial.trial_end, At(2030, 1, 17));
	EXPECT_FALSE(TrialConvertsFromCredit(trial, 2998));
	EXPECT_TRUE(TrialConvertsFromCredit(trial, 2999));
	Outcome expired = ApplyDue(trial, Action::kTrialEnd, kProMonthly, std::nullopt, At(2030, 1, 18), grace, 2998);
	EXPECT_EQ(expired.updated.status, Status::kExpired);
	EXPECT_TRUE(expired.fall_back_to_free);
	EXPECT_FALSE(expired.invoice);

	Outcome converted = ApplyDue(trial, Action::kTrialEnd, kProMonthly, std::nullopt, At(2030, 1, 18), grace, 5000);
	EXPECT_EQ(converted.updated.status, Status::kActive);
	EXPECT_FALSE(converted.updated.Ended());
	EXPECT_FALSE(converted.fall_back_to_free);
	EXPECT_FALSE(converted.void_reason);
	EXPECT_EQ(converted.updated.period_start, At(2030, 1, 17));
	EXPECT_EQ(converted.updated.period_end, At(2030, 2, 17));
	EXPECT_EQ(converted.updated.billing_anchor, At(2030, 1, 17));
	ASSERT_TRUE(converted.invoice);
	EXPECT_EQ(converted.invoice->billing_reason, "subscription_create");
	EXPECT_EQ(converted.invoice->total_cents, 2999);
	EXPECT_EQ(converted.invoice->issued_at, At(2030, 1, 17));

	// the projection (effective_plan before maintenance) does the same
	Book book{trial, {}, 5000};
	Projection p = Project(book, kProMonthly, std::nullopt, At(2030, 1, 18), grace);
	EXPECT_FALSE(p.fell_back_to_free);
	EXPECT_EQ(p.book.sub.status, Status::kActive);
	EXPECT_EQ(p.book.credit_cents, 2001);
	EXPECT_TRUE(p.book.open.empty());
	EXPECT_EQ(EntitledPlanId(p, At(2030, 1, 18), grace), kProMonthly.id);
	book.credit_cents = 2000;
	p = Project(book, kProMonthly, std::nullopt, At(2030, 1, 18), grace);
	EXPECT_TRUE(p.fell_back_to_free);
	EXPECT_EQ(p.book.credit_cents, 2000);
}

// Review U1: a cancel forfeits the unused paid time; a void on any other
// end gives the credit lines back (M4).
TEST(Ledger, CreditLinesBackOnVoidByEndReason)
{
	EXPECT_EQ(CreditLinesBackOnVoid("canceled", 28721), 0);
	EXPECT_EQ(CreditLinesBackOnVoid("plan_changed", 28721), 28721);
	EXPECT_EQ(CreditLinesBackOnVoid("payment_failed", 28721), 28721);
	EXPECT_EQ(CreditLinesBackOnVoid("plan_changed", -5), 0);
	// review C1: canceled at its period end, then expired at the grace end
	// with the upgrade unpaid: forfeited as by a cancel now
	EXPECT_EQ(CreditLinesBackOnVoid("payment_failed", 28721, true), 0);
	EXPECT_EQ(CreditLinesBackOnVoid("plan_changed", 28721, true), 0);
	EXPECT_EQ(CreditLinesBackOnVoid("payment_failed", 28721, false), 28721);
}

// Reviews R1 and R2: what a refund's take-down of an upgrade's credit line
// makes of its invoice.
TEST(ChangePlan, CreditLineTakenBackReopensDueAnewOrVoidsOnAnEndedSubscription)
{
	// M16 / R2: -16355 settled by its line on 1 Feb; 26354 off on 25 Feb
	UpgradeInvoice settled{false, -16355, 0, At(2030, 2, 1), At(2030, 2, 4)};
	UpgradeInvoiceChange c = CreditLineTakenBack(settled, 26354, false, At(2030, 2, 25));
	EXPECT_EQ(c.status, InvoiceStatus::kOpen);
	EXPECT_TRUE(c.reopened);
	EXPECT_EQ(c.total_cents, 9999);
	EXPECT_EQ(c.amount_due_cents, 9999);
	EXPECT_EQ(c.due_at, At(2030, 2, 28));  // three days after the refund, not 4 Feb
	// a refund dated before the invoice was issued: never due before issue + 3 days
	EXPECT_EQ(CreditLineTakenBack(settled, 26354, false, At(2030, 1, 20)).due_at, At(2030, 2, 4));
	// R4: dated back to 2 Feb after maintenance ran to 25 Feb: due three days
	// after maintenance's 25 Feb, not 5 Feb (dunning never starts at a date
	// maintenance had passed); maintenance behind the refund changes nothing
	EXPECT_EQ(CreditLineTakenBack(settled, 26354, false, At(2030, 2, 2), At(2030, 2, 25)).due_at, At(2030, 2, 28));
	EXPECT_EQ(CreditLineTakenBack(settled, 26354, false, At(2030, 2, 2)).due_at, At(2030, 2, 5));
	EXPECT_EQ(CreditLineTakenBack(settled, 26354, false, At(2030, 2, 25), At(2030, 2, 2)).due_at, At(2030, 2, 28));
	EXPECT_EQ(CreditLineTakenBack(settled, 26354, false, At(2030, 1, 20), At(2030, 1, 25)).due_at, At(2030, 2, 4));
	// an open invoice keeps its due date whatever maintenance did
	EXPECT_EQ(CreditLineTakenBack(UpgradeInvoice{true, 500, 500, At(2030, 2, 1), At(2030, 2, 4)}, 100, false,
								  At(2030, 2, 2), At(2030, 2, 25))
				  .due_at,
			  At(2030, 2, 4));
	// still not positive: stays paid
	c = CreditLineTakenBack(settled, 1000, false, At(2030, 2, 25));
	EXPECT_EQ(c.status, InvoiceStatus::kPaid);
	EXPECT_EQ(c.total_cents, -15355);
	EXPECT_EQ(c.amount_due_cents, 0);
	EXPECT_FALSE(c.reopened);
	// R1: the subscription has ended: void, nothing due
	c = CreditLineTakenBack(settled, 26354, true, At(2030, 2, 1, 1));
	EXPECT_EQ(c.status, InvoiceStatus::kVoid);
	EXPECT_EQ(c.total_cents, 9999);
	EXPECT_EQ(c.amount_due_cents, 0);
	EXPECT_FALSE(c.reopened);
	EXPECT_EQ(CreditLineTakenBack(settled, 1000, true, At(2030, 2, 25)).status, InvoiceStatus::kPaid);
	// an open invoice owes `off` more, due when it was
	UpgradeInvoice open{true, 71179, 70000, At(2030, 1, 2), At(2030, 1, 5)};
	c = CreditLineTakenBack(open, 500, false, At(2030, 1, 3));
	EXPECT_EQ(c.status, InvoiceStatus::kOpen);
	EXPECT_EQ(c.total_cents, 71679);
	EXPECT_EQ(c.amount_due_cents, 70500);
	EXPECT_EQ(c.due_at, At(2030, 1, 5));
	EXPECT_FALSE(c.reopened);
	EXPECT_STREQ(ToString(InvoiceStatus::kVoid), "void");
}

}  // namespace
}  // namespace billing

// Review R3: a line that settled its invoice put the rest into the credit
// balance; taking the line down takes that rest with it, so two refunds
// summing to A end as one refund of A.
TEST(ChangePlan, LineRestTakenBackFollowsTheLine)
{
	// -16355 settled by a 26354 line; a 10000 refund takes it down by 9151
	// (26354 - 18800 x 334 / 365 = 26354 - 17203): the total becomes -7204,
	// so 16355 - 7204 = 9151 leaves the balance
	EXPECT_EQ(billing::LineRestTakenBack(-16355, 9151, 0, 16355), 9151);
	// then 18800 more: the bound took the 7204 left; the line's 17203 reopens
	// the invoice at 9999 and nothing more leaves the balance
	EXPECT_EQ(billing::LineRestTakenBack(-7204, 17203, 7204, 0), 0);
	// one refund of 28800: the bound took the 16355, the line's 26354 nothing more
	EXPECT_EQ(billing::LineRestTakenBack(-16355, 26354, 16355, 0), 0);
	// never more than the balance holds (the customer spent the credit)
	EXPECT_EQ(billing::LineRestTakenBack(-16355, 9151, 0, 5000), 5000);
	// a positive total put nothing into the balance
	EXPECT_EQ(billing::LineRestTakenBack(500, 1000, 0, 9999), 0);
	EXPECT_EQ(billing::LineRestTakenBack(-100, -5, 0, 9999), 0);
}

// Session 10, P1 (Stripe model test): a Stripe trial whose first payment
// failed (trialing -> past_due) was counted paid, so mrr() counted it.
TEST(History, PaidSinceStartsWhenPaid)
{
	// billing's own: active or past_due (its dunning follows a paid period)
	EXPECT_TRUE(billing::StartsPaying("active", "", true));
	EXPECT_TRUE(billing::StartsPaying("past_due", "", false));
	EXPECT_FALSE(billing::StartsPaying("trialing", "", false));
	EXPECT_FALSE(billing::StartsPaying("incomplete", "", true));
	EXPECT_FALSE(billing::StartsPaying("canceled", "", false));
	// Stripe's active, also canceled at period end (billing's canceled)
	EXPECT_TRUE(billing::StartsPaying("active", "active", false));
	EXPECT_TRUE(billing::StartsPaying("canceled", "active", true));
	// a failed first payment after a trial: never paid
	EXPECT_FALSE(billing::StartsPaying("past_due", "past_due", false));
	EXPECT_FALSE(billing::StartsPaying("past_due", "unpaid", false));
	EXPECT_FALSE(billing::StartsPaying("trialing", "trialing", true));
	EXPECT_FALSE(billing::StartsPaying("incomplete", "incomplete", false));
	// first seen in dunning (earlier events late): Stripe's past_due follows a paid period
	EXPECT_TRUE(billing::StartsPaying("past_due", "unpaid", true));
	EXPECT_TRUE(billing::StartsPaying("past_due", "past_due", true));
	// ended by Stripe: its last state, not a payment
	EXPECT_FALSE(billing::StartsPaying("canceled", "canceled", false));
}
