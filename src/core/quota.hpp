// Quota decisions (SPEC §2): what a plan's limits allow, and the error a
// refused insert raises. Pure: the trigger glue supplies the numbers.
#pragma once

#include "core/error.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace billing {

// The limit named `quota` in a plan's limits JSON object. A missing key or
// JSON null means unlimited (nullopt); anything but a non-negative integer
// is a 22023 error naming the plan.
std::optional<int64_t> ParseLimit(std::string_view limits_json, std::string_view quota, std::string_view plan_code);

// True when one more row fits: unlimited, or fewer than the limit in use.
bool AllowsOneMore(const std::optional<int64_t> &limit, int64_t used) noexcept;

// The QB001 error for a refused row, in PostgreSQL's message style.
Error QuotaExceeded(std::string_view quota, std::string_view plan_name, int64_t limit, int64_t used,
					std::string_view owner);

}  // namespace billing
