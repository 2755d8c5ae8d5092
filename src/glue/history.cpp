// The subscription history's statement triggers on billing.subscriptions
// (SPEC §8 "History", src/sql/30_reports.sql), in C++. They were PL/pgSQL
// (a CTE joining the transition tables), about a third of a lifecycle call's
// time. Here the old and new rows are read from the transition tables,
// compared and dated in C++, and written by one prepared statement per chunk
// of rows (scalar parameters for a single row, arrays read with unnest for
// more); every name in the statements is qualified, and only billing's own
// types are evaluated. While the table is as shipped the rows are written
// without a statement (WriteHistoryRowsDirectly, below), one row or many.
//   billing._history_inserted(): a new subscription's first interval, from
//     started_at;
//   billing._history_updated(): for every row whose recorded columns changed,
//     the open interval closes and the new state opens one, at the declared
//     change time (per row, else billing.change_at, see glue/settings.hpp),
//     else the latest event time on the row; never before the interval it
//     follows.
#include "glue/guard.hpp"
#include "glue/settings.hpp"
#include "glue/spi.hpp"
#include "glue/triggers.hpp"

#include "core/error.hpp"
#include "core/subscription.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace billing::glue {
namespace {

// The columns of billing.subscriptions the triggers read. The first sixteen
// are written to the history under the same names (id as subscription_id);
// kPlanId..kEndReason, with deleted_at's nullness and past_due_since (the
// grace end), are the ones whose change makes a new interval.
enum Column : int {
	kId,
	kUserId,
	kPlanId,
	kStatus,
	kPriceCents,
	kCurrency,
	kBillingInterval,
	kCurrentPeriodStart,
	kCurrentPeriodEnd,
	kTrialStart,
	kTrialEnd,
	kCancelAtPeriodEnd,
	kCanceledAt,
	kEndedAt,
	kPausedAt,
	kEndReason,
	kStartedAt,
	kBillingAnchor,
	kPastDueSince,
	kDeletedAt,
	kStripeStatus,
	kColumns
};
constexpr const char *kColumnNames[kColumns] = {
	"id",			 "user_id",		"plan_id",	  "status",		 "price_cents",	 "currency",
	"billing_interval", "current_period_start", "current_period_end", "trial_start", "trial_end",
	"cancel_at_period_end", "canceled_at", "ended_at",	"paused_at",	 "end_reason",	 "started_at",
	"billing_anchor", "past_due_since", "deleted_at", "stripe_status"};
constexpr int kCopied = kEndReason + 1;
// A change of the row dates itself by the latest of these (GREATEST ignores
// NULLs); deleted_at too, so that a soft delete is dated at its deletion, not
// at the period start (review R6).
constexpr Column kEventTimes[] = {kStartedAt,  kCurrentPeriodStart, kBillingAnchor, kTrialStart,
								  kCanceledAt, kEndedAt,			kPausedAt,		kPastDueSince, kDeletedAt};

// The statements' parameters per history row: the sixteen copied columns,
// then these.
enum Extra : int { kPreviousStatus = kCopied, kRemoved, kAt, kGraceEnd, kPays, kParams };

// Rows per statement: bounds the arrays (and the memory) of a statement that
// changes millions of subscriptions.
constexpr int kChunk = 1000;

std::string
SourceColumns()
{
	std::string out;
	for (int c = 0; c < kCopied; c++)
		out += std::string(kColumnNames[c]) + ", ";
	return out + "previous_status, removed, at, grace_end, pays";
}

// The rows to write as relation c, from one array per parameter (a
// statement of one row: InsertedOneRowSql, UpdatedOneRowSql).
std::string
Source()
{
	std::string out = "ROWS FROM (";
	for (int p = 1; p <= kParams; p++)
		out += (p > 1 ? ", " : "") + ("pg_catalog.unnest($" + std::to_string(p) + ")");
	return out + ") AS c(" + SourceColumns() + ")";
}

// Whether the new state has been paid for: the core's billing::StartsPaying,
// computed per row in Add.
constexpr const char *kPaid = "c.pays";

// INSERT INTO billing.subscription_history (...) SELECT c.id, ..., then
// valid_from and paid_since as given.
std::string
HistoryInsert(const std::string &valid_from, const std::string &paid_since)
{
	std::string out = "INSERT INTO billing.subscription_history (subscription_id";
	for (int c = 1; c < kCopied; c++)
		out += std::string(", ") + kColumnNames[c];
	out += ", previous_status, removed, grace_end, valid_from, paid_since) SELECT c.id";
	for (int c = 1; c < kCopied; c++)
		out += std::string(", c.") + kColumnNames[c];
	return out + ", c.previous_status, c.removed, c.grace_end, " + valid_from + ", " + paid_since;
}

// New subscriptions: the first interval from started_at (c.at), paid from
// then if it starts active or past_due.
const std::string &
InsertedSql()
{
	static const std::string sql =
		HistoryInsert("c.at", std::string("CASE WHEN ") + kPaid + " THEN c.at END") + " FROM " + Source();
	return sql;
}

// Changed subscriptions: the open interval closes at the change time (never
// before it opened) and the new one opens where it closed; paid_since carries
// over, or starts there when the new state is paid.
const std::string &
UpdatedSql()
{
	auto text = [] {
		return "WITH c AS (SELECT * FROM " + Source() +
			   "), closed AS (UPDATE billing.subscription_history h SET valid_to = GREATEST(c.at, h.valid_from),"
			   " updated_at = pg_catalog.now() FROM c WHERE h.subscription_id OPERATOR(pg_catalog.=) c.id"
			   // the ids again, as the parameter itself: an index condition on
			   // subscription_history_open whatever the statistics say (a plan
			   // made before the table's first ANALYZE joined c to a scan of
			   // every open interval, one per current subscription)
			   " AND h.subscription_id OPERATOR(pg_catalog.=) ANY ($1)"
			   " AND h.valid_to OPERATOR(pg_catalog.=) 'infinity'::pg_catalog.timestamptz"
			   " RETURNING h.subscription_id, h.valid_to, h.paid_since) " +
			   HistoryInsert("COALESCE(x.valid_to, c.at)",
							 std::string("COALESCE(x.paid_since, CASE WHEN ") + kPaid + " THEN COALESCE(x.valid_to, c.at) END)") +
			   " FROM c LEFT JOIN closed x ON x.subscription_id OPERATOR(pg_catalog.=) c.id";
	};
	static const std::string sql = text();
	return sql;
}

// The same two statements for one row, its values read straight from the
// parameters: no VALUES relation, no CTE over it and no join to it (they
// were, as relation c). Fewer plan nodes to set up and run for the common
// one-row statement: callgrind, 20,000-user book, about 60,000 instructions
// per history row of a lifecycle call (cancel 2.05 -> 1.99 million). Each
// "c.<name>" of the statements above is parameter $n here.
std::string
Param(int p)
{
	return "$" + std::to_string(p + 1);
}

std::string
OneRowInsert(const std::string &valid_from, const std::string &paid_since)
{
	std::string out = "INSERT INTO billing.subscription_history (subscription_id";
	for (int c = 1; c < kCopied; c++)
		out += std::string(", ") + kColumnNames[c];
	out += ", previous_status, removed, grace_end, valid_from, paid_since) SELECT " + Param(kId);
	for (int c = 1; c < kCopied; c++)
		out += ", " + Param(c);
	return out + ", " + Param(kPreviousStatus) + ", " + Param(kRemoved) + ", " + Param(kGraceEnd) + ", " + valid_from +
		   ", " + paid_since;
}

// Whether the new state has been paid for (billing::StartsPaying, computed in Add).
std::string
OneRowPaid()
{
	return Param(kPays);
}

const std::string &
InsertedOneRowSql()
{
	static const std::string sql =
		OneRowInsert(Param(kAt), "CASE WHEN " + OneRowPaid() + " THEN " + Param(kAt) + " END");
	return sql;
}

const std::string &
UpdatedOneRowSql()
{
	static const std::string sql =
		"WITH closed AS (UPDATE billing.subscription_history h SET updated_at = pg_catalog.now(), valid_to = GREATEST(" +
		Param(kAt) + ", h.valid_from) WHERE h.subscription_id OPERATOR(pg_catalog.=) " + Param(kId) +
		" AND h.valid_to OPERATOR(pg_catalog.=) 'infinity'::pg_catalog.timestamptz"
		" RETURNING h.valid_to, h.paid_since) " +
		OneRowInsert("COALESCE(x.valid_to, " + Param(kAt) + ")",
					 "COALESCE(x.paid_since, CASE WHEN " + OneRowPaid() + " THEN COALESCE(x.valid_to, " + Param(kAt) +
						 ") END)") +
		" FROM (SELECT) AS one LEFT JOIN closed x ON true";
	return sql;
}

// Where each column is in the table, and its type.
struct Layout {
	AttrNumber attno[kColumns];
	Oid type[kParams];
	int16 len[kParams];
	bool byval[kParams];
	char align[kParams];
	Oid array_type[kParams];
};

// Call in PgCall.
void
ReadLayout(TupleDesc desc, Layout *layout)
{
	for (int c = 0; c < kColumns; c++) {
		layout->attno[c] = InvalidAttrNumber;
		for (int a = 0; a < desc->natts; a++) {
			Form_pg_attribute att = TupleDescAttr(desc, a);
			if (!att->attisdropped && std::strcmp(NameStr(att->attname), kColumnNames[c]) == 0) {
				layout->attno[c] = att->attnum;
				if (c < kCopied)
					layout->type[c] = att->atttypid;
				break;
			}
		}
		if (layout->attno[c] == InvalidAttrNumber)
			elog(ERROR, "billing.subscriptions has no column \"%s\"", kColumnNames[c]);
	}
	layout->type[kPreviousStatus] = layout->type[kStatus];
	layout->type[kRemoved] = BOOLOID;
	layout->type[kAt] = TIMESTAMPTZOID;
	layout->type[kGraceEnd] = TIMESTAMPTZOID;
	layout->type[kPays] = BOOLOID;
	for (int p = 0; p < kParams; p++) {
		get_typlenbyvalalign(layout->type[p], &layout->len[p], &layout->byval[p], &layout->align[p]);
		layout->array_type[p] = get_array_type(layout->type[p]);
		if (!OidIsValid(layout->array_type[p]))
			elog(ERROR, "type %u has no array type", layout->type[p]);
	}
}

// IS NOT DISTINCT FROM for the recorded columns: integers, times, booleans,
// enums by value; text by its bytes (deterministic collation). Call in PgCall.
bool
SameValue(const Layout &layout, int column, Datum a, bool a_null, Datum b, bool b_null)
{
	if (a_null || b_null)
		return a_null == b_null;
	if (layout.byval[column])
		return a == b;
	if (layout.len[column] != -1)
		return datumIsEqual(a, b, false, layout.len[column]);
	struct varlena *x = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(a)));
	struct varlena *y = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(b)));
	return VARSIZE_ANY_EXHDR(x) == VARSIZE_ANY_EXHDR(y) && std::memcmp(VARDATA_ANY(x), VARDATA_ANY(y), VARSIZE_ANY_EXHDR(x)) == 0;
}

// A chunk of history rows, one array per parameter, in chunk memory.
struct Chunk {
	Datum *values[kParams];
	bool *nulls[kParams];
	int n;
};

// ---------------------------------------------------------------------------
// The direct path: a statement's history written without a statement (one
// row, or every row of a chunk: maintenance's pages), as quota_counter.cpp's CreateCounterRow inserts a counter. The
// two statements above (UpdatedOneRowSql, InsertedOneRowSql) cost about
// 350,000 instructions per lifecycle call (callgrind, 20,000-user book): the
// executor's start and end for a data-modifying CTE, the CHECK read back from
// its stored form, the defaults evaluated, and the foreign key's check, a
// statement of its own. Here: the open interval found through
// subscription_history_open, closed by table_tuple_update, the new one
// inserted by table_tuple_insert, each with its index entries
// (ExecInsertIndexTuples: partial and expression indexes as the executor
// keeps them). Anything this code does not know sends the row through the
// statements, which keep whatever a DBA added:
//   - billing.subscription_history as shipped: a heap table, no rule, no
//     row-level security, no trigger but its foreign key's (the check of
//     subscription_id against the subscription this statement wrote: see
//     SubscriptionsAsShipped), the twenty-six shipped columns with the types
//     of the subscription's, no generated or identity column, the shipped
//     defaults of the columns the INSERT leaves to them (id from its sequence,
//     valid_to 'infinity', created_at and updated_at now(), deleted_at none),
//     the one shipped CHECK (valid_to >= valid_from, which holds by
//     construction: valid_to is GREATEST(at, valid_from) or 'infinity'),
//     indexes that are immediate and no exclusion constraint, and
//     subscription_history_open as shipped;
//   - the caller may SELECT, INSERT and UPDATE the table (the statements'
//     rights; nextval checks the sequence's);
//   - exactly one or no open interval (more: the statements close them all);
//   - the open interval's update succeeds at once (a concurrent writer: the
//     statement's READ COMMITTED recheck or REPEATABLE READ 40001 decide).
// These last two, and the NOT NULL columns, are per row: a chunk is written
// directly up to the first row that fails them, that row and the rest by the
// statements (each row another subscription: nothing written twice).
// The foreign key's check is not made: the referenced subscription is the
// one the triggering statement inserted or updated in this transaction, and
// nothing could remove it between that row's write and this statement
// trigger unless a rule or a trigger that is not billing's runs on
// billing.subscriptions (SubscriptionsAsShipped sends those through the
// statements, whose check then raises 23503 as before).

// Columns of billing.subscription_history the direct path writes beyond the
// sixteen copied ones (written under their own names, id as subscription_id).
enum HistoryColumn : int {
	hPreviousStatus,
	hRemoved,
	hGraceEnd,
	hValidFrom,
	hPaidSince,
	hId,
	hValidTo,
	hCreatedAt,
	hUpdatedAt,
	hDeletedAt,
	kHistoryColumns
};
constexpr const char *kHistoryColumnNames[kHistoryColumns] = {"previous_status", "removed",	 "grace_end",
																"valid_from",		"paid_since", "id",
																"valid_to",		"created_at", "updated_at",
																"deleted_at"};
constexpr int kShippedHistoryColumns = kCopied + kHistoryColumns;

// What the direct path knows of billing.subscription_history (and of the
// billing.subscriptions it was checked against), per backend; any relcache
// invalidation of either table forgets it.
struct HistoryTable {
	Oid relid;          // InvalidOid: nothing known
	Oid subscriptions;  // the table the triggers fired on when it was checked
	bool allowed;
	Oid open_index;
	Oid sequence;
	AttrNumber copied[kCopied];  // where each copied column is (subscription_id for kId)
	AttrNumber attno[kHistoryColumns];
};
HistoryTable history_table = {InvalidOid, InvalidOid, false, InvalidOid, InvalidOid, {}, {}};
bool history_callback_registered = false;

void
ForgetHistoryTable(Datum, Oid relid)
{
	if (!OidIsValid(relid) || relid == history_table.relid || relid == history_table.subscriptions)
		history_table.relid = InvalidOid;
}

// The stored default of column `attno`, or nullptr. Call in PgCall.
Node *
ColumnDefault(TupleDesc desc, AttrNumber attno)
{
	TupleConstr *constr = desc->constr;
	if (constr == nullptr || !TupleDescAttr(desc, attno - 1)->atthasdef)
		return nullptr;
	for (int i = 0; i < constr->num_defval; i++)
		if (constr->defval[i].adnum == attno)
			return static_cast<Node *>(stringToNode(constr->defval[i].adbin));
	return nullptr;
}

// Whether `node` is column `attno` of the table (varno 1, as stored).
bool
IsColumn(Node *node, AttrNumber attno)
{
	return node != nullptr && IsA(node, Var) && reinterpret_cast<Var *>(node)->varno == 1 &&
		   reinterpret_cast<Var *>(node)->varattno == attno && reinterpret_cast<Var *>(node)->varlevelsup == 0;
}

// Whether `node` is OpExpr left `function` right (the operator's function).
bool
IsOperation(Node *node, Oid function, Node **left, Node **right)
{
	if (node == nullptr || !IsA(node, OpExpr))
		return false;
	OpExpr *op = reinterpret_cast<OpExpr *>(node);
	if (list_length(op->args) != 2 || get_opcode(op->opno) != function)
		return false;
	*left = static_cast<Node *>(linitial(op->args));
	*right = static_cast<Node *>(lsecond(op->args));
	return true;
}

bool
IsTimestamptzConst(Node *node, TimestampTz value)
{
	return node != nullptr && IsA(node, Const) && reinterpret_cast<Const *>(node)->consttype == TIMESTAMPTZOID &&
		   !reinterpret_cast<Const *>(node)->constisnull &&
		   DatumGetTimestampTz(reinterpret_cast<Const *>(node)->constvalue) == value;
}

// Whether nothing but billing's own triggers (and internal ones, the foreign
// keys' actions) and no rule run on billing.subscriptions: see above.
bool
SubscriptionsAsShipped(Relation subscriptions)
{
	if (subscriptions->rd_rules != nullptr)
		return false;
	if (subscriptions->trigdesc == nullptr)
		return true;
	static const char *const own[] = {"_audit", "_touch_updated_at", "_quota_invalidate_users", "_history_inserted",
									  "_history_updated"};
	Oid billing = get_namespace_oid("billing", false);
	for (int i = 0; i < subscriptions->trigdesc->numtriggers; i++) {
		const Trigger &t = subscriptions->trigdesc->triggers[i];
		if (t.tgisinternal)
			continue;
		if (get_func_namespace(t.tgfoid) != billing)
			return false;
		char *name = get_func_name(t.tgfoid);
		bool known = false;
		for (const char *o : own)
			known = known || (name != nullptr && std::strcmp(name, o) == 0);
		if (!known)
			return false;
	}
	return true;
}

// Checks billing.subscription_history (and billing.subscriptions) for the
// direct path, filling `t`. Call in PgCall.
bool
HistoryAsShipped(Relation rel, Relation subscriptions, const Layout &layout, HistoryTable *t)
{
	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relam != HEAP_TABLE_AM_OID || rel->rd_rules != nullptr ||
		rel->rd_rel->relrowsecurity || !SubscriptionsAsShipped(subscriptions))
		return false;
	TupleDesc desc = RelationGetDescr(rel);
	// the columns, by name and type
	for (int c = 0; c < kCopied; c++)
		t->copied[c] = InvalidAttrNumber;
	for (int h = 0; h < kHistoryColumns; h++)
		t->attno[h] = InvalidAttrNumber;
	int live = 0;
	for (int a = 0; a < desc->natts; a++) {
		Form_pg_attribute att = TupleDescAttr(desc, a);
		if (att->attisdropped)
			continue;
		live++;
		if (att->attgenerated != '\0' || att->attidentity != '\0')
			return false;
		const char *name = NameStr(att->attname);
		bool matched = false;
		for (int c = 0; c < kCopied && !matched; c++)
			if (std::strcmp(name, c == kId ? "subscription_id" : kColumnNames[c]) == 0) {
				if (att->atttypid != layout.type[c])
					return false;
				t->copied[c] = att->attnum;
				matched = true;
			}
		for (int h = 0; h < kHistoryColumns && !matched; h++)
			if (std::strcmp(name, kHistoryColumnNames[h]) == 0) {
				Oid type = h == hPreviousStatus ? layout.type[kStatus]
						   : h == hRemoved		? BOOLOID
						   : h == hId			? INT8OID
											   : TIMESTAMPTZOID;
				if (att->atttypid != type)
					return false;
				t->attno[h] = att->attnum;
				matched = true;
			}
		if (!matched)
			return false;
	}
	if (live != kShippedHistoryColumns)
		return false;
	// the defaults of the columns the INSERT leaves out
	Node *id_default = ColumnDefault(desc, t->attno[hId]);
	if (id_default == nullptr || !IsA(id_default, FuncExpr) ||
		reinterpret_cast<FuncExpr *>(id_default)->funcid != F_NEXTVAL ||
		list_length(reinterpret_cast<FuncExpr *>(id_default)->args) != 1)
		return false;
	Node *sequence = static_cast<Node *>(linitial(reinterpret_cast<FuncExpr *>(id_default)->args));
	if (!IsA(sequence, Const) || reinterpret_cast<Const *>(sequence)->consttype != REGCLASSOID ||
		reinterpret_cast<Const *>(sequence)->constisnull)
		return false;
	t->sequence = DatumGetObjectId(reinterpret_cast<Const *>(sequence)->constvalue);
	for (HistoryColumn h : {hCreatedAt, hUpdatedAt}) {
		Node *d = ColumnDefault(desc, t->attno[h]);
		if (d == nullptr || !IsA(d, FuncExpr) || reinterpret_cast<FuncExpr *>(d)->funcid != F_NOW ||
			reinterpret_cast<FuncExpr *>(d)->args != NIL)
			return false;
	}
	if (!IsTimestamptzConst(ColumnDefault(desc, t->attno[hValidTo]), DT_NOEND) ||
		TupleDescAttr(desc, t->attno[hDeletedAt] - 1)->atthasdef)
		return false;
	// the one CHECK: valid_to >= valid_from
	TupleConstr *constr = desc->constr;
	if (constr != nullptr) {
		if (constr->has_generated_stored || constr->num_check > 1)
			return false;
		if (constr->num_check == 1) {
			Node *left = nullptr;
			Node *right = nullptr;
			if (!IsOperation(static_cast<Node *>(stringToNode(constr->check[0].ccbin)), F_TIMESTAMPTZ_GE, &left, &right) ||
				!IsColumn(left, t->attno[hValidTo]) || !IsColumn(right, t->attno[hValidFrom]))
				return false;
		}
	}
	// triggers: only the foreign key's check of subscription_id against
	// billing.subscriptions (id)
	if (rel->trigdesc != nullptr)
		for (int i = 0; i < rel->trigdesc->numtriggers; i++) {
			const Trigger &trigger = rel->trigdesc->triggers[i];
			if (!trigger.tgisinternal || (trigger.tgfoid != F_RI_FKEY_CHECK_INS && trigger.tgfoid != F_RI_FKEY_CHECK_UPD) ||
				trigger.tgconstrrelid != RelationGetRelid(subscriptions))
				return false;
		}
	ListCell *cell = nullptr;
	foreach (cell, RelationGetFKeyList(rel)) {
		ForeignKeyCacheInfo *fk = static_cast<ForeignKeyCacheInfo *>(lfirst(cell));
		if (fk->confrelid != RelationGetRelid(subscriptions) || fk->nkeys != 1 || fk->conkey[0] != t->copied[kId] ||
			fk->confkey[0] != layout.attno[kId])
			return false;
	}
	// indexes: immediate, no exclusion constraint; subscription_history_open
	// as shipped: (subscription_id) WHERE valid_to = 'infinity'
	t->open_index = InvalidOid;
	List *index_oids = RelationGetIndexList(rel);
	bool allowed = true;
	foreach (cell, index_oids) {
		Relation index = index_open(lfirst_oid(cell), AccessShareLock);
		Form_pg_index form = index->rd_index;
		if (!form->indimmediate || form->indisexclusion)
			allowed = false;
		else if (index->rd_rel->relam == BTREE_AM_OID && form->indnkeyatts == 1 && form->indnatts == 1 &&
				 form->indkey.values[0] == t->copied[kId] && form->indisvalid && form->indisready && form->indislive &&
				 index->rd_opfamily[0] == INTEGER_BTREE_FAM_OID &&
				 heap_attisnull(index->rd_indextuple, Anum_pg_index_indexprs, nullptr)) {
			List *predicate = RelationGetIndexPredicate(index);
			Node *left = nullptr;
			Node *right = nullptr;
			if (list_length(predicate) == 1 &&
				IsOperation(static_cast<Node *>(linitial(predicate)), F_TIMESTAMPTZ_EQ, &left, &right) &&
				((IsColumn(left, t->attno[hValidTo]) && IsTimestamptzConst(right, DT_NOEND)) ||
				 (IsColumn(right, t->attno[hValidTo]) && IsTimestamptzConst(left, DT_NOEND))))
				t->open_index = RelationGetRelid(index);
		}
		index_close(index, AccessShareLock);
	}
	list_free(index_oids);
	return allowed && OidIsValid(t->open_index);
}

// Opens billing.subscription_history (locked as the statements would, until
// the transaction ends) and what the direct path knows of it. Call in PgCall.
Relation
OpenHistory(Relation subscriptions, const Layout &layout)
{
	if (!history_callback_registered) {
		CacheRegisterRelcacheCallback(ForgetHistoryTable, 0);
		history_callback_registered = true;
	}
	for (;;) {
		if (!OidIsValid(history_table.relid) || history_table.subscriptions != RelationGetRelid(subscriptions)) {
			Oid relid = get_relname_relid("subscription_history", get_namespace_oid("billing", false));
			if (!OidIsValid(relid))
				elog(ERROR, "relation billing.subscription_history is missing");
			Relation rel = table_open(relid, RowExclusiveLock);
			HistoryTable t = history_table;
			t.allowed = HistoryAsShipped(rel, subscriptions, layout, &t);
			t.relid = relid;
			t.subscriptions = RelationGetRelid(subscriptions);
			history_table = t;
			return rel;
		}
		// Taking the lock may process invalidations that forget what we knew.
		Oid relid = history_table.relid;
		Relation rel = try_table_open(relid, RowExclusiveLock);
		if (rel != nullptr && history_table.relid == relid)
			return rel;
		if (rel != nullptr)
			table_close(rel, NoLock);
		history_table.relid = InvalidOid;
	}
}

// Writes the history rows of `c` directly, in order, from the first; returns
// how many it wrote. The rest, from the first row it cannot write (nothing of
// that row written), go through the statements: every row is a subscription
// of its own (the triggering statement changed each row once), so the rows
// written here and the ones the statements write never meet, and the
// statements write the rest exactly as they would have. Call in PgCall.
int
WriteHistoryRowsDirectly(Relation subscriptions, const Layout &layout, const Chunk &c, bool updated)
{
	Relation rel = OpenHistory(subscriptions, layout);
	const HistoryTable t = history_table;
	if (!t.allowed || pg_class_aclcheck(t.relid, GetUserId(), ACL_SELECT | ACL_INSERT | ACL_UPDATE) != ACLCHECK_OK) {
		table_close(rel, NoLock);
		return 0;
	}
	TupleDesc desc = RelationGetDescr(rel);
	TimestampTz now = GetCurrentTransactionStartTimestamp();  // now()

	// a new command with its snapshot, as SPI runs a statement
	CommandCounterIncrement();
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	Snapshot snapshot = GetActiveSnapshot();

	TupleTableSlot *open_slot = table_slot_create(rel, nullptr);
	TupleTableSlot *found = table_slot_create(rel, nullptr);
	TupleTableSlot *closed = table_slot_create(rel, nullptr);
	TupleTableSlot *row = table_slot_create(rel, nullptr);
	Relation index = nullptr;
	IndexScanDesc scan = nullptr;
	if (updated) {
		index = index_open(t.open_index, RowExclusiveLock);
		scan = index_beginscan(rel, index, snapshot, 1, 0);
	}
	EState *estate = CreateExecutorState();
	estate->es_snapshot = snapshot;
	estate->es_output_cid = GetCurrentCommandId(true);
	ResultRelInfo *info = makeNode(ResultRelInfo);
	InitResultRelInfo(info, rel, 0, nullptr, 0);
	ExecOpenIndices(info, false);
	if (updated)
		CheckCmdReplicaIdentity(rel, CMD_UPDATE);
	CheckCmdReplicaIdentity(rel, CMD_INSERT);

	int written = 0;
	for (; written < c.n; written++) {
		const int i = written;
		ResetPerTupleExprContext(estate);
		TimestampTz at = DatumGetTimestampTz(c.values[kAt][i]);
		int64 id = DatumGetInt64(c.values[kId][i]);
		bool have_open = false;
		bool allowed = true;
		ExecClearTuple(open_slot);
		if (updated) {
			ScanKeyData key;
			ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
			index_rescan(scan, &key, 1, nullptr, 0);
			while (allowed && index_getnext_slot(scan, ForwardScanDirection, found)) {
				bool isnull = true;
				Datum valid_to = slot_getattr(found, t.attno[hValidTo], &isnull);
				if (isnull || DatumGetTimestampTz(valid_to) != DT_NOEND)
					continue;  // (the index's predicate holds for every entry it has)
				if (have_open)
					allowed = false;  // more than one open interval: the statements close them all
				else
					ExecCopySlot(open_slot, found);
				have_open = true;
			}
			ExecClearTuple(found);
		}
		// the closed interval's new version
		TimestampTz closed_to = 0;
		std::optional<TimestampTz> paid_since;  // the open interval's
		ExecClearTuple(closed);
		if (allowed && have_open) {
			slot_getallattrs(open_slot);
			bool isnull = true;
			TimestampTz valid_from = DatumGetTimestampTz(slot_getattr(open_slot, t.attno[hValidFrom], &isnull));
			if (isnull)
				allowed = false;
			closed_to = std::max(at, valid_from);  // GREATEST(at, valid_from)
			Datum paid = slot_getattr(open_slot, t.attno[hPaidSince], &isnull);
			if (!isnull)
				paid_since = DatumGetTimestampTz(paid);
			std::memcpy(closed->tts_values, open_slot->tts_values, sizeof(Datum) * desc->natts);
			std::memcpy(closed->tts_isnull, open_slot->tts_isnull, sizeof(bool) * desc->natts);
			closed->tts_values[t.attno[hValidTo] - 1] = TimestampTzGetDatum(closed_to);
			closed->tts_isnull[t.attno[hValidTo] - 1] = false;
			closed->tts_values[t.attno[hUpdatedAt] - 1] = TimestampTzGetDatum(now);
			closed->tts_isnull[t.attno[hUpdatedAt] - 1] = false;
			ExecStoreVirtualTuple(closed);
		}
		// the new interval
		ExecClearTuple(row);
		for (int a = 0; a < desc->natts; a++) {
			row->tts_values[a] = 0;
			row->tts_isnull[a] = true;
		}
		auto set = [&](AttrNumber attno, Datum value, bool isnull) {
			row->tts_values[attno - 1] = isnull ? 0 : value;
			row->tts_isnull[attno - 1] = isnull;
		};
		for (int col = 0; col < kCopied; col++)
			set(t.copied[col], c.values[col][i], c.nulls[col][i]);
		set(t.attno[hPreviousStatus], c.values[kPreviousStatus][i], c.nulls[kPreviousStatus][i]);
		set(t.attno[hRemoved], c.values[kRemoved][i], c.nulls[kRemoved][i]);
		set(t.attno[hGraceEnd], c.values[kGraceEnd][i], c.nulls[kGraceEnd][i]);
		TimestampTz valid_from = have_open ? closed_to : at;  // COALESCE(x.valid_to, at)
		set(t.attno[hValidFrom], TimestampTzGetDatum(valid_from), false);
		bool pays = !c.nulls[kPays][i] && DatumGetBool(c.values[kPays][i]);
		if (paid_since)
			set(t.attno[hPaidSince], TimestampTzGetDatum(*paid_since), false);
		else
			set(t.attno[hPaidSince], TimestampTzGetDatum(valid_from), !pays);
		set(t.attno[hValidTo], TimestampTzGetDatum(DT_NOEND), false);
		set(t.attno[hCreatedAt], TimestampTzGetDatum(now), false);
		set(t.attno[hUpdatedAt], TimestampTzGetDatum(now), false);
		// NOT NULL as ExecConstraints checks it (id comes from its sequence)
		for (int a = 0; a < desc->natts && allowed; a++) {
			Form_pg_attribute att = TupleDescAttr(desc, a);
			if (!att->attisdropped && att->attnotnull && att->attnum != t.attno[hId] && row->tts_isnull[a])
				allowed = false;  // the statement raises 23502
		}
		if (!allowed)
			break;  // this row and the rest: the statements
		if (have_open) {
			TM_FailureData failure;
			LockTupleMode lock_mode;
			bool update_indexes = false;
			TM_Result result = table_tuple_update(rel, &open_slot->tts_tid, closed, estate->es_output_cid, snapshot,
												  InvalidSnapshot, true, &failure, &lock_mode, &update_indexes);
			if (result != TM_Ok)
				break;  // changed meanwhile: nothing of this row written, the statements decide
			if (update_indexes)
				list_free(ExecInsertIndexTuples(info, closed, estate, false, false, nullptr, NIL));
		}
		set(t.attno[hId], Int64GetDatum(nextval_internal(t.sequence, true)), false);
		ExecStoreVirtualTuple(row);
		table_tuple_insert(rel, row, estate->es_output_cid, 0, nullptr);
		list_free(ExecInsertIndexTuples(info, row, estate, false, false, nullptr, NIL));
	}
	ExecCloseIndices(info);
	FreeExecutorState(estate);
	if (scan != nullptr)
		index_endscan(scan);
	if (index != nullptr)
		index_close(index, NoLock);
	ExecDropSingleTupleTableSlot(row);
	ExecDropSingleTupleTableSlot(closed);
	ExecDropSingleTupleTableSlot(found);
	ExecDropSingleTupleTableSlot(open_slot);
	PopActiveSnapshot();
	table_close(rel, NoLock);
	return written;
}

class HistoryWriter {
 public:
	// rows: how many the statement changed (the chunk arrays are sized for
	// them, at most kChunk: a one-row statement does not allocate and touch
	// arrays for a thousand).
	HistoryWriter(Relation rel, bool updated, int64 rows) : updated_(updated), rel_(rel)
	{
		capacity_ = static_cast<int>(std::clamp<int64>(rows, 1, kChunk));
		PgCall([&] {
			ReadLayout(RelationGetDescr(rel), &layout_);
			context_ = AllocSetContextCreate(CurrentMemoryContext, "billing history chunk", ALLOCSET_DEFAULT_SIZES);
			for (int p = 0; p < kParams; p++) {
				chunk_.values[p] = static_cast<Datum *>(palloc(sizeof(Datum) * capacity_));
				chunk_.nulls[p] = static_cast<bool *>(palloc(sizeof(bool) * capacity_));
			}
			chunk_.n = 0;
		});
	}
	HistoryWriter(const HistoryWriter &) = delete;
	HistoryWriter &operator=(const HistoryWriter &) = delete;

	const Layout &layout() const { return layout_; }

	// Adds the history row of `row` (the new version) unless it is an update
	// that changed nothing recorded; `old` is the old version (updates only).
	// Writes a full chunk.
	void Add(TupleTableSlot *row, TupleTableSlot *old)
	{
		bool changed = true;
		int64_t id = 0;
		const char *status = nullptr;  // billing's status and Stripe's (NULL: billing's own), for StartsPaying
		const char *stripe_status = nullptr;
		TimestampTz event_time = DT_NOBEGIN;
		bool have_event_time = false;
		Chunk &c = chunk_;
		const Layout &l = layout_;
		int i = c.n;
		PgCall([&] {
			Datum values[kColumns];
			bool nulls[kColumns];
			for (int col = 0; col < kColumns; col++)
				values[col] = slot_getattr(row, l.attno[col], &nulls[col]);
			if (old != nullptr) {
				changed = false;
				for (int col = kPlanId; col <= kEndReason && !changed; col++) {
					bool old_null = false;
					Datum old_value = slot_getattr(old, l.attno[col], &old_null);
					changed = !SameValue(l, col, values[col], nulls[col], old_value, old_null);
				}
				bool old_deleted_null = false;
				(void) slot_getattr(old, l.attno[kDeletedAt], &old_deleted_null);
				changed = changed || old_deleted_null != nulls[kDeletedAt];
				// the grace end is recorded too: a payment that ends dunning
				// while canceled at period end changes only past_due_since
				if (!changed) {
					bool old_null = false;
					Datum old_value = slot_getattr(old, l.attno[kPastDueSince], &old_null);
					changed = !SameValue(l, kPastDueSince, values[kPastDueSince], nulls[kPastDueSince], old_value,
										 old_null);
				}
			}
			if (!changed)
				return;
			MemoryContext outer = MemoryContextSwitchTo(context_);
			for (int col = 0; col < kCopied; col++) {
				c.nulls[col][i] = nulls[col];
				c.values[col][i] = nulls[col] || l.byval[col] ? values[col] : datumCopy(values[col], false, l.len[col]);
			}
			c.nulls[kPreviousStatus][i] = true;
			c.values[kPreviousStatus][i] = 0;
			if (old != nullptr)
				c.values[kPreviousStatus][i] = slot_getattr(old, l.attno[kStatus], &c.nulls[kPreviousStatus][i]);
			c.nulls[kRemoved][i] = false;
			c.values[kRemoved][i] = BoolGetDatum(!nulls[kDeletedAt]);
			c.nulls[kGraceEnd][i] = nulls[kPastDueSince];
			c.values[kGraceEnd][i] = nulls[kPastDueSince] ? 0 : values[kPastDueSince];
			MemoryContextSwitchTo(outer);
			status = DatumGetCString(DirectFunctionCall1(enum_out, values[kStatus]));
			if (!nulls[kStripeStatus])
				stripe_status = TextDatumGetCString(values[kStripeStatus]);
			id = DatumGetInt64(values[kId]);
			if (old == nullptr) {
				event_time = DatumGetTimestampTz(values[kStartedAt]);
				have_event_time = true;
				return;
			}
			for (Column col : kEventTimes)
				if (!nulls[col] && (!have_event_time || DatumGetTimestampTz(values[col]) > event_time)) {
					event_time = DatumGetTimestampTz(values[col]);
					have_event_time = true;
				}
		});
		if (!changed)
			return;
		TimestampTz at = event_time;
		if (old != nullptr) {
			if (std::optional<int64_t> declared = DeclaredChangeAt(id))
				at = ToPgTime(*declared);
			else if (!have_event_time)
				throw Error(sqlstate::kInternalError, "subscription " + std::to_string(id) + " has no time to date its change by");
		}
		c.values[kAt][i] = TimestampTzGetDatum(at);
		c.nulls[kAt][i] = false;
		c.values[kPays][i] = BoolGetDatum(StartsPaying(status, stripe_status ? stripe_status : "", old == nullptr));
		c.nulls[kPays][i] = false;
		if (!c.nulls[kGraceEnd][i]) {
			// in dunning: when its grace ends, as the setting stands now (read
			// once per statement, and only when a row is in dunning)
			if (!grace_)
				grace_ = spi_.Query("SELECT billing._interval_micros(billing._setting('past_due_grace', '14 days')"
									"::pg_catalog.interval)")
							 .at(0)
							 .int64_required(0);
			TimestampTz grace_end = 0;
			c.nulls[kGraceEnd][i] =
				__builtin_add_overflow(DatumGetTimestampTz(c.values[kGraceEnd][i]), *grace_, &grace_end);
			c.values[kGraceEnd][i] = TimestampTzGetDatum(grace_end);
		}
		c.n++;
		if (c.n == capacity_)
			Flush();
	}

	// Writes what the chunk holds.
	void Flush()
	{
		Chunk &c = chunk_;
		if (c.n == 0)
			return;
		// directly while the table is as shipped, from the first row; the
		// rows it could not write (from the first it refused, none of it
		// written) through the statements
		int from = 0;
		PgCall([&] {
			MemoryContext outer = MemoryContextSwitchTo(context_);
			from = WriteHistoryRowsDirectly(rel_, layout_, c, updated_);
			MemoryContextSwitchTo(outer);
		});
		int n = c.n - from;
		bool single = n == 1;
		std::vector<SqlArg> args(kParams, SqlArg{InvalidOid, 0, true});
		if (n > 0) {
			PgCall([&] {
				MemoryContext outer = MemoryContextSwitchTo(context_);
				int dims[1] = {n};
				int lbs[1] = {1};
				for (int p = 0; p < kParams; p++) {
					SqlArg &arg = args[p];
					if (single) {
						arg.type = layout_.type[p];
						arg.value = c.values[p][from];
						arg.isnull = c.nulls[p][from];
						continue;
					}
					arg.type = layout_.array_type[p];
					arg.value = PointerGetDatum(construct_md_array(c.values[p] + from, c.nulls[p] + from, 1, dims, lbs,
																   layout_.type[p], layout_.len[p], layout_.byval[p],
																   layout_.align[p]));
					arg.isnull = false;
				}
				MemoryContextSwitchTo(outer);
			});
			spi_.Execute(single ? (updated_ ? UpdatedOneRowSql() : InsertedOneRowSql())
								: (updated_ ? UpdatedSql() : InsertedSql()),
						 args);
		}
		c.n = 0;
		PgCall([&] { MemoryContextReset(context_); });
	}

	// Writes the rest. Its memory lives in SPI's and goes with the connection:
	// whatever the caller made after constructing the writer (slots) must be
	// released before.
	void Finish()
	{
		Flush();
		PgCall([&] { MemoryContextDelete(context_); });
		context_ = nullptr;
		spi_.Finish();
	}

 private:
	Spi spi_;
	Layout layout_{};
	Chunk chunk_{};
	MemoryContext context_ = nullptr;
	bool updated_;
	Relation rel_;  // billing.subscriptions, the triggers' table
	int capacity_ = 1;  // rows per chunk
	std::optional<int64_t> grace_;  // past_due_grace in microseconds, once a row needs it
};

TriggerData *
HistoryTrigger(FunctionCallInfo fcinfo, const char *name, bool updated)
{
	TriggerData *trigger = TriggerDataOf(fcinfo, name);
	if (!TRIGGER_FIRED_FOR_STATEMENT(trigger->tg_event) || !TRIGGER_FIRED_AFTER(trigger->tg_event) ||
		(updated ? !TRIGGER_FIRED_BY_UPDATE(trigger->tg_event) || trigger->tg_oldtable == nullptr
				 : !TRIGGER_FIRED_BY_INSERT(trigger->tg_event)) ||
		trigger->tg_newtable == nullptr)
		throw Error(sqlstate::kInternalError,
					std::string(name) + (updated ? " must be an AFTER UPDATE statement trigger with old and new transition tables"
												  : " must be an AFTER INSERT statement trigger with a new transition table"));
	return trigger;
}

// Whether the old and new transition tables hold the same subscriptions in
// the same order (always, unless the statement changed ids). Call in PgCall.
bool
PairedInOrder(Tuplestorestate *old_rows, Tuplestorestate *new_rows, TupleTableSlot *old_slot, TupleTableSlot *new_slot,
			  AttrNumber id)
{
	for (;;) {
		bool got_old = tuplestore_gettupleslot(old_rows, true, false, old_slot);
		bool got_new = tuplestore_gettupleslot(new_rows, true, false, new_slot);
		if (got_old != got_new)
			return false;
		if (!got_old)
			return true;
		bool null_old = false;
		bool null_new = false;
		Datum a = slot_getattr(old_slot, id, &null_old);
		Datum b = slot_getattr(new_slot, id, &null_new);
		if (null_old || null_new || DatumGetInt64(a) != DatumGetInt64(b))
			return false;
	}
}

}  // namespace
}  // namespace billing::glue

using namespace billing;
using namespace billing::glue;

BILLING_FUNCTION(billing_history_inserted)
{
	TriggerData *trigger = HistoryTrigger(fcinfo, "billing._history_inserted()", false);
	if (Restoring())  // pg_restore loads the dumped history itself
		return PointerGetDatum(nullptr);
	Tuplestorestate *new_rows = trigger->tg_newtable;
	HistoryWriter writer(trigger->tg_relation, false, tuplestore_tuple_count(new_rows));
	TupleTableSlot *slot = nullptr;
	PgCall([&] {
		slot = MakeSingleTupleTableSlot(RelationGetDescr(trigger->tg_relation), &TTSOpsMinimalTuple);
		RewindTransitionTable(new_rows);
	});
	for (;;) {
		bool got = false;
		PgCall([&] { got = tuplestore_gettupleslot(new_rows, true, false, slot); });
		if (!got)
			break;
		writer.Add(slot, nullptr);
	}
	PgCall([&] { ExecDropSingleTupleTableSlot(slot); });
	writer.Finish();
	return PointerGetDatum(nullptr);
}

BILLING_FUNCTION(billing_history_updated)
{
	TriggerData *trigger = HistoryTrigger(fcinfo, "billing._history_updated()", true);
	if (Restoring())
		return PointerGetDatum(nullptr);
	Tuplestorestate *old_rows = trigger->tg_oldtable;
	Tuplestorestate *new_rows = trigger->tg_newtable;
	HistoryWriter writer(trigger->tg_relation, true, tuplestore_tuple_count(new_rows));
	AttrNumber id = writer.layout().attno[kId];
	TupleTableSlot *old_slot = nullptr;
	TupleTableSlot *new_slot = nullptr;
	bool in_order = false;
	// Old rows by id, for a statement that changed ids (the old version of a
	// new row is the one with its id, as the SQL join had it).
	HTAB *old_by_id = nullptr;
	struct OldEntry {
		int64 id;
		MinimalTuple tuple;
	};
	PgCall([&] {
		TupleDesc desc = RelationGetDescr(trigger->tg_relation);
		old_slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		new_slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		RewindTransitionTable(old_rows);
		RewindTransitionTable(new_rows);
		in_order = PairedInOrder(old_rows, new_rows, old_slot, new_slot, id);
		tuplestore_rescan(old_rows);
		tuplestore_rescan(new_rows);
		if (in_order)
			return;
		HASHCTL ctl;
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(OldEntry);
		ctl.hcxt = CurrentMemoryContext;
		old_by_id = hash_create("billing history old rows", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		while (tuplestore_gettupleslot(old_rows, true, false, old_slot)) {
			bool isnull = false;
			int64 key = DatumGetInt64(slot_getattr(old_slot, id, &isnull));
			bool found = false;
			OldEntry *entry = static_cast<OldEntry *>(hash_search(old_by_id, &key, HASH_ENTER, &found));
			entry->tuple = ExecCopySlotMinimalTuple(old_slot);
		}
	});
	for (;;) {
		bool got = false;
		bool paired = false;
		PgCall([&] {
			got = tuplestore_gettupleslot(new_rows, true, false, new_slot);
			if (!got)
				return;
			if (in_order) {
				paired = tuplestore_gettupleslot(old_rows, true, false, old_slot);
				return;
			}
			bool isnull = false;
			int64 key = DatumGetInt64(slot_getattr(new_slot, id, &isnull));
			OldEntry *entry = static_cast<OldEntry *>(hash_search(old_by_id, &key, HASH_FIND, nullptr));
			if (entry != nullptr) {
				ExecStoreMinimalTuple(entry->tuple, old_slot, false);
				paired = true;
			}
		});
		if (!got)
			break;
		if (paired)  // an inner join: a new row without its old version records nothing
			writer.Add(new_slot, old_slot);
	}
	PgCall([&] {
		ExecDropSingleTupleTableSlot(old_slot);
		ExecDropSingleTupleTableSlot(new_slot);
		if (old_by_id != nullptr)
			hash_destroy(old_by_id);
	});
	writer.Finish();
	return PointerGetDatum(nullptr);
}
