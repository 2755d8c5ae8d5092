// The subscription history's statement triggers on billing.subscriptions
// (SPEC §8 "History", src/sql/30_reports.sql), in C++. They were PL/pgSQL
// (a CTE joining the transition tables), about a third of a lifecycle call's
// time. Here the old and new rows are read from the transition tables,
// compared and dated in C++, and written by one prepared statement per chunk
// of rows (scalar parameters for a single row, arrays read with unnest for
// more); every name in the statements is qualified, and only billing's own
// types are evaluated.
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

class HistoryWriter {
 public:
	// rows: how many the statement changed (the chunk arrays are sized for
	// them, at most kChunk: a one-row statement does not allocate and touch
	// arrays for a thousand).
	HistoryWriter(Relation rel, bool updated, int64 rows) : updated_(updated)
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
		bool single = c.n == 1;
		std::vector<SqlArg> args(kParams, SqlArg{InvalidOid, 0, true});
		PgCall([&] {
			MemoryContext outer = MemoryContextSwitchTo(context_);
			int dims[1] = {c.n};
			int lbs[1] = {1};
			for (int p = 0; p < kParams; p++) {
				SqlArg &arg = args[p];
				if (single) {
					arg.type = layout_.type[p];
					arg.value = c.values[p][0];
					arg.isnull = c.nulls[p][0];
					continue;
				}
				arg.type = layout_.array_type[p];
				arg.value = PointerGetDatum(construct_md_array(c.values[p], c.nulls[p], 1, dims, lbs, layout_.type[p],
															   layout_.len[p], layout_.byval[p], layout_.align[p]));
				arg.isnull = false;
			}
			MemoryContextSwitchTo(outer);
		});
		spi_.Execute(single ? (updated_ ? UpdatedOneRowSql() : InsertedOneRowSql())
							: (updated_ ? UpdatedSql() : InsertedSql()),
					 args);
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
