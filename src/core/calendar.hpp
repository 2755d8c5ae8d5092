// Billing calendar in UTC. Time is microseconds since 1970-01-01 00:00 UTC;
// the glue converts from timestamptz, the core never reads a clock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace billing {

using Micros = int64_t;
inline constexpr Micros kMicrosPerSecond = 1'000'000;
inline constexpr Micros kMicrosPerDay = 86'400 * kMicrosPerSecond;

// The times billing accepts: from 0001-01-01 00:00 UTC (kFirstTime) up to,
// not including, 10000-01-01 00:00 UTC (kEndTime), i.e. the years 0001 to
// 9999 that FormatTimestamp writes with four digits. Outside them
// std::chrono::year (at most +/-32767) and the conversion to PostgreSQL's
// epoch (int64 overflow near year 294247) stop being exact, so the glue
// refuses such times where they enter (TimeArgRequired).
inline constexpr Micros kFirstTime = -62'135'596'800 * kMicrosPerSecond;
inline constexpr Micros kEndTime = 253'402'300'800 * kMicrosPerSecond;

enum class Interval { kMonthly, kYearly, kLifetime };

// "monthly" / "yearly" / "lifetime"; anything else throws 22023.
Interval ParseInterval(std::string_view text);
const char *ToString(Interval interval);

// The boundary n periods after anchor (n >= 0). Monthly periods keep the
// anchor's day of month, clamped to the month's last day (31 Jan -> 28/29 Feb
// -> 31 Mar); yearly ones keep month and day (29 Feb -> 28 Feb in common
// years); the time of day is kept. Lifetime has no boundary: throws.
Micros AddPeriods(Micros anchor, Interval interval, int64_t n);

// The first period boundary strictly after `after`, for periods anchored at
// `anchor` (anchor <= after). nullopt for lifetime.
std::optional<Micros> NextPeriodEnd(Micros anchor, Interval interval, Micros after);

Micros AddDays(Micros t, int64_t days);

// "2026-01-31 09:00:00+00" (UTC, whole seconds) for messages and invoice lines.
std::string FormatTimestamp(Micros t);
// "2026-01-31" (UTC date).
std::string FormatDate(Micros t);

}  // namespace billing
