// billing.usage(): which days of a period are whole UTC days (daily totals)
// and which are partial edge days (raw records), and when a partial day
// cannot be answered exactly.
#include "core/usage.hpp"
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

TEST(UsageSpan, MidnightBoundsAreWholeDaysOnly)
{
	UsageSpan s = SplitUsageSpan(At(2026, 1, 5), At(2026, 1, 7));
	EXPECT_EQ(s, (UsageSpan{At(2026, 1, 5), At(2026, 1, 7), std::nullopt, std::nullopt}));
	s = SplitUsageSpan(At(2026, 1, 5), At(2026, 1, 6));
	EXPECT_EQ(s, (UsageSpan{At(2026, 1, 5), At(2026, 1, 6), std::nullopt, std::nullopt}));
}

TEST(UsageSpan, InsideOneDayIsOnePartialDay)
{
	UsageSpan s = SplitUsageSpan(At(2026, 1, 5, 1), At(2026, 1, 5, 23));
	EXPECT_EQ(s.whole_from, s.whole_to);
	ASSERT_TRUE(s.head);
	EXPECT_EQ(*s.head, (PartialDay{At(2026, 1, 5, 1), At(2026, 1, 5, 23), At(2026, 1, 5)}));
	EXPECT_FALSE(s.tail);
	// from at midnight, to inside the same day: still a partial day
	s = SplitUsageSpan(At(2026, 1, 5), At(2026, 1, 5, 12));
	ASSERT_TRUE(s.head);
	EXPECT_EQ(*s.head, (PartialDay{At(2026, 1, 5), At(2026, 1, 5, 12), At(2026, 1, 5)}));
	EXPECT_FALSE(s.tail);
	EXPECT_EQ(s.whole_from, s.whole_to);
}

TEST(UsageSpan, PartialEdgesAroundWholeDays)
{
	// 11:00 to next midnight: a partial head, no whole day
	UsageSpan s = SplitUsageSpan(At(2026, 1, 5, 11), At(2026, 1, 6));
	EXPECT_EQ(s.whole_from, At(2026, 1, 6));
	EXPECT_EQ(s.whole_to, At(2026, 1, 6));
	ASSERT_TRUE(s.head);
	EXPECT_EQ(*s.head, (PartialDay{At(2026, 1, 5, 11), At(2026, 1, 6), At(2026, 1, 5)}));
	EXPECT_FALSE(s.tail);
	// 5th 11:00 to 8th 06:00: head (5th), whole 6th and 7th, tail (8th)
	s = SplitUsageSpan(At(2026, 1, 5, 11), At(2026, 1, 8, 6));
	EXPECT_EQ(s.whole_from, At(2026, 1, 6));
	EXPECT_EQ(s.whole_to, At(2026, 1, 8));
	EXPECT_EQ(*s.head, (PartialDay{At(2026, 1, 5, 11), At(2026, 1, 6), At(2026, 1, 5)}));
	ASSERT_TRUE(s.tail);
	EXPECT_EQ(*s.tail, (PartialDay{At(2026, 1, 8), At(2026, 1, 8, 6), At(2026, 1, 8)}));
	// midnight to a time of the next day: whole first day, partial tail
	s = SplitUsageSpan(At(2026, 1, 5), At(2026, 1, 6, 0, 1));
	EXPECT_EQ(s.whole_from, At(2026, 1, 5));
	EXPECT_EQ(s.whole_to, At(2026, 1, 6));
	EXPECT_FALSE(s.head);
	EXPECT_EQ(*s.tail, (PartialDay{At(2026, 1, 6), At(2026, 1, 6, 0, 1), At(2026, 1, 6)}));
	// one microsecond on each side of midnight: two partial days
	s = SplitUsageSpan(At(2026, 1, 5) + kMicrosPerDay - 1, At(2026, 1, 6) + 1);
	EXPECT_EQ(s.whole_from, At(2026, 1, 6));
	EXPECT_EQ(s.whole_to, At(2026, 1, 6));
	EXPECT_EQ(s.head->to - s.head->from, 1);
	EXPECT_EQ(s.tail->to - s.tail->from, 1);
}

TEST(UsageSpan, DaysBeforeTheEpochAndAtTheLimits)
{
	UsageSpan s = SplitUsageSpan(At(1969, 12, 31, 6), At(1970, 1, 1, 6));
	EXPECT_EQ(s.head->day, At(1969, 12, 31));
	EXPECT_EQ(s.whole_from, At(1970, 1, 1));
	EXPECT_EQ(s.tail->day, At(1970, 1, 1));
	s = SplitUsageSpan(kFirstTime, kEndTime - 1);
	EXPECT_EQ(s.whole_from, kFirstTime);
	EXPECT_EQ(s.whole_to, At(9999, 12, 31));
	EXPECT_FALSE(s.head);
	EXPECT_EQ(s.tail->day, At(9999, 12, 31));
	EXPECT_EQ(UtcDayStart(-1), -kMicrosPerDay);
	EXPECT_EQ(UtcDayStart(0), 0);
}

TEST(UsageSpan, EmptyOrReversedPeriodIsRefused)
{
	EXPECT_THROW(SplitUsageSpan(At(2026, 1, 5), At(2026, 1, 5)), Error);
	EXPECT_THROW(SplitUsageSpan(At(2026, 1, 6), At(2026, 1, 5)), Error);
}

std::string
RefusalOf(const UsageSpan &span, bool per_day, std::optional<Micros> dropped_before)
{
	try {
		RequireExactPartialDays(span, "api_calls", per_day, dropped_before, "13 months");
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), "22023");
		EXPECT_NE(e.hint().find("UTC midnight"), std::string::npos);
		return std::string(e.what()) + " | " + e.detail();
	}
	return "";
}

TEST(UsageSpan, PerDayMetricsTakeWholeDaysOnly)
{
	EXPECT_TRUE(CountedPerDayOnly("rooms_created"));
	EXPECT_TRUE(CountedPerDayOnly("participants_joined"));
	EXPECT_FALSE(CountedPerDayOnly("api_calls"));
	EXPECT_EQ(RefusalOf(SplitUsageSpan(At(2026, 1, 5), At(2026, 1, 9)), true, std::nullopt), "");
	EXPECT_NE(RefusalOf(SplitUsageSpan(At(2026, 1, 5, 1), At(2026, 1, 9)), true, std::nullopt), "");
	EXPECT_NE(RefusalOf(SplitUsageSpan(At(2026, 1, 5), At(2026, 1, 9, 1)), true, std::nullopt), "");
	EXPECT_EQ(RefusalOf(SplitUsageSpan(At(2026, 1, 5, 1), At(2026, 1, 9)), false, std::nullopt), "");
}

TEST(UsageSpan, PartialDaysWhoseRecordsRetentionDroppedAreRefused)
{
	Micros dropped_before = At(2026, 2, 1);
	// whole days before the horizon: the daily totals answer them
	EXPECT_EQ(RefusalOf(SplitUsageSpan(At(2026, 1, 5), At(2026, 3, 1)), false, dropped_before), "");
	// a partial day before it: refused, the retention named
	std::string refusal = RefusalOf(SplitUsageSpan(At(2026, 1, 31, 12), At(2026, 3, 1)), false, dropped_before);
	EXPECT_NE(refusal.find("2026-01-31"), std::string::npos) << refusal;
	EXPECT_NE(refusal.find("usage_record_retention = '13 months'"), std::string::npos) << refusal;
	EXPECT_NE(refusal.find("before 2026-02-01"), std::string::npos) << refusal;
	EXPECT_NE(RefusalOf(SplitUsageSpan(At(2026, 1, 5), At(2026, 1, 31, 12)), false, dropped_before), "");
	// partial days from the horizon on: answered from the records
	EXPECT_EQ(RefusalOf(SplitUsageSpan(At(2026, 2, 1, 12), At(2026, 2, 3, 1)), false, dropped_before), "");
	EXPECT_EQ(RefusalOf(SplitUsageSpan(At(2026, 1, 1), At(2026, 2, 1, 1)), false, dropped_before), "");
}

}  // namespace
}  // namespace billing
