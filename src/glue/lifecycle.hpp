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

// Whether this database's billing is the library's version (0.3.0's
// objects are there): cached per backend, looked up again after any change
// to pg_proc (src/glue/quota_trigger.cpp).
bool HasCurrentSchema();

// Serialises every change of one user's subscriptions and credit until the
// transaction ends (a row lock on billing.user_locks, no lock-table entry).
void LockUser(Spi &spi, const std::string &user_id);

// LockUser for a refund (billing.refund, Stripe's charge.refunded): when the
// refund may reopen an upgrade invoice (the user has a subscription a plan
// change ended), also SHARE on billing.maintenance_runs, before any row the
// refund locks after, the order a maintenance run takes its locks in.
void LockUserForRefund(Spi &spi, const std::string &user_id);

// What a refund of `amount` from `payment_id` takes back besides the cash
// (credit, open invoices' money), recorded on refund `refund_id`. With the
// user's lock and the payment's row lock held, after the refund row is stored.
void TakeBackForRefundOf(Spi &spi, int64_t payment_id, int64_t refund_id, const std::string &user_id,
						 const std::string &currency, int64_t amount, Micros at);

// Before a Stripe subscription takes over (adopts or ends) the user's current
// one: what time made due before `at` is applied first (a trial end, a
// renewal, dunning), as maintenance would have (review X2: the result must
// not depend on whether maintenance ran before Stripe's event). Takes the
// user's lock; false when the user has no current subscription (none can
// start while the lock is held: the caller need not look for one again).
bool CatchUpBeforeStripe(Spi &spi, const std::string &user_id, Micros at);

// A Stripe subscription replaces the user's current one at `at`: the core's
// ReplaceByStripe (the plan change's end rule), written as every outcome.
// Returns when the replaced one ended and whether it was free (nullopt: the
// user had none).
struct StripeReplaced {
	Micros ended_at = 0;
	bool free = false;
};
std::optional<StripeReplaced> EndForStripeSubscription(Spi &spi, const std::string &user_id, Micros at);

// A user deleted from the attached users table: their current subscription
// is canceled now (or at its latest change, if later), a plain Free one
// closed, no Free one after it; a Stripe-managed one is left to Stripe's
// event.
void CancelForDeletedUser(Spi &spi, const std::string &user_id, Micros now);

// A user id renamed in the attached users table: the core's refusal (23503)
// while billing holds anything live for it, empty when it may be renamed.
// Takes the id's lock; reads with the newest snapshot. Run as billing's owner.
std::optional<Error> UserRenameRefusalFor(const std::string &user_id, const std::string &table,
										  const std::string &column);

// An id renamed away while billing held nothing live for it: its plain Free
// subscription is closed as a deleted user's is. Run as billing's owner.
void CloseForRenamedUser(const std::string &user_id, Micros now);

// What billing holds for a user id, read with the Spi's snapshot.
HeldForUser ReadHeldForUser(Spi &spi, const std::string &user_id);

// A TRUNCATE of the attached users table `table` (or one of its partitions;
// `detaching`: a DETACH PARTITION of it): the core's refusal (55000) while
// billing holds anything live for some id, empty when it may go on. Run as
// billing's owner.
std::optional<Error> UsersTruncateRefusalFor(const std::string &table, bool detaching = false);
// A DROP of the users table or of a partition of it (`table`): the core's
// UsersDropRefusal by the same measure. Run as billing's owner.
std::optional<Error> UsersDropRefusalFor(const std::string &table);
// The loop both share, with the core rule that names the statement.
std::optional<Error> UsersRemovalRefusalFor(const std::string &table,
											std::optional<Error> (*rule)(const HeldForUser &held, const std::string &table));

// Stripe adopts billing's own subscription: its open invoices become void,
// what was paid toward them the customer's credit.
void VoidForStripeAdoption(Spi &spi, const std::string &user_id, int64_t subscription_id, Micros at);

}  // namespace billing::glue
