// The ledger (Stripe's model): payments settle open invoices oldest first,
// what is left is the customer's credit balance, and credit is applied to the
// next invoice before any payment is due. Pure arithmetic; the glue stores
// each movement as a row of billing.ledger_entries.
#pragma once

#include "core/calendar.hpp"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace billing {

// No single payment or refund above this (10^11 cents = 1 000 000 000.00):
// 92 million of them still sum inside a bigint, so no report overflows.
inline constexpr int64_t kMaxPaymentCents = 100'000'000'000LL;

struct OpenInvoice {
	int64_t id = 0;
	int64_t amount_due_cents = 0;
};

struct Allocation {
	int64_t invoice_id = 0;
	int64_t amount_cents = 0;
	bool settles = false;  // the invoice is paid in full by this allocation
};

struct Settlement {
	std::vector<Allocation> to_invoices;
	int64_t to_credit_cents = 0;
};

// Throws 22023 unless 0 <= amount <= kMaxPaymentCents (positive when succeeded).
void RequirePaymentAmount(int64_t amount, bool succeeded);

// A payment already recorded under the same external id (the unique key of
// a payment intent at the processor).
struct RecordedPayment {
	int64_t id = 0;
	int64_t subscription_id = 0;
	int64_t amount_cents = 0;
	std::string currency;
	bool succeeded = false;
};

// record_payment with an external id that is already recorded: the same
// payment again (same subscription, amount, currency and outcome) is
// idempotent and returns normally (the caller stores nothing); anything else
// is refused with 22023, never dropped silently. A failed attempt and a later
// success of the same payment intent therefore need distinct external ids
// (e.g. the charge id): one payment row per external id.
void RequireSameAsRecorded(const std::string &external_id, const RecordedPayment &recorded, int64_t subscription_id,
						   int64_t amount, const std::string &currency, bool succeeded);

// `open` oldest first; every cent goes to an invoice or to credit.
Settlement SettlePayment(const std::vector<OpenInvoice> &open, int64_t amount);

// How much of the credit balance a new invoice of `total` takes.
int64_t CreditToApply(int64_t total, int64_t credit_balance);

// A new invoice against the credit balance: credit pays what it can first; a
// negative total (a proration credit) adds to the balance instead.
struct IssuedAmounts {
	int64_t credit_applied_cents = 0;
	int64_t amount_due_cents = 0;
	int64_t credit_added_cents = 0;
	bool settled = false;  // nothing left to pay
};
IssuedAmounts IssueAgainstCredit(int64_t total, int64_t credit_balance);

// One movement of a customer's credit balance, in ledger order.
struct CreditMovement {
	// kLeaveWithUser: credit_to_deleted_user, the whole balance leaving the id
	// with its deleted user (every lot, oldest first), owed to them from then
	// on; kOwedRefunded: deleted_user_credit_refunded, a refund's take of what
	// is owed to the deleted customer (`for_payment`'s lots first).
	enum class Kind { kAdd, kSpend, kTakeBack, kLeaveWithUser, kOwedRefunded };
	Kind kind = Kind::kAdd;
	int64_t amount_cents = 0;
	// kAdd: the payments whose money it is (what each paid toward a voided
	// invoice, or the payment that put it into credit); the rest is nobody's
	// (credit for unused time, credit a voided invoice had taken).
	std::vector<std::pair<int64_t, int64_t>> owners;
	// kTakeBack, kOwedRefunded: the payment whose refund took it back.
	int64_t for_payment = 0;
	// kSpend: the invoice that took it.
	int64_t invoice_id = 0;
};

// The credit `payment_id` created that is still unspent (`unspent`), and what
// each invoice took of it (`spent_on`, in ledger order): the balance is
// replayed as lots, spent oldest first (an invoice takes the oldest credit),
// a refund's take-back from its own payment's lots first. A refund takes the
// unspent part back first (TakeBackForRefund's `payment_credit`), so a refund
// of an overpayment does not leave the customer both the money and the
// credit, and never takes credit another payment made while that one's credit
// was already spent; what invoices took is recorded against them.
// A user deleted from the attached users table: their balance left the id
// (kLeaveWithUser) lot by lot, so `owed` is what of `payment_id`'s credit is
// still owed to the deleted customer (no refund took it back yet), and
// `owed_total` all that is still owed to them.
struct PaymentCredit {
	int64_t unspent = 0;
	std::vector<Allocation> spent_on;
	int64_t owed = 0;
	int64_t owed_total = 0;
};
PaymentCredit CreditOf(int64_t payment_id, const std::vector<CreditMovement> &movements);

// `rest` of a refund spread over the invoices its payment paid (`placed`:
// what the payment has on each, net of earlier refunds, newest invoice
// first), greedily. For open invoices it leaves them (they owe it again, and a
// later void returns only what is still paid toward them); for paid ones it
// only records what they were paid with (Stripe: a refund does not reopen an
// invoice). Returns the part for each invoice, in `placed`'s order, none of 0.
std::vector<Allocation> RefundOffInvoices(int64_t rest, const std::vector<Allocation> &placed);

// Credit for unused paid time (an upgrade's negative total, or a voided
// upgrade's credit lines coming back) never lets the customer hold more than
// they paid net: `held` is their credit plus what open invoices hold, after
// everything else of the same change; a refund may have taken back part of
// what paid that time. Returns the part of `credit` to add.
int64_t CreditForUnusedTime(int64_t credit, int64_t held, int64_t paid_net);

// An open invoice of the user and what it holds: payment money and credit
// (a void would return both to the credit balance).
struct HeldInvoice {
	int64_t id = 0;
	int64_t paid_cents = 0;
	int64_t credit_cents = 0;
};

// Everything a refund takes back besides the cash it returns.
struct RefundTakeBack {
	int64_t credit_cents = 0;            // off the credit balance
	int64_t owed_credit_cents = 0;       // off what is owed to the deleted customer (credit that left the id)
	int64_t excess_credit_cents = 0;     // the part of it the conservation bound took (not the payment's own)
	std::vector<Allocation> paid_off;    // payment money off open invoices (they owe it again)
	std::vector<Allocation> credit_off;  // credit off open invoices (they owe it again)
	std::vector<Allocation> of_paid;     // the rest: what paid invoices were paid with (they stay paid)
};

// The whole refund rule. First what the refunded payment itself still holds:
// `payment_credit` (CreditOf) off the balance, then its money
// on open invoices (`placed`, RefundOffInvoices). Then conservation: the
// customer must never hold more than they paid net. What they hold is the
// credit balance plus what open invoices hold (`open`, newest first: a void
// returns it as credit); if after the refund that exceeds `net_paid_before`
// less the refund (credit that came back for paid time, whatever its path:
// an upgrade's unused time, a voided upgrade's credit lines), the excess is
// taken from the balance, then off open invoices, newest first. Never more in
// all than `amount`: what is left was spent on paid invoices, which stay paid;
// it is recorded against the paid invoices the payment paid (`paid_placed`,
// newest first, net of earlier refunds), so an upgrade does not credit the
// refunded time again (PreviewChange's `refunded_for_period`).
//
// A deleted user's payment (attack finding 3.2): the credit it had put into
// the balance left the id at the deletion, owed to the deleted customer
// (`payment_owed`: CreditOf's `owed`, never above its `owed_total`). The
// refund pays it out as cash, so it comes off what is owed to them
// (`owed_credit_cents`), after the payment's credit still on the balance and
// before its money on invoices, as that credit would have: every cent of the
// refund is accounted, and the ledger no longer says it is owed.
RefundTakeBack TakeBackForRefund(int64_t amount, int64_t payment_credit, const std::vector<Allocation> &placed,
								 const std::vector<HeldInvoice> &open, int64_t credit_balance, int64_t net_paid_before,
								 const std::vector<Allocation> &paid_placed = {}, int64_t payment_owed = 0);

// A refund of `amount` from a payment of `paid` (at `paid_at`) of which
// `refunded` is already refunded: positive, at or after the payment, never
// more than what is left. Throws 22023.
void RequireRefund(int64_t payment_id, int64_t paid, int64_t refunded, int64_t amount, Micros paid_at, Micros at);

}  // namespace billing
