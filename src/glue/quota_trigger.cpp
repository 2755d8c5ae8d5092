// The quota trigger on the application's rooms and participants (SPEC §2).
//
// Per counted row the fast path (glue/quota_counter.cpp) adds one to the
// owner's (or room's) counter in place, while its cached limit is fresh and
// not reached. The row lock that update takes is the minimum that makes the
// limit exact under concurrency. Otherwise the slow path
// (billing._quota_prepare, through SPI) creates or refreshes the counter, and
// the core decides.
#include "glue/guard.hpp"
#include "glue/quota_counter.hpp"
#include "glue/settings.hpp"
#include "glue/spi.hpp"

#include "core/error.hpp"
#include "core/quota.hpp"

#include <charconv>
#include <optional>
#include <string>

namespace billing::glue {
namespace {

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
		SetUserIdAndSecContext(CountersOwner(), saved_context_ | SECURITY_LOCAL_USERID_CHANGE);
	}
	~AsExtensionOwner() { SetUserIdAndSecContext(saved_user_, saved_context_); }
	AsExtensionOwner(const AsExtensionOwner &) = delete;
	AsExtensionOwner &operator=(const AsExtensionOwner &) = delete;

 private:
	Oid saved_user_ = InvalidOid;
	int saved_context_ = 0;
};

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
Increment(const TriggerArgs &args, const std::string &key, TimestampTz at, bool record_usage)
{
	bool enforce = enforce_quotas;
	int64_t usage = record_usage ? 1 : 0;
	if (IncrementCounter(args.attachment_id, key.c_str(), {PgDay(at), at, enforce, usage}) == CounterOutcome::kUpdated)
		return;

	AsExtensionOwner owner;
	Spi spi;
	auto rows = spi.QueryPrepared(kPrepare, {SqlArg::Int32(args.attachment_id), SqlArg::Text(key), SqlArg::Timestamp(at)});
	const Row &row = rows.at(0);
	int64_t used = row.int64_required(0);
	std::optional<int64_t> cap = ParseLimit(row.text_or(1, "{}"), args.quota, row.text_or(2, ""));
	if (enforce && !AllowsOneMore(cap, used))
		throw QuotaExceeded(args.quota, row.text_or(3, ""), *cap, used, row.text_or(5, ""));
	spi.QueryPrepared(kSlowIncrement, {SqlArg::Int32(args.attachment_id), SqlArg::Text(key), SqlArg::Int64(usage),
									   SqlArg::Int64(cap), SqlArg::Text(row.text_or(4, "infinity"))});
	spi.Finish();
}

void
Decrement(const TriggerArgs &args, const std::string &key)
{
	if (DecrementCounter(args.attachment_id, key.c_str()) == CounterOutcome::kUpdated)
		return;
	AsExtensionOwner owner;
	Spi spi;
	spi.QueryPrepared(kDecrement, {SqlArg::Int32(args.attachment_id), SqlArg::Text(key)});
	spi.Finish();
}

// The trigger's arguments, as attach_*_quota wrote them.
TriggerArgs
ParseTriggerArgs(const Trigger *trigger)
{
	if (trigger->tgnargs < 4)
		throw billing::Error("39P01", "billing._quota_trigger() must fire for each row, with four arguments");
	char **targs = trigger->tgargs;
	const char *id_text = targs[0];
	const char *id_end = id_text + std::strlen(id_text);
	int32_t attachment_id = 0;
	auto [end, error] = std::from_chars(id_text, id_end, attachment_id);
	if (error != std::errc() || end != id_end)
		throw billing::Error("39P01", "billing._quota_trigger() was given an invalid attachment id",
							 "The first trigger argument is \"" + std::string(id_text) + "\".",
							 "Attach the table again with billing.attach_room_quota or billing.attach_participant_quota.");
	return {attachment_id, std::strcmp(targs[1], "rooms") == 0 ? "rooms" : "participants_per_room", targs[2],
			targs[3][0] == 't'};
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
	if (!TRIGGER_FIRED_FOR_ROW(event))
		throw billing::Error("39P01", "billing._quota_trigger() must fire for each row, with four arguments");
	TriggerArgs args = ParseTriggerArgs(trigger->tg_trigger);
	TupleDesc desc = trigger->tg_relation->rd_att;
	TimestampTz at = GetCurrentTransactionStartTimestamp();

	HeapTuple result = nullptr;
	if (TRIGGER_FIRED_BY_INSERT(event)) {
		if (auto key = CountedKey(args, desc, trigger->tg_trigtuple))
			Increment(args, *key, at, true);
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
				Increment(args, *after, at, false);
			if (before)
				Decrement(args, *before);
		}
		result = trigger->tg_newtuple;
	}
	// 0.2.0 attaches AFTER triggers; BEFORE ones (0.1.0, until ALTER EXTENSION
	// UPDATE replaces them) must hand the row back.
	return TRIGGER_FIRED_BEFORE(event) ? PointerGetDatum(result) : PointerGetDatum(nullptr);
}
