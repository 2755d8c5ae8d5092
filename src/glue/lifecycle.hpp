// What the lifecycle glue shares with other entry points (the Stripe path).
#pragma once

#include "core/subscription.hpp"
#include "glue/spi.hpp"

#include <string>

namespace billing::glue {

// One trial per tier per user, whatever the route: the core's TrialAvailable
// with every tier the user has trialed (any subscription with a trial_start).
bool TrialAvailableForTier(Spi &spi, const std::string &user_id, Tier tier);

}  // namespace billing::glue
