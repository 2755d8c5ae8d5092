// The quota trigger's fast path: one counter row of billing.quota_counters
// found through its primary key, changed in place through heapam.
//
// The executor's UPDATE (through SPI) spent more time starting up and
// shutting down (plan revalidation, executor state, CHECK expressions read
// back from their stored form, after-row RI trigger queue) than changing the
// row. Here an insert touches only what makes the limit exact: the counter
// row's newest version, locked by the update, with the same concurrency
// rules as UPDATE: READ COMMITTED waits for a concurrent writer and decides
// again on the version it committed; REPEATABLE READ and SERIALIZABLE fail
// with 40001.
#pragma once

#include "glue/postgres.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace billing::glue {

// What an insert may take without the slow path: a counter whose cached
// limit and usage day are still current.
struct CounterIncrement {
	DateADT today;        // usage counted on this day (UTC)
	TimestampTz at;       // the cached limit must hold after this instant
	bool enforce;         // false: count, but do not refuse
	int64_t usage;        // added to usage_pending (0 for moves between keys)
};

enum class CounterOutcome {
	kUpdated,      // the counter was changed
	kSlowPath,     // no counter yet, stale cache, a new day, the limit reached, or an index
				   // the fast path cannot keep: the slow path decides
	kNoCounter,    // the slow path decides, and this snapshot saw no counter for the key
};

class Spi;

// The lock protocol's first step for a counter's owner: the owner's
// billing.user_locks row FOR SHARE, as SELECT ... FOR SHARE takes it, but
// through the table's primary key without a statement. kMissing: no row in
// a new snapshot (the caller inserts it); kUseSql: the table is not as
// billing made it (the caller runs the SELECT).
enum class UserLockOutcome { kLocked, kMissing, kUseSql };
UserLockOutcome ShareLockUser(const std::string &user);

// The lock protocol's second step: the owner's plan row FOR SHARE (an edit
// of its limits waits for the fill, or the fill for the edit), and what the
// fill reads of it (limits as text, code, name), without a statement. False
// when the caller must run the SELECT ... FOR SHARE (the table not as billing
// made it, the row missing or changed later by this transaction).
bool ShareLockPlan(int64_t plan_id, std::string *limits, std::string *code, std::string *name);

// Any write to users' subscriptions makes the cached limits of those users'
// counters stale: each user's billing.user_locks row is written first, in
// user order (sorted by the column's collation; waiting for a fill in
// progress; a write, not only a lock, so that a REPEATABLE READ fill that did
// not see it fails), then every counter of those users is cleared with the
// newest snapshot. Run as the counters' owner (billing._quota_invalidate_users,
// SECURITY DEFINER, and the lifecycle calls that defer it). in_trigger: called
// by a trigger (the counters' after-row events join the firing statement's).
// lock_row_written: the caller's transaction has already written the (one)
// owner's lock row while holding it (a lifecycle call, LockUserForChange):
// only the counters are cleared.
void InvalidateUsersQuota(Spi &spi, const std::vector<std::optional<std::string>> &owners, bool in_trigger,
						  bool lock_row_written = false);

// Called once from _PG_init: forget the cached table when it changes.
void RegisterCounterInvalidation();

// The owner of billing.quota_counters (the slow path runs its SQL as them).
Oid CountersOwner();

// Adds one to the counter (attachment_id, key) if the cached limit allows it.
// Raises PostgreSQL errors (as PgError) for lock waits that end in deadlock or
// serialization failure, like any UPDATE.
CounterOutcome IncrementCounter(int32_t attachment_id, const char *key, const CounterIncrement &increment);

// A new counter that counts its first row: the slow path's insert of a
// counter for a key whose owner is known (CreateCounted).
struct NewCounter {
	int32_t attachment_id;
	const char *key;
	const char *owner;
	DateADT usage_day;
	int64_t usage;                // usage_pending
	std::optional<int64_t> cap;   // NULL: unlimited
	TimestampTz cap_valid_until;
};
enum class CreateOutcome {
	kCreated,  // inserted
	kExists,   // another transaction's (or this one's) counter has the key: nothing written
	kUseSql,   // the table is not as billing made it: the caller runs the INSERT
};
// Inserts the counter as "INSERT ... ON CONFLICT DO NOTHING" would, without
// the statement. Raises 40001 in REPEATABLE READ for a conflicting counter the
// transaction's snapshot does not see, as ON CONFLICT DO NOTHING does.
CreateOutcome CreateCounter(const NewCounter &counter);

// Whether the counter (attachment_id, key) exists for a new statement of
// this transaction (true when that cannot be told without SQL): lets a new
// room that takes no other room's key skip the statement that would move one.
bool CounterExists(int32_t attachment_id, const std::string &key);

// Takes one from the counter (never below zero). kSlowPath when the key has
// no counter, or the table's indexes need the slow path's UPDATE.
CounterOutcome DecrementCounter(int32_t attachment_id, const char *key);

// The row `index` (a B-tree on one column) finds equal to `key` under
// `snapshot`, read into `slot`: its TID, invalid when there is none (the
// first match). Call in PgCall.
ItemPointerData ProbeByKey(Relation table, Relation index, Snapshot snapshot, ScanKeyData *key, TupleTableSlot *slot);

}  // namespace billing::glue
