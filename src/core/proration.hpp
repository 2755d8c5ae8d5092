// Proration of a plan change (SPEC §3), integer arithmetic only.
//
// credit = old price x unused seconds / period seconds
// same interval:  charge = new price x remaining seconds / period seconds, the period is kept
// new interval:   charge = new full price, a new period starts at `at`
// amount due now = charge - credit. Each division rounds half away from zero.
#pragma once

#include "core/calendar.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace billing {

struct ProrationInput {
	std::string old_plan_name;
	int64_t old_price_cents;
	Interval old_interval;
	Micros period_start;
	Micros period_end;
	std::string new_plan_name;
	int64_t new_price_cents;
	Interval new_interval;
	Micros at;  // period_start <= at <= period_end
};

struct InvoiceLine {
	std::string description;
	int64_t amount_cents;
};

struct ProrationResult {
	std::vector<InvoiceLine> lines;  // the credit line is negative
	int64_t amount_due_cents;        // sum of lines
	bool period_kept;
	Micros new_period_start;
	std::optional<Micros> new_period_end;  // nullopt for lifetime
	Micros new_anchor;
};

// Throws 22023 if `at` lies outside the period or a price is negative.
ProrationResult Prorate(const ProrationInput &input);

// The credit line's amount (positive): `paid_cents` x unused seconds / period
// seconds, the one formula Prorate uses; 0 for a lifetime plan.
int64_t UnusedTimeCredit(int64_t paid_cents, Interval interval, Micros period_start, Micros period_end, Micros at);

}  // namespace billing
