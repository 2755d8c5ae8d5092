// Proration by the second, integer arithmetic, half away from zero (SPEC §3).
#include "core/error.hpp"
#include "core/proration.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace billing {
namespace {

using namespace std::chrono;

Micros
At(int y, unsigned m, unsigned d, int h = 0)
{
	sys_days day = year_month_day{year{y}, month{m}, std::chrono::day{d}};
	return duration_cast<microseconds>((day + hours{h}).time_since_epoch()).count();
}

ProrationInput
Input(int64_t old_price, Interval old_i, Micros start, Micros end, int64_t new_price, Interval new_i, Micros at)
{
	return {"Old", old_price, old_i, start, end, "New", new_price, new_i, at};
}

TEST(Proration, SameIntervalKeepsThePeriod)
{
	// January 2026 has 31 days = 2,678,400 s. Upgrade at 16 Jan 00:00: 16 days
	// (1,382,400 s) unused. credit = 2999 * 1382400 / 2678400 = 1547.87 -> 1548;
	// charge = 9999 * 1382400 / 2678400 = 5160.77 -> 5161; due = 3613.
	auto r = Prorate(Input(2999, Interval::kMonthly, At(2026, 1, 1), At(2026, 2, 1), 9999, Interval::kMonthly,
						   At(2026, 1, 16)));
	ASSERT_EQ(r.lines.size(), 2u);
	EXPECT_EQ(r.lines[0].amount_cents, -1548);
	EXPECT_EQ(r.lines[1].amount_cents, 5161);
	EXPECT_EQ(r.amount_due_cents, 3613);
	EXPECT_TRUE(r.period_kept);
	EXPECT_EQ(r.new_period_end, At(2026, 2, 1));
}

TEST(Proration, HalfCentsRoundAwayFromZero)
{
	// 28-day February, change at the exact middle: 2999 / 2 = 1499.5 -> 1500.
	auto r = Prorate(Input(2999, Interval::kMonthly, At(2026, 2, 1), At(2026, 3, 1), 1001, Interval::kMonthly,
						   At(2026, 2, 15)));
	EXPECT_EQ(r.lines[0].amount_cents, -1500);
	EXPECT_EQ(r.lines[1].amount_cents, 501);  // 500.5 -> 501
	EXPECT_EQ(r.amount_due_cents, -999);      // credit exceeds charge: negative, the caller's business
}

TEST(Proration, NewIntervalStartsANewPeriodAtFullPrice)
{
	// monthly -> yearly on 16 Mar 12:00 of a 31-day March: exactly half unused,
	// credit 2999 / 2 = 1499.5 -> 1500; charge the full 28800; due 27300.
	auto r = Prorate(Input(2999, Interval::kMonthly, At(2026, 3, 1), At(2026, 4, 1), 28800, Interval::kYearly,
						   At(2026, 3, 16, 12)));
	EXPECT_EQ(r.lines[0].amount_cents, -1500);
	EXPECT_EQ(r.lines[1].amount_cents, 28800);
	EXPECT_EQ(r.amount_due_cents, 27300);
	EXPECT_FALSE(r.period_kept);
	EXPECT_EQ(r.new_period_start, At(2026, 3, 16, 12));
	EXPECT_EQ(r.new_period_end, At(2027, 3, 16, 12));
}

TEST(Proration, WholeSecondsAreTruncated)
{
	// 999,999 µs before the end is 0 whole seconds unused: no credit.
	Micros end = At(2026, 2, 1);
	auto r = Prorate(Input(2999, Interval::kMonthly, At(2026, 1, 1), end, 2999, Interval::kMonthly, end - 999'999));
	EXPECT_EQ(r.lines[0].amount_cents, 0);
	EXPECT_EQ(r.amount_due_cents, 0);
}

TEST(Proration, LargePricesDoNotOverflow)
{
	auto r = Prorate(Input(900'000'000'000'000LL, Interval::kYearly, At(2026, 1, 1), At(2027, 1, 1),
						   900'000'000'000'000LL, Interval::kYearly, At(2026, 7, 2, 12)));
	EXPECT_EQ(r.amount_due_cents, 0);
	EXPECT_EQ(r.lines[0].amount_cents, -450'000'000'000'000LL);  // exactly half of a 365-day year
}

TEST(Proration, RefusesTimesOutsideThePeriodAndNegativePrices)
{
	EXPECT_THROW(Prorate(Input(1, Interval::kMonthly, At(2026, 1, 1), At(2026, 2, 1), 1, Interval::kMonthly,
							   At(2026, 2, 2))),
				 Error);
	EXPECT_THROW(Prorate(Input(-1, Interval::kMonthly, At(2026, 1, 1), At(2026, 2, 1), 1, Interval::kMonthly,
							   At(2026, 1, 2))),
				 Error);
	EXPECT_THROW(Prorate(Input(1, Interval::kMonthly, At(2026, 2, 1), At(2026, 2, 1), 1, Interval::kMonthly,
							   At(2026, 2, 1))),
				 Error);
}

}  // namespace
}  // namespace billing
