// Money is an integer count of minor units (cents) in one ISO 4217 currency.
// No floating point anywhere on a money path.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace billing {

// Returns the canonical (lower-case) code, or throws 22023 for anything that is
// not an active ISO 4217 currency code.
std::string NormalizeCurrency(std::string_view code);
bool IsKnownCurrency(std::string_view code);

// round(numerator / denominator) with halves rounded away from zero, exact for
// any int64 inputs (the product is formed in 128 bits). denominator > 0.
int64_t DivideRoundHalfAwayFromZero(__int128 numerator, int64_t denominator);

// amount * part / whole, rounded half away from zero: proration's one formula.
int64_t ScaleAmount(int64_t amount, int64_t part, int64_t whole);

// Adds two amounts, throwing 22003 instead of overflowing.
int64_t CheckedAdd(int64_t a, int64_t b);

}  // namespace billing
