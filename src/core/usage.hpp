// Which parts of a usage period are whole UTC days and which are partial
// days (SPEC §4: billing.usage() is exact for any bounds). Whole days are
// answered from the daily totals (rollups plus the tail not rolled up yet);
// a partial day at either edge from the raw usage records of that day.
#pragma once

#include "core/calendar.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace billing {

// A piece [from, to) of one UTC day that is not the whole day.
struct PartialDay {
	Micros from;
	Micros to;
	Micros day;  // the UTC midnight that starts its day
	bool operator==(const PartialDay &) const = default;
};

// [from, to) split up: the whole UTC days [whole_from, whole_to) (both UTC
// midnights; empty when equal), and the partial days at the edges: `head`
// (from's day when from is not a midnight) and `tail` (to's day when to is
// not a midnight). A period inside one day is a single `head`.
struct UsageSpan {
	Micros whole_from;
	Micros whole_to;
	std::optional<PartialDay> head;
	std::optional<PartialDay> tail;
	bool operator==(const UsageSpan &) const = default;
};

// The UTC midnight at or before t.
Micros UtcDayStart(Micros t);

// Splits [from, to) (from < to, both within kFirstTime..kEndTime; the glue
// checks). Throws 22023 when to <= from.
UsageSpan SplitUsageSpan(Micros from, Micros to);

// The metrics the quota triggers count per UTC day in their counter rows
// (rooms_created, participants_joined): they have no time of day.
bool CountedPerDayOnly(std::string_view metric);

// Refuses (22023, with a DETAIL and a HINT to pass UTC-midnight bounds) a span
// with a partial day that cannot be answered exactly:
// - counted_per_day: the metric is counted per UTC day only (the quota
//   triggers' rooms_created and participants_joined carry no time of day);
// - records_dropped_before: retention (setting text `retention`) dropped
//   the raw records of the days before this UTC midnight, keeping only
//   their daily totals.
void RequireExactPartialDays(const UsageSpan &span, std::string_view metric, bool counted_per_day,
							 std::optional<Micros> records_dropped_before, std::string_view retention);

}  // namespace billing
