// Row triggers on billing's own tables, in C++ (they ran in PL/pgSQL, which
// interpreted each call and matched the whole query text against a regular
// expression on every row):
//   billing._audit(key column): one billing.audit_log row per insert, update
//     and delete, through a statement prepared once per backend;
//   billing._touch_updated_at(): updated_at = now() on every update;
//   billing._restoring(): whether pg_restore is loading a billing table.
#include "glue/guard.hpp"
#include "glue/spi.hpp"

#include "core/error.hpp"

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

// Every name qualified (the caller's search_path is not pinned here); the
// row's JSON is built once and read for the key.
constexpr const char *kAuditInsert =
	"INSERT INTO billing.audit_log (table_name, row_id, action, old_row, new_row, app_user)"
	" SELECT $1, COALESCE(j.n, j.o) OPERATOR(pg_catalog.->>) $3, $2, j.o, j.n,"
	" CASE WHEN s.v OPERATOR(pg_catalog.<>) '' THEN s.v END"
	" FROM (SELECT pg_catalog.to_jsonb($4) AS o, pg_catalog.to_jsonb($5) AS n) j,"
	" (SELECT pg_catalog.current_setting('billing.app_user', true) AS v) s";

// billing.settings: the values of keys containing "secret" never in clear.
constexpr const char *kAuditSettingsInsert =
	"INSERT INTO billing.audit_log (table_name, row_id, action, old_row, new_row, app_user)"
	" SELECT $1, COALESCE(m.n, m.o) OPERATOR(pg_catalog.->>) $3, $2, m.o, m.n,"
	" CASE WHEN s.v OPERATOR(pg_catalog.<>) '' THEN s.v END"
	" FROM (SELECT CASE WHEN j.o OPERATOR(pg_catalog.->>) 'key' OPERATOR(pg_catalog.~~) '%secret%'"
	"  THEN j.o OPERATOR(pg_catalog.||) '{\"value\": \"********\"}'::pg_catalog.jsonb ELSE j.o END AS o,"
	"  CASE WHEN j.n OPERATOR(pg_catalog.->>) 'key' OPERATOR(pg_catalog.~~) '%secret%'"
	"  THEN j.n OPERATOR(pg_catalog.||) '{\"value\": \"********\"}'::pg_catalog.jsonb ELSE j.n END AS n"
	"  FROM (SELECT pg_catalog.to_jsonb($4) AS o, pg_catalog.to_jsonb($5) AS n) j) m,"
	" (SELECT pg_catalog.current_setting('billing.app_user', true) AS v) s";

// True while a superuser's COPY billing.<table> ... FROM stdin (what
// pg_restore and a plain-format dump run) loads a billing table. Every
// statement that does not start with COPY is answered without a regular
// expression: the audit and quota triggers ask on every row.
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

}  // namespace
}  // namespace billing::glue

using namespace billing;
using namespace billing::glue;

BILLING_FUNCTION(billing_audit)
{
	TriggerData *trigger = TriggerDataOf(fcinfo, "billing._audit()");
	if (trigger->tg_trigger->tgnargs != 1 || !TRIGGER_FIRED_FOR_ROW(trigger->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigger->tg_event))
		throw Error(sqlstate::kInternalError, "billing._audit() must be an AFTER ROW trigger with the key column");
	Relation rel = trigger->tg_relation;
	TupleDesc desc = RelationGetDescr(rel);
	HeapTuple old_row = nullptr;
	HeapTuple new_row = nullptr;
	const char *action = "INSERT";
	if (TRIGGER_FIRED_BY_INSERT(trigger->tg_event)) {
		new_row = trigger->tg_trigtuple;
	} else if (TRIGGER_FIRED_BY_UPDATE(trigger->tg_event)) {
		action = "UPDATE";
		old_row = trigger->tg_trigtuple;
		new_row = trigger->tg_newtuple;
	} else {
		action = "DELETE";
		old_row = trigger->tg_trigtuple;
	}
	std::string table = RelationGetRelationName(rel);
	Oid row_type = rel->rd_rel->reltype;
	if (Restoring())  // the dumped audit log already holds these rows' history
		return PointerGetDatum(nullptr);
	AsTableOwner owner(rel->rd_rel->relowner);
	Spi spi;
	Datum old_value = 0;
	Datum new_value = 0;
	PgCall([&] {
		if (old_row != nullptr)
			old_value = heap_copy_tuple_as_datum(old_row, desc);
		if (new_row != nullptr)
			new_value = heap_copy_tuple_as_datum(new_row, desc);
	});
	spi.Execute(table == "settings" ? kAuditSettingsInsert : kAuditInsert,
				{SqlArg::Text(table), SqlArg::Text(action), SqlArg::Text(trigger->tg_trigger->tgargs[0]),
				 SqlArg{row_type, old_value, old_row == nullptr}, SqlArg{row_type, new_value, new_row == nullptr}});
	spi.Finish();
	return PointerGetDatum(nullptr);
}

BILLING_FUNCTION(billing_restoring)
{
	return BoolGetDatum(Restoring());
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
