#include "core/proration.hpp"

#include "core/error.hpp"
#include "core/money.hpp"
#include "core/pure.hpp"

namespace billing {

int64_t
UnusedTimeCredit(int64_t paid_cents, Interval interval, Micros period_start, Micros period_end, Micros at)
{
	// Whole seconds, truncated: proration is by the second (SPEC §3).
	int64_t period_seconds = (period_end - period_start) / kMicrosPerSecond;
	int64_t unused_seconds = (period_end - at) / kMicrosPerSecond;
	if (interval == Interval::kLifetime || period_seconds <= 0)
		return 0;
	return ScaleAmount(paid_cents, unused_seconds, period_seconds);
}

ProrationResult
Prorate(const ProrationInput &in)
{
	if (in.old_price_cents < 0 || in.new_price_cents < 0)
		throw InvalidParameter("prices must not be negative");
	if (in.period_end <= in.period_start)
		throw InvalidParameter("the current period must end after it starts");
	if (in.at < in.period_start || in.at > in.period_end)
		throw InvalidParameter("the change must fall within the current period",
							   "The period runs from " + FormatTimestamp(in.period_start) + " to " +
								   FormatTimestamp(in.period_end) + "; the change is at " + FormatTimestamp(in.at) + ".");
	// Whole seconds, truncated: proration is by the second (SPEC §3).
	int64_t period_seconds = (in.period_end - in.period_start) / kMicrosPerSecond;
	int64_t unused_seconds = (in.period_end - in.at) / kMicrosPerSecond;
	if (period_seconds <= 0)
		throw InvalidParameter("the current period must last at least a second");

	ProrationResult r;
	// A lifetime plan has nothing unused to credit.
	int64_t credit = UnusedTimeCredit(in.old_price_cents, in.old_interval, in.period_start, in.period_end, in.at);
	r.lines.push_back({"Unused time on " + in.old_plan_name + " from " + FormatDate(in.at) + " to " +
						   FormatDate(in.period_end),
					   -credit});
	int64_t charge = 0;
	if (in.old_interval == in.new_interval && in.new_interval != Interval::kLifetime) {
		r.period_kept = true;
		r.new_period_start = in.period_start;
		r.new_period_end = in.period_end;
		r.new_anchor = in.period_start;
		charge = ScaleAmount(in.new_price_cents, unused_seconds, period_seconds);
		r.lines.push_back({"Remaining time on " + in.new_plan_name + " from " + FormatDate(in.at) + " to " +
							   FormatDate(in.period_end),
						   charge});
	} else {
		r.period_kept = false;
		r.new_period_start = in.at;
		r.new_anchor = in.at;
		if (in.new_interval != Interval::kLifetime)
			r.new_period_end = AddPeriods(in.at, in.new_interval, 1);
		charge = in.new_price_cents;
		std::string text = in.new_plan_name + " from " + FormatDate(in.at);
		if (r.new_period_end)
			text += " to " + FormatDate(*r.new_period_end);
		r.lines.push_back({text, charge});
	}
	r.amount_due_cents = CheckedAdd(charge, -credit);
	return r;
}

}  // namespace billing
