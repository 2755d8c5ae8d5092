// The quota trigger on the application's rooms and participants (SPEC §2).
//
// Per counted row the fast path (glue/quota_counter.cpp) adds one to the
// owner's (or room's) counter in place, while its cached limit is fresh and
// not reached. The row lock that update takes is the minimum that makes the
// limit exact under concurrency. Otherwise the slow path
// (billing._quota_prepare, through SPI) creates or refreshes the counter, and
// the core decides.
#include "glue/args.hpp"
#include "glue/guard.hpp"
#include "glue/lifecycle.hpp"
#include "glue/quota_counter.hpp"
#include "glue/rights.hpp"
#include "glue/settings.hpp"
#include "glue/spi.hpp"
#include "glue/triggers.hpp"

#include "core/error.hpp"
#include "core/quota.hpp"
#include "core/subscription.hpp"

#include <charconv>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace billing::glue {
namespace {

// Before 0.3.0 (an install not yet updated, running this library).
constexpr const char *kPrepareBefore030 =
	"SELECT used, limits, plan_code, plan_name, cap_valid_until::pg_catalog.text, owner_id"
	" FROM billing._quota_prepare($1, $2, $3)";

constexpr const char *kSlowIncrement =
	"UPDATE billing.quota_counters SET used = used OPERATOR(pg_catalog.+) 1,"
	" usage_pending = usage_pending OPERATOR(pg_catalog.+) $3, cap = $4,"
	" cap_valid_until = $5, updated_at = pg_catalog.now()"
	" WHERE attachment_id OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2";

constexpr const char *kDecrement =
	"UPDATE billing.quota_counters SET used = pg_catalog.int8larger(used OPERATOR(pg_catalog.-) 1, 0),"
	" updated_at = pg_catalog.now()"
	" WHERE attachment_id OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2";

// Before a room changes hands, the joins its counter holds and no rollup
// has taken yet are the old owner's: they go to the old owner's pending
// usage of their day (under the counter's lock, as the rollup takes them;
// not the daily totals, which the rollup upserts: attack finding 5.3).
constexpr const char *kRoomOwnerPendingUsage =
	"WITH old AS (SELECT q.attachment_id, q.key, q.owner_id, q.usage_day, q.usage_pending FROM billing.quota_counters q"
	"   WHERE q.attachment_id OPERATOR(pg_catalog.=) $1 AND q.key OPERATOR(pg_catalog.=) $2"
	"   AND q.owner_id OPERATOR(pg_catalog.<>) $3 AND q.owner_id OPERATOR(pg_catalog.<>) ''"
	"   AND q.usage_pending OPERATOR(pg_catalog.>) 0 AND q.usage_day IS NOT NULL FOR UPDATE),"
	" taken AS (UPDATE billing.quota_counters q SET usage_pending = 0 FROM old"
	"   WHERE q.attachment_id OPERATOR(pg_catalog.=) old.attachment_id AND q.key OPERATOR(pg_catalog.=) old.key"
	"   RETURNING old.owner_id, old.attachment_id, old.usage_day, old.usage_pending)"
	" SELECT billing._usage_pending_add(pg_catalog.array_agg(t.owner_id), pg_catalog.array_agg(billing._quota_metric(t.attachment_id)),"
	"   pg_catalog.array_agg(t.usage_day), pg_catalog.array_agg(t.usage_pending::pg_catalog.numeric)) FROM taken t";

// A room given to another owner: its participants' counter names the new
// owner, and its cached limit is stale. An upsert, not an UPDATE, so that it
// also reaches a counter another transaction is creating (it waits for it on
// the key) and leaves a counter (of 0: no counter means no rows) that a first
// participant racing the move waits for and then reads the new owner from.
constexpr const char *kRoomOwnerChanged =
	"INSERT INTO billing.quota_counters AS q (attachment_id, key, owner_id, used) VALUES ($1, $2, $3, 0)"
	" ON CONFLICT (attachment_id, key) DO UPDATE SET owner_id = EXCLUDED.owner_id,"
	" cap_valid_until = '-infinity'::pg_catalog.timestamptz, updated_at = pg_catalog.now()";

// A new room takes a key whose participants' counter another room left (it
// was deleted, or its key changed): the counter names the new owner, and the
// joins no rollup has taken yet go to the old owner's pending usage first. An
// UPDATE, not kRoomOwnerChanged's upsert: most new rooms have no counter, and
// none is made for them (a participant's first insert makes it, reading the
// room's owner).
constexpr const char *kRoomKeyTaken =
	"WITH old AS (SELECT q.attachment_id, q.key, q.owner_id, q.usage_day, q.usage_pending FROM billing.quota_counters q"
	"   WHERE q.attachment_id OPERATOR(pg_catalog.=) $1 AND q.key OPERATOR(pg_catalog.=) $2"
	"   AND q.owner_id OPERATOR(pg_catalog.<>) $3 FOR UPDATE),"
	" moved AS (UPDATE billing.quota_counters q SET owner_id = $3, usage_pending = 0,"
	"   cap_valid_until = '-infinity'::pg_catalog.timestamptz, updated_at = pg_catalog.now() FROM old"
	"   WHERE q.attachment_id OPERATOR(pg_catalog.=) old.attachment_id AND q.key OPERATOR(pg_catalog.=) old.key"
	"   RETURNING old.owner_id, old.attachment_id, old.usage_day, old.usage_pending)"
	" SELECT billing._usage_pending_add(a.owners, a.metrics, a.days, a.joins) FROM"
	"  (SELECT pg_catalog.array_agg(m.owner_id) AS owners, pg_catalog.array_agg(billing._quota_metric(m.attachment_id)) AS metrics,"
	"   pg_catalog.array_agg(m.usage_day) AS days, pg_catalog.array_agg(m.usage_pending::pg_catalog.numeric) AS joins"
	"   FROM moved m WHERE m.owner_id OPERATOR(pg_catalog.<>) '' AND m.usage_pending OPERATOR(pg_catalog.>) 0"
	"   AND m.usage_day IS NOT NULL) a"
	" WHERE a.owners IS NOT NULL";  // no call (a PL/pgSQL function) for the many new rooms that take no key

constexpr const char *kStartFree = "SELECT billing._start_free($1, pg_catalog.now())";


}  // namespace

// Whether the install has 0.3.0's billing._quota_prepare (owner argument):
// looked up once, again after any change to pg_proc (ALTER EXTENSION UPDATE).
enum class SchemaKnown : char { kUnknown, kCurrent, kBefore030 };
static SchemaKnown schema_known = SchemaKnown::kUnknown;

static void
ForgetSchema(Datum, int, uint32)
{
	schema_known = SchemaKnown::kUnknown;
}

bool
HasCurrentSchema()
{
	if (schema_known != SchemaKnown::kUnknown)
		return schema_known == SchemaKnown::kCurrent;
	bool found = false;
	PgCall([&] {
		static bool registered = false;
		if (!registered) {
			CacheRegisterSyscacheCallback(PROCOID, ForgetSchema, 0);
			registered = true;
		}
		Oid types[4] = {INT4OID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
		List *name = list_make2(makeString(pstrdup("billing")), makeString(pstrdup("_quota_prepare")));
		found = OidIsValid(LookupFuncName(name, 4, types, true));
	});
	schema_known = found ? SchemaKnown::kCurrent : SchemaKnown::kBefore030;
	return found;
}

namespace {

struct TriggerArgs {
	int32_t attachment_id;
	const char *quota;  // "rooms" or "participants_per_room"
	const char *key_column;
	bool counts_deleted_at;
};

// The counted key of a row (owner or room) as text, or nullopt when the row
// does not count: a NULL key, or soft-deleted.
std::optional<std::string>
CountedKey(const TriggerArgs &args, TupleDesc desc, HeapTuple tuple)
{
	char *value = nullptr;
	bool live = true;
	PgCall([&] {
		if (args.counts_deleted_at) {
			int deleted = SPI_fnumber(desc, "deleted_at");
			bool isnull = true;
			if (deleted > 0)
				(void) SPI_getbinval(tuple, desc, deleted, &isnull);
			live = isnull;
		}
		int key = SPI_fnumber(desc, args.key_column);
		if (key <= 0)
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
							errmsg("column \"%s\" that billing counts is missing", args.key_column),
							errhint("Attach the table again after renaming or dropping a counted column.")));
		value = SPI_getvalue(tuple, desc, key);
	});
	if (!live || value == nullptr)
		return std::nullopt;
	return std::string(value);
}

int32_t
PgDay(TimestampTz at)
{
	int64_t days = at / USECS_PER_DAY;
	if (at % USECS_PER_DAY < 0)
		days -= 1;
	return static_cast<int32_t>(days);
}

// A participants attachment finds a room's owner by the rooms table's key:
// that key must be unique at every moment, i.e. a unique index on exactly
// that column, valid, not partial and checked at once (not DEFERRABLE). A
// deferrable key lets one transaction hold two rooms of one key until it
// commits, and the owner watch would hand the key's counter to the
// duplicate (attack finding 73). attach_participant_quota refuses a
// deferrable key; this catches one put in place afterwards (the key dropped
// and added again DEFERRABLE, or dropped). Read from the relcache's index
// list and the syscache: no query. Raises 55000; call inside PgCall.
void
RequireImmediateKey(Relation rooms, const char *column)
{
	int number = SPI_fnumber(RelationGetDescr(rooms), column);
	bool found = false;
	List *indexes = RelationGetIndexList(rooms);
	ListCell *cell = nullptr;
	foreach (cell, indexes) {
		HeapTuple tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(cell)));
		if (!HeapTupleIsValid(tuple))
			continue;
		Form_pg_index index = reinterpret_cast<Form_pg_index>(GETSTRUCT(tuple));
		found = number > 0 && index->indisunique && index->indimmediate && index->indisvalid &&
				index->indnkeyatts == 1 && index->indkey.values[0] == number &&
				heap_attisnull(tuple, Anum_pg_index_indpred, nullptr);
		ReleaseSysCache(tuple);
		if (found)
			break;
	}
	list_free(indexes);
	if (!found)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("table \"%s\" has no immediate unique key on column \"%s\" to find a room's owner by",
							   RelationGetRelationName(rooms), column),
						errdetail("Billing's participants quota finds a room's owner by that key; a DEFERRABLE or missing key "
								  "lets a transaction hold two rooms with one key."),
						errhint("Give the table a NOT DEFERRABLE primary key on the column again, or detach the "
								"participants table with billing.detach.")));
}

// The owner of the row with the key (a room), read as
// "SELECT r.owner FROM rooms r WHERE r.key = $1" reads it for the invoking
// role in the statement's snapshot, without the statement: through the
// table's unique, immediate btree index on the key whose equality is the
// key type's own (and the column's collation). False, with nothing read, where
// the statement must do it: not a plain heap table (partitioned, with
// inheritance children, rules), row-level security on, the role without
// SELECT on the table or on both columns (the statement raises the error),
// no such index. *found: a row with the key exists; *owner its owner as the
// column type's output function writes it (as Spi's Row::text does), nullptr
// for NULL. Call inside PgCall.
bool
OwnerByKeyIndex(Relation rooms, int key_number, int owner_number, Oid key_type, Oid eq_opr, Datum key, bool *found,
				char **owner)
{
	if (rooms->rd_rel->relkind != RELKIND_RELATION || rooms->rd_rel->relam != HEAP_TABLE_AM_OID ||
		rooms->rd_rel->relrowsecurity || rooms->rd_rel->relhassubclass || rooms->rd_rules != nullptr ||
		!ActiveSnapshotSet())
		return false;
	Oid relid = RelationGetRelid(rooms);
	Oid user = GetUserId();
	if (pg_class_aclcheck(relid, user, ACL_SELECT) != ACLCHECK_OK &&
		(pg_attribute_aclcheck(relid, key_number, user, ACL_SELECT) != ACLCHECK_OK ||
		 pg_attribute_aclcheck(relid, owner_number, user, ACL_SELECT) != ACLCHECK_OK))
		return false;
	// The statement names the table's schema and the operator's (USAGE on
	// both) and calls the operator's function (EXECUTE); the index probe
	// opens the table by OID and calls the function unchecked (attack6 F5).
	HeapTuple op = SearchSysCache1(OPEROID, ObjectIdGetDatum(eq_opr));
	if (!HeapTupleIsValid(op))
		return false;
	Oid op_namespace = reinterpret_cast<Form_pg_operator>(GETSTRUCT(op))->oprnamespace;
	ReleaseSysCache(op);
	if (pg_namespace_aclcheck(RelationGetNamespace(rooms), user, ACL_USAGE) != ACLCHECK_OK ||
		pg_namespace_aclcheck(op_namespace, user, ACL_USAGE) != ACLCHECK_OK ||
		pg_proc_aclcheck(get_opcode(eq_opr), user, ACL_EXECUTE) != ACLCHECK_OK)
		return false;
	TupleDesc desc = RelationGetDescr(rooms);
	Oid collation = TupleDescAttr(desc, key_number - 1)->attcollation;
	Relation index = nullptr;
	List *indexes = RelationGetIndexList(rooms);
	ListCell *cell = nullptr;
	foreach (cell, indexes) {
		Relation candidate = index_open(lfirst_oid(cell), AccessShareLock);  // held, as the planner holds them
		Form_pg_index form = candidate->rd_index;
		if (candidate->rd_rel->relam == BTREE_AM_OID && form->indisunique && form->indimmediate && form->indisvalid &&
			form->indisready && form->indnkeyatts == 1 && form->indkey.values[0] == key_number &&
			(!form->indcheckxmin ||
			 TransactionIdPrecedes(HeapTupleHeaderGetXmin(candidate->rd_indextuple->t_data), TransactionXmin)) &&
			heap_attisnull(candidate->rd_indextuple, Anum_pg_index_indpred, nullptr) &&
			heap_attisnull(candidate->rd_indextuple, Anum_pg_index_indexprs, nullptr) &&
			candidate->rd_opcintype[0] == key_type && candidate->rd_indcollation[0] == collation &&
			get_op_opfamily_strategy(eq_opr, candidate->rd_opfamily[0]) == BTEqualStrategyNumber) {
			index = candidate;
			break;
		}
		index_close(candidate, NoLock);
	}
	list_free(indexes);
	if (index == nullptr)
		return false;
	ScanKeyData scan_key;
	ScanKeyInit(&scan_key, 1, BTEqualStrategyNumber, get_opcode(eq_opr), key);
	scan_key.sk_collation = index->rd_indcollation[0];
	TupleTableSlot *slot = table_slot_create(rooms, nullptr);
	ItemPointerData tid = ProbeByKey(rooms, index, GetActiveSnapshot(), &scan_key, slot);
	*found = ItemPointerIsValid(&tid);
	*owner = nullptr;
	if (*found) {
		bool isnull = true;
		Datum value = slot_getattr(slot, owner_number, &isnull);
		if (!isnull) {
			Oid output = InvalidOid;
			bool varlena = false;
			getTypeOutputInfo(TupleDescAttr(desc, owner_number - 1)->atttypid, &output, &varlena);
			*owner = OidOutputFunctionCall(output, value);
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	return true;
}

// The owner of a participant's room, read from the rooms table as the
// invoking user (who inserts participants and may read rooms): the key is
// turned into the key column's own type by its input function and compared
// with the type's own equality operator, so the rooms' primary key is used.
// The query goes through Spi's kept plans (one per rooms table, key type and
// columns: a new attachment or a schema change gets a new or re-planned one).
// A room the inserting role cannot read (it does not exist yet, or row-level
// security hides it) is refused: counting it as a room without an owner
// would leave its counter unlimited for good. A room whose owner is NULL is
// "" (nobody's: not limited).
// The lookup itself: whether a row with the key exists for the current
// role, and its owner column ("" for NULL).
bool
KeyRowOwner(const Attachment &attachment, const std::string &room, std::string *owner_out, std::string *table_out,
			bool unique_key_required = true)
{
	std::string owner;
	bool found = false;
	std::string rooms_name;
	AsInvoker([&] {
		char *sql = nullptr;
		Oid key_type = InvalidOid;
		Datum key = 0;
		bool direct = false;  // read through the key's index, without the statement
		bool direct_found = false;
		char *direct_owner = nullptr;
		PgCall([&] {
			Relation rooms = try_table_open(attachment.parent_relation, AccessShareLock);
			if (rooms == nullptr)
				ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
								errmsg("the rooms table of billing's participants attachment %d no longer exists",
									   attachment.id),
								errhint("Detach the participants table with billing.detach, or attach it again to "
										"its new rooms table.")));
			if (unique_key_required)
				RequireImmediateKey(rooms, attachment.parent_key_column.c_str());
			TupleDesc desc = RelationGetDescr(rooms);
			int key_number = SPI_fnumber(desc, attachment.parent_key_column.c_str());
			int owner_number = SPI_fnumber(desc, attachment.parent_owner_column.c_str());
			if (key_number <= 0 || owner_number <= 0)
				ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
								errmsg("columns \"%s\" and \"%s\" of relation \"%s\" are needed to find a room's owner",
									   attachment.parent_key_column.c_str(), attachment.parent_owner_column.c_str(),
									   RelationGetRelationName(rooms)),
								errhint("Attach the participants table again.")));
			key_type = TupleDescAttr(desc, key_number - 1)->atttypid;
			TypeCacheEntry *type = lookup_type_cache(key_type, TYPECACHE_EQ_OPR);
			if (!OidIsValid(type->eq_opr))
				ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
								errmsg("type %s has no equality operator", format_type_be(key_type))));
			rooms_name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rooms)),
													RelationGetRelationName(rooms));
			Oid input = InvalidOid;
			Oid io_param = InvalidOid;
			getTypeInputInfo(key_type, &input, &io_param);
			key = OidInputFunctionCall(input, const_cast<char *>(room.c_str()), io_param, -1);
			if (unique_key_required)
				direct = OwnerByKeyIndex(rooms, key_number, owner_number, key_type, type->eq_opr, key, &direct_found,
										 &direct_owner);
			if (!direct) {
				HeapTuple op = SearchSysCache1(OPEROID, ObjectIdGetDatum(type->eq_opr));
				if (!HeapTupleIsValid(op))
					elog(ERROR, "cache lookup failed for operator %u", type->eq_opr);
				Form_pg_operator op_form = reinterpret_cast<Form_pg_operator>(GETSTRUCT(op));
				sql = psprintf("SELECT r.%s FROM %s r WHERE r.%s OPERATOR(%s.%s) $1",
							   quote_identifier(attachment.parent_owner_column.c_str()), rooms_name.c_str(),
							   quote_identifier(attachment.parent_key_column.c_str()),
							   quote_identifier(get_namespace_name(op_form->oprnamespace)), NameStr(op_form->oprname));
				ReleaseSysCache(op);
			}
			table_close(rooms, NoLock);
		});
		if (direct) {
			found = direct_found;
			if (direct_owner != nullptr)
				owner = direct_owner;
			return;
		}
		std::string query(sql);
		PgCall([&] { pfree(sql); });
		Spi spi(Spi::Access::kReadOnly);
		auto rows = spi.Query(query, {SqlArg{key_type, key, false}});
		found = !rows.empty();
		if (found && !rows[0].is_null(0))
			owner = rows[0].text_required(0);
		spi.Finish();
	});
	*owner_out = owner;
	*table_out = rooms_name;
	return found;
}

std::string
RoomOwner(const Attachment &attachment, const std::string &room)
{
	std::string owner;
	std::string rooms_name;
	if (!KeyRowOwner(attachment, room, &owner, &rooms_name)) {
		std::string role;
		PgCall([&] { role = GetUserNameFromId(GetUserId(), false); });
		throw Error("23503", "room \"" + room + "\" is not in " + rooms_name + " for role \"" + role + "\"",
					"The participants-per-room quota needs the room's owner: the room does not exist, or "
					"row-level security or privileges hide it from this role.",
					"Insert the room before its participants, and let the role that inserts participants read it.");
	}
	return owner;
}

// What the slow path needs to decide: the counter's count and its owner's
// plan (limits as stored, checked by the core's ParseLimit), and until when
// that plan may be cached. An empty owner_id: a participants counter must be
// created and the room's owner was not given.
struct PreparedCounter {
	int64_t used = 0;
	std::string limits = "{}";
	std::string plan_code;
	std::string plan_name;
	TimestampTz cap_valid_until = DT_NOEND;
	std::optional<std::string> owner_id;
};

// The slow path (billing._quota_prepare; run as the counters' owner): creates
// and locks the counter, moves the previous day's usage into
// billing.usage_daily, and reads the owner's plan. The lock protocol: the
// owner's billing.user_locks row FOR SHARE before the plan is read (a
// subscription change writes that row and holds it until it commits: this
// fill then reads the new plan, or fails with 40001 in REPEATABLE READ; a
// change that comes second waits for this fill and then clears what it
// cached), then the plan's row FOR SHARE (an edit of its limits waits for
// this fill, or this fill waits for the edit and reads it).
// The first step of the lock protocol (below): the owner's
// billing.user_locks row, created when the owner has none, locked FOR SHARE.
void
ShareLockOwner(Spi &spi, const std::string &owner)
{
	// Every user with a subscription has the row (each subscription write
	// makes it): one statement, the lock. Only an owner without one (never
	// subscribed: Free by default) inserts it.
	constexpr const char *kLock =
		"SELECT FROM billing.user_locks l WHERE l.user_id OPERATOR(pg_catalog.=) $1 FOR SHARE";
	switch (ShareLockUser(owner)) {
		case UserLockOutcome::kLocked:
			return;
		case UserLockOutcome::kMissing:
			break;
		case UserLockOutcome::kUseSql:
			if (!spi.Query(kLock, {SqlArg::Text(owner)}).empty())
				return;
	}
	// A row this transaction has just inserted holds off a subscription
	// change as a lock would (its INSERT ... ON CONFLICT waits for this
	// transaction to end): it needs no FOR SHARE of its own. One another
	// transaction inserted meanwhile is waited for; then locked (READ
	// COMMITTED: this new statement sees it; REPEATABLE READ: the INSERT
	// already failed with 40001, the row not in its snapshot).
	if (spi.Execute("INSERT INTO billing.user_locks (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING",
					{SqlArg::Text(owner)}) == 1)
		return;
	spi.Query(kLock, {SqlArg::Text(owner)});
}

// The owner's plan (out->owner_id, its user_locks row already locked): its
// row FOR SHARE, its limits as stored and until when they may be cached.
// Nobody's counter (owner "") is not limited ('{}', valid until infinity).
void
ReadOwnerPlan(Spi &spi, TimestampTz at, PreparedCounter *out)
{
	if (out->owner_id->empty())
		return;
	Entitlement entitlement = EntitlementAt(spi, *out->owner_id, ToCoreTime(at));
	if (!entitlement.plan_id)
		throw Error(sqlstate::kInternalError, "no plan applies to user \"" + *out->owner_id + "\"",
					"Billing has no plan with code 'free'.");
	if (ShareLockPlan(*entitlement.plan_id, &out->limits, &out->plan_code, &out->plan_name)) {
		out->cap_valid_until = entitlement.changes_at ? ToPgTime(*entitlement.changes_at) : DT_NOEND;
		return;
	}
	auto plan = spi.Query("SELECT p.limits::pg_catalog.text, p.code, p.name FROM billing.subscription_plans p"
						  " WHERE p.id OPERATOR(pg_catalog.=) $1 FOR SHARE",
						  {SqlArg::Int64(*entitlement.plan_id)});
	// The plan row was renumbered, deleted or hidden by a policy while this
	// fill waited for it: the entitlement just read is stale, retry.
	if (plan.empty())
		throw Error("40001", "could not serialize access due to concurrent update of plan " +
								 std::to_string(*entitlement.plan_id),
					"The plan that applies to user \"" + *out->owner_id + "\" changed while the quota was checked.");
	out->limits = plan.at(0).text_or(0, "{}");
	out->plan_code = plan.at(0).text_or(1, "");
	out->plan_name = plan.at(0).text_or(2, "");
	out->cap_valid_until = entitlement.changes_at ? ToPgTime(*entitlement.changes_at) : DT_NOEND;
}

PreparedCounter
PrepareCounter(Spi &spi, int32_t attachment_id, const std::string &key, TimestampTz at,
			   const std::optional<std::string> &given_owner)
{
	PreparedCounter out;
	SqlArg attachment = SqlArg::Int32(attachment_id);
	SqlArg key_arg = SqlArg::Text(key);
	auto existing = spi.Query("SELECT q.owner_id FROM billing.quota_counters q"
							  " WHERE q.attachment_id OPERATOR(pg_catalog.=) $1 AND q.key OPERATOR(pg_catalog.=) $2",
							  {attachment, key_arg});
	std::optional<std::string> owner = existing.empty() ? given_owner : existing[0].text(0);
	if (!owner)
		return out;  // the caller looks the room's owner up and asks again
	if (!owner->empty())
		ShareLockOwner(spi, *owner);
	int32_t today = PgDay(at);
	uint64_t created = spi.Execute("INSERT INTO billing.quota_counters AS q (attachment_id, key, owner_id, usage_day)"
								   " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
								   {attachment, key_arg, SqlArg::Text(*owner), SqlArg::Date(today)});
	if (created == 1) {
		// Ours: no other transaction sees it (nor can lock it) before we
		// commit, so it needs no FOR UPDATE; it counts nothing yet, today.
		out.used = 0;
		out.owner_id = *owner;
		ReadOwnerPlan(spi, at, &out);
		return out;
	}
	auto locked = spi.Query("SELECT q.used, q.usage_pending, q.usage_day OPERATOR(pg_catalog.=) $3, q.owner_id"
							" FROM billing.quota_counters q"
							" WHERE q.attachment_id OPERATOR(pg_catalog.=) $1 AND q.key OPERATOR(pg_catalog.=) $2"
							" FOR UPDATE",
							{attachment, key_arg, SqlArg::Date(today)});
	const Row &counter = locked.at(0);
	out.used = counter.int64_required(0);
	out.owner_id = counter.text_required(3);
	// usage_day NULL or another day: a new day began for this counter
	if (counter.is_null(2) || !counter.boolean(2)) {
		int64_t pending = counter.int64_required(1);
		// a counter without an owner (a room whose owner is NULL) is usage of nobody
		if (pending > 0 && !out.owner_id->empty())
			// kept as pending usage of its day (billing._usage_pending_add), not
			// written to the daily totals the rollup upserts: this runs in the
			// application's transaction (attack finding 5.3)
			spi.Execute("SELECT billing._usage_pending_add(ARRAY[$1], ARRAY[billing._quota_metric(q.attachment_id)],"
						" ARRAY[q.usage_day], ARRAY[$2::pg_catalog.numeric]) FROM billing.quota_counters q"
						" WHERE q.attachment_id OPERATOR(pg_catalog.=) $3 AND q.key OPERATOR(pg_catalog.=) $4",
						{SqlArg::Text(*out.owner_id), SqlArg::Int64(pending), attachment, key_arg});
		spi.Execute("UPDATE billing.quota_counters q SET usage_day = $3, usage_pending = 0"
					" WHERE q.attachment_id OPERATOR(pg_catalog.=) $1 AND q.key OPERATOR(pg_catalog.=) $2",
					{attachment, key_arg, SqlArg::Date(today)});
	}
	ReadOwnerPlan(spi, at, &out);
	return out;
}

// An install before 0.3.0 (until ALTER EXTENSION UPDATE) has its own
// billing._quota_prepare(attachment, key, at), in SQL.
PreparedCounter
PrepareCounterBefore030(Spi &spi, int32_t attachment_id, const std::string &key, TimestampTz at)
{
	auto rows = spi.Query(kPrepareBefore030, {SqlArg::Int32(attachment_id), SqlArg::Text(key), SqlArg::Timestamp(at)});
	const Row &row = rows.at(0);
	PreparedCounter out;
	out.used = row.int64_required(0);
	out.limits = row.text_or(1, "{}");
	out.plan_code = row.text_or(2, "");
	out.plan_name = row.text_or(3, "");
	out.owner_id = row.text(5);
	std::string until = row.text_or(4, "infinity");
	PgCall([&] {
		out.cap_valid_until = DatumGetTimestampTz(DirectFunctionCall3(
			timestamptz_in, CStringGetDatum(until.c_str()), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	});
	return out;
}

// A counter the fast path found none of, for a key whose owner is known (a
// new room, or an owner's first room): the lock protocol's steps as
// PrepareCounter takes them (the owner's user_locks row FOR SHARE, then the
// plan's row FOR SHARE), then the counter inserted already counting this row:
// one insert where creating it empty, locking it and updating it took three
// statements. False, with nothing written but the owner's lock row, when the
// row must go the usual way: the limit refuses it (the usual way words the
// refusal from the counter as it then stands), or another transaction
// created the counter meanwhile.
bool
CreateCounted(Spi &spi, const TriggerArgs &args, const std::string &key, TimestampTz at, const std::string &owner,
			  bool enforce, int64_t usage)
{
	PreparedCounter plan;
	plan.owner_id = owner;
	if (!owner.empty())
		ShareLockOwner(spi, owner);
	ReadOwnerPlan(spi, at, &plan);
	std::optional<int64_t> cap = ParseLimit(plan.limits, args.quota, plan.plan_code);
	if (enforce && !AllowsOneMore(cap, 0))
		return false;
	switch (CreateCounter({args.attachment_id, key.c_str(), owner.c_str(), PgDay(at), usage, cap, plan.cap_valid_until})) {
		case CreateOutcome::kCreated:
			return true;
		case CreateOutcome::kExists:
			return false;
		case CreateOutcome::kUseSql:
			break;
	}
	return spi.Execute("INSERT INTO billing.quota_counters AS q"
					   " (attachment_id, key, owner_id, usage_day, used, usage_pending, cap, cap_valid_until)"
					   " VALUES ($1, $2, $3, $4, 1, $5, $6, $7) ON CONFLICT DO NOTHING",
					   {SqlArg::Int32(args.attachment_id), SqlArg::Text(key), SqlArg::Text(owner),
						SqlArg::Date(PgDay(at)), SqlArg::Int64(usage), SqlArg::Int64(cap),
						SqlArg::Timestamp(plan.cap_valid_until)}) == 1;
}

void
Increment(const TriggerArgs &args, const Attachment *attachment, const std::string &key, TimestampTz at,
		  bool record_usage)
{
	bool enforce = enforce_quotas;
	int64_t usage = record_usage ? 1 : 0;
	CounterOutcome fast = IncrementCounter(args.attachment_id, key.c_str(), {PgDay(at), at, enforce, usage});
	if (fast == CounterOutcome::kUpdated)
		return;

	Oid owner = CountersOwner();
	if (!HasCurrentSchema())
		attachment = nullptr;  // an install before 0.3.0, until ALTER EXTENSION UPDATE
	std::optional<std::string> room_owner;
	if (std::strcmp(args.quota, "rooms") == 0)
		room_owner = key;
	else if (attachment != nullptr && fast == CounterOutcome::kNoCounter)
		room_owner = RoomOwner(*attachment, key);  // a new room: one _quota_prepare, not two
	// Prepares the counter, decides, and counts the row in the same SPI
	// connection; false when the counter needs its room's owner first.
	PreparedCounter prepared;
	std::optional<int64_t> cap;
	bool refused = false;
	auto prepare_and_count = [&](Spi &spi) {
		prepared = attachment == nullptr ? PrepareCounterBefore030(spi, args.attachment_id, key, at)
										 : PrepareCounter(spi, args.attachment_id, key, at, room_owner);
		if (attachment != nullptr && !prepared.owner_id)
			return false;
		cap = ParseLimit(prepared.limits, args.quota, prepared.plan_code);
		if (enforce && !AllowsOneMore(cap, prepared.used)) {
			refused = true;
			return true;
		}
		spi.QueryPrepared(kSlowIncrement, {SqlArg::Int32(args.attachment_id), SqlArg::Text(key), SqlArg::Int64(usage),
										   SqlArg::Int64(cap), SqlArg::Timestamp(prepared.cap_valid_until)});
		return true;
	};
	// No counter in this snapshot and its owner known: created counting the row.
	bool fresh = attachment != nullptr && fast == CounterOutcome::kNoCounter && room_owner.has_value();
	for (int attempt = 0; attempt < 2; attempt++) {
		bool decided = false;
		AsBillingOwner(owner, [&] {
			Spi spi;
			decided = (fresh && attempt == 0 && CreateCounted(spi, args, key, at, *room_owner, enforce, usage)) ||
					  prepare_and_count(spi);
			spi.Finish();
		});
		if (decided || attachment == nullptr)
			break;
		room_owner = RoomOwner(*attachment, key);
	}
	if (refused)
		throw QuotaExceeded(args.quota, prepared.plan_name, *cap, prepared.used, prepared.owner_id.value_or(""));
}

void
Decrement(const TriggerArgs &args, const std::string &key)
{
	if (DecrementCounter(args.attachment_id, key.c_str()) == CounterOutcome::kUpdated)
		return;
	AsBillingOwner(CountersOwner(), [&] {
		Spi spi;
		spi.QueryPrepared(kDecrement, {SqlArg::Int32(args.attachment_id), SqlArg::Text(key)});
		spi.Finish();
	});
}

int32_t
AttachmentIdArg(const Trigger *trigger, const char *function)
{
	const char *id_text = trigger->tgnargs > 0 ? trigger->tgargs[0] : "";
	const char *id_end = id_text + std::strlen(id_text);
	int32_t attachment_id = 0;
	auto [end, error] = std::from_chars(id_text, id_end, attachment_id);
	if (error != std::errc() || end != id_end || id_text == id_end)
		throw billing::Error("39P01", std::string(function) + " was given an invalid attachment id",
							 "The first trigger argument is \"" + std::string(id_text) + "\".",
							 "Attach the table again with billing.attach_room_quota or billing.attach_participant_quota.");
	return attachment_id;
}

// The trigger's arguments, as attach_*_quota wrote them.
TriggerArgs
ParseTriggerArgs(const Trigger *trigger)
{
	if (trigger->tgnargs < 4)
		throw billing::Error("39P01", "billing._quota_trigger() must fire for each row, with four arguments");
	char **targs = trigger->tgargs;
	int32_t attachment_id = AttachmentIdArg(trigger, "billing._quota_trigger()");
	return {attachment_id, std::strcmp(targs[1], "rooms") == 0 ? "rooms" : "participants_per_room", targs[2],
			targs[3][0] == 't'};
}

// Clears the cached limits of the given owners' counters (a text[]; all
// counters when nullopt) with the newest snapshot, so also a counter
// committed after a REPEATABLE READ transaction's snapshot is reached.
// Returns how many counters it cleared. Inside a trigger the statement's
// own after-row events join the firing statement's; elsewhere (a lifecycle
// call's deferred invalidation) they fire with the statement.
uint64_t
InvalidateCachedLimits(std::optional<Datum> owners, bool in_trigger = true)
{
	bool all = !owners;
	uint64_t changed = 0;
	// Prepared once per backend: a backfill writes a subscription per user.
	static SPIPlanPtr plans[2] = {nullptr, nullptr};
	PgCall([&] {
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		Oid type = TEXTARRAYOID;
		Datum value = all ? Datum(0) : *owners;
		SPIPlanPtr &plan = plans[all ? 1 : 0];
		if (plan == nullptr) {
			// generic: planned once, not again for every array of owners
			// A counter whose cache is already clear ('-infinity') is left
			// alone: nobody can fill it meanwhile (a fill holds the owner's
			// lock row, which the caller holds written; a plan's limits, its
			// plan row), and the fast path never touches an uncached one. Its
			// rewrite was most of a maintenance page's invalidation (a random
			// counter page and its full-page image per owner).
			SPIPlanPtr prepared = SPI_prepare_cursor(
				all ? "UPDATE billing.quota_counters q SET cap_valid_until = '-infinity'::pg_catalog.timestamptz"
					  " WHERE q.cap_valid_until OPERATOR(pg_catalog.<>) '-infinity'::pg_catalog.timestamptz"
					// one index probe per owner: "owner_id = ANY ($1)" rechecked every
					// counter the bitmap scan found against the whole array (a page of
					// maintenance: 1,000 owners, 9% of its CPU)
					: "UPDATE billing.quota_counters q SET cap_valid_until = '-infinity'::pg_catalog.timestamptz"
					  " FROM pg_catalog.unnest($1) AS o(id) WHERE q.owner_id OPERATOR(pg_catalog.=) o.id"
					  " AND q.cap_valid_until OPERATOR(pg_catalog.<>) '-infinity'::pg_catalog.timestamptz",
				all ? 0 : 1, &type, CURSOR_OPT_GENERIC_PLAN);
			if (prepared == nullptr)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			if (SPI_keepplan(prepared) != 0)
				elog(ERROR, "SPI_keepplan failed");
			plan = prepared;
		}
		if (SPI_execute_snapshot(plan, &value, nullptr, GetLatestSnapshot(), InvalidSnapshot, false, !in_trigger, 0) !=
			SPI_OK_UPDATE)
			elog(ERROR, "invalidating quota counters failed");
		changed = SPI_processed;
		SPI_finish();
	});
	return changed;
}

}  // namespace

void
InvalidateUsersQuota(Spi &spi, const std::vector<std::optional<std::string>> &owners, bool in_trigger,
					 bool lock_row_written)
{
	SqlArg owner_array = SqlArg::TextArray(owners);
	if (lock_row_written && owners.size() == 1)
		;  // written by the caller's lock statement in this transaction
	else if (owners.size() == 1)
		spi.Execute("INSERT INTO billing.user_locks AS l (user_id) VALUES ($1)"
					" ON CONFLICT (user_id) DO UPDATE SET updated_at = pg_catalog.now()",
					{SqlArg::Text(owners[0])});
	else
		spi.Execute("INSERT INTO billing.user_locks AS l (user_id)"
					" SELECT u.id FROM pg_catalog.unnest($1) AS u(id) ORDER BY u.id"
					" ON CONFLICT (user_id) DO UPDATE SET updated_at = pg_catalog.now()",
					{owner_array});
	InvalidateCachedLimits(owner_array.value, in_trigger);
}

}  // namespace billing::glue

using namespace billing::glue;

BILLING_FUNCTION(billing_quota_trigger)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		throw billing::Error("39P01", "billing._quota_trigger() may only be called as a trigger");
	TriggerData *trigger = reinterpret_cast<TriggerData *>(fcinfo->context);
	TriggerEvent event = trigger->tg_event;
	if (!TRIGGER_FIRED_FOR_ROW(event))
		throw billing::Error("39P01", "billing._quota_trigger() must fire for each row, with four arguments");
	TriggerArgs args = ParseTriggerArgs(trigger->tg_trigger);
	Attachment attachment = CheckedAttachment(trigger->tg_trigger, trigger->tg_relation, args.attachment_id,
											  Watched::kCounted);
	// The arguments must be the attachment's own (_quota_create_triggers
	// writes them): a hand-made trigger naming another kind or column would
	// count the wrong thing.
	if (attachment.kind != (std::strcmp(args.quota, "rooms") == 0 ? "rooms" : "participants") ||
		attachment.key_column != args.key_column || attachment.counts_deleted_at != args.counts_deleted_at)
		throw billing::Error("42501",
							 "trigger \"" + std::string(trigger->tg_trigger->tgname) + "\" on table \"" +
								 std::string(RelationGetRelationName(trigger->tg_relation)) + "\" does not match billing's attachment " +
								 std::to_string(attachment.id),
							 "The trigger's arguments name another kind of quota or another column than the attachment.",
							 "Attach the table again with billing.attach_room_quota or billing.attach_participant_quota.");
	TupleDesc desc = trigger->tg_relation->rd_att;
	TimestampTz at = GetCurrentTransactionStartTimestamp();

	HeapTuple result = nullptr;
	if (TRIGGER_FIRED_BY_INSERT(event)) {
		if (auto key = CountedKey(args, desc, trigger->tg_trigtuple))
			Increment(args, &attachment, *key, at, true);
		result = trigger->tg_trigtuple;
	} else if (TRIGGER_FIRED_BY_DELETE(event)) {
		if (auto key = CountedKey(args, desc, trigger->tg_trigtuple))
			Decrement(args, *key);
		result = trigger->tg_trigtuple;
	} else if (TRIGGER_FIRED_BY_UPDATE(event)) {
		auto before = CountedKey(args, desc, trigger->tg_trigtuple);
		auto after = CountedKey(args, desc, trigger->tg_newtuple);
		if (before != after) {
			// Take the new slot first: if it is refused, nothing was released.
			if (after)
				Increment(args, &attachment, *after, at, false);
			if (before)
				Decrement(args, *before);
		}
		result = trigger->tg_newtuple;
	}
	// 0.2.0 attaches AFTER triggers; BEFORE ones (0.1.0, until ALTER EXTENSION
	// UPDATE replaces them) must hand the row back.
	return TRIGGER_FIRED_BEFORE(event) ? PointerGetDatum(result) : PointerGetDatum(nullptr);
}

// Whether the two versions of a row hold the same bytes in the named columns
// (both NULL counts as the same). Different bytes may still be equal values:
// the caller compares their texts then.
bool
SameStoredValues(Relation relation, HeapTuple old_row, HeapTuple new_row, std::initializer_list<std::string> columns)
{
	bool same = true;
	PgCall([&] {
		TupleDesc desc = RelationGetDescr(relation);
		for (const std::string &column : columns) {
			int number = SPI_fnumber(desc, column.c_str());
			if (number <= 0) {
				same = false;  // the caller's ColumnText raises the error
				return;
			}
			Form_pg_attribute attr = TupleDescAttr(desc, number - 1);
			bool old_null = false;
			bool new_null = false;
			Datum old_value = heap_getattr(old_row, number, desc, &old_null);
			Datum new_value = heap_getattr(new_row, number, desc, &new_null);
			if (old_null != new_null ||
				(!old_null && !datumIsEqual(old_value, new_value, attr->attbyval, attr->attlen))) {
				same = false;
				return;
			}
		}
	});
	return same;
}

// Whether a deleted user row is gone from the attached users table at the
// end of its statement: an UPDATE that moves a row to another partition fires
// DELETE and INSERT (attack finding 69), and a statement may delete and
// insert one id again. Read as the deleting role, through the id column's
// own type and equality, as a room's owner is.
bool
UserGone(const Attachment &users, const std::string &user)
{
	Attachment lookup = users;
	lookup.parent_relation = users.relation;
	lookup.parent_key_column = users.key_column;
	lookup.parent_owner_column = users.key_column;
	std::string ignored_owner;
	std::string ignored_table;
	// a snapshot that sees the statement's own changes (the row deleted, the
	// moved row inserted): the read-only lookup runs on the active snapshot
	PgCall([] {
		CommandCounterIncrement();
		PushCopiedSnapshot(GetTransactionSnapshot());
		UpdateActiveSnapshotCommandId();
	});
	bool present = KeyRowOwner(lookup, user, &ignored_owner, &ignored_table, false);
	PgCall([] { PopActiveSnapshot(); });
	return !present;
}

// billing._user_inserted(): a new user of an attached users table gets a Free
// subscription; a deleted user's subscriptions end now, as Stripe ends a
// deleted customer's (so whoever takes the id later starts on Free, not on
// the old owner's plan). A renamed id (an UPDATE of the id column, attack
// finding 70: trigger billing_user_renamed, whose WHEN passes only rows whose
// id changed) is refused while billing holds anything live for the old id,
// as a foreign key's default NO ACTION refuses it at the end of the statement
// (the core's UserRenameRefusal), and otherwise the new id starts on Free as
// an inserted one does. The id is read
// as the writing user, through its type's output function; only that text
// reaches billing's code.
BILLING_FUNCTION(billing_user_inserted)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		throw billing::Error("39P01", "billing._user_inserted() may only be called as a trigger");
	TriggerData *trigger = reinterpret_cast<TriggerData *>(fcinfo->context);
	bool deleted = TRIGGER_FIRED_BY_DELETE(trigger->tg_event);
	bool updated = TRIGGER_FIRED_BY_UPDATE(trigger->tg_event);
	if (TRIGGER_FIRED_BY_TRUNCATE(trigger->tg_event)) {
		// billing_user_truncated: refused while billing holds anything live
		// (the core's UsersTruncateRefusal); BEFORE, so nothing is emptied
		if (TRIGGER_FIRED_FOR_ROW(trigger->tg_event) || !TRIGGER_FIRED_BEFORE(trigger->tg_event))
			throw billing::Error("39P01", "billing._user_inserted() must fire before a TRUNCATE, for the statement");
		(void) CheckedAttachment(trigger->tg_trigger, trigger->tg_relation, -1, Watched::kUsers);
		std::string table;
		PgCall([&] { table = RelationGetRelationName(trigger->tg_relation); });
		std::optional<billing::Error> refusal;
		AsBillingOwner(CountersOwner(), [&] { refusal = UsersTruncateRefusalFor(table); });
		if (refusal)
			throw *refusal;
		return PointerGetDatum(nullptr);
	}
	if (!TRIGGER_FIRED_FOR_ROW(trigger->tg_event) || !(deleted || updated || TRIGGER_FIRED_BY_INSERT(trigger->tg_event)))
		throw billing::Error("39P01", "billing._user_inserted() must fire for each inserted, updated or deleted row");
	Datum result = TRIGGER_FIRED_BEFORE(trigger->tg_event)
					   ? PointerGetDatum(updated ? trigger->tg_newtuple : trigger->tg_trigtuple)
					   : PointerGetDatum(nullptr);
	Attachment attachment = CheckedAttachment(trigger->tg_trigger, trigger->tg_relation, -1, Watched::kUsers);
	billing::Micros transaction_start = ToCoreTime(GetCurrentTransactionStartTimestamp());
	// An old id gone from the table at the end of the statement: refused
	// while billing holds anything live for it (23503), its plain Free
	// subscription closed otherwise (attack finding 3/6). An old id still in
	// the table (ids swapped by one statement) leaves nothing behind. Checked
	// as the writing role.
	auto renamed_away = [&](const std::string &old_user) {  // call only when UserGone(old_user)
		std::string table;
		PgCall([&] { table = RelationGetRelationName(trigger->tg_relation); });
		std::optional<billing::Error> refusal;
		AsBillingOwner(CountersOwner(), [&] { refusal = UserRenameRefusalFor(old_user, table, attachment.key_column); });
		if (refusal)
			throw *refusal;
		AsBillingOwner(CountersOwner(), [&] { CloseForRenamedUser(old_user, transaction_start); });
	};
	std::string user;
	if (updated) {
		std::string old_user;
		bool had = ColumnText(trigger->tg_relation, trigger->tg_trigtuple, attachment.key_column, &old_user) &&
				   !old_user.empty();
		bool has = ColumnText(trigger->tg_relation, trigger->tg_newtuple, attachment.key_column, &user) && !user.empty();
		if (had && has && old_user == user)
			return result;  // the same id (the same text)
		if (had && UserGone(attachment, old_user))
			renamed_away(old_user);
		if (!has)
			return result;
	} else if (!ColumnText(trigger->tg_relation, trigger->tg_trigtuple, attachment.key_column, &user) || user.empty() ||
			   // a deleted id still in the table (a partition move, deleted and
			   // inserted again by one statement) is no deletion: checked as the
			   // deleting role
			   (deleted && !UserGone(attachment, user))) {
		return result;
	} else if (deleted) {
		// An UPDATE that moves the row to another partition is run as a
		// DELETE and an INSERT, and fires no UPDATE trigger (attack finding
		// 3/1): heap_delete marks the old version of a row moved that way
		// ("moved partitions", its t_ctid), and the AFTER trigger receives
		// that very version (fetched from the heap by its ctid with
		// SnapshotAny). Its id is gone (checked above): a renamed id, not a
		// deleted user; the INSERT trigger starts the new id on Free.
		bool moved = false;
		PgCall([&] {
			moved = trigger->tg_trigtuple != nullptr && trigger->tg_trigtuple->t_data != nullptr &&
					HeapTupleHeaderIndicatesMovedPartitions(trigger->tg_trigtuple->t_data);
		});
		if (moved) {
			renamed_away(user);
			return result;
		}
	}
	// a new (or renamed-to) user's id obeys the user id rule every route
	// checks (22023: a user billing could not sell a plan to is refused, not
	// put on Free)
	if (!deleted)
		billing::RequireUserId(user);
	AsBillingOwner(CountersOwner(), [&] {
		Spi spi;
		if (deleted)
			CancelForDeletedUser(spi, user, transaction_start);
		else
			spi.QueryPrepared(kStartFree, {SqlArg::Text(user)});
		spi.Finish();
	});
	return result;
}

// billing._quota_room_owner_changed(attachment): a room given to another
// owner, or a room key taken by a new room (inserted, or a room's key changed
// to it); its participants' counter follows, whatever room had that key
// before. Both values are read as the writing user.
BILLING_FUNCTION(billing_room_owner_changed)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		throw billing::Error("39P01", "billing._quota_room_owner_changed() may only be called as a trigger");
	TriggerData *trigger = reinterpret_cast<TriggerData *>(fcinfo->context);
	bool inserted = TRIGGER_FIRED_BY_INSERT(trigger->tg_event);
	if (!TRIGGER_FIRED_FOR_ROW(trigger->tg_event) || !TRIGGER_FIRED_AFTER(trigger->tg_event) ||
		!(inserted || TRIGGER_FIRED_BY_UPDATE(trigger->tg_event)))
		throw billing::Error("39P01", "billing._quota_room_owner_changed() must fire after each inserted or updated row");
	int32_t id = AttachmentIdArg(trigger->tg_trigger, "billing._quota_room_owner_changed()");
	Attachment attachment = CheckedAttachment(trigger->tg_trigger, trigger->tg_relation, id, Watched::kRoomsOwner);
	HeapTuple row = inserted ? trigger->tg_trigtuple : trigger->tg_newtuple;
	// An update that leaves the key and the owner as they were (most: a
	// room's title, say) is told apart by their stored bytes, without
	// calling their types' output functions.
	if (!inserted && SameStoredValues(trigger->tg_relation, trigger->tg_trigtuple, trigger->tg_newtuple,
									  {attachment.parent_key_column, attachment.parent_owner_column}))
		return PointerGetDatum(nullptr);
	std::string room;
	std::string owner;
	if (!ColumnText(trigger->tg_relation, row, attachment.parent_key_column, &room))
		return PointerGetDatum(nullptr);
	(void) ColumnText(trigger->tg_relation, row, attachment.parent_owner_column, &owner);
	if (!inserted) {
		std::string old_room;
		std::string old_owner;
		bool had_room = ColumnText(trigger->tg_relation, trigger->tg_trigtuple, attachment.parent_key_column, &old_room);
		(void) ColumnText(trigger->tg_relation, trigger->tg_trigtuple, attachment.parent_owner_column, &old_owner);
		if (had_room && old_room == room && old_owner == owner)
			return PointerGetDatum(nullptr);  // neither the key nor the owner changed
	}
	if (inserted && !CounterExists(id, room))
		return PointerGetDatum(nullptr);  // most new rooms: no key another room left
	// the key must name one room at every moment before a counter follows it
	PgCall([&] { RequireImmediateKey(trigger->tg_relation, attachment.parent_key_column.c_str()); });
	AsBillingOwner(CountersOwner(), [&] {
		Spi spi;
		std::vector<SqlArg> args{SqlArg::Int32(id), SqlArg::Text(room), SqlArg::Text(owner)};
		if (inserted) {
			spi.QueryPrepared(kRoomKeyTaken, args);
		} else {
			spi.QueryPrepared(kRoomOwnerPendingUsage, args);
			spi.QueryPrepared(kRoomOwnerChanged, args);
		}
		spi.Finish();
	});
	return PointerGetDatum(nullptr);
}

// billing._quota_prepare(attachment, key, at, owner): the trigger's slow
// path (PrepareCounter) as a function, for tests and for a DBA looking into
// a counter; all NULL when the counter needs its room's owner. Internal:
// only billing's owner may call it.
BILLING_FUNCTION(billing_quota_prepare)
{
	int32_t attachment_id = Int32ArgRequired(fcinfo, 0, "p_attachment");
	std::string key = TextArgRequired(fcinfo, 1, "p_key");
	TimestampTz at = ToPgTime(TimeArgRequired(fcinfo, 2, "p_at"));
	std::optional<std::string> owner = TextArgOptional(fcinfo, 3);
	Spi spi;
	auto exists = spi.Query("SELECT EXISTS (SELECT FROM billing.attachments a WHERE a.id OPERATOR(pg_catalog.=) $1)",
							{SqlArg::Int32(attachment_id)});
	if (!exists.at(0).boolean(0))
		throw billing::InvalidParameter("attachment " + std::to_string(attachment_id) + " does not exist");
	PreparedCounter prepared = PrepareCounter(spi, attachment_id, key, at, owner);
	spi.Finish();
	Datum result = 0;
	PgCall([&] {
		TupleDesc desc = nullptr;
		if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "billing._quota_prepare must return a record");
		desc = BlessTupleDesc(desc);
		Datum values[6] = {};
		bool nulls[6] = {true, true, true, true, true, true};
		if (prepared.owner_id) {
			values[0] = Int64GetDatum(prepared.used);
			values[1] = CStringGetTextDatum(prepared.limits.c_str());
			values[2] = CStringGetTextDatum(prepared.plan_code.c_str());
			values[3] = CStringGetTextDatum(prepared.plan_name.c_str());
			values[4] = TimestampTzGetDatum(prepared.cap_valid_until);
			values[5] = CStringGetTextDatum(prepared.owner_id->c_str());
			std::fill(std::begin(nulls), std::end(nulls), false);
		}
		result = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	});
	return result;
}

// billing._quota_invalidate(owner_ids): the cached limits of the owners'
// counters (all counters when NULL) are stale. Runs with the newest snapshot,
// as PostgreSQL's own foreign-key checks do, so that also in REPEATABLE READ
// it reaches a counter another transaction created and committed after this
// one's snapshot (the caller waited for it on the owner's billing.user_locks
// row); a counter changed concurrently is a serialization failure there.
BILLING_FUNCTION(billing_quota_invalidate)
{
	return Int64GetDatum(static_cast<int64_t>(InvalidateCachedLimits(PG_ARGISNULL(0) ? std::nullopt
																					 : std::optional<Datum>(PG_GETARG_DATUM(0)))));
}

// billing._quota_invalidate_users(): the statement trigger on
// billing.subscriptions (SECURITY DEFINER, src/sql/10_quota.sql). Any write to
// users' subscriptions makes the cached limits of those users' counters
// stale: each user's billing.user_locks row is written first, in user order
// (waiting for a fill in progress; a write, not only a lock, so that a
// REPEATABLE READ fill that did not see it fails), then every counter of
// those users is cleared, whatever its cached state looks like in this
// snapshot. The users come from the transition tables, read here.
BILLING_FUNCTION(billing_quota_invalidate_users)
{
	TriggerData *trigger = TriggerDataOf(fcinfo, "billing._quota_invalidate_users()");
	if (!TRIGGER_FIRED_FOR_STATEMENT(trigger->tg_event) || !TRIGGER_FIRED_AFTER(trigger->tg_event) ||
		trigger->tg_newtable == nullptr || (TRIGGER_FIRED_BY_UPDATE(trigger->tg_event) && trigger->tg_oldtable == nullptr))
		throw billing::Error(billing::sqlstate::kInternalError,
							 "billing._quota_invalidate_users() must be an AFTER INSERT or UPDATE statement trigger with "
							 "its transition tables");
	if (Restoring())
		return PointerGetDatum(nullptr);  // pg_restore: the dumped counters and locks come as they were
	// Distinct users in byte order; the statement below orders them by the
	// column's collation, as the lock protocol's other writers do.
	std::set<std::string> users;
	Relation rel = trigger->tg_relation;
	TupleTableSlot *slot = nullptr;
	AttrNumber user_column = InvalidAttrNumber;
	PgCall([&] {
		user_column = SPI_fnumber(RelationGetDescr(rel), "user_id");
		if (user_column <= 0)
			elog(ERROR, "relation \"%s\" has no column \"user_id\"", RelationGetRelationName(rel));
		slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
	});
	for (Tuplestorestate *rows : {trigger->tg_newtable, TRIGGER_FIRED_BY_UPDATE(trigger->tg_event) ? trigger->tg_oldtable : nullptr}) {
		if (rows == nullptr)
			continue;
		PgCall([&] { RewindTransitionTable(rows); });
		for (;;) {
			bool got = false;
			bool isnull = true;
			const char *bytes = nullptr;
			int len = 0;
			PgCall([&] {
				got = tuplestore_gettupleslot(rows, true, false, slot);
				if (!got)
					return;
				Datum value = slot_getattr(slot, user_column, &isnull);
				if (isnull)
					return;
				struct varlena *text = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(value)));
				bytes = VARDATA_ANY(text);
				len = static_cast<int>(VARSIZE_ANY_EXHDR(text));
			});
			if (!got)
				break;
			if (!isnull)
				users.emplace(bytes, len);
		}
	}
	PgCall([&] { ExecDropSingleTupleTableSlot(slot); });
	// A lifecycle call writing a user's subscriptions invalidates once, when
	// it is done (FinishDeferredQuotaInvalidation).
	for (auto it = users.begin(); it != users.end();)
		it = QuotaInvalidationDeferred(*it) ? users.erase(it) : std::next(it);
	if (users.empty())
		return PointerGetDatum(nullptr);
	Spi spi;
	InvalidateUsersQuota(spi, std::vector<std::optional<std::string>>(users.begin(), users.end()), true);
	spi.Finish();
	return PointerGetDatum(nullptr);
}

// billing._plan_limit(limits, quota): the one reading of a plan's limit
// (NULL = unlimited), by the core's parser, for the trigger, the reports and
// the check when a plan is written.
BILLING_FUNCTION(billing_plan_limit)
{
	char *json = nullptr;
	PgCall([&] {
		Jsonb *limits = PG_GETARG_JSONB_P(0);
		json = JsonbToCString(nullptr, &limits->root, VARSIZE(limits));
	});
	std::string quota = TextArg(fcinfo, 1);
	std::string plan = PG_NARGS() > 2 && !PG_ARGISNULL(2) ? TextArg(fcinfo, 2) : std::string();
	std::optional<int64_t> limit = billing::ParseLimit(json, quota, plan);
	if (!limit)
		PG_RETURN_NULL();
	return Int64GetDatum(*limit);
}

// billing._before_drop_extension(): DROP EXTENSION billing first detaches
// every application table. Recognised from the statement's parse tree (a
// DropStmt of extensions naming billing), never from the query text; at
// ddl_command_start, because the triggers on application tables depend on
// billing's functions and would make the drop fail before sql_drop.
BILLING_FUNCTION(billing_before_drop_extension)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		throw billing::Error("39P01", "billing._before_drop_extension() may only be called as an event trigger");
	EventTriggerData *data = reinterpret_cast<EventTriggerData *>(fcinfo->context);
	bool dropping_billing = false;
	if (data->parsetree != nullptr && IsA(data->parsetree, DropStmt)) {
		DropStmt *drop = reinterpret_cast<DropStmt *>(data->parsetree);
		ListCell *cell = nullptr;
		if (drop->removeType == OBJECT_EXTENSION)
			foreach (cell, drop->objects)
				if (IsA(lfirst(cell), String) && std::strcmp(strVal(lfirst(cell)), "billing") == 0)
					dropping_billing = true;
	}
	if (!dropping_billing)
		return PointerGetDatum(nullptr);
	AsInvoker([&] {
		Spi spi;
		spi.Execute("SELECT billing.detach(a.relation) FROM (SELECT DISTINCT relation FROM billing.attachments) a");
		spi.Finish();
	});
	return PointerGetDatum(nullptr);
}

// The id column of the attached users table above `table`, if any: `table`
// itself or a table it is a partition of.
static std::optional<std::string>
AttachedUsersColumn(Oid table)
{
	std::string oids = OidArrayText(TableAndAncestors(table));
	std::optional<std::string> column;
	AsBillingOwner(CountersOwner(), [&] {
		Spi spi(Spi::Access::kReadOnly);
		auto rows = spi.Query("SELECT a.key_column::pg_catalog.text FROM billing.attachments a"
							  " WHERE a.kind OPERATOR(pg_catalog.=) 'users'"
							  " AND a.relation::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])"
							  " ORDER BY a.id LIMIT 1",
							  {SqlArg::Text(oids)});
		if (!rows.empty())
			column = rows.at(0).text(0);
		spi.Finish();
	});
	return column;
}

// Whether billing counts the rows of `table` (it is an attachment's
// relation: the users, rooms or participants table, not a rooms table read
// only for its owners).
static bool
CountedByBilling(Oid table)
{
	bool counted = false;
	AsBillingOwner(CountersOwner(), [&] {
		Spi spi(Spi::Access::kReadOnly);
		counted = spi.Query("SELECT EXISTS (SELECT FROM billing.attachments a"
							" WHERE a.relation::pg_catalog.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid)",
							{SqlArg::Text(std::to_string(table))})
					  .at(0)
					  .text_or(0, "f") == "t";
		spi.Finish();
	});
	return counted;
}

// The tables a list of parent names (CREATE TABLE ... INHERITS, ALTER TABLE
// ... INHERIT) names, those that exist; `schema` for an unqualified one of a
// CREATE SCHEMA element. Call in PgCall.
static void
InheritanceParents(List *parents, const char *schema, std::vector<Oid> *out)
{
	ListCell *cell = nullptr;
	foreach (cell, parents) {
		if (!IsA(lfirst(cell), RangeVar))
			continue;
		RangeVar name = *reinterpret_cast<RangeVar *>(lfirst(cell));  // (read only)
		Oid parent = InvalidOid;
		if (name.schemaname == nullptr && schema != nullptr) {
			// (CREATE SCHEMA looked in the new schema first)
			name.schemaname = const_cast<char *>(schema);
			parent = RangeVarGetRelid(&name, NoLock, true);
			name.schemaname = nullptr;
		}
		if (!OidIsValid(parent))
			parent = RangeVarGetRelid(&name, NoLock, true);
		if (OidIsValid(parent))
			out->push_back(parent);
	}
}

// The first column of the first row `sql` returns (a copy in the caller's
// memory context; nullptr for none or NULL) read on the newest snapshot, not
// the transaction's: in REPEATABLE READ or SERIALIZABLE the ALTER TABLE took
// its snapshot before the LOCK that waited for an insert in progress, and
// would not see the rows that insert committed (attack finding 7.3). As the
// current user; call in PgCall, with `sql` owned outside it.
static char *
FirstValueOnLatestSnapshot(const char *sql, bool *found)
{
	MemoryContext caller = CurrentMemoryContext;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	SPIPlanPtr plan = SPI_prepare(sql, 0, nullptr);
	if (plan == nullptr)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_execute_snapshot(plan, nullptr, nullptr, GetLatestSnapshot(), InvalidSnapshot, true, false, 1) !=
		SPI_OK_SELECT)
		elog(ERROR, "reading the partition failed");
	*found = SPI_processed > 0;
	char *value = nullptr;
	if (*found && SPI_tuptable->tupdesc->natts > 0) {
		char *text = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (text != nullptr)
			value = MemoryContextStrdup(caller, text);
	}
	SPI_finish();
	return value;
}

// The tables an ALTER TABLE attaches (ATTACH PARTITION) and detaches
// (DETACH PARTITION), those that exist. Call in PgCall.
static void
PartitionsNamed(AlterTableStmt *stmt, std::vector<Oid> *attached, std::vector<Oid> *detached)
{
	ListCell *cell = nullptr;
	foreach (cell, stmt->cmds) {
		AlterTableCmd *cmd = reinterpret_cast<AlterTableCmd *>(lfirst(cell));
		if ((cmd->subtype != AT_AttachPartition && cmd->subtype != AT_DetachPartition) || cmd->def == nullptr)
			continue;
		Oid partition = RangeVarGetRelid(reinterpret_cast<PartitionCmd *>(cmd->def)->name, NoLock, true);
		if (OidIsValid(partition))
			(cmd->subtype == AT_AttachPartition ? attached : detached)->push_back(partition);
	}
}

// billing._before_attach_partition(): ALTER TABLE t ATTACH PARTITION p, where t
// is a table whose rows billing counts (rooms, participants) or a partition of
// one, and p already holds rows: refused, because those rows would arrive
// without passing the quota triggers. Read from the statement's parse tree at
// ddl_command_start; p is read as the invoking user (who must own it to attach
// it). An empty p, and CREATE TABLE ... PARTITION OF, need nothing: rows
// arriving later pass the triggers the partition inherits.
BILLING_FUNCTION(billing_before_attach_partition)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		throw billing::Error("39P01", "billing._before_attach_partition() may only be called as an event trigger");
	EventTriggerData *data = reinterpret_cast<EventTriggerData *>(fcinfo->context);
	if (data->parsetree == nullptr || !IsA(data->parsetree, AlterTableStmt))
		return PointerGetDatum(nullptr);
	AlterTableStmt *stmt = reinterpret_cast<AlterTableStmt *>(data->parsetree);
	std::vector<Oid> partitions;
	std::vector<Oid> detached;
	Oid table = InvalidOid;
	PgCall([&] {
		PartitionsNamed(stmt, &partitions, &detached);
		if (!partitions.empty() || !detached.empty())
			table = RangeVarGetRelid(stmt->relation, NoLock, true);
	});
	if (!OidIsValid(table))
		return PointerGetDatum(nullptr);
	std::string oids = OidArrayText(TableAndAncestors(table));
	// the id column of an attached users table among them
	std::optional<std::string> users_column = AttachedUsersColumn(table);
	// A partition detached from the attached users table (or from one of its
	// partitions) takes its users out of the table, as a TRUNCATE of it
	// would, and no row trigger fires: refused while billing holds anything
	// live (the core's UsersDetachRefusal, by the TRUNCATE's measure; known
	// limit until session 10, attack finding 4.2). Allowed, its billing
	// truncate triggers go with it (billing._after_partition_change).
	if (!detached.empty() && users_column) {
		std::optional<billing::Error> refusal;
		AsBillingOwner(CountersOwner(), [&] {
			for (Oid partition : detached) {
				if (refusal)
					break;
				std::string name;
				PgCall([&] { name = get_rel_name(partition); });
				refusal = UsersTruncateRefusalFor(name, true);
			}
		});
		if (refusal)
			throw *refusal;
	}
	if (partitions.empty())
		return PointerGetDatum(nullptr);
	bool counted = false;
	AsBillingOwner(CountersOwner(), [&] {
		Spi spi(Spi::Access::kReadOnly);
		auto rows = spi.Query("SELECT EXISTS (SELECT FROM billing.attachments a"
							  " WHERE a.kind OPERATOR(pg_catalog.<>) 'users'"
							  " AND a.relation::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[]))",
							  {SqlArg::Text(oids)});
		counted = rows.at(0).text_or(0, "f") == "t";
		spi.Finish();
	});
	// A partition attached to an attached users table brings its users
	// without the INSERT trigger: each gets a Free subscription here, as
	// attach_users' backfill gives one (attack finding 5.4: they had none).
	// Read as the invoking user (who must own the partition), locked first so
	// that no row slips in before the attach; only their ids, as text, reach
	// billing's owner. If the ATTACH fails, its transaction takes them back.
	// (only for the role that may attach: PostgreSQL refuses anyone else
	// after this trigger, and billing's owner writes nothing for them)
	bool owns_all = false;
	PgCall([&] {
		owns_all = pg_class_ownercheck(table, GetUserId());
		for (Oid partition : partitions)
			owns_all = owns_all && pg_class_ownercheck(partition, GetUserId());
	});
	if (users_column && owns_all)
		for (Oid partition : partitions) {
			std::string name;
			PgCall([&] {
				name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(partition)), get_rel_name(partition));
			});
			std::optional<std::string> ids;
			AsInvoker([&] {
				Spi spi;
				spi.Execute("LOCK TABLE " + name + " IN SHARE MODE");
				spi.Finish();
				std::string column;
				PgCall([&] { column = quote_identifier(users_column->c_str()); });
				std::string sql = "SELECT pg_catalog.array_agg(DISTINCT pg_catalog.format('%s', p." + column +
								  "))::pg_catalog.text FROM " + name + " p WHERE p." + column + " IS NOT NULL";
				char *value = nullptr;
				bool found = false;
				PgCall([&] { value = FirstValueOnLatestSnapshot(sql.c_str(), &found); });
				if (value != nullptr)
					ids = std::string(value);
			});
			if (ids)
				AsBillingOwner(CountersOwner(), [&] {
					Spi spi;
					(void) spi.Query("SELECT billing._start_free_many($1::pg_catalog.text[], pg_catalog.now())",
									 {SqlArg::Text(*ids)});
					spi.Finish();
				});
		}
	if (!counted)
		return PointerGetDatum(nullptr);
	for (Oid partition : partitions) {
		std::string name;
		PgCall([&] {
			name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(partition)), get_rel_name(partition));
		});
		bool holds_rows = false;
		// locked first (the ALTER locks it only later): no row slips in
		// between this look and the attach
		AsInvoker([&] {
			Spi spi;
			spi.Execute("LOCK TABLE " + name + " IN SHARE MODE");
			spi.Finish();
			std::string sql = "SELECT FROM " + name + " LIMIT 1";
			PgCall([&] { (void) FirstValueOnLatestSnapshot(sql.c_str(), &holds_rows); });
		});
		if (holds_rows)
			throw billing::Error(billing::sqlstate::kObjectNotInPrerequisiteState,
								 "cannot attach partition " + name + " that holds rows to a table whose rows billing counts",
								 "Its rows would not pass the quota triggers.",
								 "Attach it empty and insert its rows through the partitioned table, or detach billing "
								 "first and attach the table again (billing then counts every row).");
	}
	return PointerGetDatum(nullptr);
}

// billing._after_partition_change(): PostgreSQL clones a partitioned table's
// row triggers onto its partitions, not its statement triggers, so the users
// table's TRUNCATE refusal (billing_user_truncated) fired for the table alone
// and a TRUNCATE of one partition deleted its users unseen (known limit until
// session 10, attack finding 4.2). attach_users puts the refusal on every
// partition, at every level; this puts it on a partition that arrives later
// (CREATE TABLE ... PARTITION OF, ALTER TABLE ... ATTACH PARTITION, under the
// attached table at any depth), with the partitions it brings, and takes it
// off a partition detached (the detach was allowed: nothing live), so that a
// table billing no longer watches carries none of billing's triggers. Read
// from the statement's parse tree at ddl_command_end; the triggers are made
// and dropped as the invoking user, who owns the partition (PostgreSQL
// requires it to create or attach one).
BILLING_FUNCTION(billing_after_partition_change)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		throw billing::Error("39P01", "billing._after_partition_change() may only be called as an event trigger");
	EventTriggerData *data = reinterpret_cast<EventTriggerData *>(fcinfo->context);
	std::vector<Oid> added;
	std::vector<Oid> removed;
	std::vector<Oid> inherited_from;  // parents of a new inheritance child (not a partition)
	Oid parent = InvalidOid;  // the table a partition was detached from
	PgCall([&] {
		if (data->parsetree == nullptr)
			return;
		if (IsA(data->parsetree, CreateStmt)) {
			CreateStmt *create = reinterpret_cast<CreateStmt *>(data->parsetree);
			if (create->partbound == nullptr) {
				InheritanceParents(create->inhRelations, nullptr, &inherited_from);
				return;
			}
			Oid table = RangeVarGetRelid(create->relation, NoLock, true);
			if (OidIsValid(table))
				added.push_back(table);
		} else if (IsA(data->parsetree, CreateSchemaStmt)) {
			// CREATE SCHEMA s CREATE TABLE p PARTITION OF users ...: its
			// elements run as subcommands, which fire no event trigger of
			// their own (attack finding 7.1: such a partition went without
			// the refusal). Their names carry the new schema (set in place by
			// transformCreateSchemaStmt; the statement's own name otherwise).
			CreateSchemaStmt *schema = reinterpret_cast<CreateSchemaStmt *>(data->parsetree);
			ListCell *cell = nullptr;
			foreach (cell, schema->schemaElts) {
				if (!IsA(lfirst(cell), CreateStmt))
					continue;
				CreateStmt *create = reinterpret_cast<CreateStmt *>(lfirst(cell));
				if (create->partbound == nullptr)
					InheritanceParents(create->inhRelations, schema->schemaname, &inherited_from);
				if (create->partbound == nullptr || create->relation == nullptr)
					continue;
				RangeVar name = *create->relation;  // (read only: a copy naming the schema)
				if (name.schemaname == nullptr)
					name.schemaname = schema->schemaname;
				Oid table = name.schemaname == nullptr ? InvalidOid : RangeVarGetRelid(&name, NoLock, true);
				if (OidIsValid(table))
					added.push_back(table);
			}
		} else if (IsA(data->parsetree, AlterTableStmt)) {
			AlterTableStmt *stmt = reinterpret_cast<AlterTableStmt *>(data->parsetree);
			PartitionsNamed(stmt, &added, &removed);
			if (!removed.empty())
				parent = RangeVarGetRelid(stmt->relation, NoLock, true);
			ListCell *cell = nullptr;
			foreach (cell, stmt->cmds) {
				AlterTableCmd *cmd = reinterpret_cast<AlterTableCmd *>(lfirst(cell));
				if (cmd->subtype == AT_AddInherit && cmd->def != nullptr && IsA(cmd->def, RangeVar))
					InheritanceParents(list_make1(cmd->def), nullptr, &inherited_from);
			}
		}
	});
	// PostgreSQL gives an inheritance child none of its parent's triggers
	// (a partition gets the row triggers), while a query of the parent reads
	// the child's rows: the rows of a child of a table billing counts would
	// be users without the users trigger (a DELETE through the parent ends
	// nothing) or rooms and participants no quota counts (attack finding
	// 7.2). Refused, as an ATTACH PARTITION of a table with rows is.
	for (Oid inherited : inherited_from)
		if (CountedByBilling(inherited)) {
			std::string name;
			PgCall([&] { name = get_rel_name(inherited); });
			throw billing::Error(billing::sqlstate::kObjectNotInPrerequisiteState,
								 "cannot make a table an inheritance child of table \"" + name +
									 "\", whose rows billing counts",
								 "PostgreSQL fires none of the parent's triggers for an inheritance child's rows, and "
								 "a query of the parent reads them: billing would not see them.",
								 "Use a partitioned table and CREATE TABLE ... PARTITION OF, or detach billing from "
								 "the table first (billing.detach).");
		}
	if (added.empty() && removed.empty())
		return PointerGetDatum(nullptr);
	// billing's own truncate trigger on a table (not a clone: statement
	// triggers have none)
	static const char *const ours =
		"SELECT FROM pg_catalog.pg_trigger tg JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) tg.tgfoid"
		" WHERE tg.tgrelid OPERATOR(pg_catalog.=) t.relid AND tg.tgname OPERATOR(pg_catalog.=) 'billing_user_truncated'"
		" AND p.pronamespace OPERATOR(pg_catalog.=) 'billing'::pg_catalog.regnamespace";
	for (Oid table : added) {
		std::optional<std::string> column = AttachedUsersColumn(table);
		if (!column)
			continue;
		AsInvoker([&] {
			Spi spi;
			for (const Row &row : spi.Query(std::string("SELECT pg_catalog.format('CREATE TRIGGER billing_user_truncated"
														" BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION"
														" billing._user_inserted(%L)', t.relid, $2::pg_catalog.text)"
														" FROM pg_catalog.pg_partition_tree($1::pg_catalog.oid::pg_catalog.regclass) t"
														" WHERE NOT EXISTS (") +
												ours + ")",
											{SqlArg::Text(std::to_string(table)), SqlArg::Text(*column)}))
				spi.Execute(row.text_required(0));
			spi.Finish();
		});
	}
	// Detached (allowed: billing_before_attach_partition refused it otherwise)
	// from the attached users table: billing's triggers leave with it, unless
	// it is still under an attached users table (or is one itself).
	if (!removed.empty() && OidIsValid(parent) && AttachedUsersColumn(parent)) {
		for (Oid table : removed) {
			if (AttachedUsersColumn(table))
				continue;
			AsInvoker([&] {
				Spi spi;
				for (const Row &row : spi.Query(std::string("SELECT pg_catalog.format('DROP TRIGGER billing_user_truncated ON %s', t.relid)"
															" FROM pg_catalog.pg_partition_tree($1::pg_catalog.oid::pg_catalog.regclass) t"
															" WHERE EXISTS (") +
													ours + ")",
												{SqlArg::Text(std::to_string(table))}))
					spi.Execute(row.text_required(0));
				spi.Finish();
			});
		}
	}
	return PointerGetDatum(nullptr);
}
