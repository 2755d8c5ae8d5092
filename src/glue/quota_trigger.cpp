// The quota trigger on the application's rooms and participants (SPEC §2).
//
// Per counted row it runs one prepared statement: an UPDATE of the owner's (or
// room's) counter that succeeds only while the cached limit is fresh and not
// reached. The row lock it takes is the minimum that makes the limit exact
// under concurrency (READ COMMITTED re-checks the WHERE clause on the newest
// version). When that statement finds nothing to update, the slow path
// (billing._quota_prepare) creates or refreshes the counter, and the core
// decides.
#include "glue/guard.hpp"
#include "glue/settings.hpp"
#include "glue/spi.hpp"

#include "core/error.hpp"
#include "core/quota.hpp"

#include <optional>
#include <string>

namespace billing::glue {
namespace {

constexpr const char *kFastIncrement =
	"UPDATE billing.quota_counters SET used = used OPERATOR(pg_catalog.+) 1,"
	" usage_pending = usage_pending OPERATOR(pg_catalog.+) $5"
	" WHERE attachment_id OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2"
	" AND usage_day OPERATOR(pg_catalog.=) $3 AND cap_valid_until OPERATOR(pg_catalog.>) $4"
	" AND (cap IS NULL OR used OPERATOR(pg_catalog.<) cap OR NOT $6)";

constexpr const char *kPrepare =
	"SELECT used, limits, plan_code, plan_name, cap_valid_until::text, owner_id"
	" FROM billing._quota_prepare($1, $2, $3)";

constexpr const char *kSlowIncrement =
	"UPDATE billing.quota_counters SET used = used OPERATOR(pg_catalog.+) 1,"
	" usage_pending = usage_pending OPERATOR(pg_catalog.+) $3, cap = $4, cap_valid_until = $5::pg_catalog.timestamptz,"
	" updated_at = pg_catalog.now()"
	" WHERE attachment_id OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2";

constexpr const char *kDecrement =
	"UPDATE billing.quota_counters SET used = pg_catalog.int8larger(used OPERATOR(pg_catalog.-) 1, 0)"
	" WHERE attachment_id OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2";

// Runs the trigger's SQL as the extension's owner: application roles have no
// rights on billing tables. Restored on every way out (and by PostgreSQL on
// abort).
class AsExtensionOwner {
 public:
	AsExtensionOwner()
	{
		GetUserIdAndSecContext(&saved_user_, &saved_context_);
		SetUserIdAndSecContext(Owner(), saved_context_ | SECURITY_LOCAL_USERID_CHANGE);
	}
	~AsExtensionOwner() { SetUserIdAndSecContext(saved_user_, saved_context_); }
	AsExtensionOwner(const AsExtensionOwner &) = delete;
	AsExtensionOwner &operator=(const AsExtensionOwner &) = delete;

 private:
	static Oid Owner()
	{
		// The owner of the quota_counters table, looked up once per backend.
		static Oid owner = InvalidOid;
		if (!OidIsValid(owner)) {
			PgCall([&] {
				Oid nsp = get_namespace_oid("billing", false);
				Oid rel = get_relname_relid("quota_counters", nsp);
				if (!OidIsValid(rel))
					elog(ERROR, "billing.quota_counters is missing");
				HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
				if (!HeapTupleIsValid(tuple))
					elog(ERROR, "cache lookup failed for relation %u", rel);
				owner = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple))->relowner;
				ReleaseSysCache(tuple);
			});
		}
		return owner;
	}

	Oid saved_user_ = InvalidOid;
	int saved_context_ = 0;
};

struct TriggerArgs {
	int32_t attachment_id;
	std::string quota;  // "rooms" or "participants_per_room"
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
			elog(ERROR, "column \"%s\" is missing", args.key_column);
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

void
Increment(Spi &spi, const TriggerArgs &args, const std::string &key, TimestampTz at, bool record_usage)
{
	bool enforce = enforce_quotas;
	std::vector<SqlArg> fast = {SqlArg::Int32(args.attachment_id), SqlArg::Text(key), SqlArg::Date(PgDay(at)),
								SqlArg::Timestamp(at), SqlArg::Int64(record_usage ? 1 : 0), SqlArg::Bool(enforce)};
	spi.QueryPrepared(kFastIncrement, fast);
	if (SPI_processed == 1)
		return;

	auto rows = spi.QueryPrepared(kPrepare, {SqlArg::Int32(args.attachment_id), SqlArg::Text(key), SqlArg::Timestamp(at)});
	const Row &row = rows.at(0);
	int64_t used = *row.int64(0);
	std::optional<int64_t> cap = ParseLimit(row.text_or(1, "{}"), args.quota, row.text_or(2, ""));
	if (enforce && !AllowsOneMore(cap, used))
		throw QuotaExceeded(args.quota, row.text_or(3, ""), *cap, used, row.text_or(5, ""));
	spi.QueryPrepared(kSlowIncrement, {SqlArg::Int32(args.attachment_id), SqlArg::Text(key),
									   SqlArg::Int64(record_usage ? 1 : 0), SqlArg::Int64(cap),
									   SqlArg::Text(row.text_or(4, "infinity"))});
}

void
Decrement(Spi &spi, const TriggerArgs &args, const std::string &key)
{
	spi.QueryPrepared(kDecrement, {SqlArg::Int32(args.attachment_id), SqlArg::Text(key)});
}

}  // namespace
}  // namespace billing::glue

using namespace billing::glue;

BILLING_FUNCTION(billing_quota_trigger)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		throw billing::Error("39P01", "billing._quota_trigger() may only be called as a trigger");
	TriggerData *trigger = reinterpret_cast<TriggerData *>(fcinfo->context);
	TriggerEvent event = trigger->tg_event;
	if (!TRIGGER_FIRED_BEFORE(event) || !TRIGGER_FIRED_FOR_ROW(event) || trigger->tg_trigger->tgnargs < 4)
		throw billing::Error("39P01", "billing._quota_trigger() must fire BEFORE each row, with four arguments");

	char **targs = trigger->tg_trigger->tgargs;
	TriggerArgs args{static_cast<int32_t>(std::stol(targs[0])),
					 std::string(targs[1]) == "rooms" ? "rooms" : "participants_per_room", targs[2],
					 targs[3][0] == 't'};
	TupleDesc desc = trigger->tg_relation->rd_att;
	TimestampTz at = GetCurrentTransactionStartTimestamp();

	AsExtensionOwner owner;
	Spi spi;
	HeapTuple result = nullptr;
	if (TRIGGER_FIRED_BY_INSERT(event)) {
		if (auto key = CountedKey(args, desc, trigger->tg_trigtuple))
			Increment(spi, args, *key, at, true);
		result = trigger->tg_trigtuple;
	} else if (TRIGGER_FIRED_BY_DELETE(event)) {
		if (auto key = CountedKey(args, desc, trigger->tg_trigtuple))
			Decrement(spi, args, *key);
		result = trigger->tg_trigtuple;
	} else if (TRIGGER_FIRED_BY_UPDATE(event)) {
		auto before = CountedKey(args, desc, trigger->tg_trigtuple);
		auto after = CountedKey(args, desc, trigger->tg_newtuple);
		if (before != after) {
			// Take the new slot first: if it is refused, nothing was released.
			if (after)
				Increment(spi, args, *after, at, false);
			if (before)
				Decrement(spi, args, *before);
		}
		result = trigger->tg_newtuple;
	}
	spi.Finish();
	return PointerGetDatum(result);
}
