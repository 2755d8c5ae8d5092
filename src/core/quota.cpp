#include "core/quota.hpp"

#include "core/pure.hpp"

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>

namespace billing {

std::optional<int64_t>
ParseLimit(std::string_view limits_json, std::string_view quota, std::string_view plan_code)
{
	nlohmann::json limits = nlohmann::json::parse(limits_json, nullptr, false);
	if (limits.is_discarded() || !limits.is_object())
		throw InvalidParameter(plan_code.empty() ? std::string("plan limits are not a JSON object")
												 : "limits of plan \"" + std::string(plan_code) + "\" are not a JSON object");
	auto it = limits.find(std::string(quota));
	if (it == limits.end() || it->is_null())
		return std::nullopt;
	if (it->is_number_unsigned())
		return static_cast<int64_t>(std::min<uint64_t>(it->get<uint64_t>(), INT64_MAX));
	if (it->is_number_integer() && it->get<int64_t>() >= 0)
		return it->get<int64_t>();
	std::string of_plan = plan_code.empty() ? "" : " of plan \"" + std::string(plan_code) + "\"";
	throw InvalidParameter("limit \"" + std::string(quota) + "\"" + of_plan + " is invalid",
						   "A limit is a non-negative integer, or null for unlimited; found " + it->dump() + ".",
						   "Fix the plan with UPDATE billing.subscription_plans SET limits = ...");
}

bool
AllowsOneMore(const std::optional<int64_t> &limit, int64_t used) noexcept
{
	return !limit || used < *limit;
}

Error
QuotaExceeded(std::string_view quota, std::string_view plan_name, int64_t limit, int64_t used, std::string_view owner)
{
	// singular and plural, as errmsg_plural would choose them ("allows 1 room")
	bool one = limit == 1;
	std::string what = quota == "participants_per_room" ? (one ? "participant in this room" : "participants in this room")
					   : quota == "rooms"               ? (one ? "room" : "rooms")
														: std::string(quota);
	std::string holder = quota == "participants_per_room" ? "the room has" : "user \"" + std::string(owner) + "\" has";
	return Error(sqlstate::kQuotaExceeded, "quota \"" + std::string(quota) + "\" exceeded",
				 "Plan \"" + std::string(plan_name) + "\" allows " + std::to_string(limit) + " " + what + "; " + holder +
					 " " + std::to_string(used) + ".",
				 "Upgrade the plan to add more, or remove some first.");
}

}  // namespace billing
