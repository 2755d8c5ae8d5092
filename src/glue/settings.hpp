// Process-wide values of the billing.* settings (defined in module.cpp).
#pragma once

#include <cstdint>
#include <optional>

namespace billing::glue {
extern bool enforce_quotas;

// Declares when the subscription changes this transaction writes next take
// effect (billing.change_at, transaction-local; microseconds since 1970 UTC),
// for the history trigger; nullopt resets it, so the trigger falls back to
// the rows' own times. The one writer of the setting (billing._set_change_at
// calls it too): a direct call, no statement.
void SetChangeAt(std::optional<int64_t> unix_micros);
}
