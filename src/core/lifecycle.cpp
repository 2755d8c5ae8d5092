#include "core/lifecycle.hpp"

#include "core/error.hpp"
#include "core/pure.hpp"

#include <array>

namespace billing {
namespace {

using S = Status;
using A = Action;

// The whole state machine. Order: by from-status, then action.
const std::vector<Transition> kTable = {
	{S::kTrialing, A::kPaymentSucceeded, S::kActive, "trial ends now; the first paid period starts"},
	{S::kTrialing, A::kPaymentFailed, S::kTrialing, "payment stored as failed; trial continues"},
	{S::kTrialing, A::kCancelAtPeriodEnd, S::kCanceled, "entitlements until the trial ends"},
	{S::kTrialing, A::kCancelNow, S::kCanceled, "ended now; back to Free"},
	{S::kTrialing, A::kUpgrade, S::kTrialing,
	 "plan switched now, trial continues, nothing charged (incomplete if the new plan has no trial or its tier's trial was used)"},
	{S::kTrialing, A::kScheduleDowngrade, S::kTrialing,
	 "plan switched now, trial continues, nothing charged (incomplete if the new plan has no trial or its tier's trial was used)"},
	{S::kTrialing, A::kTrialEnd, S::kExpired,
	 "trial over unpaid; back to Free (credit covering the first period converts it instead: active, first invoice paid from credit)"},
	{S::kActive, A::kPaymentSucceeded, S::kActive, "open invoices settled oldest first; the rest is credit"},
	{S::kActive, A::kPaymentFailed, S::kPastDue,
	 "grace period starts if an invoice is open (else stays active); payment_failed notification"},
	{S::kActive, A::kCancelAtPeriodEnd, S::kCanceled, "entitlements until period end"},
	{S::kActive, A::kCancelNow, S::kCanceled, "ended now; back to Free"},
	{S::kActive, A::kUpgrade, S::kActive,
	 "old subscription ends, new one starts now with proration invoice (unpaid time is not credited)"},
	{S::kActive, A::kScheduleDowngrade, S::kActive, "plan change scheduled for period end"},
	{S::kActive, A::kPause, S::kPaused, "entitlements fall back to Free"},
	{S::kActive, A::kPeriodEnd, S::kActive, "period rolls; renewal invoice issued; a scheduled change starts the new plan"},
	{S::kActive, A::kInvoiceOverdue, S::kPastDue, "an invoice is unpaid past its due date: grace period starts"},
	{S::kPastDue, A::kPaymentSucceeded, S::kActive, "once no invoice is open: grace cleared"},
	{S::kPastDue, A::kPaymentFailed, S::kPastDue, "payment stored as failed"},
	{S::kPastDue, A::kCancelAtPeriodEnd, S::kCanceled, "entitlements until period end or grace end, whichever first"},
	{S::kPastDue, A::kCancelNow, S::kCanceled, "ended now; back to Free"},
	{S::kPastDue, A::kPeriodEnd, S::kPastDue, "period rolls; renewal invoice issued; a scheduled change waits for payment"},
	{S::kPastDue, A::kGraceEnd, S::kExpired, "grace ran out; back to Free; open invoices void"},
	{S::kCanceled, A::kPaymentSucceeded, S::kCanceled, "open invoice paid; still ends at period end"},
	{S::kCanceled, A::kPaymentFailed, S::kCanceled, "payment stored as failed; grace period starts"},
	{S::kCanceled, A::kCancelNow, S::kCanceled, "ended now; back to Free"},
	{S::kCanceled, A::kReactivate, S::kActive,
	 "pending cancel undone before period end (an unpaid trial resumes trialing, a dunned one past_due)"},
	{S::kCanceled, A::kPeriodEnd, S::kCanceled, "ended at period end; back to Free; open invoices void"},
	{S::kCanceled, A::kGraceEnd, S::kExpired, "grace ran out before the period end; back to Free"},
	{S::kCanceled, A::kInvoiceOverdue, S::kCanceled, "an invoice is unpaid past its due date: grace period starts"},
	{S::kPaused, A::kCancelNow, S::kCanceled, "ended now; back to Free"},
	{S::kPaused, A::kResume, S::kActive, "period extended by the paused time"},
	{S::kIncomplete, A::kPaymentSucceeded, S::kActive, "first period paid"},
	{S::kIncomplete, A::kPaymentFailed, S::kIncomplete, "payment stored as failed"},
	{S::kIncomplete, A::kCancelNow, S::kCanceled, "ended now"},
	{S::kIncomplete, A::kIncompleteTimeout, S::kExpired, "no payment within 23 hours; its invoice void"},
};

constexpr std::array<Status, 7> kStatuses = {S::kTrialing, S::kActive,		S::kPastDue, S::kCanceled,
											 S::kExpired,  S::kIncomplete, S::kPaused};

}  // namespace

Status
ParseStatus(std::string_view text)
{
	for (Status s : kStatuses)
		if (text == ToString(s))
			return s;
	throw InvalidParameter("unknown subscription status \"" + std::string(text) + "\"");
}

const char *
ToString(Status status)
{
	switch (status) {
	case S::kTrialing:
		return "trialing";
	case S::kActive:
		return "active";
	case S::kPastDue:
		return "past_due";
	case S::kCanceled:
		return "canceled";
	case S::kExpired:
		return "expired";
	case S::kIncomplete:
		return "incomplete";
	case S::kPaused:
		return "paused";
	}
	return "unknown";
}

const char *
ToString(Action action)
{
	switch (action) {
	case A::kPaymentSucceeded:
		return "payment_succeeded";
	case A::kPaymentFailed:
		return "payment_failed";
	case A::kCancelAtPeriodEnd:
		return "cancel_at_period_end";
	case A::kCancelNow:
		return "cancel_now";
	case A::kReactivate:
		return "reactivate";
	case A::kUpgrade:
		return "upgrade";
	case A::kScheduleDowngrade:
		return "schedule_downgrade";
	case A::kPause:
		return "pause";
	case A::kResume:
		return "resume";
	case A::kTrialEnd:
		return "trial_end";
	case A::kPeriodEnd:
		return "period_end";
	case A::kGraceEnd:
		return "grace_end";
	case A::kIncompleteTimeout:
		return "incomplete_timeout";
	case A::kInvoiceOverdue:
		return "invoice_overdue";
	}
	return "unknown";
}

const std::vector<Transition> &
TransitionTable()
{
	return kTable;
}

const Transition &
Transit(Status from, Action action)
{
	std::string allowed;
	for (const Transition &t : kTable) {
		if (t.from != from)
			continue;
		if (t.action == action)
			return t;
		allowed += (allowed.empty() ? "" : ", ") + std::string(ToString(t.action));
	}
	throw Error(sqlstate::kTransitionNotAllowed,
				std::string("action \"") + ToString(action) + "\" is not allowed for a subscription in status \"" +
					ToString(from) + "\"",
				std::string("Allowed from \"") + ToString(from) + "\": " + (allowed.empty() ? "none" : allowed) + ".",
				"billing.transitions() lists every allowed transition.");
}

bool
GrantsPlan(Status status)
{
	return status == S::kTrialing || status == S::kActive || status == S::kPastDue || status == S::kCanceled;
}

}  // namespace billing
