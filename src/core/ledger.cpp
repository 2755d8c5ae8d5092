#include "core/ledger.hpp"

#include "core/error.hpp"
#include "core/money.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <string>

namespace billing {

void
RequirePaymentAmount(int64_t amount, bool succeeded)
{
	if (amount < 0)
		throw InvalidParameter("payment amount must not be negative", "Amount given: " + std::to_string(amount) + ".",
							   "Record refunds with billing.refund().");
	if (succeeded && amount == 0)
		throw InvalidParameter("a succeeded payment must be positive", "Amount given: 0.");
	if (amount > kMaxPaymentCents)
		throw Error(sqlstate::kNumericValueOutOfRange, "payment amount is too large",
					"Amount given: " + std::to_string(amount) + "; at most " + std::to_string(kMaxPaymentCents) +
						" minor units per payment.");
}

Settlement
SettlePayment(const std::vector<OpenInvoice> &open, int64_t amount)
{
	Settlement s;
	int64_t left = amount;
	for (const OpenInvoice &invoice : open) {
		if (left <= 0)
			break;
		if (invoice.amount_due_cents <= 0)
			continue;
		int64_t take = std::min(left, invoice.amount_due_cents);
		s.to_invoices.push_back({invoice.id, take, take == invoice.amount_due_cents});
		left -= take;
	}
	s.to_credit_cents = left;
	return s;
}

int64_t
CreditToApply(int64_t total, int64_t credit_balance)
{
	if (total <= 0 || credit_balance <= 0)
		return 0;
	return std::min(total, credit_balance);
}

IssuedAmounts
IssueAgainstCredit(int64_t total, int64_t credit_balance)
{
	IssuedAmounts out;
	out.credit_applied_cents = CreditToApply(total, credit_balance);
	out.amount_due_cents = std::max<int64_t>(total, 0) - out.credit_applied_cents;
	out.credit_added_cents = total < 0 ? -total : 0;
	out.settled = out.amount_due_cents == 0;
	return out;
}

PaymentCredit
CreditOf(int64_t payment_id, const std::vector<CreditMovement> &movements)
{
	struct Lot {
		int64_t owner;  // 0: nobody's
		int64_t cents;
	};
	std::deque<Lot> lots;
	std::deque<Lot> owed;  // lots that left the id with its deleted user
	PaymentCredit out;
	// what of the payment's lots an invoice took
	auto took = [&out, payment_id](const Lot &lot, int64_t cents, int64_t invoice_id) {
		if (lot.owner != payment_id || invoice_id == 0 || cents <= 0)
			return;
		if (!out.spent_on.empty() && out.spent_on.back().invoice_id == invoice_id)
			out.spent_on.back().amount_cents += cents;
		else
			out.spent_on.push_back({invoice_id, cents, false});
	};
	auto spend = [&lots, &took](int64_t cents, std::optional<int64_t> owner_first, int64_t invoice_id) {
		if (owner_first)
			for (Lot &lot : lots)
				if (lot.owner == *owner_first && cents > 0) {
					int64_t take = std::min(cents, lot.cents);
					lot.cents -= take;
					cents -= take;
				}
		for (Lot &lot : lots) {
			if (cents <= 0)
				break;
			int64_t take = std::min(cents, lot.cents);
			took(lot, take, invoice_id);
			lot.cents -= take;
			cents -= take;
		}
		while (!lots.empty() && lots.front().cents == 0)
			lots.pop_front();
	};
	for (const CreditMovement &m : movements) {
		switch (m.kind) {
		case CreditMovement::Kind::kAdd: {
			int64_t left = m.amount_cents;
			for (const auto &[owner, cents] : m.owners) {
				int64_t part = std::min(left, cents);
				if (part > 0)
					lots.push_back({owner, part});
				left -= std::max<int64_t>(part, 0);
			}
			if (left > 0)
				lots.push_back({0, left});
			break;
		}
		case CreditMovement::Kind::kSpend:
			spend(m.amount_cents, std::nullopt, m.invoice_id);
			break;
		case CreditMovement::Kind::kTakeBack:
			spend(m.amount_cents, m.for_payment, 0);
			break;
		case CreditMovement::Kind::kLeaveWithUser: {
			// the lots move, oldest first, each keeping its owner
			int64_t cents = m.amount_cents;
			for (Lot &lot : lots) {
				if (cents <= 0)
					break;
				int64_t take = std::min(cents, lot.cents);
				if (take > 0)
					owed.push_back({lot.owner, take});
				lot.cents -= take;
				cents -= take;
			}
			while (!lots.empty() && lots.front().cents == 0)
				lots.pop_front();
			break;
		}
		case CreditMovement::Kind::kOwedRefunded: {
			int64_t cents = m.amount_cents;
			for (bool own : {true, false})
				for (Lot &lot : owed)
					if (cents > 0 && (!own || lot.owner == m.for_payment)) {
						int64_t take = std::min(cents, lot.cents);
						lot.cents -= take;
						cents -= take;
					}
			std::erase_if(owed, [](const Lot &lot) { return lot.cents <= 0; });
			break;
		}
		}
	}
	for (const Lot &lot : lots)
		if (lot.owner == payment_id)
			out.unspent += lot.cents;
	for (const Lot &lot : owed) {
		out.owed_total += lot.cents;
		if (lot.owner == payment_id)
			out.owed += lot.cents;
	}
	return out;
}

std::vector<Allocation>
RefundOffInvoices(int64_t rest, const std::vector<Allocation> &placed)
{
	std::vector<Allocation> out;
	for (const Allocation &on : placed) {
		if (rest <= 0)
			break;
		int64_t take = std::min(rest, on.amount_cents);
		if (take <= 0)
			continue;
		out.push_back({on.invoice_id, take, false});
		rest -= take;
	}
	return out;
}

int64_t
CreditForUnusedTime(int64_t credit, int64_t held, int64_t paid_net)
{
	return std::clamp<int64_t>(paid_net - held, 0, std::max<int64_t>(credit, 0));
}

RefundTakeBack
TakeBackForRefund(int64_t amount, int64_t payment_credit, const std::vector<Allocation> &placed,
				  const std::vector<HeldInvoice> &open, int64_t credit_balance, int64_t net_paid_before,
				  const std::vector<Allocation> &paid_placed, int64_t payment_owed)
{
	RefundTakeBack out;
	out.credit_cents = std::clamp<int64_t>(payment_credit, 0, std::min(amount, std::max<int64_t>(credit_balance, 0)));
	out.owed_credit_cents = std::clamp<int64_t>(payment_owed, 0, amount - out.credit_cents);
	out.paid_off = RefundOffInvoices(amount - out.credit_cents - out.owed_credit_cents, placed);
	std::map<int64_t, int64_t> paid_left;  // per open invoice, after the payment's own money left
	for (const HeldInvoice &invoice : open)
		paid_left[invoice.id] = invoice.paid_cents;
	int64_t taken = out.credit_cents + out.owed_credit_cents;
	for (Allocation &off : out.paid_off) {
		auto it = paid_left.find(off.invoice_id);
		int64_t there = it == paid_left.end() ? 0 : it->second;
		off.amount_cents = std::min(off.amount_cents, there);  // never below what the invoice holds
		if (it != paid_left.end())
			it->second -= off.amount_cents;
		taken += off.amount_cents;
	}
	std::erase_if(out.paid_off, [](const Allocation &a) { return a.amount_cents <= 0; });

	// Sums of at most a few hundred amounts each <= kMaxPaymentCents: no overflow.
	int64_t held = credit_balance - out.credit_cents;
	for (const HeldInvoice &invoice : open)
		held += paid_left[invoice.id] + invoice.credit_cents;
	int64_t excess = std::max<int64_t>(std::min(held - (net_paid_before - amount), amount - taken), 0);
	int64_t from_balance = std::clamp<int64_t>(credit_balance - out.credit_cents, 0, excess);
	out.credit_cents += from_balance;
	out.excess_credit_cents = from_balance;
	excess -= from_balance;
	for (const HeldInvoice &invoice : open) {
		if (excess <= 0)
			break;
		if (int64_t paid = std::min(excess, paid_left[invoice.id]); paid > 0) {
			auto same = std::find_if(out.paid_off.begin(), out.paid_off.end(),
									 [&](const Allocation &a) { return a.invoice_id == invoice.id; });
			if (same != out.paid_off.end())
				same->amount_cents += paid;
			else
				out.paid_off.push_back({invoice.id, paid, false});
			excess -= paid;
		}
		if (int64_t credit = std::min(excess, invoice.credit_cents); credit > 0) {
			out.credit_off.push_back({invoice.id, credit, false});
			excess -= credit;
		}
	}
	int64_t left = amount - out.credit_cents - out.owed_credit_cents;
	for (const auto *list : {&out.paid_off, &out.credit_off})
		for (const Allocation &off : *list)
			left -= off.amount_cents;
	out.of_paid = RefundOffInvoices(left, paid_placed);
	return out;
}

void
RequireSameAsRecorded(const std::string &external_id, const RecordedPayment &recorded, int64_t subscription_id,
					  int64_t amount, const std::string &currency, bool succeeded)
{
	auto outcome = [](bool ok) { return std::string(ok ? "succeeded" : "failed"); };
	if (recorded.subscription_id != subscription_id)
		throw InvalidParameter("external id \"" + external_id + "\" belongs to another subscription",
							   "Payment " + std::to_string(recorded.id) + " of subscription " +
								   std::to_string(recorded.subscription_id) + " has it.");
	if (recorded.amount_cents != amount || recorded.currency != currency || recorded.succeeded != succeeded)
		throw InvalidParameter("external id \"" + external_id + "\" is already recorded for a different payment",
							   "Payment " + std::to_string(recorded.id) + " has it: " +
								   std::to_string(recorded.amount_cents) + " " + recorded.currency + ", " +
								   outcome(recorded.succeeded) + "; this call: " + std::to_string(amount) + " " + currency +
								   ", " + outcome(succeeded) + ".",
							   "Record each attempt (a retry after a failure too) under its own external id.");
}

void
RequireRefund(int64_t payment_id, int64_t paid, int64_t refunded, int64_t amount, Micros paid_at, Micros at)
{
	if (amount <= 0)
		throw InvalidParameter("refund amount must be positive", "Amount given: " + std::to_string(amount) + ".");
	if (at < paid_at)
		throw InvalidParameter("a refund cannot be dated before its payment",
							   "Payment " + std::to_string(payment_id) + " was made at " + FormatTimestamp(paid_at) +
								   "; the refund is dated " + FormatTimestamp(at) + ".");
	if (amount > paid - refunded)
		throw InvalidParameter("refund exceeds what was paid",
							   "Payment " + std::to_string(payment_id) + " was " + std::to_string(paid) + " cents; " +
								   std::to_string(refunded) + " already refunded, " + std::to_string(amount) +
								   " asked.");
}

}  // namespace billing
