#include "glue/rights.hpp"

#include "glue/guard.hpp"
#include "glue/quota_counter.hpp"
#include "glue/spi.hpp"

#include "core/error.hpp"

#include <charconv>
#include <optional>
#include <vector>

namespace billing::glue {

SavedRights
EnterRights(Oid user)
{
	SavedRights saved{InvalidOid, 0, 0};
	PgCall([&] {
		GetUserIdAndSecContext(&saved.user, &saved.security_context);
		// As fmgr_security_definer applies a function's SET search_path.
		saved.guc_nest_level = NewGUCNestLevel();
		(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
		if (OidIsValid(user))
			SetUserIdAndSecContext(user, saved.security_context | SECURITY_LOCAL_USERID_CHANGE);
	});
	return saved;
}

void
LeaveRights(const SavedRights &saved)
{
	PgCall([&] {
		AtEOXact_GUC(true, saved.guc_nest_level);
		SetUserIdAndSecContext(saved.user, saved.security_context);
	});
}

namespace {

Oid
OidFrom(const std::optional<std::string> &text)
{
	if (!text)
		return InvalidOid;
	uint32_t value = 0;
	std::from_chars(text->data(), text->data() + text->size(), value);
	return static_cast<Oid>(value);
}

// Triggers already checked by this backend, with what they may act on. A few
// per attached table: it does not grow with the data.
struct CheckedTrigger {
	Oid trigger;
	Attachment attachment;
};
std::vector<CheckedTrigger> checked_triggers;

constexpr const char *kAttachmentById =
	"SELECT a.kind::pg_catalog.text, a.relation::pg_catalog.oid::pg_catalog.text,"
	" a.parent_relation::pg_catalog.oid::pg_catalog.text, a.key_column::pg_catalog.text,"
	" a.parent_key_column::pg_catalog.text, a.parent_owner_column::pg_catalog.text, a.id::pg_catalog.text,"
	" a.counts_deleted_at::pg_catalog.text FROM billing.attachments a WHERE a.id OPERATOR(pg_catalog.=) $1";

constexpr const char *kUsersAttachment =
	"SELECT a.kind::pg_catalog.text, a.relation::pg_catalog.oid::pg_catalog.text,"
	" a.parent_relation::pg_catalog.oid::pg_catalog.text, a.key_column::pg_catalog.text,"
	" a.parent_key_column::pg_catalog.text, a.parent_owner_column::pg_catalog.text, a.id::pg_catalog.text,"
	" a.counts_deleted_at::pg_catalog.text FROM billing.attachments a WHERE a.kind OPERATOR(pg_catalog.=) 'users'"
	" AND a.relation::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])";

}  // namespace

std::vector<Oid>
TableAndAncestors(Oid table)
{
	std::vector<Oid> tables{table};
	PgCall([&] {
		if (get_rel_relispartition(table)) {
			List *ancestors = get_partition_ancestors(table);
			ListCell *cell = nullptr;
			foreach (cell, ancestors)
				tables.push_back(lfirst_oid(cell));
			list_free(ancestors);
		}
	});
	return tables;
}

std::string
OidArrayText(const std::vector<Oid> &oids)
{
	std::string text = "{";
	for (size_t i = 0; i < oids.size(); i++)
		text += (i ? "," : "") + std::to_string(oids[i]);
	return text + "}";
}

Attachment
CheckedAttachment(const Trigger *trigger, Relation relation, int32_t attachment_id, Watched what)
{
	for (const CheckedTrigger &checked : checked_triggers)
		if (checked.trigger == trigger->tgoid && (what == Watched::kUsers || checked.attachment.id == attachment_id))
			return checked.attachment;

	std::vector<Oid> tables = TableAndAncestors(RelationGetRelid(relation));
	std::string table_name;
	PgCall([&] { table_name = RelationGetRelationName(relation); });
	std::string oids = OidArrayText(tables);

	std::vector<Row> rows;
	AsBillingOwner(CountersOwner(), [&] {
		Spi spi(Spi::Access::kReadOnly);
		if (what == Watched::kUsers)
			rows = spi.Query(kUsersAttachment, {SqlArg::Text(oids)});
		else
			rows = spi.Query(kAttachmentById, {SqlArg::Int32(attachment_id)});
		spi.Finish();
	});
	bool allowed = false;
	Attachment found{attachment_id, "", "", "", InvalidOid};
	if (!rows.empty()) {
		const Row &row = rows.at(0);
		Oid watched = what == Watched::kRoomsOwner ? OidFrom(row.text(2)) : OidFrom(row.text(1));
		for (Oid table : tables)
			allowed = allowed || table == watched;
		std::string kind = row.text_or(0, "");
		if (what == Watched::kUsers ? kind != "users" : kind == "users")
			allowed = false;
		found = {static_cast<int32_t>(std::stol(row.text_or(6, "0"))), row.text_or(3, ""), row.text_or(4, ""),
				 row.text_or(5, ""), OidFrom(row.text(2)), kind, row.text_or(7, "false") == "true", OidFrom(row.text(1))};
	}
	if (!allowed)
		throw billing::Error("42501", "trigger \"" + std::string(trigger->tgname) + "\" on table \"" + table_name +
										  "\" may not act on billing's counters",
							 "The trigger calls a billing function, but billing did not attach that table.",
							 "Attach tables with billing.attach_users, billing.attach_room_quota or "
							 "billing.attach_participant_quota.");
	checked_triggers.push_back({trigger->tgoid, found});
	return found;
}

bool
ColumnText(Relation relation, HeapTuple tuple, const std::string &column, std::string *out)
{
	char *value = nullptr;
	PgCall([&] {
		TupleDesc desc = RelationGetDescr(relation);
		int number = SPI_fnumber(desc, column.c_str());
		if (number <= 0)
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
							errmsg("column \"%s\" that billing counts is missing", column.c_str()),
							errhint("Attach the table again after renaming or dropping a counted column.")));
		value = SPI_getvalue(tuple, desc, number);
	});
	if (value == nullptr)
		return false;
	*out = value;
	return true;
}

}  // namespace billing::glue
