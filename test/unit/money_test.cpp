#include "core/error.hpp"
#include "core/money.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace billing {
namespace {

TEST(Currency, AcceptsIsoCodesInEitherCase)
{
	EXPECT_EQ(NormalizeCurrency("USD"), "usd");
	EXPECT_EQ(NormalizeCurrency("eur"), "eur");
	EXPECT_EQ(NormalizeCurrency("JpY"), "jpy");
}

TEST(Currency, RefusesUnknownCodesWith22023)
{
	for (const char *bad : {"", "us", "usdd", "xyz", "US$", "123"}) {
		try {
			NormalizeCurrency(bad);
			FAIL() << "accepted " << bad;
		} catch (const Error &e) {
			EXPECT_EQ(e.sqlstate(), "22023") << bad;
		}
	}
}

TEST(Rounding, HalvesGoAwayFromZero)
{
	EXPECT_EQ(DivideRoundHalfAwayFromZero(5, 2), 3);    // 2.5 -> 3
	EXPECT_EQ(DivideRoundHalfAwayFromZero(-5, 2), -3);  // -2.5 -> -3
	EXPECT_EQ(DivideRoundHalfAwayFromZero(7, 3), 2);    // 2.33 -> 2
	EXPECT_EQ(DivideRoundHalfAwayFromZero(8, 3), 3);    // 2.67 -> 3
	EXPECT_EQ(DivideRoundHalfAwayFromZero(-8, 3), -3);
	EXPECT_EQ(DivideRoundHalfAwayFromZero(0, 7), 0);
	EXPECT_EQ(DivideRoundHalfAwayFromZero(14, 4), 4);   // 3.5 -> 4
}

TEST(Rounding, ScaleAmountDoesNotOverflowOnLargeProducts)
{
	// 10^12 cents over a year of seconds: the product needs more than 64 bits.
	int64_t year = 365LL * 86400;
	EXPECT_EQ(ScaleAmount(1'000'000'000'000LL, year / 2, year), 500'000'000'000LL);
	EXPECT_EQ(ScaleAmount(std::numeric_limits<int64_t>::max(), 1, 1), std::numeric_limits<int64_t>::max());
}

TEST(Rounding, RefusesNonPositiveDenominator)
{
	EXPECT_THROW(DivideRoundHalfAwayFromZero(1, 0), Error);
	EXPECT_THROW(DivideRoundHalfAwayFromZero(1, -5), Error);
}

TEST(Money, CheckedAddRefusesOverflow)
{
	EXPECT_EQ(CheckedAdd(2, 3), 5);
	EXPECT_THROW(CheckedAdd(std::numeric_limits<int64_t>::max(), 1), Error);
}

}  // namespace
}  // namespace billing
