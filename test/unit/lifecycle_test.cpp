// The state machine: every (status, action) pair is either in the table or
// refused with QB010 naming both.
#include "core/error.hpp"
#include "core/lifecycle.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>

namespace billing {
namespace {

const Status kStatuses[] = {Status::kTrialing, Status::kActive,		Status::kPastDue, Status::kCanceled,
							Status::kExpired,  Status::kIncomplete, Status::kPaused};
const Action kActions[] = {Action::kPaymentSucceeded, Action::kPaymentFailed, Action::kCancelAtPeriodEnd,
						   Action::kCancelNow,		  Action::kReactivate,	  Action::kUpgrade,
						   Action::kScheduleDowngrade, Action::kPause,		  Action::kResume,
						   Action::kTrialEnd,		  Action::kPeriodEnd,	  Action::kGraceEnd,
						   Action::kIncompleteTimeout, Action::kInvoiceOverdue};

TEST(StateMachine, EveryPairIsAllowedOrRefusedWithQB010)
{
	int allowed = 0, refused = 0;
	for (Status from : kStatuses) {
		for (Action action : kActions) {
			const Transition *row = nullptr;
			for (const Transition &t : TransitionTable())
				if (t.from == from && t.action == action)
					row = &t;
			if (row != nullptr) {
				EXPECT_EQ(&Transit(from, action), row);
				allowed++;
				continue;
			}
			try {
				Transit(from, action);
				ADD_FAILURE() << ToString(from) << " + " << ToString(action) << " was allowed";
			} catch (const Error &e) {
				EXPECT_EQ(e.sqlstate(), "QB010");
				std::string message = e.what();
				EXPECT_NE(message.find(std::string("\"") + ToString(action) + "\""), std::string::npos) << message;
				EXPECT_NE(message.find(std::string("\"") + ToString(from) + "\""), std::string::npos) << message;
				EXPECT_FALSE(e.hint().empty());
				refused++;
			}
		}
	}
	EXPECT_EQ(allowed + refused, 7 * 14);
	EXPECT_EQ(allowed, static_cast<int>(TransitionTable().size()));
}

TEST(StateMachine, NoDuplicateRows)
{
	std::set<std::pair<Status, Action>> seen;
	for (const Transition &t : TransitionTable())
		EXPECT_TRUE(seen.insert({t.from, t.action}).second) << ToString(t.from) << " + " << ToString(t.action);
}

TEST(StateMachine, SpecRules)
{
	EXPECT_EQ(Transit(Status::kTrialing, Action::kPaymentSucceeded).to, Status::kActive);
	EXPECT_EQ(Transit(Status::kActive, Action::kPaymentFailed).to, Status::kPastDue);
	EXPECT_EQ(Transit(Status::kPastDue, Action::kGraceEnd).to, Status::kExpired);
	EXPECT_EQ(Transit(Status::kIncomplete, Action::kIncompleteTimeout).to, Status::kExpired);
	EXPECT_EQ(Transit(Status::kCanceled, Action::kReactivate).to, Status::kActive);
	EXPECT_EQ(Transit(Status::kActive, Action::kCancelAtPeriodEnd).to, Status::kCanceled);
	EXPECT_EQ(Transit(Status::kPaused, Action::kResume).to, Status::kActive);
	// expired is terminal
	for (const Transition &t : TransitionTable())
		EXPECT_NE(t.from, Status::kExpired);
}

TEST(StateMachine, StatusNamesRoundTrip)
{
	for (Status s : kStatuses)
		EXPECT_EQ(ParseStatus(ToString(s)), s);
	EXPECT_THROW(ParseStatus("deleted"), Error);
	EXPECT_TRUE(GrantsPlan(Status::kPastDue));
	EXPECT_FALSE(GrantsPlan(Status::kPaused));
	EXPECT_FALSE(GrantsPlan(Status::kIncomplete));
}

}  // namespace
}  // namespace billing
