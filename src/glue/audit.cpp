// Row triggers on billing's own tables, in C++ (they ran in PL/pgSQL, which
// interpreted each call and matched the whole query text against a regular
// expression on every row):
//   billing._audit(key column): the audit log of every insert, update and
//     delete, a statement trigger writing each statement's rows at once
//     (one insert per 1,000 rows) through a statement prepared once per backend;
//   billing._touch_updated_at(): updated_at = now() on every update;
//   billing._restoring(): whether pg_restore is loading a billing table.
#include "glue/args.hpp"
#include "glue/audit.hpp"
#include "glue/guard.hpp"
#include "glue/settings.hpp"
#include "glue/spi.hpp"
#include "glue/triggers.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>

namespace billing::glue {
namespace {

// Runs the audit insert as the owner of the audited table (the extension's
// owner): whoever changed the row may not write the audit log directly.
class AsTableOwner {
 public:
	explicit AsTableOwner(Oid owner)
	{
		GetUserIdAndSecContext(&saved_user_, &saved_context_);
		SetUserIdAndSecContext(owner, saved_context_ | SECURITY_LOCAL_USERID_CHANGE);
	}
	~AsTableOwner() { SetUserIdAndSecContext(saved_user_, saved_context_); }
	AsTableOwner(const AsTableOwner &) = delete;
	AsTableOwner &operator=(const AsTableOwner &) = delete;

 private:
	Oid saved_user_ = InvalidOid;
	int saved_context_ = 0;
};

// Every name qualified (the caller's search_path is not pinned here). One
// statement per chunk of a statement's rows: $4 and $5 are arrays of the
// table's row type (old and new rows, in the statement's order; NULL for an
// INSERT's old side and a DELETE's new side), read in step by two unnests in
// one target list (an empty side gives NULLs); each row's JSON is built once
// and read for the key. (Subscripting $4[i] walked the array from its start
// for every row: a chunk's cost grew with the square of its rows.) OFFSET 0
// keeps the subquery j from being pulled up into the INSERT's target list,
// where each reference to j.n (the row id and the new row) evaluated its
// to_jsonb again: two to_jsonb of the new row per audit row, not one.
constexpr const char *kAuditRows =
	" FROM (SELECT pg_catalog.to_jsonb(r.o) AS o, pg_catalog.to_jsonb(r.n) AS n"
	" FROM (SELECT pg_catalog.unnest($4) AS o, pg_catalog.unnest($5) AS n) r OFFSET 0) j,"
	" (SELECT pg_catalog.current_setting('billing.app_user', true) AS v) s";

// The same for a statement of one row (most of them): $4 and $5 are the old
// and new rows themselves, no arrays and no generate_series.
constexpr const char *kAuditOneRow =
	" FROM (SELECT pg_catalog.to_jsonb($4) AS o, pg_catalog.to_jsonb($5) AS n OFFSET 0) j,"
	" (SELECT pg_catalog.current_setting('billing.app_user', true) AS v) s";

constexpr const char *kAuditInsert =
	"INSERT INTO billing.audit_log (table_name, row_id, action, old_row, new_row, app_user)"
	" SELECT $1, COALESCE(j.n, j.o) OPERATOR(pg_catalog.->>) $3, $2, j.o, j.n,"
	" CASE WHEN s.v OPERATOR(pg_catalog.<>) '' THEN s.v END";

// billing.settings: the values of keys containing "secret" never in clear.
constexpr const char *kAuditSettingsInsert =
	"INSERT INTO billing.audit_log (table_name, row_id, action, old_row, new_row, app_user)"
	" SELECT $1, COALESCE(m.n, m.o) OPERATOR(pg_catalog.->>) $3, $2, m.o, m.n, m.v"
	" FROM (SELECT CASE WHEN j.o OPERATOR(pg_catalog.->>) 'key' OPERATOR(pg_catalog.~~) '%secret%'"
	"  THEN j.o OPERATOR(pg_catalog.||) '{\"value\": \"********\"}'::pg_catalog.jsonb ELSE j.o END AS o,"
	"  CASE WHEN j.n OPERATOR(pg_catalog.->>) 'key' OPERATOR(pg_catalog.~~) '%secret%'"
	"  THEN j.n OPERATOR(pg_catalog.||) '{\"value\": \"********\"}'::pg_catalog.jsonb ELSE j.n END AS n,"
	"  CASE WHEN s.v OPERATOR(pg_catalog.<>) '' THEN s.v END AS v";

// Rows per audit statement: bounds the arrays (and the memory) of a statement
// that changes millions of rows.
constexpr int kAuditChunk = 1000;

// The same statements when the trigger has built each row's JSON itself
// (RowJsonb): $4 and $5 are jsonb arrays (or, for one row, jsonb values).
constexpr const char *kAuditJsonRows =
	" FROM (SELECT pg_catalog.unnest($4) AS o, pg_catalog.unnest($5) AS n) j,"
	" (SELECT pg_catalog.current_setting('billing.app_user', true) AS v) s";
constexpr const char *kAuditJsonOneRow =
	" FROM (SELECT $4 AS o, $5 AS n) j,"
	" (SELECT pg_catalog.current_setting('billing.app_user', true) AS v) s";

// How one column goes into a row's JSON: to_jsonb's categories
// (jsonb_categorize_type, src/backend/utils/adt/jsonb.c) for the types
// billing's audited tables have.
enum class JsonKind : char { kNumber, kInt2, kInt4, kInt8, kBool, kTimestamptz, kJsonb, kString };

struct JsonColumn {
	int index;         // in the slot's values
	const char *name;  // the column's name (the relation's tuple descriptor)
	int name_length;
	JsonKind kind;
	Oid output;        // output function (kNumber, kString)
};

// The columns of a table in the order jsonb stores an object's keys
// (shorter first, then by bytes: lengthCompareJsonbStringValue), so that
// the object is built already sorted; nullptr when a column's type is not
// one RowJsonb converts exactly as to_jsonb does (the trigger then calls
// to_jsonb in SQL). Call in PgCall; palloc'd in the current context.
JsonColumn *
JsonLayout(TupleDesc desc, int *count)
{
	JsonColumn *columns = static_cast<JsonColumn *>(palloc(sizeof(JsonColumn) * (desc->natts + 1)));
	int n = 0;
	for (int a = 0; a < desc->natts; a++) {
		Form_pg_attribute att = TupleDescAttr(desc, a);
		if (att->attisdropped)
			continue;
		JsonColumn c{a, NameStr(att->attname), static_cast<int>(std::strlen(NameStr(att->attname))), JsonKind::kString,
					 InvalidOid};
		bool varlena = false;
		switch (att->atttypid) {
			// integers: the numeric to_jsonb makes of their text
			// (numeric_in), made from the value (int64_to_numeric: the same
			// canonical numeric, no text between)
			case INT2OID:
				c.kind = JsonKind::kInt2;
				break;
			case INT4OID:
				c.kind = JsonKind::kInt4;
				break;
			case INT8OID:
				c.kind = JsonKind::kInt8;
				break;
			case FLOAT4OID:
			case FLOAT8OID:
			case NUMERICOID:
				c.kind = JsonKind::kNumber;
				getTypeOutputInfo(att->atttypid, &c.output, &varlena);
				break;
			case BOOLOID:
				c.kind = JsonKind::kBool;
				break;
			case TIMESTAMPTZOID:
				c.kind = JsonKind::kTimestamptz;
				break;
			case JSONBOID:
				c.kind = JsonKind::kJsonb;
				break;
			case TEXTOID:
			case VARCHAROID:
				getTypeOutputInfo(att->atttypid, &c.output, &varlena);
				break;
			default: {
				// an enum, unless it has a cast to json (to_jsonb would call it)
				if (get_typtype(att->atttypid) != TYPTYPE_ENUM)
					return nullptr;
				Oid cast = InvalidOid;
				if (find_coercion_pathway(JSONOID, att->atttypid, COERCION_EXPLICIT, &cast) == COERCION_PATH_FUNC &&
					OidIsValid(cast))
					return nullptr;
				getTypeOutputInfo(att->atttypid, &c.output, &varlena);
				break;
			}
		}
		columns[n++] = c;
	}
	std::sort(columns, columns + n, [](const JsonColumn &x, const JsonColumn &y) {
		if (x.name_length != y.name_length)
			return x.name_length < y.name_length;
		return std::memcmp(x.name, y.name, x.name_length) < 0;
	});
	*count = n;
	return columns;
}

// A string value; to_jsonb refuses one jsonb cannot hold the same way.
JsonbValue
JsonString(char *text)
{
	size_t length = std::strlen(text);
	if (length > JENTRY_OFFLENMASK)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("string too long to represent as jsonb string"),
						errdetail("Due to an implementation restriction, jsonb strings cannot exceed %d bytes.",
								  JENTRY_OFFLENMASK)));
	JsonbValue v;
	v.type = jbvString;
	v.val.string.len = static_cast<int>(length);
	v.val.string.val = text;
	return v;
}

// to_jsonb(row) for the row in `slot`, built directly: the same object
// (composite_to_jsonb and datum_to_jsonb's conversions, value by value)
// without looking every column's type up again for every row and without
// sorting the keys. Call in PgCall.
Datum
RowJsonb(TupleTableSlot *slot, const JsonColumn *columns, int count)
{
	slot_getallattrs(slot);
	JsonbParseState *state = nullptr;
	JsonbValue *result = pushJsonbValue(&state, WJB_BEGIN_OBJECT, nullptr);
	for (int i = 0; i < count; i++) {
		const JsonColumn &c = columns[i];
		JsonbValue key;
		key.type = jbvString;
		key.val.string.len = c.name_length;
		key.val.string.val = const_cast<char *>(c.name);
		result = pushJsonbValue(&state, WJB_KEY, &key);
		JsonbValue v;
		Datum value = slot->tts_values[c.index];
		if (slot->tts_isnull[c.index]) {
			v.type = jbvNull;
		} else {
			switch (c.kind) {
				case JsonKind::kInt2:
					v.type = jbvNumeric;
					v.val.numeric = int64_to_numeric(DatumGetInt16(value));
					break;
				case JsonKind::kInt4:
					v.type = jbvNumeric;
					v.val.numeric = int64_to_numeric(DatumGetInt32(value));
					break;
				case JsonKind::kInt8:
					v.type = jbvNumeric;
					v.val.numeric = int64_to_numeric(DatumGetInt64(value));
					break;
				case JsonKind::kNumber: {
					char *text = OidOutputFunctionCall(c.output, value);
					// NaN and the infinities are strings in JSON
					if (std::strchr(text, 'N') != nullptr || std::strchr(text, 'n') != nullptr) {
						v = JsonString(text);
					} else {
						v.type = jbvNumeric;
						v.val.numeric = DatumGetNumeric(DirectFunctionCall3(
							numeric_in, CStringGetDatum(text), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
					}
					break;
				}
				case JsonKind::kBool:
					v.type = jbvBool;
					v.val.boolean = DatumGetBool(value);
					break;
				case JsonKind::kTimestamptz:
					v = JsonString(JsonEncodeDateTime(nullptr, value, TIMESTAMPTZOID, nullptr));
					break;
				case JsonKind::kJsonb: {
					// the value's own tokens, or its scalar
					Jsonb *jsonb = DatumGetJsonbP(value);
					JsonbIterator *it = JsonbIteratorInit(&jsonb->root);
					if (JB_ROOT_IS_SCALAR(jsonb)) {
						(void) JsonbIteratorNext(&it, &v, true);
						(void) JsonbIteratorNext(&it, &v, true);
						break;
					}
					JsonbIteratorToken token;
					while ((token = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
						result = pushJsonbValue(&state, token,
												(token == WJB_BEGIN_ARRAY || token == WJB_END_ARRAY ||
												 token == WJB_BEGIN_OBJECT || token == WJB_END_OBJECT)
													? nullptr
													: &v);
					continue;  // pushed already
				}
				case JsonKind::kString:
					v = JsonString(OidOutputFunctionCall(c.output, value));
					break;
			}
		}
		result = pushJsonbValue(&state, WJB_VALUE, &v);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, nullptr);
	return JsonbPGetDatum(JsonbValueToJsonb(result));
}


// ---------------------------------------------------------------------------
// The direct path: a chunk's audit rows inserted without a statement while
// billing.audit_log is a plain heap table this code knows (no rule, no
// row-level security, no trigger that fires on INSERT, not a partition, no generated column, no
// domain-typed column, indexes immediate without exclusion, the six columns
// the statement names with their shipped types) and its owner may INSERT.
// The values are the statement's: table_name, action, the row's JSON as
// RowJsonb built it, row_id as COALESCE(new, old) ->> key, app_user as
// current_setting('billing.app_user', true) unless empty; every other column
// from its stored default, evaluated as the INSERT evaluates it (id's
// nextval, session_user, now()), the NOT NULL and CHECK constraints by
// ExecConstraints, the index entries by ExecInsertIndexTuples, in the rows'
// order (the ids as the statement gives them). A chunk whose row_id this
// code cannot read (no key, a JSON null: the statement's 23502) goes through
// the statement, before anything of it is written. About 100,000
// instructions per audit row less than the statement (maintenance's pages,
// callgrind).
enum AuditColumn : int { aTableName, aRowId, aAction, aOldRow, aNewRow, aAppUser, kAuditColumns };
constexpr const char *kAuditColumnNames[kAuditColumns] = {"table_name", "row_id", "action", "old_row", "new_row", "app_user"};
constexpr Oid kAuditColumnTypes[kAuditColumns] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, TEXTOID};

// COALESCE(row) ->> key as text, or nullptr: a JSON null, no such key, or a
// value this code does not convert (the statement then). Call in PgCall.
text *
RowId(Datum row, const char *key)
{
	Jsonb *jsonb = DatumGetJsonbP(row);
	if (!JB_ROOT_IS_OBJECT(jsonb))
		return nullptr;
	JsonbValue v;
	JsonbValue *found = getKeyJsonValueFromContainer(&jsonb->root, key, static_cast<int>(std::strlen(key)), &v);
	if (found == nullptr)
		return nullptr;
	switch (found->type) {
		case jbvString:
			return cstring_to_text_with_len(found->val.string.val, found->val.string.len);
		case jbvNumeric:
			return cstring_to_text(DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(found->val.numeric))));
		case jbvBool:
			return cstring_to_text(found->val.boolean ? "true" : "false");
		default:
			return nullptr;
	}
}

// Whether a trigger fires on an INSERT (the shipped one, _touch_updated_at,
// fires on UPDATE only).
bool
FiresOnInsert(const TriggerDesc *t)
{
	return t != nullptr && (t->trig_insert_before_row || t->trig_insert_after_row || t->trig_insert_instead_row ||
							t->trig_insert_before_statement || t->trig_insert_after_statement || t->trig_insert_new_table);
}

// Inserts the n audit rows (old_values/new_values, nullptr for a side the
// event has not) directly; false, with nothing written, when the statement
// must. Call in PgCall, as the audited table's owner.
bool
WriteAuditRowsDirectly(const char *table, const char *action, const char *key, const Datum *old_values,
					   const Datum *new_values, int n)
{
	Oid relid = get_relname_relid("audit_log", get_namespace_oid("billing", false));
	if (!OidIsValid(relid))
		return false;
	// the row ids first: a chunk is written whole or not at all
	text **row_ids = static_cast<text **>(palloc(sizeof(text *) * n));
	for (int i = 0; i < n; i++)
		if ((row_ids[i] = RowId(new_values != nullptr ? new_values[i] : old_values[i], key)) == nullptr)
			return false;
	Relation rel = table_open(relid, RowExclusiveLock);
	TupleDesc desc = RelationGetDescr(rel);
	bool allowed = rel->rd_rel->relkind == RELKIND_RELATION && rel->rd_rel->relam == HEAP_TABLE_AM_OID &&
				   rel->rd_rules == nullptr && !rel->rd_rel->relrowsecurity && !FiresOnInsert(rel->trigdesc) &&
				   !rel->rd_rel->relispartition && (desc->constr == nullptr || !desc->constr->has_generated_stored) &&
				   pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) == ACLCHECK_OK;
	AttrNumber attno[kAuditColumns] = {};
	for (int a = 0; a < desc->natts && allowed; a++) {
		Form_pg_attribute att = TupleDescAttr(desc, a);
		if (att->attisdropped)
			continue;
		if (att->attgenerated != '\0' || get_typtype(att->atttypid) == TYPTYPE_DOMAIN)
			allowed = false;
		for (int c = 0; c < kAuditColumns; c++)
			if (std::strcmp(NameStr(att->attname), kAuditColumnNames[c]) == 0) {
				allowed = allowed && att->atttypid == kAuditColumnTypes[c];
				attno[c] = att->attnum;
			}
	}
	for (int c = 0; c < kAuditColumns && allowed; c++)
		allowed = attno[c] != InvalidAttrNumber;
	List *index_oids = allowed ? RelationGetIndexList(rel) : NIL;
	ListCell *cell = nullptr;
	foreach (cell, index_oids) {
		Relation index = index_open(lfirst_oid(cell), AccessShareLock);
		if (!index->rd_index->indimmediate || index->rd_index->indisexclusion)
			allowed = false;
		index_close(index, AccessShareLock);
	}
	list_free(index_oids);
	if (!allowed) {
		table_close(rel, NoLock);
		return false;
	}
	// a new command with its snapshot, as SPI runs a statement
	CommandCounterIncrement();
	PushCopiedSnapshot(GetActiveSnapshot());
	UpdateActiveSnapshotCommandId();
	EState *estate = CreateExecutorState();
	estate->es_snapshot = GetActiveSnapshot();
	estate->es_output_cid = GetCurrentCommandId(true);
	ResultRelInfo *info = makeNode(ResultRelInfo);
	InitResultRelInfo(info, rel, 0, nullptr, 0);
	ExecOpenIndices(info, false);
	CheckCmdReplicaIdentity(rel, CMD_INSERT);
	// the other columns' defaults, as the INSERT's rewriter adds them
	ExprState **defaults = static_cast<ExprState **>(palloc0(sizeof(ExprState *) * desc->natts));
	for (int a = 0; a < desc->natts; a++) {
		Form_pg_attribute att = TupleDescAttr(desc, a);
		bool named = false;
		for (int c = 0; c < kAuditColumns; c++)
			named = named || attno[c] == att->attnum;
		if (att->attisdropped || named)
			continue;
		Node *d = build_column_default(rel, att->attnum);
		if (d != nullptr)
			defaults[a] = ExecPrepareExpr(reinterpret_cast<Expr *>(d), estate);
	}
	char *app_user = GetConfigOptionByName("billing.app_user", nullptr, true);
	TupleTableSlot *slot = table_slot_create(rel, nullptr);
	for (int i = 0; i < n; i++) {
		ResetPerTupleExprContext(estate);
		ExecClearTuple(slot);
		ExprContext *econtext = GetPerTupleExprContext(estate);
		for (int a = 0; a < desc->natts; a++) {
			slot->tts_values[a] = 0;
			slot->tts_isnull[a] = true;
			if (defaults[a] != nullptr)
				slot->tts_values[a] = ExecEvalExprSwitchContext(defaults[a], econtext, &slot->tts_isnull[a]);
		}
		auto set = [&](AuditColumn c, Datum value, bool isnull) {
			slot->tts_values[attno[c] - 1] = isnull ? 0 : value;
			slot->tts_isnull[attno[c] - 1] = isnull;
		};
		set(aTableName, CStringGetTextDatum(table), false);
		set(aRowId, PointerGetDatum(row_ids[i]), false);
		set(aAction, CStringGetTextDatum(action), false);
		set(aOldRow, old_values != nullptr ? old_values[i] : 0, old_values == nullptr);
		set(aNewRow, new_values != nullptr ? new_values[i] : 0, new_values == nullptr);
		set(aAppUser, app_user != nullptr ? CStringGetTextDatum(app_user) : 0, app_user == nullptr || app_user[0] == '\0');
		ExecStoreVirtualTuple(slot);
		if (desc->constr != nullptr)
			ExecConstraints(info, slot, estate);
		table_tuple_insert(rel, slot, estate->es_output_cid, 0, nullptr);
		list_free(ExecInsertIndexTuples(info, slot, estate, false, false, nullptr, NIL));
	}
	ExecDropSingleTupleTableSlot(slot);
	ExecCloseIndices(info);
	FreeExecutorState(estate);
	PopActiveSnapshot();
	table_close(rel, NoLock);
	return true;
}
}  // namespace

// Every statement that does not start with COPY is answered without a
// regular expression: the audit and quota triggers ask on every row.
bool
Restoring()
{
	const char *query = debug_query_string;
	if (query == nullptr)
		return false;
	while (std::isspace(static_cast<unsigned char>(*query)))
		query++;
	if (pg_strncasecmp(query, "copy", 4) != 0)
		return false;
	bool restoring = false;
	PgCall([&] {
		restoring = superuser_arg(GetSessionUserId()) &&
					DatumGetBool(DirectFunctionCall2Coll(texticregexeq, C_COLLATION_OID, CStringGetTextDatum(query),
														 CStringGetTextDatum("^COPY\\s+billing\\.\\S+.*\\sFROM\\s+stdin")));
	});
	return restoring;
}

TriggerData *
TriggerDataOf(FunctionCallInfo fcinfo, const char *name)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		throw Error(sqlstate::kInternalError, std::string(name) + " must be called as a trigger");
	return reinterpret_cast<TriggerData *>(fcinfo->context);
}

void
RewindTransitionTable(Tuplestorestate *rows)
{
	int pointer = tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(rows, pointer);
	tuplestore_rescan(rows);
}

std::string
AuditedChange(const char *table_literal, bool update, const std::string &ctes, const std::string &select)
{
	// kAuditInsert's columns and values, read from the statement's own rows
	// (OFFSET 0: each row's to_jsonb once, as in kAuditRows).
	return "WITH " + ctes +
		   ", audited AS (INSERT INTO billing.audit_log (table_name, row_id, action, old_row, new_row, app_user)"
		   " SELECT " + std::string(table_literal) + ", j.n OPERATOR(pg_catalog.->>) 'id', " +
		   (update ? "'UPDATE'" : "'INSERT'") + ", j.o, j.n, CASE WHEN v.v OPERATOR(pg_catalog.<>) '' THEN v.v END"
		   " FROM (SELECT " + (update ? "pg_catalog.to_jsonb(b)" : "NULL::pg_catalog.jsonb") + " AS o, pg_catalog.to_jsonb(c) AS n"
		   " FROM changed c" + (update ? " JOIN before b ON b.id OPERATOR(pg_catalog.=) c.id" : "") + " OFFSET 0) j,"
		   " (SELECT pg_catalog.current_setting('billing.app_user', true) AS v) v) " + select;
}

}  // namespace billing::glue

using namespace billing;
using namespace billing::glue;

// billing._audit(key column): an AFTER ... FOR EACH STATEMENT trigger with
// its transition tables; one audit_log insert per chunk of the statement's
// rows, not one per row.
BILLING_FUNCTION(billing_audit)
{
	TriggerData *trigger = TriggerDataOf(fcinfo, "billing._audit()");
	if (trigger->tg_trigger->tgnargs != 1 || !TRIGGER_FIRED_FOR_STATEMENT(trigger->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigger->tg_event))
		throw Error(sqlstate::kInternalError,
					"billing._audit() must be an AFTER statement trigger with transition tables and the key column");
	Tuplestorestate *old_rows = nullptr;
	Tuplestorestate *new_rows = nullptr;
	const char *action = "INSERT";
	if (TRIGGER_FIRED_BY_INSERT(trigger->tg_event)) {
		new_rows = trigger->tg_newtable;
	} else if (TRIGGER_FIRED_BY_UPDATE(trigger->tg_event)) {
		action = "UPDATE";
		old_rows = trigger->tg_oldtable;
		new_rows = trigger->tg_newtable;
	} else {
		action = "DELETE";
		old_rows = trigger->tg_oldtable;
	}
	if ((old_rows == nullptr) != (std::strcmp(action, "INSERT") == 0) ||
		(new_rows == nullptr) != (std::strcmp(action, "DELETE") == 0))
		throw Error(sqlstate::kInternalError, "billing._audit() needs the transition tables of its event");
	Relation rel = trigger->tg_relation;
	std::string table = RelationGetRelationName(rel);
	Oid row_type = rel->rd_rel->reltype;
	if (Restoring())  // the dumped audit log already holds these rows' history
		return PointerGetDatum(nullptr);
	if (IsAuditedByStatement(table.c_str()))  // the statement wrote its audit rows itself
		return PointerGetDatum(nullptr);
	Oid array_type = InvalidOid;
	PgCall([&] { array_type = get_array_type(row_type); });
	if (!OidIsValid(array_type))
		throw Error(sqlstate::kInternalError, "table \"" + table + "\" has no array type");
	// Each row's JSON built here (RowJsonb) when every column's type allows,
	// else to_jsonb of the rows in SQL.
	JsonColumn *json_columns = nullptr;
	int json_count = 0;
	PgCall([&] { json_columns = JsonLayout(RelationGetDescr(rel), &json_count); });
	bool built = json_columns != nullptr;
	auto sql_for = [&](bool one_row) {
		const char *rows = built ? (one_row ? kAuditJsonOneRow : kAuditJsonRows) : (one_row ? kAuditOneRow : kAuditRows);
		return std::string(table == "settings" ? kAuditSettingsInsert : kAuditInsert) + rows +
			   (table == "settings" ? ") m" : "");
	};
	if (built) {
		row_type = JSONBOID;
		array_type = JSONBARRAYOID;
	}
	AsTableOwner owner(rel->rd_rel->relowner);
	Spi spi;
	// The old and new rows in the statement's order (both tuplestores are
	// appended to together), read through read pointers of our own, in
	// chunks built in a context reset after each chunk's insert.
	TupleDesc desc = RelationGetDescr(rel);
	TupleTableSlot *slot = nullptr;
	MemoryContext chunk_context = nullptr;
	// a row's JSON is built in row_context, reset after each row, and only
	// the result is kept in chunk_context (building 1,000 rows there grew it
	// by megabytes that each reset gave back to the system: page faults)
	MemoryContext row_context = nullptr;
	auto CopiedRowJsonb = [&](TupleTableSlot *row) {
		MemoryContext chunk = MemoryContextSwitchTo(row_context);
		Datum built_json = RowJsonb(row, json_columns, json_count);
		MemoryContextSwitchTo(chunk);
		Datum kept = datumCopy(built_json, false, -1);
		MemoryContextReset(row_context);
		return kept;
	};
	Datum *old_values = nullptr;
	Datum *new_values = nullptr;
	int64 total_rows = 0;
	int capacity = 1;
	PgCall([&] {
		slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		chunk_context = AllocSetContextCreate(CurrentMemoryContext, "billing audit chunk", ALLOCSET_DEFAULT_SIZES);
		row_context = AllocSetContextCreate(CurrentMemoryContext, "billing audit row", ALLOCSET_DEFAULT_SIZES);
		// sized for the statement's rows, at most a chunk
		total_rows = tuplestore_tuple_count(new_rows != nullptr ? new_rows : old_rows);
		capacity = static_cast<int>(std::clamp<int64>(total_rows, 1, kAuditChunk));
		old_values = static_cast<Datum *>(palloc(sizeof(Datum) * capacity));
		new_values = static_cast<Datum *>(palloc(sizeof(Datum) * capacity));
		for (Tuplestorestate *rows : {old_rows, new_rows})
			if (rows != nullptr)
				RewindTransitionTable(rows);
	});
	bool more = true;
	while (more) {
		int n = 0;
		Datum old_array = 0;
		Datum new_array = 0;
		bool one_row = false;  // the statement's only row: passed as itself
		bool direct = false;   // written by WriteAuditRowsDirectly
		PgCall([&] {
			MemoryContext outer = MemoryContextSwitchTo(chunk_context);
			for (; n < capacity; n++) {
				bool got = false;
				if (old_rows != nullptr && (got = tuplestore_gettupleslot(old_rows, true, false, slot)))
					old_values[n] = built ? CopiedRowJsonb(slot) : ExecFetchSlotHeapTupleDatum(slot);
				if (new_rows != nullptr && (got = tuplestore_gettupleslot(new_rows, true, false, slot)))
					new_values[n] = built ? CopiedRowJsonb(slot) : ExecFetchSlotHeapTupleDatum(slot);
				if (!got) {
					more = false;
					break;
				}
			}
			// directly while billing.audit_log is as this code knows it
			if (built && table != "settings" && n > 0 &&
				WriteAuditRowsDirectly(table.c_str(), action, trigger->tg_trigger->tgargs[0],
									   old_rows != nullptr ? old_values : nullptr,
									   new_rows != nullptr ? new_values : nullptr, n)) {
				direct = true;
				MemoryContextSwitchTo(outer);
				return;
			}
			if (n == 1 && total_rows == 1) {
				one_row = true;
				old_array = old_rows != nullptr ? old_values[0] : 0;
				new_array = new_rows != nullptr ? new_values[0] : 0;
				MemoryContextSwitchTo(outer);
				return;
			}
			int16 len = 0;
			bool byval = false;
			char align = 0;
			get_typlenbyvalalign(row_type, &len, &byval, &align);
			if (n > 0 && old_rows != nullptr)
				old_array = PointerGetDatum(construct_array(old_values, n, row_type, len, byval, align));
			if (n > 0 && new_rows != nullptr)
				new_array = PointerGetDatum(construct_array(new_values, n, row_type, len, byval, align));
			MemoryContextSwitchTo(outer);
		});
		Oid type = one_row ? row_type : array_type;
		if (direct)
			;
		else if (one_row)
			spi.Execute(sql_for(true), {SqlArg::Text(table), SqlArg::Text(action), SqlArg::Text(trigger->tg_trigger->tgargs[0]),
										SqlArg{type, old_array, old_rows == nullptr}, SqlArg{type, new_array, new_rows == nullptr}});
		else if (n > 0)
			spi.Execute(sql_for(false), {SqlArg::Text(table), SqlArg::Text(action), SqlArg::Text(trigger->tg_trigger->tgargs[0]),
										 SqlArg{type, old_array, old_rows == nullptr},
										 SqlArg{type, new_array, new_rows == nullptr}});
		// The slot may hold the chunk's last row: a transition table that
		// spilled to disk hands out rows palloc'd in the current context
		// (chunk_context) for the slot to free. Freed now, before the reset:
		// after it, the slot's next store or drop would free them again.
		PgCall([&] {
			ExecClearTuple(slot);
			MemoryContextReset(chunk_context);
		});
	}
	PgCall([&] {
		ExecDropSingleTupleTableSlot(slot);
		MemoryContextDelete(chunk_context);
		MemoryContextDelete(row_context);
	});
	spi.Finish();
	return PointerGetDatum(nullptr);
}

BILLING_FUNCTION(billing_restoring)
{
	return BoolGetDatum(Restoring());
}

// billing._plan_used(plan_id): whether a subscription names the plan, or
// ever did (the history keeps a plan a Stripe price switch rewrote in place:
// attack finding 3/5), read with the newest snapshot, as PostgreSQL's
// foreign-key checks read (attack finding 3/4: a subscription committed
// after a REPEATABLE READ caller's snapshot counts). _plans_pristine calls
// it after locking the plan row FOR UPDATE, which waits for a subscription
// still being inserted (its foreign key holds FOR KEY SHARE of the row).
BILLING_FUNCTION(billing_plan_used)
{
	int64_t plan_id = Int64ArgRequired(fcinfo, 0, "plan_id");
	PgCall([] { PushActiveSnapshot(GetLatestSnapshot()); });
	Spi spi(Spi::Access::kReadOnly);  // its queries run on the active snapshot
	bool used = !spi.Query("SELECT 1 WHERE EXISTS (SELECT 1 FROM billing.subscriptions s"
						   " WHERE s.plan_id OPERATOR(pg_catalog.=) $1)"
						   " OR EXISTS (SELECT 1 FROM billing.subscription_history h"
						   " WHERE h.plan_id OPERATOR(pg_catalog.=) $1)",
						   {SqlArg::Int64(plan_id)})
					 .empty();
	spi.Finish();
	PgCall([] { PopActiveSnapshot(); });
	return BoolGetDatum(used);
}

BILLING_FUNCTION(billing_touch_updated_at)
{
	TriggerData *trigger = TriggerDataOf(fcinfo, "billing._touch_updated_at()");
	if (!TRIGGER_FIRED_BY_UPDATE(trigger->tg_event) || !TRIGGER_FIRED_BEFORE(trigger->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigger->tg_event))
		throw Error(sqlstate::kInternalError, "billing._touch_updated_at() must be a BEFORE UPDATE row trigger");
	HeapTuple touched = nullptr;
	PgCall([&] {
		Relation rel = trigger->tg_relation;
		int column = SPI_fnumber(RelationGetDescr(rel), "updated_at");
		if (column <= 0)
			elog(ERROR, "relation \"%s\" has no column \"updated_at\"", RelationGetRelationName(rel));
		Datum now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		bool isnull = false;
		touched = heap_modify_tuple_by_cols(trigger->tg_newtuple, RelationGetDescr(rel), 1, &column, &now, &isnull);
	});
	return PointerGetDatum(touched);
}
