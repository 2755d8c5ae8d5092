#include "core/stripe_signature.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <charconv>
#include <limits>

#include "core/pure.hpp"

namespace billing::stripe {
namespace {

std::string_view
Trim(std::string_view s)
{
	while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
		s.remove_prefix(1);
	while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
		s.remove_suffix(1);
	return s;
}

std::optional<int64_t>
ParseSeconds(std::string_view text)
{
	if (text.empty())
		return std::nullopt;
	for (char c : text)
		if (c < '0' || c > '9')
			return std::nullopt;
	int64_t value = 0;
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
	if (ec != std::errc() || end != text.data() + text.size())
		return std::nullopt;
	return value;
}

}  // namespace

std::optional<SignatureHeader>
ParseSignatureHeader(std::string_view header)
{
	SignatureHeader parsed;
	bool have_timestamp = false;
	size_t pos = 0;
	while (pos <= header.size()) {
		size_t comma = header.find(',', pos);
		if (comma == std::string_view::npos)
			comma = header.size();
		std::string_view item = Trim(header.substr(pos, comma - pos));
		pos = comma + 1;
		if (item.empty())
			continue;
		size_t eq = item.find('=');
		if (eq == std::string_view::npos)
			return std::nullopt;
		std::string_view key = Trim(item.substr(0, eq));
		std::string_view value = Trim(item.substr(eq + 1));
		if (key == "t") {
			auto seconds = ParseSeconds(value);
			if (!seconds || have_timestamp)
				return std::nullopt;
			parsed.timestamp = *seconds;
			have_timestamp = true;
		} else if (key == "v1") {
			if (!value.empty())
				parsed.v1.emplace_back(value);
		}
		// any other scheme (v0, ...) is ignored
	}
	if (!have_timestamp)
		return std::nullopt;
	return parsed;
}

std::string
HmacSha256Hex(std::string_view key, std::string_view message)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int length = 0;
	if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
			 reinterpret_cast<const unsigned char *>(message.data()), message.size(), digest, &length) == nullptr)
		return {};
	static constexpr char kHex[] = "0123456789abcdef";
	std::string hex;
	hex.reserve(length * 2);
	for (unsigned int i = 0; i < length; i++) {
		hex.push_back(kHex[digest[i] >> 4]);
		hex.push_back(kHex[digest[i] & 0x0f]);
	}
	return hex;
}

VerifyOutcome
VerifySignature(std::string_view payload, std::string_view header, const std::vector<std::string> &secrets,
				Micros tolerance, Micros at)
{
	auto parsed = ParseSignatureHeader(header);
	if (!parsed)
		return VerifyOutcome::kMalformedHeader;
	if (parsed->v1.empty())
		return VerifyOutcome::kNoV1Signature;
	bool any_secret = false;
	for (const auto &s : secrets)
		any_secret = any_secret || !s.empty();
	if (!any_secret)
		return VerifyOutcome::kNoSecret;

	// |at - t| <= tolerance, computed without overflow for any header value.
	constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / kMicrosPerSecond;
	if (parsed->timestamp > kMaxSeconds || tolerance < 0)
		return VerifyOutcome::kOutsideTolerance;
	__int128 difference = static_cast<__int128>(at) - static_cast<__int128>(parsed->timestamp) * kMicrosPerSecond;
	if (difference < 0)
		difference = -difference;
	if (difference > tolerance)
		return VerifyOutcome::kOutsideTolerance;

	std::string message = std::to_string(parsed->timestamp);
	message.push_back('.');
	message.append(payload);
	bool matched = false;
	for (const auto &secret : secrets) {
		if (secret.empty())
			continue;
		std::string expected = HmacSha256Hex(secret, message);
		for (const auto &given : parsed->v1) {
			// The length of a SHA-256 hex digest is public; only equal-length
			// values are compared, in constant time, and every pair is tried.
			if (given.size() == expected.size() && !expected.empty() &&
				CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0)
				matched = true;
		}
	}
	return matched ? VerifyOutcome::kVerified : VerifyOutcome::kNoMatch;
}

std::string
Describe(VerifyOutcome outcome)
{
	switch (outcome) {
	case VerifyOutcome::kVerified:
		return "The signature verifies.";
	case VerifyOutcome::kMalformedHeader:
		return "The Stripe-Signature header is malformed: it needs a t= timestamp in whole seconds and key=value items.";
	case VerifyOutcome::kNoV1Signature:
		return "The Stripe-Signature header has no v1 signature.";
	case VerifyOutcome::kNoSecret:
		return "No webhook signing secret is configured.";
	case VerifyOutcome::kOutsideTolerance:
		return "The signature timestamp is outside the tolerance.";
	case VerifyOutcome::kNoMatch:
		return "No v1 signature matches the payload under any configured secret.";
	}
	return "The signature does not verify.";
}

std::vector<std::string>
SplitSecrets(std::string_view setting)
{
	std::vector<std::string> secrets;
	size_t pos = 0;
	while (pos <= setting.size()) {
		size_t comma = setting.find(',', pos);
		if (comma == std::string_view::npos)
			comma = setting.size();
		std::string_view item = Trim(setting.substr(pos, comma - pos));
		if (!item.empty())
			secrets.emplace_back(item);
		pos = comma + 1;
	}
	return secrets;
}

}  // namespace billing::stripe
