// The billing calendar in UTC: anchored months, leap years, formatting.
#include "core/calendar.hpp"
#include "core/error.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace billing {
namespace {

using namespace std::chrono;

Micros
At(int y, unsigned m, unsigned d, int h = 0, int min = 0)
{
	sys_days day = year_month_day{year{y}, month{m}, std::chrono::day{d}};
	return duration_cast<microseconds>((day + hours{h} + minutes{min}).time_since_epoch()).count();
}

struct Case {
	Micros anchor;
	Interval interval;
	int64_t n;
	Micros want;
};

TEST(Calendar, AnchoredPeriodsTable)
{
	const Case cases[] = {
		// monthly from 31 Jan keeps the 31st where it exists
		{At(2026, 1, 31, 9), Interval::kMonthly, 1, At(2026, 2, 28, 9)},
		{At(2026, 1, 31, 9), Interval::kMonthly, 2, At(2026, 3, 31, 9)},
		{At(2026, 1, 31, 9), Interval::kMonthly, 3, At(2026, 4, 30, 9)},
		{At(2028, 1, 31, 9), Interval::kMonthly, 1, At(2028, 2, 29, 9)},  // leap year
		{At(2026, 1, 30), Interval::kMonthly, 1, At(2026, 2, 28)},
		{At(2026, 1, 29), Interval::kMonthly, 1, At(2026, 2, 28)},
		{At(2026, 1, 28), Interval::kMonthly, 1, At(2026, 2, 28)},
		{At(2026, 12, 15, 23, 59), Interval::kMonthly, 1, At(2027, 1, 15, 23, 59)},  // year roll
		{At(2026, 8, 31), Interval::kMonthly, 1, At(2026, 9, 30)},
		{At(2026, 8, 31), Interval::kMonthly, 12, At(2027, 8, 31)},
		{At(2026, 5, 1), Interval::kMonthly, 0, At(2026, 5, 1)},
		// yearly from 29 Feb: 28 Feb in common years, 29 Feb again in leap years
		{At(2024, 2, 29), Interval::kYearly, 1, At(2025, 2, 28)},
		{At(2024, 2, 29), Interval::kYearly, 4, At(2028, 2, 29)},
		{At(2096, 2, 29), Interval::kYearly, 4, At(2100, 2, 28)},  // 2100 is not leap
		{At(1996, 2, 29), Interval::kYearly, 4, At(2000, 2, 29)},  // 2000 is
		{At(2026, 3, 15, 12), Interval::kYearly, 1, At(2027, 3, 15, 12)},
	};
	for (const Case &c : cases)
		EXPECT_EQ(AddPeriods(c.anchor, c.interval, c.n), c.want)
			<< FormatTimestamp(c.anchor) << " + " << c.n << " " << ToString(c.interval) << " = "
			<< FormatTimestamp(AddPeriods(c.anchor, c.interval, c.n)) << ", want " << FormatTimestamp(c.want);
}

TEST(Calendar, NextPeriodEndIsStrictlyAfterAndNeverDrifts)
{
	Micros anchor = At(2026, 1, 31, 9);
	EXPECT_EQ(NextPeriodEnd(anchor, Interval::kMonthly, anchor), At(2026, 2, 28, 9));
	// exactly on a boundary: the next one
	EXPECT_EQ(NextPeriodEnd(anchor, Interval::kMonthly, At(2026, 2, 28, 9)), At(2026, 3, 31, 9));
	EXPECT_EQ(NextPeriodEnd(anchor, Interval::kMonthly, At(2026, 3, 1)), At(2026, 3, 31, 9));
	// years later, still on the 31st where the month has one
	EXPECT_EQ(NextPeriodEnd(anchor, Interval::kMonthly, At(2031, 7, 2)), At(2031, 7, 31, 9));
	EXPECT_EQ(NextPeriodEnd(anchor, Interval::kMonthly, At(2031, 8, 1)), At(2031, 8, 31, 9));
	EXPECT_EQ(NextPeriodEnd(At(2024, 2, 29), Interval::kYearly, At(2026, 1, 1)), At(2026, 2, 28));
	EXPECT_FALSE(NextPeriodEnd(anchor, Interval::kLifetime, anchor));
	// before the anchor: the first boundary
	EXPECT_EQ(NextPeriodEnd(anchor, Interval::kMonthly, At(2025, 1, 1)), At(2026, 2, 28, 9));
}

TEST(Calendar, ChainedRenewalsFollowTheAnchor)
{
	Micros anchor = At(2026, 1, 31);
	Micros end = anchor;
	const Micros want[] = {At(2026, 2, 28), At(2026, 3, 31), At(2026, 4, 30), At(2026, 5, 31), At(2026, 6, 30)};
	for (Micros w : want) {
		end = *NextPeriodEnd(anchor, Interval::kMonthly, end);
		EXPECT_EQ(end, w) << FormatTimestamp(end);
	}
}

TEST(Calendar, RefusesLifetimeAndNegativeCounts)
{
	EXPECT_THROW(AddPeriods(0, Interval::kLifetime, 1), Error);
	EXPECT_THROW(AddPeriods(0, Interval::kMonthly, -1), Error);
	EXPECT_THROW(ParseInterval("weekly"), Error);
	EXPECT_EQ(ParseInterval("yearly"), Interval::kYearly);
}

TEST(Calendar, FormatsUtcIncludingBefore1970)
{
	EXPECT_EQ(FormatTimestamp(At(2026, 1, 31, 9, 5)), "2026-01-31 09:05:00+00");
	EXPECT_EQ(FormatDate(At(2026, 1, 31, 23, 59)), "2026-01-31");
	EXPECT_EQ(FormatTimestamp(At(1969, 12, 31, 23)), "1969-12-31 23:00:00+00");
	EXPECT_EQ(AddDays(At(2026, 2, 27), 2), At(2026, 3, 1));
}

}  // namespace
}  // namespace billing
