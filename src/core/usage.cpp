#include "core/usage.hpp"

#include "core/error.hpp"

#include "core/pure.hpp"

namespace billing {

Micros
UtcDayStart(Micros t)
{
	Micros r = t % kMicrosPerDay;
	return r < 0 ? t - r - kMicrosPerDay : t - r;
}

UsageSpan
SplitUsageSpan(Micros from, Micros to)
{
	if (to <= from)
		throw InvalidParameter("report period must have a start before its end");
	UsageSpan span{};
	Micros from_day = UtcDayStart(from);
	Micros to_day = UtcDayStart(to);
	if (from_day == to_day) {
		// inside one day, and not all of it (to is not a midnight)
		span.whole_from = span.whole_to = from_day;
		span.head = PartialDay{from, to, from_day};
		return span;
	}
	span.whole_from = from_day;
	if (from != from_day) {
		span.whole_from = from_day + kMicrosPerDay;
		span.head = PartialDay{from, span.whole_from, from_day};
	}
	span.whole_to = to_day;
	if (to != to_day)
		span.tail = PartialDay{to_day, to, to_day};
	return span;
}

bool
CountedPerDayOnly(std::string_view metric)
{
	return metric == "rooms_created" || metric == "participants_joined";
}

void
RequireExactPartialDays(const UsageSpan &span, std::string_view metric, bool counted_per_day,
						std::optional<Micros> records_dropped_before, std::string_view retention)
{
	const char *hint = "Pass bounds at UTC midnight: whole days are answered from the daily totals.";
	for (const auto &part : {span.head, span.tail}) {
		if (!part)
			continue;
		if (counted_per_day)
			throw InvalidParameter("usage of \"" + std::string(metric) + "\" is counted per UTC day only",
								   "The quota triggers count rooms_created and participants_joined per UTC day, "
								   "without the time of day, so a part of " + FormatDate(part->day) +
									   " cannot be answered exactly.",
								   hint);
		if (records_dropped_before && part->day < *records_dropped_before)
			throw InvalidParameter(
				"usage records of " + FormatDate(part->day) + " were dropped by retention",
				"Retention (setting usage_record_retention" +
					(retention.empty() ? std::string() : " = '" + std::string(retention) + "'") +
					") dropped the usage records of the days before " + FormatDate(*records_dropped_before) +
					"; only their daily totals are kept, so a part of such a day cannot be answered exactly.",
				hint);
	}
}

}  // namespace billing
