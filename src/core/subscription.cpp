#include "core/subscription.hpp"

#include "core/error.hpp"
#include "core/pure.hpp"

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <utility>
#include <vector>

namespace billing {
namespace {

Error
NotAllowed(const std::string &message, const std::string &detail, const std::string &hint = {})
{
	return Error(sqlstate::kTransitionNotAllowed, message, detail, hint);
}

// QB010 naming the action and the from-status (SPEC §3), like Transit's
// refusal, with what about the subscription refuses it: `action "pause" is
// not allowed for a subscription in status "active" on a lifetime plan`.
Error
NotAllowedIn(Action action, Status status, const std::string &why, const std::string &detail,
			 const std::string &hint = {})
{
	return NotAllowed(std::string("action \"") + ToString(action) + "\" is not allowed for a subscription in status \"" +
						  ToString(status) + "\" " + why,
					  detail, hint);
}

// Every operation on a stored subscription starts here.
void
RequireCurrent(const Subscription &sub, Action action, Micros at)
{
	if (sub.Ended())
		throw NotAllowed(std::string("action \"") + ToString(action) + "\" is not allowed for a subscription that has ended",
						 "Subscription " + std::to_string(sub.id) + " ended at " + FormatTimestamp(*sub.ended_at) + ".",
						 "Start a new subscription with billing.subscribe().");
	RequireNotBeforeLatestChange(sub, at);
}

InvoiceLine
PeriodLine(const std::string &plan_name, int64_t amount, Micros start, const std::optional<Micros> &end)
{
	std::string text = plan_name + " from " + FormatDate(start);
	if (end)
		text += " to " + FormatDate(*end);
	return {text, amount};
}

InvoiceDraft
PeriodInvoice(const std::string &reason, const std::string &plan_name, const Subscription &sub)
{
	InvoiceDraft invoice;
	invoice.billing_reason = reason;
	invoice.currency = sub.currency;
	invoice.period_start = sub.period_start;
	invoice.period_end = sub.period_end;
	invoice.lines.push_back(PeriodLine(plan_name, sub.price_cents, sub.period_start, sub.period_end));
	invoice.total_cents = sub.price_cents;
	invoice.issued_at = sub.period_start;
	invoice.due_at = invoice.issued_at + kInvoiceDueAfter;
	return invoice;
}

Subscription
Fresh(const std::string &user_id, const Plan &plan, Micros at)
{
	Subscription sub;
	sub.user_id = user_id;
	sub.plan_id = plan.id;
	sub.price_cents = plan.price_cents;
	sub.currency = plan.currency;
	sub.interval = plan.interval;
	sub.started_at = at;
	sub.period_start = at;
	return sub;
}

// Ends `sub` at `when` for `reason`; the user falls back to Free.
Outcome
EndAndFallBack(Subscription sub, Status status, Micros when, const char *reason, Action action)
{
	Outcome out;
	sub.status = status;
	sub.ended_at = when;
	sub.end_reason = reason;
	sub.scheduled_plan_id.reset();
	sub.scheduled_change_at.reset();
	out.updated = sub;
	out.fall_back_to_free = true;
	out.free_from = when;
	out.notifications.push_back("subscription_ended");
	out.action = action;
	out.void_reason = reason;
	return out;
}

// A trial converts at `at`: the trial ends, the first paid period starts,
// its invoice (subscription_create) is issued; the credit balance pays it.
Outcome
ConvertTrial(const Subscription &sub, const Plan &plan, Micros at)
{
	Outcome out;
	out.updated = sub;
	out.action = Action::kPaymentSucceeded;
	Subscription &s = out.updated;
	s.trial_end = at;
	s.billing_anchor = at;
	s.period_start = at;
	s.period_end = sub.interval == Interval::kLifetime ? std::nullopt : std::optional<Micros>(AddPeriods(at, sub.interval, 1));
	out.invoice = PeriodInvoice("subscription_create", plan.name, s);
	s.status = Transit(sub.status, Action::kPaymentSucceeded).to;
	return out;
}

int
TierRank(Tier tier)
{
	switch (tier) {
	case Tier::kFree:
		return 0;
	case Tier::kPro:
		return 1;
	case Tier::kEnterprise:
		return 2;
	case Tier::kCustom:
		return -1;
	}
	return -1;
}

int
MonthsIn(Interval interval)
{
	return interval == Interval::kYearly ? 12 : 1;
}

}  // namespace

Micros
LatestChange(const Subscription &sub)
{
	Micros latest = sub.started_at;
	for (Micros t : {sub.period_start, sub.billing_anchor.value_or(latest), sub.trial_start.value_or(latest),
					 sub.canceled_at.value_or(latest), sub.ended_at.value_or(latest), sub.paused_at.value_or(latest),
					 sub.past_due_since.value_or(latest), sub.last_payment_at.value_or(latest),
					 sub.history_from.value_or(latest)})
		latest = std::max(latest, t);
	return latest;
}

Error
CatchUpTooLong(int64_t id, Micros period_start, Micros at)
{
	return Error(sqlstate::kProgramLimitExceeded,
				 "subscription " + std::to_string(id) + " has more than " + std::to_string(kMaxCatchUpSteps) +
					 " billing events to apply before " + FormatTimestamp(at),
				 "Its current period started at " + FormatTimestamp(period_start) + ".",
				 "Date the operation closer to the subscription's current period, or let billing.run_maintenance() catch it up first.");
}

void
RequireNotBeforeLatestChange(const Subscription &sub, Micros at)
{
	Micros latest = LatestChange(sub);
	if (at < latest)
		throw InvalidParameter("time " + FormatTimestamp(at) + " is before the latest change of subscription " +
								   std::to_string(sub.id),
							   "Subscription " + std::to_string(sub.id) + " last changed at " + FormatTimestamp(latest) +
								   " (it started at " + FormatTimestamp(sub.started_at) + ").",
							   "Operations on a subscription must be dated at or after its latest change.");
}

void
RequireUserId(const std::string &user_id)
{
	if (user_id.empty())
		throw InvalidParameter("user id must not be empty");
	if (user_id.size() > kMaxKeyBytes)
		throw InvalidParameter("user id is too long",
							   "It has " + std::to_string(user_id.size()) + " bytes; at most " +
								   std::to_string(kMaxKeyBytes) + " are allowed.");
}

Tier
ParseTier(std::string_view text)
{
	if (text == "free")
		return Tier::kFree;
	if (text == "pro")
		return Tier::kPro;
	if (text == "enterprise")
		return Tier::kEnterprise;
	if (text == "custom")
		return Tier::kCustom;
	throw InvalidParameter("unknown plan tier \"" + std::string(text) + "\"");
}

Outcome
Subscribe(const std::string &user_id, const Plan &plan, Micros at, bool with_trial, bool trial_available)
{
	RequireUserId(user_id);
	Outcome out;
	Subscription sub = Fresh(user_id, plan, at);
	if (plan.IsFree()) {
		sub.status = Status::kActive;
	} else if (with_trial && trial_available && plan.trial_days > 0) {
		sub.status = Status::kTrialing;
		sub.trial_start = at;
		sub.trial_end = AddDays(at, plan.trial_days);
		sub.period_end = sub.trial_end;
	} else {
		sub.status = Status::kIncomplete;
		sub.billing_anchor = at;
		if (plan.interval != Interval::kLifetime)
			sub.period_end = AddPeriods(at, plan.interval, 1);
		out.invoice = PeriodInvoice("subscription_create", plan.name, sub);
	}
	out.updated = sub;
	return out;
}

Outcome
StartTrial(const std::string &user_id, const Plan &plan, Micros at, bool trial_available)
{
	if (plan.trial_days <= 0)
		throw InvalidParameter("plan \"" + plan.code + "\" has no trial",
							   "Only plans with trial days greater than zero offer a trial.");
	if (!trial_available)
		throw NotAllowed("action \"start_trial\" is not allowed for user \"" + user_id + "\" in trial status \"used\"",
						 "User \"" + user_id + "\" has already had a trial of plan \"" + plan.code + "\"'s tier.",
						 "Subscribe without a trial: billing.subscribe(user_id, plan_code, with_trial => false).");
	return Subscribe(user_id, plan, at, true, true);
}

bool
TrialAvailable(const std::vector<Tier> &tiers_trialed, Tier tier)
{
	for (Tier t : tiers_trialed)
		if (t == tier)
			return false;
	return true;
}

Outcome
Replace(const Subscription &current, const Plan &current_plan, const Plan &plan, Micros at)
{
	bool replaceable = (current_plan.IsFree() && current.status == Status::kActive) || current.status == Status::kIncomplete;
	if (current.plan_id == plan.id && current.status != Status::kIncomplete)
		throw NotAllowed("user \"" + current.user_id + "\" is already on plan \"" + plan.code + "\"",
						 "Subscription " + std::to_string(current.id) + " is " + ToString(current.status) + ".");
	if (!replaceable)
		throw NotAllowed(std::string("cannot subscribe while a subscription is ") + ToString(current.status),
						 "User \"" + current.user_id + "\" has subscription " + std::to_string(current.id) + ".",
						 "Use billing.change_plan() to move an existing subscription to another plan.");
	RequireManagedByBilling(current, Action::kCancelNow);
	RequireNotBeforeLatestChange(current, at);
	Outcome out = EndForPlanChange(current, at);
	out.action = Action::kCancelNow;
	return out;
}

namespace {
// A Free subscription: nothing to cancel (it grants Free, as no subscription does).
bool
PlainFree(const Subscription &sub)
{
	return sub.price_cents == 0 && !sub.period_end && sub.status == Status::kActive;
}
}  // namespace

bool
CanceledWithItsUser(const Subscription &sub)
{
	return !sub.Ended() && !sub.stripe_managed && !PlainFree(sub);
}

bool
ClosedWithItsUser(const Subscription &sub)
{
	return !sub.Ended() && !sub.stripe_managed && PlainFree(sub);
}

Outcome
EndWithItsUser(const Subscription &sub, Micros at)
{
	if (CanceledWithItsUser(sub)) {
		Outcome out = Cancel(sub, false, at);
		out.fall_back_to_free = false;
		return out;
	}
	if (!ClosedWithItsUser(sub))
		throw NotAllowed("subscription does not end with its user",
						 "Subscription " + std::to_string(sub.id) + " is " + ToString(sub.status) +
							 (sub.stripe_managed ? ", managed by Stripe." : "."));
	RequireNotBeforeLatestChange(sub, at);
	Outcome out;
	out.updated = sub;
	out.updated.status = Status::kCanceled;
	out.updated.canceled_at = at;
	out.updated.ended_at = at;
	out.updated.end_reason = "user_gone";
	out.updated.scheduled_plan_id.reset();
	out.updated.scheduled_change_at.reset();
	out.action = Action::kCancelNow;
	return out;
}

Micros
UserDeletionTime(const Subscription &sub, Micros now)
{
	return std::max(now, LatestChange(sub));
}

int64_t
CreditLeavingWithItsUser(int64_t balance)
{
	return std::max<int64_t>(balance, 0);
}

namespace {
// What billing holds live for an id, as a phrase ("" when nothing).
std::string
LiveHeld(const HeldForUser &held)
{
	std::vector<std::string> live;
	if (held.current && !held.current->Ended() && (held.current->stripe_managed || !PlainFree(*held.current)))
		live.push_back("subscription " + std::to_string(held.current->id) + " (" + ToString(held.current->status) +
					   (held.current->stripe_managed ? ", managed by Stripe" : "") + ")");
	for (const auto &[currency, balance] : held.credit)
		if (balance != 0)
			live.push_back("a credit balance of " + std::to_string(balance) + " " + currency);
	if (held.open_invoices.size() == 1)
		live.push_back("open invoice " + held.open_invoices.front());
	else if (!held.open_invoices.empty())
		live.push_back(std::to_string(held.open_invoices.size()) + " open invoices (" + held.open_invoices.front() +
					   ", ...)");
	if (!held.stripe_customers.empty())
		live.push_back("Stripe customer " + held.stripe_customers.front());
	std::string what;
	for (size_t i = 0; i < live.size(); i++)
		what += (i == 0 ? "" : i + 1 == live.size() ? " and " : ", ") + live[i];
	return what;
}
}  // namespace

std::optional<Error>
UserRenameRefusal(const HeldForUser &held, const std::string &table, const std::string &column,
				  const std::string &user_id)
{
	std::string what = LiveHeld(held);
	if (what.empty())
		return std::nullopt;
	return Error("23503", "update on table \"" + table + "\" changes a user id that billing still refers to",
				 "Key (" + column + ")=(" + user_id + ") is still referenced by billing: " + what + ".",
				 "Billing keys a user's subscriptions, invoices, credit and Stripe customer by the id: keep it, or "
				 "end what billing holds for it first (cancel the subscription now, settle the open invoices, "
				 "refund the credit).");
}

// The DETAIL of a refusal that removes users in bulk: it names no user and
// nothing held, since the role (a table owner) may have no right to read
// billing (attack finding 4.3).
constexpr const char *kLiveStateOfSomeUser =
	"Billing holds a subscription not ended, a credit balance, an open invoice or a Stripe customer for "
	"at least one user id; a billing_analyst or billing_admin finds them in billing's tables.";

std::optional<Error>
UsersTruncateRefusal(const HeldForUser &held, const std::string &table)
{
	if (LiveHeld(held).empty())
		return std::nullopt;
	return Error("55000", "cannot truncate table \"" + table + "\": billing still holds live state for its users",
				 kLiveStateOfSomeUser,
				 "A TRUNCATE deletes every user without the row triggers that end a deleted user's subscriptions "
				 "and move their credit: DELETE the users instead, or, for a reload that keeps the same ids, "
				 "run billing.detach() on the table first (attach_users again after) or load with "
				 "SET session_replication_role = replica.");
}

std::optional<Error>
UsersDetachRefusal(const HeldForUser &held, const std::string &partition)
{
	if (LiveHeld(held).empty())
		return std::nullopt;
	return Error("55000",
				 "cannot detach partition \"" + partition + "\" of the users table: billing still holds live state for its users",
				 kLiveStateOfSomeUser,
				 "A detached partition's users leave the users table without the row triggers that end a deleted "
				 "user's subscriptions and move their credit: DELETE its users first, or run billing.detach() on the "
				 "users table first (attach_users again after).");
}

std::optional<Error>
UsersDropRefusal(const HeldForUser &held, const std::string &table)
{
	if (LiveHeld(held).empty())
		return std::nullopt;
	return Error("55000", "cannot drop table \"" + table + "\": billing still holds live state for its users",
				 kLiveStateOfSomeUser,
				 "A DROP deletes the users of the users table (or of its partition) without the row triggers that end "
				 "a deleted user's subscriptions and move their credit: DELETE its users first, or run billing.detach() "
				 "on the users table first.");
}

void
RequireManagedByBilling(const Subscription &sub, Action action)
{
	if (sub.stripe_managed && !sub.Ended())
		throw NotAllowed(std::string("action \"") + ToString(action) + "\" is not allowed for a subscription managed by Stripe",
						 "Subscription " + std::to_string(sub.id) + " mirrors a Stripe subscription; Stripe is the source of truth for it.",
						 "Make the change in Stripe (Dashboard, customer portal or API); its webhook event updates billing.");
}

Outcome
EndForPlanChange(const Subscription &sub, Micros at)
{
	Outcome out;
	out.updated = sub;
	out.updated.status = Status::kCanceled;
	out.updated.ended_at = at;
	out.updated.canceled_at = at;
	out.updated.end_reason = "plan_changed";
	out.updated.scheduled_plan_id.reset();
	out.updated.scheduled_change_at.reset();
	out.void_reason = "plan_changed";
	out.action = Action::kUpgrade;
	return out;
}

int64_t
PaidForPeriod(const Subscription &sub, bool period_paid, int64_t refunded_for_period)
{
	return period_paid ? std::clamp<int64_t>(sub.price_cents - refunded_for_period, 0, sub.price_cents) : 0;
}

Outcome
ReplaceByStripe(const Subscription &sub, Micros at, bool period_paid, int64_t refunded_for_period,
				Micros paused_in_period)
{
	Micros when = std::max(LatestChange(sub), at);
	Outcome out = EndForPlanChange(sub, when);
	out.action = Action::kCancelNow;
	out.updated.canceled_at = sub.canceled_at ? sub.canceled_at : std::optional<Micros>(when);
	out.updated.cancel_at_period_end = false;
	if (sub.stripe_managed) {
		out.void_reason.reset();  // Stripe voids (and prorates) its own invoices, and says so in its events
		return out;
	}
	// as PreviewChange credits an upgrade: only a paid, running period's unused time
	if (sub.status != Status::kTrialing && sub.period_end && sub.price_cents > 0 &&
		sub.interval != Interval::kLifetime && when >= sub.period_start && when < *sub.period_end) {
		Micros start = ProratedPeriodStart(sub, when, paused_in_period);
		out.unused_time_credit_cents =
			UnusedTimeCredit(PaidForPeriod(sub, period_paid, refunded_for_period), sub.interval, start, *sub.period_end, when);
	}
	return out;
}

Outcome
Cancel(const Subscription &sub, bool at_period_end, Micros at)
{
	Action action = at_period_end ? Action::kCancelAtPeriodEnd : Action::kCancelNow;
	RequireCurrent(sub, action, at);
	RequireManagedByBilling(sub, action);
	if (PlainFree(sub))
		throw NotAllowedIn(action, sub.status, "on a free plan",
						   "Subscription " + std::to_string(sub.id) + " is on a free plan: there is nothing to cancel.");
	const Transition &t = Transit(sub.status, action);
	if (!at_period_end)
		return [&] {
			Subscription ended = sub;
			ended.canceled_at = at;
			ended.cancel_at_period_end = false;
			return EndAndFallBack(ended, t.to, at, "canceled", action);
		}();
	if (!sub.period_end)
		throw NotAllowedIn(action, sub.status, "without a period end",
						   "Subscription " + std::to_string(sub.id) + " is on a lifetime plan: it has no period end to cancel at.",
						 "Cancel it now with billing.cancel(id, at_period_end => false).");
	Outcome out;
	out.updated = sub;
	out.updated.status = t.to;
	out.updated.cancel_at_period_end = true;
	out.updated.canceled_at = at;
	out.updated.scheduled_plan_id.reset();
	out.updated.scheduled_change_at.reset();
	out.action = action;
	return out;
}

Outcome
Reactivate(const Subscription &sub, Micros at)
{
	RequireCurrent(sub, Action::kReactivate, at);
	RequireManagedByBilling(sub, Action::kReactivate);
	const Transition &t = Transit(sub.status, Action::kReactivate);
	if (!sub.period_end || *sub.period_end <= at)
		throw NotAllowedIn(Action::kReactivate, sub.status, "whose period has ended",
						 "Subscription " + std::to_string(sub.id) + " was canceled and its period is over.",
						 "Start a new subscription with billing.subscribe().");
	Outcome out;
	out.updated = sub;
	// A canceled trial that was never paid goes back to trialing.
	bool unpaid_trial = sub.trial_end && *sub.trial_end > at && !sub.billing_anchor;
	// Dunning that started before the cancel goes on: no way out but paying.
	out.updated.status = unpaid_trial ? Status::kTrialing : sub.Dunning() ? Status::kPastDue : t.to;
	out.updated.cancel_at_period_end = false;
	out.updated.canceled_at.reset();
	out.action = Action::kReactivate;
	return out;
}

Outcome
Pause(const Subscription &sub, Micros at)
{
	RequireCurrent(sub, Action::kPause, at);
	RequireManagedByBilling(sub, Action::kPause);
	const Transition &t = Transit(sub.status, Action::kPause);
	if (!sub.period_end)
		throw NotAllowedIn(Action::kPause, sub.status, "without billing periods",
						   "Subscription " + std::to_string(sub.id) + " is on a " +
							   (sub.price_cents == 0 ? "free" : "lifetime") + " plan: it has no period to pause.");
	Outcome out;
	out.updated = sub;
	out.updated.status = t.to;
	out.updated.paused_at = at;
	out.action = Action::kPause;
	return out;
}

Outcome
Resume(const Subscription &sub, Micros at)
{
	RequireCurrent(sub, Action::kResume, at);
	RequireManagedByBilling(sub, Action::kResume);
	const Transition &t = Transit(sub.status, Action::kResume);
	Micros paused_for = sub.paused_at && at > *sub.paused_at ? at - *sub.paused_at : 0;
	Outcome out;
	out.updated = sub;
	out.updated.status = t.to;
	out.updated.paused_at.reset();
	// The paused time is not billed: the period and the anchor move by it.
	if (out.updated.period_end)
		*out.updated.period_end += paused_for;
	if (out.updated.billing_anchor)
		*out.updated.billing_anchor += paused_for;
	// A scheduled change happens at the (moved) period end, not at the old one.
	if (out.updated.scheduled_change_at)
		out.updated.scheduled_change_at = out.updated.period_end;
	// Found by the model test's history property (seeds 102, 121): an invoice
	// that fell due while paused started dunning at its old due date, so a
	// subscription resumed months later ended in the past, before its resume.
	out.open_invoices_due_later = paused_for;
	if (out.updated.unpaid_due_at)
		*out.updated.unpaid_due_at += paused_for;
	out.action = Action::kResume;
	return out;
}

void
RequirePayable(const Subscription &sub, const Plan &plan, bool has_open_invoice, Micros at, bool succeeded)
{
	RequireCurrent(sub, succeeded ? Action::kPaymentSucceeded : Action::kPaymentFailed, at);
	if (plan.IsFree() || sub.price_cents == 0)
		throw NotAllowed("a payment cannot be applied to a free subscription",
						 "Subscription " + std::to_string(sub.id) + " is on the free plan \"" + plan.code + "\".",
						 "Subscribe to a paid plan first.");
	if (sub.status == Status::kCanceled && !has_open_invoice)
		throw NotAllowed("a payment cannot be applied to a canceled subscription with nothing to pay",
						 "Subscription " + std::to_string(sub.id) + " is canceled and has no open invoice.",
						 "Reactivate it with billing.reactivate() or subscribe again.");
}

Outcome
PaymentSucceeded(const Subscription &sub, const Plan &plan, Micros at, bool open_invoices_remain, int64_t credit_balance)
{
	RequireCurrent(sub, Action::kPaymentSucceeded, at);
	(void) Transit(sub.status, Action::kPaymentSucceeded);  // refused (QB010) where not allowed
	Outcome out;
	out.updated = sub;
	out.action = Action::kPaymentSucceeded;
	// A Stripe-managed subscription's lifecycle is Stripe's (S4): a local
	// payment on it is money that moved, settled on open invoices and held
	// as credit, never a trial conversion nor a status change (review Y2).
	if (sub.stripe_managed)
		return out;
	if (sub.status == Status::kTrialing) {
		if (credit_balance < sub.price_cents)
			return out;  // held as credit; the trial converts once it covers the first period
		return ConvertTrial(sub, plan, at);
	}
	if (open_invoices_remain)
		return out;  // applied to the open invoices; the status waits for the rest
	return Settled(sub, at);
}

Outcome
Settled(const Subscription &sub, Micros /*at*/)
{
	Outcome out;
	out.updated = sub;
	out.action = Action::kPaymentSucceeded;
	if (sub.status == Status::kIncomplete || sub.status == Status::kPastDue)
		out.updated.status = Transit(sub.status, Action::kPaymentSucceeded).to;
	out.updated.past_due_since.reset();
	return out;
}

Outcome
PaymentFailed(const Subscription &sub, Micros at, bool has_open_invoice)
{
	RequireCurrent(sub, Action::kPaymentFailed, at);
	const Transition &t = Transit(sub.status, Action::kPaymentFailed);
	Outcome out;
	out.updated = sub;
	// Dunning starts for anything that grants a paid period (a trial and an
	// incomplete subscription have none yet), and only when something is owed:
	// a failed payment with no open invoice is stored and notified, nothing more.
	if (has_open_invoice) {
		out.updated.status = t.to;
		if ((t.to == Status::kPastDue || t.to == Status::kCanceled) && !sub.past_due_since)
			out.updated.past_due_since = at;
	}
	out.notifications.push_back("payment_failed");
	out.action = Action::kPaymentFailed;
	return out;
}

bool
IsUpgrade(const Plan &from, const Plan &to)
{
	int from_rank = TierRank(from.tier), to_rank = TierRank(to.tier);
	if (from_rank >= 0 && to_rank >= 0 && from_rank != to_rank)
		return to_rank > from_rank;
	if (from_rank == to_rank && from_rank >= 0 && from.interval != to.interval) {
		// Same tier: a longer commitment is an upgrade (monthly -> yearly -> lifetime).
		auto length = [](Interval i) { return i == Interval::kMonthly ? 0 : i == Interval::kYearly ? 1 : 2; };
		return length(to.interval) > length(from.interval);
	}
	// Custom plans, or the same tier and interval: compare monthly-normalized prices.
	if (to.interval == Interval::kLifetime || from.interval == Interval::kLifetime)
		return to.interval == Interval::kLifetime;
	__int128 lhs = static_cast<__int128>(to.price_cents) * MonthsIn(from.interval);
	__int128 rhs = static_cast<__int128>(from.price_cents) * MonthsIn(to.interval);
	return lhs > rhs;
}

ProrationResult
PreviewChange(const Subscription &sub, const Plan &from, const Plan &to, Micros at, bool period_paid,
			  int64_t refunded_for_period, Micros paused_in_period)
{
	if (sub.status == Status::kTrialing || !IsUpgrade(from, to)) {
		// Nothing is billed now: a trial switches for free, a downgrade waits.
		ProrationResult none;
		none.amount_due_cents = 0;
		none.period_kept = true;
		none.new_period_start = sub.period_start;
		none.new_period_end = sub.period_end;
		none.new_anchor = sub.billing_anchor.value_or(sub.period_start);
		return none;
	}
	if (!sub.period_end || sub.price_cents == 0) {
		// No period to prorate (free or lifetime): the new plan starts now.
		// A paid lifetime plan never uses up what was paid for it, so an
		// upgrade credits all of it (less refunds), as an upgrade credits
		// the unused time of a period; free credits nothing.
		ProrationResult r;
		r.period_kept = false;
		r.new_period_start = at;
		r.new_anchor = at;
		if (to.interval != Interval::kLifetime)
			r.new_period_end = AddPeriods(at, to.interval, 1);
		int64_t credit = sub.period_end ? 0 : PaidForPeriod(sub, period_paid, refunded_for_period);
		if (credit > 0)
			r.lines.push_back({"Paid for " + from.name, -credit});
		r.lines.push_back(PeriodLine(to.name, to.price_cents, at, r.new_period_end));
		r.amount_due_cents = to.price_cents - credit;  // both within the payment bound
		return r;
	}
	// Only time that was paid for, and not refunded, is credited.
	int64_t paid = PaidForPeriod(sub, period_paid, refunded_for_period);
	Micros start = ProratedPeriodStart(sub, at, paused_in_period);
	ProrationInput input{from.name, paid, sub.interval, start, *sub.period_end,
						 to.name,   to.price_cents, to.interval, at};
	ProrationResult r = Prorate(input);
	if (r.period_kept)
		r.new_anchor = sub.billing_anchor.value_or(sub.period_start);
	return r;
}

Micros
ProratedPeriodStart(const Subscription &sub, Micros at, Micros paused_in_period)
{
	// Paused time was not billed (the resume moved the period end by it).
	Micros start = std::min(sub.period_start + std::max<Micros>(paused_in_period, 0), at);
	if (sub.period_end && start >= *sub.period_end)
		start = sub.period_start;
	return start;
}

int64_t
UpgradeCreditTakenBack(const Subscription &ended, int64_t credited, int64_t refunded_for_period,
					   Micros paused_in_period)
{
	if (credited <= 0 || !ended.ended_at || !ended.period_end || *ended.ended_at < ended.period_start ||
		*ended.ended_at > *ended.period_end)
		return 0;
	int64_t paid = std::clamp<int64_t>(ended.price_cents - refunded_for_period, 0, ended.price_cents);
	Micros start = ProratedPeriodStart(ended, *ended.ended_at, paused_in_period);
	int64_t now = UnusedTimeCredit(paid, ended.interval, start, *ended.period_end, *ended.ended_at);
	return std::clamp<int64_t>(credited - now, 0, credited);
}

Outcome
ChangePlan(const Subscription &sub, const Plan &from, const Plan &to, Micros at, bool period_paid, bool trial_available,
		   int64_t refunded_for_period, Micros paused_in_period)
{
	if (from.id == to.id)
		throw InvalidParameter("subscription is already on plan \"" + to.code + "\"");
	if (to.currency != sub.currency && !to.IsFree())
		throw InvalidParameter("plan \"" + to.code + "\" is priced in another currency",
							   "The subscription is billed in \"" + sub.currency + "\", the plan in \"" + to.currency +
								   "\".");
	bool upgrade = sub.status == Status::kTrialing || IsUpgrade(from, to);
	Action action = upgrade ? Action::kUpgrade : Action::kScheduleDowngrade;
	RequireCurrent(sub, action, at);
	RequireManagedByBilling(sub, action);
	const Transition &t = Transit(sub.status, action);
	if (sub.status == Status::kTrialing && sub.trial_end && *sub.trial_end <= at)
		throw NotAllowedIn(action, sub.status, "whose trial has ended",
						 "Subscription " + std::to_string(sub.id) + "'s trial ended at " + FormatTimestamp(*sub.trial_end) + ".",
						 "Run billing.run_maintenance() to end it, then subscribe to a plan.");
	Outcome out;
	out.action = action;
	if (!upgrade) {
		if (!sub.period_end)
			throw NotAllowedIn(action, sub.status, "without a period end",
							   "Subscription " + std::to_string(sub.id) +
								   " is on a lifetime plan: it has no period end to schedule the change at.",
							   "Only an upgrade (or billing.cancel(id, at_period_end => false)) leaves a lifetime plan.");
		out.updated = sub;
		out.updated.status = t.to;
		out.updated.scheduled_plan_id = to.id;
		out.updated.scheduled_change_at = sub.period_end;
		return out;
	}
	// The old subscription ends now; history is kept; what it leaves open is void.
	Outcome ended = EndForPlanChange(sub, at);
	out.updated = ended.updated;
	out.void_reason = ended.void_reason;

	Subscription next = Fresh(sub.user_id, to, at);
	if (sub.status == Status::kTrialing) {
		if (to.IsFree()) {
			next.status = Status::kActive;
		} else if (to.trial_days > 0 && (to.tier == from.tier || trial_available)) {
			next.status = Status::kTrialing;
			next.trial_start = sub.trial_start;
			next.trial_end = sub.trial_end;
			next.period_start = at;
			next.period_end = sub.trial_end;
		} else {
			// That tier's trial was used, or the plan has none: it must be paid for.
			Outcome paid = Subscribe(sub.user_id, to, at, false, false);
			next = paid.updated;
			out.invoice = paid.invoice;
		}
	} else {
		ProrationResult r = PreviewChange(sub, from, to, at, period_paid, refunded_for_period, paused_in_period);
		// From Free (nothing was being paid) the new plan waits for its first
		// payment, exactly like subscribe(); otherwise it is owed at once.
		next.status = from.IsFree() || sub.price_cents == 0 ? Status::kIncomplete : t.to;
		next.billing_anchor = r.new_anchor;
		// a kept period starts where the proration started it (after a pause)
		next.period_start = r.new_period_start;
		next.period_end = r.new_period_end;
		if (next.period_start > at)
			next.period_start = at;
		InvoiceDraft invoice;
		invoice.billing_reason = next.status == Status::kIncomplete ? "subscription_create" : "subscription_update";
		invoice.currency = sub.currency;
		invoice.period_start = at;
		invoice.period_end = r.new_period_end;
		invoice.lines = r.lines;
		invoice.total_cents = r.amount_due_cents;
		invoice.issued_at = at;
		invoice.due_at = at + kInvoiceDueAfter;
		out.invoice = invoice;
	}
	out.successor = next;
	return out;
}

Micros
DueTime(const Subscription &sub, Action action, Micros past_due_grace)
{
	switch (action) {
	case Action::kTrialEnd:
		return *sub.trial_end;
	case Action::kIncompleteTimeout:
		return sub.started_at + kIncompleteTimeout;
	case Action::kGraceEnd:
		return *sub.past_due_since + past_due_grace;
	case Action::kInvoiceOverdue:
		return *sub.unpaid_due_at;
	case Action::kPeriodEnd:
		return *sub.period_end;
	default:
		throw Error(sqlstate::kInternalError, std::string("action \"") + ToString(action) + "\" is not a maintenance action");
	}
}

namespace {

// The maintenance actions that may fall due for `sub`, in the order they
// win a tie (dunning before renewal): none for an ended or Stripe-managed
// one. DueAction's and FirstDueTime's one list.
std::vector<Action>
DueCandidates(const Subscription &sub)
{
	std::vector<Action> candidates;
	if (sub.Ended() || sub.stripe_managed)
		return candidates;
	switch (sub.status) {
	case Status::kTrialing:
		if (sub.trial_end)
			candidates.push_back(Action::kTrialEnd);
		break;
	case Status::kIncomplete:
		candidates.push_back(Action::kIncompleteTimeout);
		break;
	case Status::kActive:
	case Status::kPastDue:
	case Status::kCanceled:
		if (sub.past_due_since)
			candidates.push_back(Action::kGraceEnd);
		else if (sub.unpaid_due_at && sub.status != Status::kPastDue)
			candidates.push_back(Action::kInvoiceOverdue);
		if (sub.period_end)
			candidates.push_back(Action::kPeriodEnd);
		break;
	case Status::kPaused:
	case Status::kExpired:
		break;
	}
	return candidates;
}

}  // namespace

std::optional<Action>
DueAction(const Subscription &sub, Micros at, Micros past_due_grace)
{
	std::optional<Action> best;
	Micros best_time = 0;
	for (Action a : DueCandidates(sub)) {
		Micros when = DueTime(sub, a, past_due_grace);
		if (when <= at && (!best || when < best_time)) {
			best = a;
			best_time = when;
		}
	}
	return best;
}

bool
TrialConvertsFromCredit(const Subscription &sub, int64_t credit_cents)
{
	return sub.status == Status::kTrialing && sub.price_cents > 0 && credit_cents >= sub.price_cents;
}

Outcome
ApplyDue(const Subscription &sub, Action action, const Plan &plan, const std::optional<Plan> &scheduled, Micros /*at*/,
		 Micros past_due_grace, int64_t credit_cents)
{
	const Transition &t = Transit(sub.status, action);
	switch (action) {
	case Action::kTrialEnd:
		if (TrialConvertsFromCredit(sub, credit_cents)) {
			Outcome converted = ConvertTrial(sub, plan, *sub.trial_end);
			converted.action = action;
			return converted;
		}
		return EndAndFallBack(sub, t.to, *sub.trial_end, "trial_ended", action);
	case Action::kIncompleteTimeout:
		return EndAndFallBack(sub, t.to, sub.started_at + kIncompleteTimeout, "incomplete_expired", action);
	case Action::kGraceEnd:
		return EndAndFallBack(sub, t.to, *sub.past_due_since + past_due_grace, "payment_failed", action);
	case Action::kInvoiceOverdue: {
		// Exactly as a failed payment: past_due (or a canceled one dunned) from the due date.
		Outcome out;
		out.updated = sub;
		out.updated.status = t.to;
		out.updated.past_due_since = *sub.unpaid_due_at;
		out.notifications.push_back("payment_failed");
		out.action = action;
		return out;
	}
	case Action::kPeriodEnd:
		break;
	default:
		throw Error(sqlstate::kInternalError, std::string("action \"") + ToString(action) + "\" is not a maintenance action");
	}

	Micros end = *sub.period_end;
	if (sub.status == Status::kCanceled)
		return EndAndFallBack(sub, t.to, end, "canceled", action);

	Outcome out;
	out.action = action;
	if (scheduled && sub.status != Status::kPastDue) {
		// A scheduled downgrade: the old subscription ends, the new plan starts.
		out.updated = sub;
		out.updated.status = Status::kCanceled;
		out.updated.ended_at = end;
		out.updated.end_reason = "plan_changed";
		out.updated.scheduled_plan_id.reset();
		out.updated.scheduled_change_at.reset();
		out.void_reason = "plan_changed";
		Subscription next = Fresh(sub.user_id, *scheduled, end);
		next.status = Status::kActive;
		if (!scheduled->IsFree()) {
			next.currency = sub.currency;
			next.billing_anchor = end;
			if (scheduled->interval != Interval::kLifetime)
				next.period_end = AddPeriods(end, scheduled->interval, 1);
			out.invoice = PeriodInvoice("subscription_cycle", scheduled->name, next);
		}
		out.successor = next;
		return out;
	}

	// Renewal: the next period, anchored so that month ends do not drift. A
	// past-due subscription keeps a scheduled change until it is paid.
	out.updated = sub;
	out.updated.status = t.to;
	out.updated.period_start = end;
	out.updated.period_end = NextPeriodEnd(sub.billing_anchor.value_or(sub.period_start), sub.interval, end);
	if (out.updated.scheduled_plan_id)
		out.updated.scheduled_change_at = out.updated.period_end;
	out.invoice = PeriodInvoice("subscription_cycle", plan.name, out.updated);
	return out;
}

int64_t
CreditLinesBackOnVoid(const std::string &void_reason, int64_t lines, bool canceled)
{
	if (void_reason == "canceled" || canceled)
		return 0;
	return std::max<int64_t>(lines, 0);
}

int64_t
CreditLineUnusedAt(const std::string &void_reason, int64_t line, Micros line_at, std::optional<Micros> period_end,
				   Micros at)
{
	if (line <= 0)
		return 0;
	if (void_reason != "plan_changed" || !period_end || *period_end <= line_at || at <= line_at)
		return line;
	if (at >= *period_end)
		return 0;
	__int128 num = static_cast<__int128>(line) * (*period_end - at);
	__int128 den = *period_end - line_at;
	return static_cast<int64_t>((2 * num + den) / (2 * den));
}

const char *
ToString(InvoiceStatus status)
{
	switch (status) {
	case InvoiceStatus::kOpen:
		return "open";
	case InvoiceStatus::kPaid:
		return "paid";
	case InvoiceStatus::kVoid:
		return "void";
	}
	return "open";
}

UpgradeInvoiceChange
CreditLineTakenBack(const UpgradeInvoice &invoice, int64_t off, bool subscription_ended, Micros at,
					std::optional<Micros> maintained_to)
{
	UpgradeInvoiceChange out;
	off = std::max<int64_t>(off, 0);
	out.total_cents = invoice.total_cents + off;
	out.due_at = invoice.due_at;
	if (invoice.open) {
		out.status = InvoiceStatus::kOpen;
		out.amount_due_cents = invoice.amount_due_cents + off;
	} else if (out.total_cents > 0) {
		out.status = InvoiceStatus::kOpen;
		out.amount_due_cents = out.total_cents;
		out.due_at = std::max({at, invoice.issued_at, maintained_to.value_or(at)}) + kInvoiceDueAfter;
		out.reopened = true;
	} else {
		out.status = InvoiceStatus::kPaid;
		out.amount_due_cents = 0;
	}
	if (subscription_ended && out.status == InvoiceStatus::kOpen) {
		out.status = InvoiceStatus::kVoid;
		out.amount_due_cents = 0;
		out.reopened = false;
	}
	return out;
}

int64_t
LineRestTakenBack(int64_t total_cents, int64_t off, int64_t already_taken, int64_t credit_balance)
{
	int64_t before = std::max<int64_t>(-total_cents, 0);
	int64_t after = std::max<int64_t>(-(total_cents + std::max<int64_t>(off, 0)), 0);
	return std::clamp<int64_t>(before - after - std::max<int64_t>(already_taken, 0), 0,
							   std::max<int64_t>(credit_balance, 0));
}

int64_t
BoundTakeOfLine(const UpgradeInvoice &invoice, int64_t excess_left)
{
	if (invoice.open || invoice.total_cents >= 0)
		return 0;
	return std::clamp<int64_t>(excess_left, 0, -invoice.total_cents);
}

std::optional<Subscription>
SettledOnIssue(const Subscription &owner, bool invoice_settled, bool other_open)
{
	bool waiting = owner.status == Status::kIncomplete || owner.Dunning();
	if (!invoice_settled || !waiting || other_open)
		return std::nullopt;
	return Settled(owner, 0).updated;
}

namespace {

std::optional<Micros>
EarliestDue(const std::vector<OpenInvoiceState> &open)
{
	std::optional<Micros> first;
	for (const OpenInvoiceState &invoice : open)
		if (!first || invoice.due_at < *first)
			first = invoice.due_at;
	return first;
}

}  // namespace

Projection
Project(const Book &stored, const Plan &plan, const std::optional<Plan> &scheduled, Micros at, Micros past_due_grace)
{
	Projection p;
	p.book = stored;
	p.stored = stored.sub;
	Book &book = p.book;
	Plan current_plan = plan;
	std::optional<Plan> next_plan = scheduled;
	// As run_maintenance's catch-up (src/glue/lifecycle.cpp CatchUp) bounds it.
	for (int step = 0; step < 10000; step++) {
		book.sub.unpaid_due_at = EarliestDue(book.open);
		std::optional<Action> action = DueAction(book.sub, at, past_due_grace);
		if (!action)
			break;
		Outcome out = ApplyDue(book.sub, *action, current_plan, next_plan, at, past_due_grace, book.credit_cents);
		bool same = book.sub.id == p.stored.id;
		if (out.void_reason) {
			for (const OpenInvoiceState &invoice : book.open)
				book.credit_cents += invoice.paid_toward_cents;
			book.open.clear();
		}
		if (same)
			p.stored = out.updated;
		if (out.updated.Ended() && !out.successor) {
			book.sub = out.updated;
			p.fell_back_to_free = out.fall_back_to_free;
			return p;
		}
		Subscription owner = out.successor ? *out.successor : out.updated;
		if (out.successor) {
			current_plan = *next_plan;
			next_plan.reset();
		}
		if (out.invoice) {
			IssuedAmounts issued = IssueAgainstCredit(out.invoice->total_cents, book.credit_cents);
			book.credit_cents += issued.credit_added_cents - issued.credit_applied_cents;
			if (!issued.settled)
				book.open.push_back({out.invoice->due_at, issued.credit_applied_cents});
			if (std::optional<Subscription> settled = SettledOnIssue(owner, issued.settled, !book.open.empty()))
				owner = *settled;
		}
		book.sub = owner;
		if (same && !out.successor)
			p.stored = owner;
	}
	book.sub.unpaid_due_at = EarliestDue(book.open);
	return p;
}

bool
GrantsAt(const Subscription &sub, Micros at, Micros past_due_grace)
{
	if ((sub.ended_at && *sub.ended_at <= at) || at < sub.started_at)
		return false;
	switch (sub.status) {
	case Status::kTrialing:
		return !sub.trial_end || *sub.trial_end > at;
	case Status::kActive:
	case Status::kPastDue:
	case Status::kCanceled: {
		if (sub.status == Status::kCanceled && (!sub.period_end || *sub.period_end <= at))
			return false;
		Micros grace_end = 0;
		if (sub.past_due_since && !__builtin_add_overflow(*sub.past_due_since, past_due_grace, &grace_end))
			return grace_end > at;
		return true;
	}
	default:
		return false;
	}
}

bool
JudgedByHistory(const Subscription &sub, std::optional<Micros> latest_change, Micros at)
{
	return sub.Ended() || (latest_change && at < *latest_change);
}

std::optional<int64_t>
EntitledPlanId(const Projection &projection, Micros at, Micros past_due_grace)
{
	if (projection.fell_back_to_free || !GrantsAt(projection.book.sub, at, past_due_grace))
		return std::nullopt;
	return projection.book.sub.plan_id;
}

namespace {

// The first time after `at` when what `sub` grants may change by time alone:
// its trial, period and grace ends, and `also`.
std::optional<Micros>
FirstChangeAfter(const Subscription &sub, Micros at, Micros past_due_grace,
				 std::initializer_list<std::optional<Micros>> also)
{
	std::optional<Micros> next;
	auto consider = [&](const std::optional<Micros> &t) {
		if (t && *t > at && (!next || *t < *next))
			next = t;
	};
	consider(sub.trial_end);
	consider(sub.period_end);
	Micros grace_end = 0;
	if (sub.past_due_since && !__builtin_add_overflow(*sub.past_due_since, past_due_grace, &grace_end))
		consider(grace_end);
	for (const auto &t : also)
		consider(t);
	return next;
}

}  // namespace

std::optional<Micros>
NextEntitlementChange(const Projection &projection, Micros at, Micros past_due_grace)
{
	if (projection.fell_back_to_free)
		return std::nullopt;
	const Subscription &sub = projection.book.sub;
	std::optional<Micros> incomplete_timeout;
	if (sub.status == Status::kIncomplete)
		incomplete_timeout = sub.started_at + kIncompleteTimeout;
	return FirstChangeAfter(sub, at, past_due_grace, {sub.unpaid_due_at, incomplete_timeout});
}

std::optional<Micros>
EndedEntitlementChange(const Subscription &sub, Micros at, Micros past_due_grace)
{
	return FirstChangeAfter(sub, at, past_due_grace, {sub.ended_at});
}

bool
StartsPaying(std::string_view status, std::string_view stripe_status, bool first_interval)
{
	if (stripe_status.empty())
		return status == "active" || status == "past_due";
	return stripe_status == "active" || (first_interval && status == "past_due");
}

namespace {

// The time of the first action DueAction would find for `sub` at some
// moment (its candidates' earliest due time); nullopt: none ever (ended,
// Stripe's, paused, expired, or a state without such times).
std::optional<Micros>
FirstDueTime(const Subscription &sub, Micros past_due_grace)
{
	std::optional<Micros> first;
	for (Action a : DueCandidates(sub)) {
		// a timeout or grace end beyond time never comes
		Micros end = 0;
		if ((a == Action::kIncompleteTimeout && __builtin_add_overflow(sub.started_at, kIncompleteTimeout, &end)) ||
			(a == Action::kGraceEnd && __builtin_add_overflow(*sub.past_due_since, past_due_grace, &end)))
			continue;
		Micros t = DueTime(sub, a, past_due_grace);
		if (!first || t < *first)
			first = t;
	}
	return first;
}

}  // namespace

std::optional<Micros>
EntitlementMayDifferFrom(const Subscription &before, const Subscription &after, Micros past_due_grace)
{
	constexpr Micros kFromTheStart = std::numeric_limits<Micros>::min();
	if (before.id != after.id || before.user_id != after.user_id || before.plan_id != after.plan_id ||
		before.started_at != after.started_at || before.ended_at != after.ended_at ||
		before.stripe_managed != after.stripe_managed)
		return kFromTheStart;
	std::optional<Micros> horizon = FirstDueTime(before, past_due_grace);
	if (std::optional<Micros> next = FirstDueTime(after, past_due_grace); next && (!horizon || *next < *horizon))
		horizon = next;
	// GrantsAt changes only at these times (it compares them with `at`): it
	// is the same on each stretch from one to the next, and before the first.
	std::vector<Micros> moments{kFromTheStart};
	for (const Subscription *s : {&before, &after}) {
		for (const std::optional<Micros> &t : {std::optional<Micros>(s->started_at), s->ended_at, s->trial_end, s->period_end})
			if (t)
				moments.push_back(*t);
		Micros grace_end = 0;
		if (s->past_due_since && !__builtin_add_overflow(*s->past_due_since, past_due_grace, &grace_end))
			moments.push_back(grace_end);
	}
	std::sort(moments.begin(), moments.end());
	for (Micros t : moments) {
		if (horizon && t >= *horizon)
			break;
		if (GrantsAt(before, t, past_due_grace) != GrantsAt(after, t, past_due_grace))
			return t;
	}
	return horizon;
}

}  // namespace billing
