// The subscription state machine (SPEC §3): one table of
// (status, action) -> status, with the effects the glue must carry out.
// Anything not in the table is refused with QB010.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace billing {

enum class Status { kTrialing, kActive, kPastDue, kCanceled, kExpired, kIncomplete, kPaused };

enum class Action {
	kPaymentSucceeded,   // record_payment(succeeded => true)
	kPaymentFailed,      // record_payment(succeeded => false)
	kCancelAtPeriodEnd,  // cancel(at_period_end => true)
	kCancelNow,          // cancel(at_period_end => false)
	kReactivate,         // reactivate
	kUpgrade,            // change_plan to a higher plan: now, with proration
	kScheduleDowngrade,  // change_plan to a lower plan: at period end
	kPause,
	kResume,
	kTrialEnd,           // maintenance: trial over without payment
	kPeriodEnd,          // maintenance: the period ran out (renew, or end if canceled)
	kGraceEnd,           // maintenance: past_due longer than the grace period
	kIncompleteTimeout,  // maintenance: no first payment within 23 hours
	kInvoiceOverdue,     // maintenance: an invoice unpaid past its due date (dunning starts)
};

struct Transition {
	Status from;
	Action action;
	Status to;
	const char *effects;  // what else happens, in words (README, billing.transitions())
};

Status ParseStatus(std::string_view text);  // enum label; throws 22023
const char *ToString(Status status);
const char *ToString(Action action);

// Every allowed transition, in a stable order.
const std::vector<Transition> &TransitionTable();

// The transition for (from, action); throws QB010 naming both if not allowed.
const Transition &Transit(Status from, Action action);

// True when the status gives the plan's entitlements (before period checks).
bool GrantsPlan(Status status);

}  // namespace billing
