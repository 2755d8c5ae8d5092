#include "core/stripe_signature.hpp"

#include <gtest/gtest.h>

#include <cctype>

namespace billing::stripe {
namespace {

// Known vectors, computed independently of this code with OpenSSL's CLI:
//   printf '%s' '1700000000.{"id":"evt_test_1","object":"event"}' | openssl dgst -sha256 -hmac 'whsec_test_secret'
//   printf '%s' '1700000000.{"id":"evt_test_1","object":"event"}' | openssl dgst -sha256 -hmac 'whsec_other_secret'
//   printf '%s' 'The quick brown fox jumps over the lazy dog' | openssl dgst -sha256 -hmac 'key'   (also RFC/Wikipedia)
//   printf '%s' '' | openssl dgst -sha256 -hmac 'whsec_test_secret'
constexpr const char *kPayload = R"({"id":"evt_test_1","object":"event"})";
constexpr const char *kSecret = "whsec_test_secret";
constexpr const char *kOtherSecret = "whsec_other_secret";
constexpr const char *kSig = "29ab30b7065c11b28e53ac114fac5d6c492ed811a12d11ed2c2aad5bb4cf9809";
constexpr const char *kOtherSig = "1848b433638c828278f4d9118e47b6723a73ec3fbf1b79ae83db26ffd331d3ba";
constexpr int64_t kT = 1700000000;
constexpr Micros kAt = kT * kMicrosPerSecond;
constexpr Micros kFiveMinutes = 300 * kMicrosPerSecond;

std::string
Header(const std::string &items)
{
	return items;
}

TEST(StripeHmac, MatchesOpenSslCliVectors)
{
	EXPECT_EQ(HmacSha256Hex("key", "The quick brown fox jumps over the lazy dog"),
			  "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
	EXPECT_EQ(HmacSha256Hex(kSecret, std::string("1700000000.") + kPayload), kSig);
	EXPECT_EQ(HmacSha256Hex(kOtherSecret, std::string("1700000000.") + kPayload), kOtherSig);
	EXPECT_EQ(HmacSha256Hex(kSecret, ""), "c6c175a074d482e2b94a0f8c5619f3abd861a511ec3ea7603b906811fd3d9d30");
}

TEST(StripeSignatureHeader, ParsesTimestampAndEveryV1)
{
	auto h = ParseSignatureHeader("t=1700000000,v1=aa,v1=bb,v0=cc");
	ASSERT_TRUE(h);
	EXPECT_EQ(h->timestamp, kT);
	ASSERT_EQ(h->v1.size(), 2u);
	EXPECT_EQ(h->v1[0], "aa");
	EXPECT_EQ(h->v1[1], "bb");
}

TEST(StripeSignatureHeader, ToleratesSpacesAndUnknownSchemes)
{
	auto h = ParseSignatureHeader("  t = 1700000000 , v2=zz,  v1=aa ,x=1,");
	ASSERT_TRUE(h);
	EXPECT_EQ(h->timestamp, kT);
	ASSERT_EQ(h->v1.size(), 1u);
	EXPECT_EQ(h->v1[0], "aa");
}

TEST(StripeSignatureHeader, RefusesMalformedHeaders)
{
	for (const char *bad : {"", "garbage", "v1=aa", "t=,v1=aa", "t=abc,v1=aa", "t=-5,v1=aa", "t=1.5,v1=aa",
							"t=1,t=2,v1=aa", "t=99999999999999999999999,v1=aa", "t=1,v1"})
		EXPECT_FALSE(ParseSignatureHeader(bad)) << bad;
}

TEST(StripeVerify, AcceptsAValidSignature)
{
	EXPECT_TRUE(Verify(kPayload, Header(std::string("t=1700000000,v1=") + kSig), kSecret, kFiveMinutes, kAt));
	EXPECT_EQ(VerifySignature(kPayload, std::string("t=1700000000,v1=") + kSig, {kSecret}, kFiveMinutes, kAt),
			  VerifyOutcome::kVerified);
}

TEST(StripeVerify, AnyOfSeveralV1SignaturesMayMatch)
{
	std::string header = std::string("t=1700000000,v1=") + std::string(64, '0') + ",v1=" + kSig + ",v0=" + kOtherSig;
	EXPECT_TRUE(Verify(kPayload, header, kSecret, kFiveMinutes, kAt));
}

TEST(StripeVerify, RotatedSecretsAnyMayMatch)
{
	std::string header = std::string("t=1700000000,v1=") + kSig;
	EXPECT_EQ(VerifySignature(kPayload, header, {kOtherSecret, kSecret}, kFiveMinutes, kAt), VerifyOutcome::kVerified);
	EXPECT_EQ(VerifySignature(kPayload, header, {kOtherSecret}, kFiveMinutes, kAt), VerifyOutcome::kNoMatch);
	EXPECT_EQ(VerifySignature(kPayload, header, {}, kFiveMinutes, kAt), VerifyOutcome::kNoSecret);
	EXPECT_EQ(VerifySignature(kPayload, header, {""}, kFiveMinutes, kAt), VerifyOutcome::kNoSecret);
}

TEST(StripeVerify, RefusesTamperedPayloadWrongSecretAndUpperCaseHex)
{
	std::string header = std::string("t=1700000000,v1=") + kSig;
	EXPECT_FALSE(Verify(std::string(kPayload) + " ", header, kSecret, kFiveMinutes, kAt));
	EXPECT_FALSE(Verify(kPayload, header, kOtherSecret, kFiveMinutes, kAt));
	// the timestamp is part of the signed message
	EXPECT_FALSE(Verify(kPayload, std::string("t=1700000001,v1=") + kSig, kSecret, kFiveMinutes, kAt));
	// hex is compared as sent, like Stripe's own libraries: upper case does not match
	std::string upper(kSig);
	for (auto &c : upper)
		c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
	EXPECT_FALSE(Verify(kPayload, "t=1700000000,v1=" + upper, kSecret, kFiveMinutes, kAt));
	// a truncated signature never matches
	EXPECT_FALSE(Verify(kPayload, std::string("t=1700000000,v1=") + std::string(kSig).substr(0, 63), kSecret,
						kFiveMinutes, kAt));
}

TEST(StripeVerify, TimestampOutsideToleranceFailsInBothDirections)
{
	std::string header = std::string("t=1700000000,v1=") + kSig;
	// exactly at the edge is accepted
	EXPECT_TRUE(Verify(kPayload, header, kSecret, kFiveMinutes, kAt + kFiveMinutes));
	EXPECT_TRUE(Verify(kPayload, header, kSecret, kFiveMinutes, kAt - kFiveMinutes));
	// one microsecond past it is not: too old, and from the future
	EXPECT_EQ(VerifySignature(kPayload, header, {kSecret}, kFiveMinutes, kAt + kFiveMinutes + 1),
			  VerifyOutcome::kOutsideTolerance);
	EXPECT_EQ(VerifySignature(kPayload, header, {kSecret}, kFiveMinutes, kAt - kFiveMinutes - 1),
			  VerifyOutcome::kOutsideTolerance);
	EXPECT_FALSE(Verify(kPayload, header, kSecret, -1, kAt));
}

TEST(StripeVerify, MalformedHeaderIsFalseNotAnException)
{
	EXPECT_EQ(VerifySignature(kPayload, "nonsense", {kSecret}, kFiveMinutes, kAt), VerifyOutcome::kMalformedHeader);
	EXPECT_EQ(VerifySignature(kPayload, "t=1700000000", {kSecret}, kFiveMinutes, kAt), VerifyOutcome::kNoV1Signature);
	EXPECT_EQ(VerifySignature(kPayload, std::string("t=1700000000,v0=") + kSig, {kSecret}, kFiveMinutes, kAt),
			  VerifyOutcome::kNoV1Signature);
	EXPECT_FALSE(Verify(kPayload, "t=9223372036854775807,v1=00", kSecret, kFiveMinutes, kAt));
}

TEST(StripeVerify, DescriptionsNeverContainTheSecret)
{
	for (auto outcome : {VerifyOutcome::kMalformedHeader, VerifyOutcome::kNoV1Signature, VerifyOutcome::kNoSecret,
						 VerifyOutcome::kOutsideTolerance, VerifyOutcome::kNoMatch}) {
		std::string text = Describe(outcome);
		EXPECT_FALSE(text.empty());
		EXPECT_EQ(text.find("whsec"), std::string::npos);
	}
}

TEST(StripeSecrets, SplitsTrimsAndDropsEmptyItems)
{
	auto secrets = SplitSecrets(" whsec_a , whsec_b,,");
	ASSERT_EQ(secrets.size(), 2u);
	EXPECT_EQ(secrets[0], "whsec_a");
	EXPECT_EQ(secrets[1], "whsec_b");
	EXPECT_TRUE(SplitSecrets("").empty());
}

}  // namespace
}  // namespace billing::stripe
