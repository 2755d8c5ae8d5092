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
	AttrNumber updated_at;
};

// The column's number if it has the type this code reads it as; otherwise
// InvalidAttrNumber, and every change goes through the slow path's UPDATE
// (a DBA's ALTER COLUMN ... TYPE is followed, never an internal error).
AttrNumber
ColumnNumber(TupleDesc desc, const char *name, Oid type)
{
	for (int i = 0; i < desc->natts; i++) {
		Form_pg_attribute attr = TupleDescAttr(desc, i);
		if (attr->attisdropped || std::strcmp(NameStr(attr->attname), name) != 0)
			continue;
		return attr->atttypid == type ? attr->attnum : InvalidAttrNumber;
	}
	return InvalidAttrNumber;
}

CounterColumns
LookUpColumns(TupleDesc desc)
{
	return {ColumnNumber(desc, "attachment_id", INT4OID), ColumnNumber(desc, "key", TEXTOID),
			ColumnNumber(desc, "used", INT8OID),          ColumnNumber(desc, "cap", INT8OID),
			ColumnNumber(desc, "cap_valid_until", TIMESTAMPTZOID), ColumnNumber(desc, "usage_day", DATEOID),
			ColumnNumber(desc, "usage_pending", INT8OID), ColumnNumber(desc, "updated_at", TIMESTAMPTZOID)};
}

bool
AllColumnsFound(const CounterColumns &c)
{
	return c.attachment_id != InvalidAttrNumber && c.key != InvalidAttrNumber && c.used != InvalidAttrNumber &&
		   c.cap != InvalidAttrNumber && c.cap_valid_until != InvalidAttrNumber && c.usage_day != InvalidAttrNumber &&
		   c.usage_pending != InvalidAttrNumber && c.updated_at != InvalidAttrNumber;
}

// Whether the table has nothing an UPDATE would do beyond heap_update and
// index entries: no trigger but the foreign key's own (the fast path never
// changes attachment_id), no CHECK constraint but the two shipped ones (which
// hold by construction), no generated or identity column (an UPDATE refuses
// to write GENERATED ALWAYS: 428C9), no rule and no row-level security.
// Anything a DBA adds sends every change through the slow path's UPDATE.
bool
NothingBeyondTheHeap(Relation counters)
{
	// row-level security (the statements run as the table's owner: it applies
	// when FORCEd; its policies' checks are no heap_update): attack6 F6
	if (counters->rd_rules != nullptr || counters->rd_rel->relrowsecurity)
		return false;
	if (counters->trigdesc != nullptr)
		for (int i = 0; i < counters->trigdesc->numtriggers; i++)
			if (!counters->trigdesc->triggers[i].tgisinternal)
				return false;
	TupleDesc desc = RelationGetDescr(counters);
	for (int i = 0; i < desc->natts; i++)
		if (TupleDescAttr(desc, i)->attidentity != '\0')
			return false;
	TupleConstr *constr = desc->constr;
	if (constr == nullptr)
		return true;
	if (constr->has_generated_stored)
		return false;
	for (int i = 0; i < constr->num_check; i++) {
		const char *name = constr->check[i].ccname;
		if (std::strcmp(name, "quota_counters_used_check") != 0 &&
			std::strcmp(name, "quota_counters_usage_pending_check") != 0)
			return false;
	}
	return true;
}

// Whether the fast path can keep every index of the table: plain, immediate
// btree or hash column indexes. Anything else (added by a DBA) sends every
// change through the slow path's UPDATE, which keeps any index; checked
// before anything is written. Also finds the unique btree on
// (attachment_id, key), the primary key the fast path looks counters up
// with (InvalidOid when it is missing: slow path).
bool
IndexesAllowFastPath(Relation counters, const CounterColumns &columns, Oid *lookup_index)
{
	List *index_oids = RelationGetIndexList(counters);
	bool allowed = true;
	*lookup_index = InvalidOid;
	ListCell *cell = nullptr;
	foreach (cell, index_oids) {
		Relation index = index_open(lfirst_oid(cell), AccessShareLock);
		Form_pg_index form = index->rd_index;
		Oid am = index->rd_rel->relam;
		if (!form->indimmediate || form->indisexclusion || (am != BTREE_AM_OID && am != HASH_AM_OID) ||
			!heap_attisnull(index->rd_indextuple, Anum_pg_index_indexprs, nullptr) ||
			!heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, nullptr))
			allowed = false;
		else if (am == BTREE_AM_OID && form->indisunique && form->indnkeyatts == 2 &&
				 form->indkey.values[0] == columns.attachment_id && form->indkey.values[1] == columns.key &&
				 index->rd_opfamily[0] == INTEGER_BTREE_FAM_OID && index->rd_opfamily[1] == TEXT_BTREE_FAM_OID &&
				 form->indisvalid && form->indisready)
			*lookup_index = RelationGetRelid(index);
		index_close(index, AccessShareLock);
	}
	list_free(index_oids);
	return allowed && OidIsValid(*lookup_index);
}

// billing.quota_counters as this backend last found it: a few numbers, the
// same whatever the number of owners. Any relcache invalidation of the table
// (ALTER, DROP EXTENSION) forgets it.
struct CounterRelation {
	Oid relid;
	Oid lookup_index;  // the primary key (attachment_id, key)
	CounterColumns columns;
	bool fast_path_allowed;
	// a new counter can be inserted without a statement: the fast path is
	// allowed, the table has no trigger at all and no column but the shipped
	// ones (created_at and deleted_at below)
	bool insert_allowed;
	AttrNumber owner_id;
	AttrNumber created_at;
	AttrNumber deleted_at;
};
CounterRelation counter_relation = {InvalidOid, InvalidOid, {}, false, false, InvalidAttrNumber, InvalidAttrNumber,
									InvalidAttrNumber};

// Whether the column's default is the shipped "pg_catalog.now()", what the
// row formed here gives created_at and updated_at.
bool
DefaultIsNow(TupleDesc desc, AttrNumber column)
{
	TupleConstr *constr = desc->constr;
	if (constr == nullptr || !TupleDescAttr(desc, column - 1)->atthasdef)
		return false;
	for (int i = 0; i < constr->num_defval; i++) {
		if (constr->defval[i].adnum != column)
			continue;
		Node *expr = static_cast<Node *>(stringToNode(constr->defval[i].adbin));
		return IsA(expr, FuncExpr) && reinterpret_cast<FuncExpr *>(expr)->funcid == F_NOW &&
			   reinterpret_cast<FuncExpr *>(expr)->args == NIL;
	}
	return false;
}

// Whether a new counter's row can be formed here: every live column is one
// of the shipped eleven (a column a DBA adds could have a default or a NOT
// NULL this code does not know), and no trigger at all (an INSERT would fire
// even an internal one, a foreign key's check). The shipped columns as
// shipped where the statement would do more than store the values given
// (attack6 F1, F2): created_at and updated_at default to now() and
// deleted_at has no default (the INSERT leaves these three to their
// defaults), cap and deleted_at (NULL in a new row) allow NULL (ExecConstraints
// raises 23502 otherwise); no identity column (NothingBeyondTheHeap).
bool
InsertAllowed(Relation counters, const CounterColumns &columns, AttrNumber owner_id, AttrNumber created_at,
			  AttrNumber deleted_at)
{
	if (counters->trigdesc != nullptr || owner_id == InvalidAttrNumber || created_at == InvalidAttrNumber ||
		deleted_at == InvalidAttrNumber)
		return false;
	TupleDesc desc = RelationGetDescr(counters);
	int live = 0;
	for (int i = 0; i < desc->natts; i++) {
		Form_pg_attribute attr = TupleDescAttr(desc, i);
		if (attr->attisdropped)
			continue;
		if (attr->attgenerated != '\0')
			return false;
		live++;
	}
	return live == 11 && !TupleDescAttr(desc, columns.cap - 1)->attnotnull &&
		   !TupleDescAttr(desc, deleted_at - 1)->attnotnull && !TupleDescAttr(desc, deleted_at - 1)->atthasdef &&
		   DefaultIsNow(desc, created_at) && DefaultIsNow(desc, columns.updated_at);
}

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
			CounterColumns columns = LookUpColumns(RelationGetDescr(counters));
			Oid lookup_index = InvalidOid;
			bool allowed = AllColumnsFound(columns) && NothingBeyondTheHeap(counters) &&
						   IndexesAllowFastPath(counters, columns, &lookup_index);
			TupleDesc desc = RelationGetDescr(counters);
			AttrNumber owner_id = ColumnNumber(desc, "owner_id", TEXTOID);
			AttrNumber created_at = ColumnNumber(desc, "created_at", TIMESTAMPTZOID);
			AttrNumber deleted_at = ColumnNumber(desc, "deleted_at", TIMESTAMPTZOID);
			bool insert_allowed = allowed && InsertAllowed(counters, columns, owner_id, created_at, deleted_at);
			counter_relation = {relid, lookup_index, columns, allowed, insert_allowed, owner_id, created_at, deleted_at};
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

// Whether a version found by following an update chain is still the
// counter asked for (nothing changes a counter's key today; cheap to check).
bool
SameCounter(HeapTuple tuple, TupleDesc desc, const CounterColumns &columns, int32 attachment_id, Datum key_text)
{
	bool isnull = false;
	Datum attachment = heap_getattr(tuple, columns.attachment_id, desc, &isnull);
	if (isnull || DatumGetInt32(attachment) != attachment_id)
		return false;
	Datum key = heap_getattr(tuple, columns.key, desc, &isnull);
	return !isnull && DatumGetBool(DirectFunctionCall2Coll(texteq, TupleDescAttr(desc, columns.key - 1)->attcollation, key, key_text));
}

// The counter (attachment_id, key) visible to snapshot, copied, or nullptr.
// Looked up through the primary key, as the slow path's statements and the
// new counter's insert find it. (Session 7 looked it up through a hash index
// on key, one bucket page; but every new counter then wrote an entry into a
// bucket chosen at random, a full-page image after each checkpoint on a
// large book, where the primary key's entry for a new room lands beside the
// previous new room's.) Every candidate is checked again (cheap).
HeapTuple
FindCounter(Relation counters, Oid lookup_index, Snapshot snapshot, const CounterColumns &columns,
			int32 attachment_id, Datum key_text, bool *index_usable = nullptr)
{
	TupleDesc desc = RelationGetDescr(counters);
	Relation index = index_open(lookup_index, AccessShareLock);
	// Usable for this snapshot, as get_relation_info decides for the planner
	// (the table's cached state may lag a concurrent REINDEX): else the slow path.
	Form_pg_index form = index->rd_index;
	if (!form->indisvalid || !form->indisready ||
		(form->indcheckxmin &&
		 !TransactionIdPrecedes(HeapTupleHeaderGetXmin(index->rd_indextuple->t_data), TransactionXmin))) {
		index_close(index, NoLock);
		if (index_usable != nullptr)
			*index_usable = false;
		return nullptr;
	}
	if (index_usable != nullptr)
		*index_usable = true;
	ScanKeyData scan_keys[2];
	ScanKeyInit(&scan_keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(attachment_id));
	ScanKeyInit(&scan_keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ, key_text);
	scan_keys[1].sk_collation = index->rd_indcollation[1];
	IndexScanDesc scan = index_beginscan(counters, index, snapshot, 2, 0);
	index_rescan(scan, scan_keys, 2, nullptr, 0);
	TupleTableSlot *slot = table_slot_create(counters, nullptr);
	HeapTuple found = nullptr;
	while (found == nullptr && index_getnext_slot(scan, ForwardScanDirection, slot)) {
		HeapTuple candidate = ExecFetchSlotHeapTuple(slot, false, nullptr);
		if (SameCounter(candidate, desc, columns, attachment_id, key_text))
			found = heap_copytuple(candidate);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	return found;
}

// What the counter becomes: its next version, or nullptr when the slow path
// must decide. Every change is a write, so a version this snapshot sees but
// another transaction has replaced is always noticed by heap_update.
HeapTuple
NextVersion(Relation counters, const CounterColumns &columns, HeapTuple current, const CounterRequest &request)
{
	TupleDesc desc = RelationGetDescr(counters);
	bool isnull = false;
	int64 used = DatumGetInt64(heap_getattr(current, columns.used, desc, &isnull));
	int changed_columns[3];
	Datum changed_values[3];
	bool changed_nulls[3] = {false, false, false};
	int changes = 0;

	if (request.increment) {
		// Only into the counter's open day, today's: NULL is a day the rollup
		// closed (billing.rollup_usage finds counters with pending usage by
		// their usage_day), another day one that is over; the slow path opens
		// the counter for today, which keeps the rollup's search exact.
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
		// Zero as this snapshot sees it; a newer version may not be: the slow
		// path's UPDATE decides on the newest one.
		if (used <= 0)
			return nullptr;
		changed_columns[changes] = columns.used;
		changed_values[changes++] = Int64GetDatum(used - 1);
	}
	// as the slow path's UPDATE sets it
	changed_columns[changes] = columns.updated_at;
	changed_values[changes++] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
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
		// As ExecInsertIndexTuples: an index still being built gets no entry.
		if (info->ii_ReadyForInserts) {
			if (info->ii_Expressions != NIL || info->ii_Predicate != NIL || info->ii_ExclusionOps != nullptr)
				elog(ERROR, "index \"%s\" on billing.quota_counters cannot be kept by the fast path",
					 RelationGetRelationName(index));  // IndexesAllowFastPath keeps us from here
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
	if (!counter_relation.fast_path_allowed) {
		table_close(counters, NoLock);
		return CounterOutcome::kSlowPath;
	}
	// A publication of updates needs a replica identity: the same error an
	// UPDATE raises (ExecSimpleRelationUpdate checks it too).
	CheckCmdReplicaIdentity(counters, CMD_UPDATE);
	Oid lookup_index = counter_relation.lookup_index;
	CounterColumns columns = counter_relation.columns;
	TupleDesc desc = RelationGetDescr(counters);

	// The statement's own snapshot, as an UPDATE would use it, made to see
	// this command's earlier changes (an earlier row of the same INSERT).
	// Older than a fresh one in READ COMMITTED, which only means a counter
	// changed meanwhile is found through its update chain below (every
	// fast-path decision ends in heap_update, which notices it).
	CommandCounterIncrement();
	PushCopiedSnapshot(ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	Snapshot snapshot = GetActiveSnapshot();

	Datum key_text = PointerGetDatum(cstring_to_text(key));
	HeapTuple current = FindCounter(counters, lookup_index, snapshot, columns, attachment_id, key_text);

	CounterOutcome outcome = current == nullptr ? CounterOutcome::kNoCounter : CounterOutcome::kSlowPath;
	TupleTableSlot *newest = nullptr;
	while (current != nullptr) {
		HeapTuple next = NextVersion(counters, columns, current, request);
		if (next == nullptr)
			break;
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
		if (table_tuple_lock(counters, &tid, snapshot, newest, GetCurrentCommandId(true), lock_mode, LockWaitBlock,
							 TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &failure) != TM_Ok)
			break;
		current = ExecCopySlotHeapTuple(newest);
		if (!SameCounter(current, desc, columns, attachment_id, key_text))
			break;  // as EvalPlanQual re-checks the whole WHERE clause
	}
	if (newest != nullptr)
		ExecDropSingleTupleTableSlot(newest);
	PopActiveSnapshot();
	table_close(counters, NoLock);
	return outcome;
}

// A new counter counting its first row, as
// "INSERT INTO billing.quota_counters ... ON CONFLICT DO NOTHING" inserts it
// (PrepareCounter's and CreateCounted's statement), without the statement:
// the executor's start and end, the CHECK expressions read back from their
// stored form and the defaults evaluated were most of its cost. The steps
// are ExecInsert's for ON CONFLICT DO NOTHING: every unique index checked
// first (waiting for a transaction inserting the same key), the row inserted
// speculatively, its index entries, then confirmed; a conflict found by the
// index entries (a racing insert of the key) kills the row and checks again.
// A conflict is kExists: in REPEATABLE READ and SERIALIZABLE a counter this
// transaction's snapshot does not see is a serialization failure, as
// ExecCheckTIDVisible raises it. The CHECK constraints (used >= 0,
// usage_pending >= 0) hold by construction.
CreateOutcome
CreateCounterRow(const NewCounter &c)
{
	Relation counters = OpenCounters();
	if (!counter_relation.insert_allowed) {
		table_close(counters, NoLock);
		return CreateOutcome::kUseSql;
	}
	CheckCmdReplicaIdentity(counters, CMD_INSERT);
	const CounterColumns &columns = counter_relation.columns;
	TupleDesc desc = RelationGetDescr(counters);

	// a new command, as the statement would be, with its snapshot (the
	// visibility check of a conflicting counter below reads it)
	CommandCounterIncrement();
	PushCopiedSnapshot(ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	Snapshot snapshot = GetActiveSnapshot();

	TupleTableSlot *slot = table_slot_create(counters, nullptr);
	ExecClearTuple(slot);
	for (int i = 0; i < desc->natts; i++) {
		slot->tts_values[i] = 0;
		slot->tts_isnull[i] = true;
	}
	auto set = [&](AttrNumber column, Datum value) {
		slot->tts_values[column - 1] = value;
		slot->tts_isnull[column - 1] = false;
	};
	TimestampTz now = GetCurrentTransactionStartTimestamp();  // now(), as the defaults
	set(columns.attachment_id, Int32GetDatum(c.attachment_id));
	set(columns.used, Int64GetDatum(1));
	set(columns.usage_pending, Int64GetDatum(c.usage));
	if (c.cap)
		set(columns.cap, Int64GetDatum(*c.cap));
	set(columns.cap_valid_until, TimestampTzGetDatum(c.cap_valid_until));
	set(columns.usage_day, DateADTGetDatum(c.usage_day));
	set(columns.key, PointerGetDatum(cstring_to_text(c.key)));
	set(counter_relation.owner_id, PointerGetDatum(cstring_to_text(c.owner)));
	set(counter_relation.created_at, TimestampTzGetDatum(now));
	set(columns.updated_at, TimestampTzGetDatum(now));
	ExecStoreVirtualTuple(slot);

	EState *estate = CreateExecutorState();
	estate->es_snapshot = snapshot;
	estate->es_output_cid = GetCurrentCommandId(true);
	ResultRelInfo *info = makeNode(ResultRelInfo);
	InitResultRelInfo(info, counters, 1, nullptr, 0);
	ExecOpenIndices(info, true);

	CreateOutcome outcome = CreateOutcome::kCreated;
	for (;;) {
		ItemPointerData conflict;
		ItemPointerSetInvalid(&conflict);
		if (!ExecCheckIndexConstraints(info, slot, estate, &conflict, NIL)) {
			if (IsolationUsesXactSnapshot()) {
				TupleTableSlot *found = table_slot_create(counters, nullptr);
				if (!table_tuple_fetch_row_version(counters, &conflict, SnapshotAny, found))
					elog(ERROR, "failed to fetch a conflicting quota counter");
				// (one this transaction inserted is no concurrent update,
				// as ExecCheckTupleVisible decides)
				bool visible = table_tuple_satisfies_snapshot(counters, found, snapshot);
				if (!visible) {
					bool isnull = true;
					Datum xmin = slot_getsysattr(found, MinTransactionIdAttributeNumber, &isnull);
					visible = !isnull && TransactionIdIsCurrentTransactionId(DatumGetTransactionId(xmin));
				}
				ExecDropSingleTupleTableSlot(found);
				if (!visible)
					ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
									errmsg("could not serialize access due to concurrent update")));
			}
			outcome = CreateOutcome::kExists;
			break;
		}
		uint32 token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
		table_tuple_insert_speculative(counters, slot, estate->es_output_cid, 0, nullptr, token);
		bool speculative_conflict = false;
		List *recheck = ExecInsertIndexTuples(info, slot, estate, false, true, &speculative_conflict, NIL);
		table_tuple_complete_speculative(counters, slot, token, !speculative_conflict);
		SpeculativeInsertionLockRelease(GetCurrentTransactionId());
		list_free(recheck);
		if (!speculative_conflict)
			break;
		// a racing insert of the key won: check again (waits for it)
	}
	ExecCloseIndices(info);
	FreeExecutorState(estate);
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	table_close(counters, NoLock);
	return outcome;
}

// The user's billing.user_locks row locked FOR SHARE, as
// "SELECT FROM billing.user_locks l WHERE l.user_id = $1 FOR SHARE" locks it,
// without a statement: found through the primary key with a new snapshot
// (a new statement's, after CommandCounterIncrement, as SPI takes it),
// locked with table_tuple_lock by the rules of ExecLockRows: a concurrent
// writer is waited for; READ COMMITTED then locks the version it committed
// (the key never changes), REPEATABLE READ and SERIALIZABLE fail with 40001.
UserLockOutcome
ShareLockUserRow(const char *user)
{
	Oid relid = get_relname_relid("user_locks", get_namespace_oid("billing", false));
	if (!OidIsValid(relid))
		return UserLockOutcome::kUseSql;
	Relation locks = table_open(relid, RowShareLock);  // as SELECT ... FOR SHARE
	AttrNumber user_column = ColumnNumber(RelationGetDescr(locks), "user_id", TEXTOID);
	Oid key_index = RelationGetPrimaryKeyIndex(locks);
	if (locks->rd_rel->relam != HEAP_TABLE_AM_OID || locks->rd_rules != nullptr || user_column == InvalidAttrNumber ||
		!OidIsValid(key_index)) {
		table_close(locks, NoLock);
		return UserLockOutcome::kUseSql;
	}
	Relation index = index_open(key_index, AccessShareLock);
	Form_pg_index form = index->rd_index;
	if (index->rd_rel->relam != BTREE_AM_OID || form->indnkeyatts != 1 || form->indkey.values[0] != user_column ||
		index->rd_opfamily[0] != TEXT_BTREE_FAM_OID || !form->indisvalid || !form->indisready || form->indcheckxmin) {
		index_close(index, NoLock);
		table_close(locks, NoLock);
		return UserLockOutcome::kUseSql;
	}
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	Snapshot snapshot = GetActiveSnapshot();
	ScanKeyData scan_key;
	ScanKeyInit(&scan_key, 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(user));
	scan_key.sk_collation = index->rd_indcollation[0];
	TupleTableSlot *slot = table_slot_create(locks, nullptr);
	ItemPointerData tid = ProbeByKey(locks, index, snapshot, &scan_key, slot);
	bool found = ItemPointerIsValid(&tid);
	UserLockOutcome outcome = UserLockOutcome::kMissing;
	if (found) {
		TM_FailureData failure;
		bool xact_snapshot = IsolationUsesXactSnapshot();
		TM_Result result = table_tuple_lock(locks, &tid, snapshot, slot, GetCurrentCommandId(true), LockTupleShare,
											LockWaitBlock, xact_snapshot ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
											&failure);
		switch (result) {
			case TM_Ok:
			case TM_SelfModified:  // this transaction's own later version: it holds the row already
				outcome = UserLockOutcome::kLocked;
				break;
			case TM_Updated:
			case TM_Deleted:
				if (xact_snapshot)
					ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
									errmsg("could not serialize access due to concurrent update")));
				if (result == TM_Updated)
					elog(ERROR, "unexpected result %d locking a user's lock row", static_cast<int>(result));
				break;  // deleted meanwhile: missing
			default:
				elog(ERROR, "unexpected result %d locking a user's lock row", static_cast<int>(result));
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	index_close(index, NoLock);
	table_close(locks, NoLock);
	return outcome;
}

// The plan's billing.subscription_plans row locked FOR SHARE, as
// "SELECT p.limits::text, p.code, p.name FROM billing.subscription_plans p
// WHERE p.id = $1 FOR SHARE" locks and reads it, without the statement:
// found through the primary key with a new statement's snapshot, locked by
// ExecLockRows' rules (READ COMMITTED locks and reads the version a
// concurrent writer committed; REPEATABLE READ and SERIALIZABLE fail with
// 40001). False, with nothing locked, where the statement must decide: the
// table or its key not as billing made it, no such row, or a row this
// transaction changed later (the statement reports all of these as it did).
// The texts are palloc'd.
bool
ShareLockPlanRow(int64 plan_id, char **limits, char **code, char **name)
{
	Oid relid = get_relname_relid("subscription_plans", get_namespace_oid("billing", false));
	if (!OidIsValid(relid))
		return false;
	Relation plans = table_open(relid, RowShareLock);  // as SELECT ... FOR SHARE
	TupleDesc desc = RelationGetDescr(plans);
	AttrNumber id_column = ColumnNumber(desc, "id", INT8OID);
	AttrNumber limits_column = ColumnNumber(desc, "limits", JSONBOID);
	AttrNumber code_column = ColumnNumber(desc, "code", TEXTOID);
	AttrNumber name_column = ColumnNumber(desc, "name", TEXTOID);
	Oid key_index = RelationGetPrimaryKeyIndex(plans);
	// (row-level security: FOR SHARE also applies UPDATE policies; children:
	// the statement reads them too; attack6 F6)
	if (plans->rd_rel->relam != HEAP_TABLE_AM_OID || plans->rd_rules != nullptr || plans->rd_rel->relrowsecurity ||
		plans->rd_rel->relhassubclass || id_column == InvalidAttrNumber ||
		limits_column == InvalidAttrNumber || code_column == InvalidAttrNumber || name_column == InvalidAttrNumber ||
		!OidIsValid(key_index)) {
		table_close(plans, NoLock);
		return false;
	}
	Relation index = index_open(key_index, AccessShareLock);
	Form_pg_index form = index->rd_index;
	if (index->rd_rel->relam != BTREE_AM_OID || form->indnkeyatts != 1 || form->indkey.values[0] != id_column ||
		index->rd_opfamily[0] != INTEGER_BTREE_FAM_OID || !form->indisvalid || !form->indisready || form->indcheckxmin) {
		index_close(index, NoLock);
		table_close(plans, NoLock);
		return false;
	}
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	Snapshot snapshot = GetActiveSnapshot();
	ScanKeyData scan_key;
	ScanKeyInit(&scan_key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(plan_id));
	TupleTableSlot *slot = table_slot_create(plans, nullptr);
	ItemPointerData tid = ProbeByKey(plans, index, snapshot, &scan_key, slot);
	bool found = ItemPointerIsValid(&tid);
	bool locked = false;
	if (found) {
		TM_FailureData failure;
		bool xact_snapshot = IsolationUsesXactSnapshot();
		TM_Result result = table_tuple_lock(plans, &tid, snapshot, slot, GetCurrentCommandId(true), LockTupleShare,
											LockWaitBlock, xact_snapshot ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
											&failure);
		if (result == TM_Ok) {
			// A version reached by following the update chain (READ
			// COMMITTED) is rechecked against "p.id = $1", as EvalPlanQual
			// rechecks it for the statement: billing_admin may renumber a
			// plan, and the statement then returns no row (attack6 F3). The
			// lock taken stays, as the statement's does.
			bool isnull = true;
			Datum id = slot_getattr(slot, id_column, &isnull);
			locked = !isnull && DatumGetInt64(id) == plan_id;
		} else if ((result == TM_Updated || result == TM_Deleted) && xact_snapshot) {
			ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
							errmsg("could not serialize access due to concurrent update")));
		}
		// otherwise (deleted meanwhile, or changed by this transaction
		// later): nothing was locked, the statement decides
	}
	if (locked) {
		bool isnull = false;
		Datum value = slot_getattr(slot, limits_column, &isnull);
		if (!isnull) {
			Jsonb *jsonb = DatumGetJsonbP(value);
			*limits = JsonbToCString(nullptr, &jsonb->root, VARSIZE(jsonb));
		}
		value = slot_getattr(slot, code_column, &isnull);
		if (!isnull)
			*code = TextDatumGetCString(value);
		value = slot_getattr(slot, name_column, &isnull);
		if (!isnull)
			*name = TextDatumGetCString(value);
	}
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	index_close(index, NoLock);
	table_close(plans, NoLock);
	return locked;
}

// Whether a counter (attachment_id, key) exists in the snapshot a new
// statement would take (SPI's: after CommandCounterIncrement, the
// transaction's in REPEATABLE READ, a new one in READ COMMITTED); true also
// when it cannot tell (the table or its index not as billing made it).
bool
CounterVisible(int32 attachment_id, const char *key)
{
	Relation counters = OpenCounters();
	if (!counter_relation.fast_path_allowed) {
		table_close(counters, NoLock);
		return true;
	}
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	bool usable = false;
	Datum key_text = PointerGetDatum(cstring_to_text(key));
	HeapTuple found = FindCounter(counters, counter_relation.lookup_index, GetActiveSnapshot(), counter_relation.columns,
								  attachment_id, key_text, &usable);
	PopActiveSnapshot();
	// REPEATABLE READ: a counter committed after the transaction's snapshot
	// cannot be moved by this transaction; as an UPDATE of it would, fail
	// with 40001 rather than leave it naming the old owner (second attack
	// review, finding 6).
	if (found == nullptr && usable && IsolationUsesXactSnapshot()) {
		Snapshot latest = RegisterSnapshot(GetLatestSnapshot());
		HeapTuple newer = FindCounter(counters, counter_relation.lookup_index, latest, counter_relation.columns,
									  attachment_id, key_text);
		UnregisterSnapshot(latest);
		if (newer != nullptr)
			ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
							errmsg("could not serialize access due to concurrent update")));
	}
	table_close(counters, NoLock);
	return found != nullptr || !usable;
}

CounterOutcome
ChangeCounterGuarded(int32_t attachment_id, const char *key, const CounterRequest &request)
{
	CounterOutcome outcome = CounterOutcome::kSlowPath;
	PgCall([&] { outcome = ChangeCounter(attachment_id, key, request); });
	return outcome;
}

}  // namespace

// The row `index` (a B-tree on one column) finds equal to `key` under
// `snapshot`, read into `slot`: its TID, invalid when there is none (the
// first match: the callers' indexes are unique). Call in PgCall.
ItemPointerData
ProbeByKey(Relation table, Relation index, Snapshot snapshot, ScanKeyData *key, TupleTableSlot *slot)
{
	IndexScanDesc scan = index_beginscan(table, index, snapshot, 1, 0);
	index_rescan(scan, key, 1, nullptr, 0);
	ItemPointerData tid;
	ItemPointerSetInvalid(&tid);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
		tid = slot->tts_tid;
	index_endscan(scan);
	return tid;
}

void
RegisterCounterInvalidation()
{
	CacheRegisterRelcacheCallback(ForgetCounterRelation, 0);
}

Oid
CountersOwner()
{
	Oid owner = InvalidOid;
	PgCall([&] {
		Relation counters = OpenCounters();
		owner = counters->rd_rel->relowner;
		table_close(counters, NoLock);
	});
	return owner;
}

CounterOutcome
IncrementCounter(int32_t attachment_id, const char *key, const CounterIncrement &increment)
{
	return ChangeCounterGuarded(attachment_id, key, {true, increment});
}

CounterOutcome
DecrementCounter(int32_t attachment_id, const char *key)
{
	return ChangeCounterGuarded(attachment_id, key, {false, {}});
}

CreateOutcome
CreateCounter(const NewCounter &counter)
{
	CreateOutcome outcome = CreateOutcome::kUseSql;
	PgCall([&] { outcome = CreateCounterRow(counter); });
	return outcome;
}

bool
CounterExists(int32_t attachment_id, const std::string &key)
{
	bool visible = true;
	PgCall([&] { visible = CounterVisible(attachment_id, key.c_str()); });
	return visible;
}

bool
ShareLockPlan(int64_t plan_id, std::string *limits, std::string *code, std::string *name)
{
	bool locked = false;
	char *limits_text = nullptr;
	char *code_text = nullptr;
	char *name_text = nullptr;
	PgCall([&] { locked = ShareLockPlanRow(plan_id, &limits_text, &code_text, &name_text); });
	if (!locked)
		return false;
	// NULL in a NOT NULL column: as the statement's readers default them
	*limits = limits_text != nullptr ? limits_text : "{}";
	*code = code_text != nullptr ? code_text : "";
	*name = name_text != nullptr ? name_text : "";
	return true;
}

UserLockOutcome
ShareLockUser(const std::string &user)
{
	UserLockOutcome outcome = UserLockOutcome::kUseSql;
	PgCall([&] { outcome = ShareLockUserRow(user.c_str()); });
	return outcome;
}

}  // namespace billing::glue
