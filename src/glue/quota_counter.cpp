#include "glue/quota_counter.hpp"

#include "glue/guard.hpp"

#include "core/quota.hpp"

#include <optional>

namespace billing::glue {
namespace {

// Everything below runs inside one PgCall: plain C-style code that may
// ereport(ERROR) and owns nothing with a destructor.

struct CounterRequest {
	bool increment;
	CounterIncrement add;  // used when increment
};

struct CounterColumns {
	AttrNumber attachment_id;
	AttrNumber key;
	AttrNumber used;
	AttrNumber cap;
	AttrNumber cap_valid_until;
	AttrNumber usage_day;
	AttrNumber usage_pending;
};

AttrNumber
ColumnNumber(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++) {
		Form_pg_attribute attr = TupleDescAttr(desc, i);
		if (!attr->attisdropped && std::strcmp(NameStr(attr->attname), name) == 0)
			return attr->attnum;
	}
	elog(ERROR, "column \"%s\" of billing.quota_counters is missing", name);
	return InvalidAttrNumber;
}

CounterColumns
LookUpColumns(TupleDesc desc)
{
	return {ColumnNumber(desc, "attachment_id"), ColumnNumber(desc, "key"),
			ColumnNumber(desc, "used"),          ColumnNumber(desc, "cap"),
			ColumnNumber(desc, "cap_valid_until"), ColumnNumber(desc, "usage_day"),
			ColumnNumber(desc, "usage_pending")};
}

// billing.quota_counters as this backend last found it: a few numbers, the
// same whatever the number of owners. Any relcache invalidation of the table
// (ALTER, DROP EXTENSION) forgets it.
struct CounterRelation {
	Oid relid;
	Oid primary_key;
	CounterColumns columns;
};
CounterRelation counter_relation = {InvalidOid, InvalidOid, {}};

void
ForgetCounterRelation(Datum, Oid relid)
{
	if (!OidIsValid(relid) || relid == counter_relation.relid)
		counter_relation.relid = InvalidOid;
}

// Opens billing.quota_counters, locked until the transaction ends as the
// executor keeps it. Looks it up by name only when nothing valid is known.
Relation
OpenCounters()
{
	for (;;) {
		if (!OidIsValid(counter_relation.relid)) {
			Oid relid = get_relname_relid("quota_counters", get_namespace_oid("billing", false));
			if (!OidIsValid(relid))
				elog(ERROR, "relation billing.quota_counters is missing");
			Relation counters = table_open(relid, RowExclusiveLock);
			if (counters->rd_rel->relam != HEAP_TABLE_AM_OID)
				elog(ERROR, "billing.quota_counters must use the heap access method");
			Oid primary_key = RelationGetPrimaryKeyIndex(counters);
			if (!OidIsValid(primary_key))
				elog(ERROR, "billing.quota_counters has no primary key");
			counter_relation = {relid, primary_key, LookUpColumns(RelationGetDescr(counters))};
			return counters;
		}
		// Taking the lock may process invalidations that forget what we knew.
		Oid relid = counter_relation.relid;
		Relation counters = try_table_open(relid, RowExclusiveLock);
		if (counters != nullptr && counter_relation.relid == relid)
			return counters;
		if (counters != nullptr)
			table_close(counters, NoLock);
		counter_relation.relid = InvalidOid;
	}
}

// What the counter becomes: its next version, nullptr when the slow path must
// decide, or the counter itself when nothing needs to change.
HeapTuple
NextVersion(Relation counters, const CounterColumns &columns, HeapTuple current, const CounterRequest &request)
{
	TupleDesc desc = RelationGetDescr(counters);
	bool isnull = false;
	int64 used = DatumGetInt64(heap_getattr(current, columns.used, desc, &isnull));
	int changed_columns[2];
	Datum changed_values[2];
	bool changed_nulls[2] = {false, false};
	int changes = 0;

	if (request.increment) {
		Datum day = heap_getattr(current, columns.usage_day, desc, &isnull);
		if (isnull || DatumGetDateADT(day) != request.add.today)
			return nullptr;
		Datum valid_until = heap_getattr(current, columns.cap_valid_until, desc, &isnull);
		if (isnull || DatumGetTimestampTz(valid_until) <= request.add.at)
			return nullptr;
		Datum cap = heap_getattr(current, columns.cap, desc, &isnull);
		std::optional<int64_t> limit;
		if (!isnull)
			limit = DatumGetInt64(cap);
		if (request.add.enforce && !AllowsOneMore(limit, used))
			return nullptr;
		int64 pending = DatumGetInt64(heap_getattr(current, columns.usage_pending, desc, &isnull));
		int64 next_used = 0;
		int64 next_pending = 0;
		if (pg_add_s64_overflow(used, 1, &next_used) ||
			pg_add_s64_overflow(pending, request.add.usage, &next_pending))
			return nullptr;  // the slow path's SQL reports the overflow
		changed_columns[changes] = columns.used;
		changed_values[changes++] = Int64GetDatum(next_used);
		changed_columns[changes] = columns.usage_pending;
		changed_values[changes++] = Int64GetDatum(next_pending);
	} else {
		if (used <= 0)
			return current;  // already zero: reconcile_quotas repairs such drift
		changed_columns[changes] = columns.used;
		changed_values[changes++] = Int64GetDatum(used - 1);
	}
	return heap_modify_tuple_by_cols(current, desc, changes, changed_columns, changed_values, changed_nulls);
}

// A version that could not be a HOT update needs its index entries, as
// CatalogIndexInsert does for catalogs: the counters' indexes are plain
// column indexes, and none of their columns changed.
void
InsertIndexEntries(Relation counters, HeapTuple tuple)
{
	List *index_oids = RelationGetIndexList(counters);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(counters), &TTSOpsHeapTuple);
	ExecStoreHeapTuple(tuple, slot, false);
	ListCell *cell = nullptr;
	foreach (cell, index_oids) {
		Relation index = index_open(lfirst_oid(cell), RowExclusiveLock);
		IndexInfo *info = BuildIndexInfo(index);
		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL || info->ii_ExclusionOps != nullptr)
			ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							errmsg("index \"%s\" on billing.quota_counters is not supported",
								   RelationGetRelationName(index)),
							errdetail("Only plain column indexes can be kept by the quota triggers.")));
		if (info->ii_ReadyForInserts) {
			Datum values[INDEX_MAX_KEYS];
			bool isnull[INDEX_MAX_KEYS];
			FormIndexDatum(info, slot, nullptr, values, isnull);
			index_insert(index, values, isnull, &tuple->t_self, counters,
						 info->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO, true, info);
		}
		index_close(index, NoLock);
	}
	ExecDropSingleTupleTableSlot(slot);
	list_free(index_oids);
}

CounterOutcome
ChangeCounter(int32 attachment_id, const char *key, const CounterRequest &request)
{
	Relation counters = OpenCounters();
	Oid primary_key = counter_relation.primary_key;
	CounterColumns columns = counter_relation.columns;
	TupleDesc desc = RelationGetDescr(counters);

	// As SPI does before a statement that writes: this command's own earlier
	// changes (an earlier row of the same INSERT) become visible.
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	Snapshot snapshot = GetActiveSnapshot();

	ScanKeyData scan_keys[2];
	ScanKeyInit(&scan_keys[0], columns.attachment_id, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(attachment_id));
	ScanKeyInit(&scan_keys[1], columns.key, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(cstring_to_text(key)));
	scan_keys[1].sk_collation = TupleDescAttr(desc, columns.key - 1)->attcollation;
	SysScanDesc scan = systable_beginscan(counters, primary_key, true, snapshot, 2, scan_keys);
	HeapTuple found = systable_getnext(scan);
	HeapTuple current = HeapTupleIsValid(found) ? heap_copytuple(found) : nullptr;
	systable_endscan(scan);

	CounterOutcome outcome = CounterOutcome::kSlowPath;
	TupleTableSlot *newest = nullptr;
	while (current != nullptr) {
		HeapTuple next = NextVersion(counters, columns, current, request);
		if (next == nullptr)
			break;
		if (next == current) {
			outcome = CounterOutcome::kUpdated;
			break;
		}
		TM_FailureData failure;
		LockTupleMode lock_mode;
		TM_Result result = heap_update(counters, &current->t_self, next, GetCurrentCommandId(true), InvalidSnapshot,
									   true, &failure, &lock_mode);
		if (result == TM_Ok) {
			if (!HeapTupleIsHeapOnly(next))
				InsertIndexEntries(counters, next);
			outcome = CounterOutcome::kUpdated;
			break;
		}
		if (result != TM_Updated && result != TM_Deleted)
			elog(ERROR, "unexpected result %d updating a quota counter", static_cast<int>(result));
		if (IsolationUsesXactSnapshot())
			ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
							errmsg("could not serialize access due to concurrent update")));
		if (result == TM_Deleted)
			break;  // detached meanwhile: the slow path decides
		// READ COMMITTED: lock the version the other writer committed and
		// decide again on it, as UPDATE re-checks its WHERE clause.
		if (newest == nullptr)
			newest = table_slot_create(counters, nullptr);
		ItemPointerData tid = current->t_self;
		if (table_tuple_lock(counters, &tid, snapshot, newest, GetCurrentCommandId(true), LockTupleNoKeyExclusive,
							 LockWaitBlock, TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &failure) != TM_Ok)
			break;
		current = ExecCopySlotHeapTuple(newest);
		current->t_self = tid;
	}
	if (newest != nullptr)
		ExecDropSingleTupleTableSlot(newest);
	PopActiveSnapshot();
	table_close(counters, NoLock);
	return outcome;
}

CounterOutcome
ChangeCounterGuarded(int32_t attachment_id, const char *key, const CounterRequest &request)
{
	CounterOutcome outcome = CounterOutcome::kSlowPath;
	PgCall([&] { outcome = ChangeCounter(attachment_id, key, request); });
	return outcome;
}

}  // namespace

void
RegisterCounterInvalidation()
{
	CacheRegisterRelcacheCallback(ForgetCounterRelation, 0);
}

CounterOutcome
IncrementCounter(int32_t attachment_id, const char *key, const CounterIncrement &increment)
{
	return ChangeCounterGuarded(attachment_id, key, {true, increment});
}

void
DecrementCounter(int32_t attachment_id, const char *key)
{
	(void) ChangeCounterGuarded(attachment_id, key, {false, {}});
}

}  // namespace billing::glue
