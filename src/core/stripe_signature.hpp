// Stripe webhook signatures (the Stripe-Signature header scheme).
//
// Header: comma-separated key=value items, e.g. "t=1700000000,v1=<hex>,v0=<hex>".
// Items may be surrounded by spaces; unknown schemes (v0, v2, ...) are
// ignored; several v1 signatures may be present (Stripe sends one per active
// secret while a secret is being rolled). The signed message is
// `t + "." + payload`, the signature is the lower-case hex HMAC-SHA256 of it
// keyed with the endpoint secret (the whole "whsec_..." string).
#pragma once

#include "core/calendar.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace billing::stripe {

struct SignatureHeader {
	int64_t timestamp = 0;            // Unix seconds, from t=
	std::vector<std::string> v1;      // every v1= value, as given
};

// nullopt when the header is malformed: no t=, a t= that is not a whole
// number of seconds, a second t=, or an item without '='.
std::optional<SignatureHeader> ParseSignatureHeader(std::string_view header);

// Lower-case hex HMAC-SHA256(key, message).
std::string HmacSha256Hex(std::string_view key, std::string_view message);

enum class VerifyOutcome {
	kVerified,
	kMalformedHeader,
	kNoV1Signature,
	kNoSecret,
	kOutsideTolerance,
	kNoMatch,
};

// Checks the header against every secret; compares signatures in constant
// time. A timestamp more than `tolerance` away from `at` (in either direction)
// fails even when a signature matches. Never throws on bad input.
VerifyOutcome VerifySignature(std::string_view payload, std::string_view header,
							  const std::vector<std::string> &secrets, Micros tolerance, Micros at);

inline bool
Verify(std::string_view payload, std::string_view header, const std::string &secret, Micros tolerance, Micros at)
{
	return VerifySignature(payload, header, {secret}, tolerance, at) == VerifyOutcome::kVerified;
}

// A DETAIL sentence for a failed outcome; it never contains a secret.
std::string Describe(VerifyOutcome outcome);

// Splits the stripe_webhook_secret setting ("whsec_a,whsec_b") into secrets,
// trimming spaces and dropping empty items.
std::vector<std::string> SplitSecrets(std::string_view setting);

}  // namespace billing::stripe
