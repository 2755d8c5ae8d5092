// The ledger's arithmetic: settlement oldest first, credit, refund bounds.
#include "core/error.hpp"
#include "core/ledger.hpp"

#include <gtest/gtest.h>

namespace billing {
namespace {

TEST(Ledger, OverpaymentSettlesOldestFirstThenCredit)
{
	// Case 1: February (2999) and March (2999) open; 5998 pays both, nothing left.
	Settlement s = SettlePayment({{10, 2999}, {11, 2999}}, 5998);
	ASSERT_EQ(s.to_invoices.size(), 2u);
	EXPECT_EQ(s.to_invoices[0].invoice_id, 10);
	EXPECT_TRUE(s.to_invoices[0].settles);
	EXPECT_TRUE(s.to_invoices[1].settles);
	EXPECT_EQ(s.to_credit_cents, 0);
	// 7000 on one 2999 invoice: 4001 credit.
	s = SettlePayment({{10, 2999}}, 7000);
	EXPECT_EQ(s.to_credit_cents, 4001);
}

TEST(Ledger, PartialPaymentsAccumulate)
{
	Settlement s = SettlePayment({{10, 2999}}, 1000);
	ASSERT_EQ(s.to_invoices.size(), 1u);
	EXPECT_EQ(s.to_invoices[0].amount_cents, 1000);
	EXPECT_FALSE(s.to_invoices[0].settles);
	EXPECT_EQ(s.to_credit_cents, 0);
}

TEST(Ledger, CreditAppliesBeforePayment)
{
	EXPECT_EQ(CreditToApply(2999, 4001), 2999);
	EXPECT_EQ(CreditToApply(2999, 1000), 1000);
	EXPECT_EQ(CreditToApply(-500, 1000), 0);
}

TEST(Ledger, AmountsAreBounded)
{
	try {
		RequirePaymentAmount(9223372036854775807LL, true);
		ADD_FAILURE();
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), "22003");
	}
	RequirePaymentAmount(kMaxPaymentCents, true);
	EXPECT_THROW(RequirePaymentAmount(0, true), Error);
	RequirePaymentAmount(0, false);
}

TEST(Ledger, RefundsAreBoundedAndDatedAfterThePayment)
{
	RequireRefund(1, 2999, 0, 2999, 100, 100);
	EXPECT_THROW(RequireRefund(1, 2999, 2999, 1, 100, 200), Error);  // the second of two concurrent refunds
	EXPECT_THROW(RequireRefund(1, 2999, 0, 10, 100, 99), Error);      // before its payment
	EXPECT_THROW(RequireRefund(1, 2999, 0, 0, 100, 200), Error);
}

TEST(Refund, UnspentCreditOfAPaymentIsReplayedOldestSpentFirst)
{
	using K = CreditMovement::Kind;
	auto add = [](int64_t cents, std::vector<std::pair<int64_t, int64_t>> owners) {
		return CreditMovement{K::kAdd, cents, std::move(owners), 0};
	};
	auto spend = [](int64_t cents) { return CreditMovement{K::kSpend, cents, {}, 0}; };
	auto take_back = [](int64_t cents, int64_t payment) { return CreditMovement{K::kTakeBack, cents, {}, payment}; };
	// 3999 paid 2999 of an invoice and put 1000 into credit (payment 1)
	EXPECT_EQ(CreditOf(1, {add(1000, {{1, 1000}})}).unspent, 1000);
	EXPECT_EQ(CreditOf(1, {add(1000, {{1, 1000}}), take_back(1000, 1)}).unspent, 0);  // taken back already
	// review D1: the whole balance left with its deleted user (a take-back of nobody's): nothing left of it
	EXPECT_EQ(CreditOf(1, {add(500, {}), add(1000, {{1, 1000}}), take_back(1500, 0)}).unspent, 0);
	EXPECT_EQ(CreditOf(1, {add(2999, {{1, 2999}}), spend(2999)}).unspent, 0);          // spent on a renewal
	EXPECT_EQ(CreditOf(1, {add(2999, {{1, 2999}}), spend(1799)}).unspent, 1200);       // partly spent
	EXPECT_EQ(CreditOf(1, {add(1000, {{2, 1000}})}).unspent, 0);                       // another payment's
	// M2: 1000 paid an invoice that was then voided: that credit is the payment's
	EXPECT_EQ(CreditOf(1, {add(1000, {{1, 1000}})}).unspent, 1000);
	// a void of 3000 of which payment 1 paid 1000: the rest is nobody's
	EXPECT_EQ(CreditOf(1, {add(3000, {{1, 1000}}), spend(2500)}).unspent, 0);  // oldest first: its lot went first
	EXPECT_EQ(CreditOf(1, {add(500, {}), add(3000, {{1, 1000}}), spend(500)}).unspent, 1000);
	// attacker review R6: payment 1's credit paid February, then payment 2
	// put 5000 into credit; a refund of payment 1 finds none of it left
	EXPECT_EQ(CreditOf(1, {add(2999, {{1, 2999}}), spend(2999), add(5000, {{2, 5000}})}).unspent, 0);
	EXPECT_EQ(CreditOf(2, {add(2999, {{1, 2999}}), spend(2999), add(5000, {{2, 5000}})}).unspent, 5000);
	// oldest spent first; a take-back comes off its own payment's lots first
	std::vector<CreditMovement> two = {add(1000, {{1, 1000}}), add(1000, {{2, 1000}}), spend(1500)};
	EXPECT_EQ(CreditOf(1, two).unspent, 0);
	EXPECT_EQ(CreditOf(2, two).unspent, 500);
	EXPECT_EQ(CreditOf(1, {add(1000, {{1, 1000}}), add(1000, {{2, 1000}}), take_back(500, 2)}).unspent, 1000);
	EXPECT_EQ(CreditOf(2, {add(1000, {{1, 1000}}), add(1000, {{2, 1000}}), take_back(1500, 2)}).unspent, 0);
	EXPECT_EQ(CreditOf(1, {add(1000, {{1, 1000}}), add(1000, {{2, 1000}}), take_back(1500, 2)}).unspent, 500);
}

TEST(Refund, CreditOfAPaymentSaysWhichInvoicesTookIt)
{
	using K = CreditMovement::Kind;
	// payment 1 put 2999 into credit, payment 2 1000; invoice 7 took 2500
	// (all payment 1's oldest lot), invoice 8 took 1000 (499 of payment 1, 501
	// of payment 2)
	std::vector<CreditMovement> m = {{K::kAdd, 2999, {{1, 2999}}, 0, 0},
									 {K::kAdd, 1000, {{2, 1000}}, 0, 0},
									 {K::kSpend, 2500, {}, 0, 7},
									 {K::kSpend, 1000, {}, 0, 8}};
	PaymentCredit one = CreditOf(1, m);
	EXPECT_EQ(one.unspent, 0);
	ASSERT_EQ(one.spent_on.size(), 2u);
	EXPECT_EQ(one.spent_on[0].invoice_id, 7);
	EXPECT_EQ(one.spent_on[0].amount_cents, 2500);
	EXPECT_EQ(one.spent_on[1].invoice_id, 8);
	EXPECT_EQ(one.spent_on[1].amount_cents, 499);
	PaymentCredit two = CreditOf(2, m);
	EXPECT_EQ(two.unspent, 499);
	ASSERT_EQ(two.spent_on.size(), 1u);
	EXPECT_EQ(two.spent_on[0].amount_cents, 501);
}

TEST(Ledger, IssueAgainstCredit)
{
	IssuedAmounts a = IssueAgainstCredit(2999, 1000);
	EXPECT_EQ(a.credit_applied_cents, 1000);
	EXPECT_EQ(a.amount_due_cents, 1999);
	EXPECT_FALSE(a.settled);
	a = IssueAgainstCredit(2999, 5000);
	EXPECT_EQ(a.credit_applied_cents, 2999);
	EXPECT_TRUE(a.settled);
	a = IssueAgainstCredit(-700, 100);  // a negative proration total becomes credit
	EXPECT_EQ(a.credit_applied_cents, 0);
	EXPECT_EQ(a.credit_added_cents, 700);
	EXPECT_TRUE(a.settled);
}

TEST(Ledger, RefundKeepsTheCustomerFromHoldingMoreThanTheyPaid)
{
	// Paid 2999 for a month; an upgrade's credit for the unused time (2902)
	// came back to the balance when its invoice was voided. The payment put
	// nothing into credit itself, but refunding all of it leaves 0 paid net:
	// the 2902 is taken back.
	RefundTakeBack back = TakeBackForRefund(2999, 0, {}, {}, 2902, 2999);
	EXPECT_EQ(back.credit_cents, 2902);
	EXPECT_TRUE(back.paid_off.empty() && back.credit_off.empty());
	// A partial refund of 97 leaves 2902 paid net: the credit stays.
	EXPECT_EQ(TakeBackForRefund(97, 0, {}, {}, 2902, 2999).credit_cents, 0);
	// Credit another payment made (5000 of 7999 paid) is not touched.
	EXPECT_EQ(TakeBackForRefund(2999, 0, {}, {}, 5000, 7999).credit_cents, 0);
	// The credit sits on an open invoice (it took it): off that invoice.
	back = TakeBackForRefund(2999, 0, {}, {{31, 0, 2999}}, 0, 2999);
	EXPECT_EQ(back.credit_cents, 0);
	ASSERT_EQ(back.credit_off.size(), 1u);
	EXPECT_EQ(back.credit_off[0].invoice_id, 31);
	EXPECT_EQ(back.credit_off[0].amount_cents, 2999);
	// Newest open invoice first, its payment money before its credit: 2500
	// refunded of 10000 paid, 9000 held on invoices 41 (1000 paid, 500
	// credit) and 40 (7500 paid). 7500 stays paid net, so 1500 of the 9000
	// leaves: 1000 and 500 off 41; 40 keeps its 7500.
	back = TakeBackForRefund(2500, 0, {}, {{41, 1000, 500}, {40, 7500, 0}}, 0, 10000);
	ASSERT_EQ(back.paid_off.size(), 1u);
	EXPECT_EQ(back.paid_off[0].invoice_id, 41);
	EXPECT_EQ(back.paid_off[0].amount_cents, 1000);
	ASSERT_EQ(back.credit_off.size(), 1u);
	EXPECT_EQ(back.credit_off[0].amount_cents, 500);
	// never more than the refund: 100 refunded while 9000 is held of 1000 paid
	// (data from before this rule) takes 100
	back = TakeBackForRefund(100, 0, {}, {{41, 9000, 0}}, 0, 1000);
	ASSERT_EQ(back.paid_off.size(), 1u);
	EXPECT_EQ(back.paid_off[0].amount_cents, 100);
}

TEST(Ledger, CreditForUnusedTimeWithinWhatWasPaid)
{
	// 2999 paid, 966 refunded: 2033 net; nothing held: at most 2033 of a 2999 credit.
	EXPECT_EQ(CreditForUnusedTime(2999, 0, 2033), 2033);
	EXPECT_EQ(CreditForUnusedTime(1000, 0, 2033), 1000);
	// already holding all they paid: nothing
	EXPECT_EQ(CreditForUnusedTime(1000, 2033, 2033), 0);
	EXPECT_EQ(CreditForUnusedTime(1000, 5000, 2033), 0);
	EXPECT_EQ(CreditForUnusedTime(0, 0, 2033), 0);
}

TEST(Ledger, RefundRestIsRecordedAgainstThePaidInvoices)
{
	// 2999 paid invoice 5 (paid); refunding 2999 with nothing held: all of it
	// is recorded against invoice 5, so an upgrade credits none of that period.
	RefundTakeBack back = TakeBackForRefund(2999, 0, {}, {}, 0, 2999, {{5, 2999, false}});
	ASSERT_EQ(back.of_paid.size(), 1u);
	EXPECT_EQ(back.of_paid[0].invoice_id, 5);
	EXPECT_EQ(back.of_paid[0].amount_cents, 2999);
	// after 2902 taken from credit, only 97 falls on the paid invoice
	back = TakeBackForRefund(2999, 0, {}, {}, 2902, 2999, {{5, 2999, false}});
	EXPECT_EQ(back.credit_cents, 2902);
	ASSERT_EQ(back.of_paid.size(), 1u);
	EXPECT_EQ(back.of_paid[0].amount_cents, 97);
}

// Attack finding 3.2: dana paid 8999 (2999 to invoice 5, paid; 6000 into
// credit), then was deleted from the users table: the 6000 left the id as
// credit_to_deleted_user, owed to her. Refunding the whole payment takes the
// 6000 off what is owed (no longer owed: paid back as this cash) and records
// only the 2999 against the invoice; every cent of the refund is accounted.
TEST(Refund, DeletedUsersCreditIsTakenFromWhatIsOwedToThem)
{
	using K = CreditMovement::Kind;
	auto add = [](int64_t cents, std::vector<std::pair<int64_t, int64_t>> owners) {
		return CreditMovement{K::kAdd, cents, std::move(owners), 0};
	};
	auto leave = [](int64_t cents) { return CreditMovement{K::kLeaveWithUser, cents, {}, 0}; };
	auto owed_refunded = [](int64_t cents, int64_t payment) {
		return CreditMovement{K::kOwedRefunded, cents, {}, payment};
	};
	PaymentCredit credit = CreditOf(1, {add(6000, {{1, 6000}}), leave(6000)});
	EXPECT_EQ(credit.unspent, 0);
	EXPECT_EQ(credit.owed, 6000);
	EXPECT_EQ(credit.owed_total, 6000);
	RefundTakeBack back = TakeBackForRefund(8999, credit.unspent, {}, {}, 0, 8999, {{5, 2999, false}}, credit.owed);
	EXPECT_EQ(back.credit_cents, 0);
	EXPECT_EQ(back.owed_credit_cents, 6000);
	ASSERT_EQ(back.of_paid.size(), 1u);
	EXPECT_EQ(back.of_paid[0].amount_cents, 2999);
	// a partial refund takes what is owed first, as it takes live credit first
	back = TakeBackForRefund(4000, 0, {}, {}, 0, 8999, {{5, 2999, false}}, 6000);
	EXPECT_EQ(back.owed_credit_cents, 4000);
	EXPECT_TRUE(back.of_paid.empty());
	// what a refund took of it is owed no more, and not taken twice
	credit = CreditOf(1, {add(6000, {{1, 6000}}), leave(6000), owed_refunded(4000, 1)});
	EXPECT_EQ(credit.owed, 2000);
	EXPECT_EQ(credit.owed_total, 2000);
	// the lots keep their owners: 500 nobody's and payment 2's 1000 left with
	// payment 1's 6000; refunding payment 2 takes only its own 1000
	std::vector<CreditMovement> three = {add(500, {}), add(6000, {{1, 6000}}), add(1000, {{2, 1000}}), leave(7500)};
	EXPECT_EQ(CreditOf(2, three).owed, 1000);
	EXPECT_EQ(CreditOf(1, three).owed, 6000);
	EXPECT_EQ(CreditOf(1, three).owed_total, 7500);
	three.push_back(owed_refunded(1000, 2));
	EXPECT_EQ(CreditOf(1, three).owed, 6000);
	EXPECT_EQ(CreditOf(2, three).owed, 0);
	// the id's next owner: new credit stays on the balance, not owed
	credit = CreditOf(3, {add(6000, {{1, 6000}}), leave(6000), add(700, {{3, 700}})});
	EXPECT_EQ(credit.unspent, 700);
	EXPECT_EQ(credit.owed, 0);
	// without a deletion nothing is owed
	EXPECT_EQ(TakeBackForRefund(8999, 6000, {}, {}, 6000, 8999, {{5, 2999, false}}).owed_credit_cents, 0);
}

TEST(Ledger, RefundTakesThePaymentsOwnMoneyFirst)
{
	// 1200 paid toward invoice 9 (open, 1200 held); 600 refunded: it leaves 9,
	// which keeps 600 for the 600 still paid net: nothing more is taken.
	RefundTakeBack back = TakeBackForRefund(600, 0, {{9, 1200, false}}, {{9, 1200, 0}}, 0, 1200);
	ASSERT_EQ(back.paid_off.size(), 1u);
	EXPECT_EQ(back.paid_off[0].amount_cents, 600);
	EXPECT_EQ(back.credit_cents, 0);
	// what the payment created as credit goes first, at most the balance
	back = TakeBackForRefund(600, 1000, {}, {}, 400, 1200);
	EXPECT_EQ(back.credit_cents, 400);
	// the payment's placement is capped by what the invoice still holds
	back = TakeBackForRefund(600, 0, {{9, 600, false}}, {{9, 200, 0}}, 0, 5000);
	ASSERT_EQ(back.paid_off.size(), 1u);
	EXPECT_EQ(back.paid_off[0].amount_cents, 200);
}

}  // namespace
}  // namespace billing

namespace billing {
namespace {

// M3: a repeat of an external id is the same payment or an error, never dropped.
TEST(ExternalId, SameAgainIsIdempotentAnythingElseIs22023)
{
	RecordedPayment failed{7, 10, 2999, "usd", false};
	EXPECT_NO_THROW(RequireSameAsRecorded("pi", failed, 10, 2999, "usd", false));
	auto state = [&](int64_t sub, int64_t amount, const char *currency, bool ok) {
		try {
			RequireSameAsRecorded("pi", failed, sub, amount, currency, ok);
		} catch (const Error &e) {
			return e.sqlstate();
		}
		return std::string("none");
	};
	EXPECT_EQ(state(10, 2999, "usd", true), "22023");   // a success after the failure
	EXPECT_EQ(state(10, 1000, "usd", false), "22023");  // another amount
	EXPECT_EQ(state(10, 2999, "eur", false), "22023");  // another currency
	EXPECT_EQ(state(11, 2999, "usd", false), "22023");  // another subscription
}

TEST(Ledger, RefundOffInvoices)
{
	// 2500 to refund; the payment has 600 on invoice 9 (newest), 0 left on 8
	// (refunded before), 3000 on 7: 600 leaves 9, 1900 leaves 7.
	std::vector<Allocation> placed = {{9, 600, false}, {8, 0, false}, {7, 3000, false}};
	std::vector<Allocation> out = RefundOffInvoices(2500, placed);
	ASSERT_EQ(out.size(), 2u);
	EXPECT_EQ(out[0].invoice_id, 9);
	EXPECT_EQ(out[0].amount_cents, 600);
	EXPECT_EQ(out[1].invoice_id, 7);
	EXPECT_EQ(out[1].amount_cents, 1900);
	// more than is placed: only what is there leaves (the rest was spent on paid invoices)
	out = RefundOffInvoices(10000, placed);
	ASSERT_EQ(out.size(), 2u);
	EXPECT_EQ(out[0].amount_cents + out[1].amount_cents, 3600);
	EXPECT_TRUE(RefundOffInvoices(0, placed).empty());
	EXPECT_TRUE(RefundOffInvoices(500, {}).empty());
}

}  // namespace
}  // namespace billing
