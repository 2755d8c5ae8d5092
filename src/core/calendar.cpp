#include "core/calendar.hpp"

#include "core/error.hpp"
#include "core/pure.hpp"

#include <chrono>
#include <cstdio>

namespace billing {
namespace {

using namespace std::chrono;

static_assert(sys_days{year{1} / January / 1}.time_since_epoch().count() * kMicrosPerDay == kFirstTime);
static_assert(sys_days{year{10000} / January / 1}.time_since_epoch().count() * kMicrosPerDay == kEndTime);

struct Split {
	year_month_day date;
	Micros time_of_day;
};

Split
SplitTime(Micros t)
{
	Micros days = t / kMicrosPerDay;
	Micros rest = t % kMicrosPerDay;
	if (rest < 0) {  // floor division for times before 1970
		rest += kMicrosPerDay;
		days -= 1;
	}
	return {year_month_day{sys_days{std::chrono::days{days}}}, rest};
}

Micros
Join(year_month_day date, Micros time_of_day)
{
	return static_cast<Micros>(sys_days{date}.time_since_epoch().count()) * kMicrosPerDay + time_of_day;
}

// The date `months` months after `date`, its day clamped to the month's end.
year_month_day
AddMonthsClamped(year_month_day date, int64_t months)
{
	year_month target = year_month{date.year(), date.month()} + std::chrono::months{months};
	unsigned last = static_cast<unsigned>(year_month_day_last{target.year(), month_day_last{target.month()}}.day());
	unsigned day = std::min(static_cast<unsigned>(date.day()), last);
	return year_month_day{target.year(), target.month(), std::chrono::day{day}};
}

int64_t
MonthsPer(Interval interval)
{
	return interval == Interval::kYearly ? 12 : 1;
}

}  // namespace

Interval
ParseInterval(std::string_view text)
{
	if (text == "monthly")
		return Interval::kMonthly;
	if (text == "yearly")
		return Interval::kYearly;
	if (text == "lifetime")
		return Interval::kLifetime;
	throw InvalidParameter("unknown billing interval \"" + std::string(text) + "\"",
						   "Intervals are monthly, yearly and lifetime.");
}

const char *
ToString(Interval interval)
{
	switch (interval) {
	case Interval::kMonthly:
		return "monthly";
	case Interval::kYearly:
		return "yearly";
	case Interval::kLifetime:
		return "lifetime";
	}
	return "unknown";
}

Micros
AddPeriods(Micros anchor, Interval interval, int64_t n)
{
	if (interval == Interval::kLifetime)
		throw InvalidParameter("a lifetime plan has no billing periods");
	if (n < 0)
		throw InvalidParameter("period count must not be negative");
	Split s = SplitTime(anchor);
	return Join(AddMonthsClamped(s.date, n * MonthsPer(interval)), s.time_of_day);
}

std::optional<Micros>
NextPeriodEnd(Micros anchor, Interval interval, Micros after)
{
	if (interval == Interval::kLifetime)
		return std::nullopt;
	if (after < anchor)
		return AddPeriods(anchor, interval, 1);
	// Estimate the period index from the month difference, then step to the
	// first boundary strictly after `after` (at most a couple of steps).
	year_month_day a = SplitTime(anchor).date, b = SplitTime(after).date;
	int64_t months = (static_cast<int>(b.year()) - static_cast<int>(a.year())) * 12 +
					 (static_cast<int64_t>(static_cast<unsigned>(b.month())) - static_cast<unsigned>(a.month()));
	int64_t k = std::max<int64_t>(1, months / MonthsPer(interval) - 1);
	while (AddPeriods(anchor, interval, k) <= after)
		k++;
	while (k > 1 && AddPeriods(anchor, interval, k - 1) > after)
		k--;
	return AddPeriods(anchor, interval, k);
}

Micros
AddDays(Micros t, int64_t days)
{
	return t + days * kMicrosPerDay;
}

std::string
FormatTimestamp(Micros t)
{
	Split s = SplitTime(t);
	int64_t seconds = s.time_of_day / kMicrosPerSecond;
	char out[48];
	std::snprintf(out, sizeof out, "%04d-%02u-%02u %02lld:%02lld:%02lld+00", static_cast<int>(s.date.year()),
				  static_cast<unsigned>(s.date.month()), static_cast<unsigned>(s.date.day()),
				  static_cast<long long>(seconds / 3600), static_cast<long long>(seconds / 60 % 60),
				  static_cast<long long>(seconds % 60));
	return out;
}

std::string
FormatDate(Micros t)
{
	return FormatTimestamp(t).substr(0, 10);
}

}  // namespace billing
