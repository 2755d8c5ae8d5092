#include "core/error.hpp"
#include "core/quota.hpp"

#include <gtest/gtest.h>

namespace billing {
namespace {

TEST(ParseLimit, MissingOrNullIsUnlimited)
{
	EXPECT_FALSE(ParseLimit("{}", "rooms", "p"));
	EXPECT_FALSE(ParseLimit(R"({"rooms": null})", "rooms", "p"));
	EXPECT_FALSE(ParseLimit(R"({"participants_per_room": 5})", "rooms", "p"));
}

TEST(ParseLimit, ReadsNonNegativeIntegers)
{
	EXPECT_EQ(ParseLimit(R"({"rooms": 3})", "rooms", "p"), 3);
	EXPECT_EQ(ParseLimit(R"({"rooms": 0})", "rooms", "p"), 0);
	EXPECT_EQ(ParseLimit(R"({"rooms": 9223372036854775807})", "rooms", "p"), INT64_MAX);
}

TEST(ParseLimit, RefusesAnythingElseWith22023)
{
	for (const char *bad : {R"({"rooms": -1})", R"({"rooms": 2.5})", R"({"rooms": "3"})", R"({"rooms": true})",
							R"({"rooms": [3]})", R"([1])", "not json"}) {
		try {
			ParseLimit(bad, "rooms", "broken");
			ADD_FAILURE() << "accepted " << bad;
		} catch (const Error &e) {
			EXPECT_EQ(e.sqlstate(), "22023") << bad;
			EXPECT_NE(std::string(e.what()).find("broken"), std::string::npos) << e.what();
		}
	}
}

TEST(AllowsOneMore, ExactlyUpToTheLimit)
{
	EXPECT_TRUE(AllowsOneMore(std::nullopt, 1'000'000));
	EXPECT_TRUE(AllowsOneMore(3, 2));
	EXPECT_FALSE(AllowsOneMore(3, 3));
	EXPECT_FALSE(AllowsOneMore(3, 7));  // over quota after a downgrade
	EXPECT_FALSE(AllowsOneMore(0, 0));
}

TEST(QuotaExceeded, NamesQuotaPlanLimitAndCount)
{
	Error e = QuotaExceeded("rooms", "Free", 3, 3, "42");
	EXPECT_EQ(e.sqlstate(), "QB001");
	EXPECT_STREQ(e.what(), "quota \"rooms\" exceeded");
	EXPECT_EQ(e.detail(), "Plan \"Free\" allows 3 rooms; user \"42\" has 3.");
	EXPECT_EQ(e.hint(), "Upgrade the plan to add more, or remove some first.");
	Error p = QuotaExceeded("participants_per_room", "Pro (monthly)", 500, 500, "42");
	EXPECT_EQ(p.detail(), "Plan \"Pro (monthly)\" allows 500 participants in this room; the room has 500.");
}

TEST(QuotaExceeded, OneIsSingular)
{
	// README walk W9: "allows 1 rooms" read wrong; errmsg_plural's choice
	EXPECT_EQ(QuotaExceeded("rooms", "Free", 1, 1, "42").detail(), "Plan \"Free\" allows 1 room; user \"42\" has 1.");
	EXPECT_EQ(QuotaExceeded("participants_per_room", "Free", 1, 1, "42").detail(),
			  "Plan \"Free\" allows 1 participant in this room; the room has 1.");
	EXPECT_EQ(QuotaExceeded("rooms", "Free", 0, 0, "42").detail(), "Plan \"Free\" allows 0 rooms; user \"42\" has 0.");
}

}  // namespace
}  // namespace billing
