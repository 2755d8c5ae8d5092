// Whose rights billing's C code runs with.
//
// Privileged work (billing's own tables) runs as the owner of those tables,
// the NOLOGIN role billing_owner, never as the superuser who ran CREATE
// EXTENSION; application values are read before, as the invoking user. Both
// run with search_path = pg_catalog, pg_temp, as fmgr does for a function with
// SET search_path, so no name in a query can resolve to an object an
// unprivileged role planted.
#pragma once

#include "glue/postgres.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace billing::glue {

struct SavedRights {
	Oid user;
	int security_context;
	int guc_nest_level;
};

// Switches to `user` (InvalidOid: stays the current user) with the fixed
// search_path. On an error nothing needs undoing: the (sub)transaction abort
// restores the user and unwinds the GUC nest level, as for SECURITY DEFINER.
SavedRights EnterRights(Oid user);
void LeaveRights(const SavedRights &saved);

template <typename Fn>
void
AsBillingOwner(Oid owner, Fn &&fn)
{
	SavedRights saved = EnterRights(owner);
	fn();
	LeaveRights(saved);
}

template <typename Fn>
void
AsInvoker(Fn &&fn)
{
	SavedRights saved = EnterRights(InvalidOid);
	fn();
	LeaveRights(saved);
}

// The table and the partitioned tables it is a partition of (the nearest
// first), and oids as the text of an oid[] ("{1,2}") for a $n::oid[].
std::vector<Oid> TableAndAncestors(Oid table);
std::string OidArrayText(const std::vector<Oid> &oids);

// What a trigger of billing's may act on: the attachment named by its
// arguments, checked (once per trigger and backend) to be attached to the
// table the trigger fires on (or to a partitioned table it is a partition of).
// A trigger somebody created on another table with billing's function and a
// forged attachment id is refused with 42501.
enum class Watched { kCounted, kRoomsOwner, kUsers };
struct Attachment {
	int32_t id;
	std::string key_column;          // counted column (users: the id column)
	std::string parent_key_column;   // rooms' key (participants)
	std::string parent_owner_column; // rooms' owner column (participants)
	Oid parent_relation;
	std::string kind;                // users, rooms or participants
	bool counts_deleted_at = false;  // soft-deleted rows do not count
	Oid relation = InvalidOid;       // the attached table (a partitioned one: the parent)
};
Attachment CheckedAttachment(const Trigger *trigger, Relation relation, int32_t attachment_id, Watched what);

// The value of a column of an application row as text, through its type's
// output function, called as the current (invoking) user; false for NULL.
bool ColumnText(Relation relation, HeapTuple tuple, const std::string &column, std::string *out);

}  // namespace billing::glue
