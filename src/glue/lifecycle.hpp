// What the lifecycle glue shares with other entry points (the Stripe path).
#pragma once

#include "core/subscription.hpp"
#include "glue/spi.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace billing::glue {

// One trial per tier per user, whatever the route: the core's TrialAvailable
// with every tier the user has trialed (any subscription with a trial_start).
bool TrialAvailableForTier(Spi &spi, const std::string &user_id, Tier tier);

// The plan that applies to a user at a time (empty: no plan, not even Free)
// and until when it may hold unchanged (empty: until something is written).
struct Entitlement {
	std::optional<int64_t> plan_id;
	std::optional<Micros> changes_at;
};
Entitlement EntitlementAt(Spi &spi, const std::string &user_id, Micros at);

}  // namespace billing::glue
