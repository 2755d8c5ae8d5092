// Module entry: the magic block, _PG_init and the billing.* settings.
#include "glue/args.hpp"
#include "glue/guard.hpp"
#include "glue/quota_counter.hpp"
#include "glue/settings.hpp"
#include "glue/spi.hpp"

#include "core/error.hpp"

#include <cstring>
#include <string>
#include <unordered_map>

extern "C" {
PG_MODULE_MAGIC;
void _PG_init(void);
}

namespace billing::glue {

bool enforce_quotas = true;
bool maintenance_row_by_row = false;

namespace {
// The application's user for the audit log; billing._audit reads it with
// current_setting('billing.app_user', true). Only billing.* settings that
// are defined here may be set once the module is loaded (the prefix is
// reserved), so it must be defined even though C++ code does not read it.
char *app_user = nullptr;
// When the subscription changes being written take effect, for the history
// trigger (billing._change_at reads it); set by billing._set_change_at.
char *change_at = nullptr;
}  // namespace

void
SetChangeAt(std::optional<int64_t> unix_micros)
{
	std::string value = unix_micros ? std::to_string(*unix_micros) : std::string();
	const char *text = unix_micros ? value.c_str() : nullptr;  // NULL: back to the default ('')
	PgCall([&] {
		(void) set_config_option("billing.change_at", text, superuser() ? PGC_SUSET : PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	});
}

namespace {

std::unordered_map<int64_t, int64_t> &
DeclaredChangeTimes()
{
	static std::unordered_map<int64_t, int64_t> times;
	return times;
}

// The billing table whose current statement writes its own audit rows (none: nullptr).
const char *audited_by_statement = nullptr;

// Users whose quota invalidation a lifecycle call defers: the subtransaction
// that started the deferral, how many calls (nested, for the same user) hold
// it, and whether the trigger left a write out.
struct Deferral {
	SubTransactionId started_in;
	int holders;
	bool left_out;
};

std::unordered_map<std::string, Deferral> &
DeferredInvalidations()
{
	static std::unordered_map<std::string, Deferral> users;
	return users;
}

// The end of a transaction and the abort of a subtransaction forget the
// per-row times: a writer that failed between declaring and clearing them
// leaves none behind. Likewise the deferred invalidations (an aborted
// subtransaction forgets those it or its children started).
void
ForgetChangeTimesAtXactEnd(XactEvent, void *)
{
	DeclaredChangeTimes().clear();
	DeferredInvalidations().clear();
	audited_by_statement = nullptr;
}

void
ForgetChangeTimesAtSubXactEnd(SubXactEvent event, SubTransactionId subid, SubTransactionId, void *)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	DeclaredChangeTimes().clear();
	audited_by_statement = nullptr;
	auto &users = DeferredInvalidations();
	for (auto it = users.begin(); it != users.end();)
		it = it->second.started_in >= subid ? users.erase(it) : std::next(it);
}

}  // namespace

void
DeclareChangeAt(int64_t subscription_id, int64_t unix_micros)
{
	DeclaredChangeTimes()[subscription_id] = unix_micros;
}

void
AuditedByStatement(const char *table)
{
	audited_by_statement = table;
}

const char *
AuditedByStatementTable()
{
	return audited_by_statement;
}

bool
IsAuditedByStatement(const char *table)
{
	return audited_by_statement != nullptr && std::strcmp(audited_by_statement, table) == 0;
}

bool
DeferQuotaInvalidation(const std::string &user_id)
{
	auto [it, started] = DeferredInvalidations().emplace(user_id, Deferral{GetCurrentSubTransactionId(), 1, false});
	if (!started)
		++it->second.holders;  // a call nested in another one for the same user: the outer one ends it
	return started;
}

bool
QuotaInvalidationDeferred(const std::string &user_id)
{
	auto &users = DeferredInvalidations();
	if (users.empty())
		return false;
	auto found = users.find(user_id);
	if (found == users.end())
		return false;
	found->second.left_out = true;
	return true;
}

bool
FinishDeferredQuotaInvalidation(const std::string &user_id)
{
	auto &users = DeferredInvalidations();
	auto found = users.find(user_id);
	if (found == users.end() || --found->second.holders > 0)
		return false;
	bool left_out = found->second.left_out;
	users.erase(found);
	return left_out;
}

void
ClearDeclaredChangeTimes()
{
	DeclaredChangeTimes().clear();
}

std::optional<int64_t>
DeclaredChangeAt(int64_t subscription_id)
{
	const auto &times = DeclaredChangeTimes();
	if (!times.empty()) {
		auto found = times.find(subscription_id);
		if (found != times.end())
			return found->second;
	}
	// billing.change_at: '^-?[0-9]{1,18}$', as the SQL trigger read it
	const char *p = change_at;
	if (p == nullptr)
		return std::nullopt;
	bool negative = *p == '-';
	if (negative)
		p++;
	int64_t value = 0;
	int digits = 0;
	for (; *p >= '0' && *p <= '9'; p++, digits++)
		value = value * 10 + (*p - '0');
	if (*p != '\0' || digits == 0 || digits > 18)
		return std::nullopt;
	return negative ? -value : value;
}

namespace {

// Turning enforcement off is for superusers and members of billing_admin.
// A check hook reports through GUC_check_* and returns false; it never throws.
bool
CheckEnforceQuotas(bool *newval, void **, GucSource source)
{
	// postgresql.conf and the server command line belong to the DBA; every
	// other source (ALTER ROLE/DATABASE SET, connection options, SET) is
	// checked, including a value set before the library was loaded.
	if (*newval || source < PGC_S_DATABASE)
		return true;
	if (!IsTransactionState()) {
		GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
		GUC_check_errmsg("billing.enforce_quotas can only be turned off with SET");
		return false;
	}
	// The outer user, not GetUserId(): the library may first be loaded inside a
	// SECURITY DEFINER function, where GetUserId() is that function's owner.
	Oid user = GetOuterUserId();
	if (superuser_arg(user))
		return true;
	Oid admin = get_role_oid("billing_admin", true);
	if (OidIsValid(admin) && is_member_of_role(user, admin))
		return true;
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("permission denied to set parameter \"billing.enforce_quotas\"");
	GUC_check_errhint("Only superusers and members of billing_admin may turn quota enforcement off.");
	return false;
}

}  // namespace
}  // namespace billing::glue

void
_PG_init(void)
{
	DefineCustomBoolVariable("billing.enforce_quotas",
							 gettext_noop("Refuses inserts that would take an owner past the plan's quota."),
							 gettext_noop("Only superusers and members of billing_admin may turn it off."),
							 &billing::glue::enforce_quotas, true, PGC_USERSET, 0, billing::glue::CheckEnforceQuotas,
							 nullptr, nullptr);
	DefineCustomBoolVariable("billing.maintenance_row_by_row",
							 gettext_noop("Diagnostic: run_maintenance writes every due step row by row."),
							 gettext_noop("Off: a page's single steps are written set-based (the same rows)."),
							 &billing::glue::maintenance_row_by_row, false, PGC_SUSET, GUC_NOT_IN_SAMPLE, nullptr,
							 nullptr, nullptr);
	DefineCustomStringVariable("billing.app_user",
							   gettext_noop("The application user the audit log records for this session's changes."),
							   gettext_noop("Set by the application, e.g. SET billing.app_user = 'alice@example.com'."),
							   &billing::glue::app_user, "", PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomStringVariable("billing.change_at",
							   gettext_noop("Internal: when the subscription changes being written take effect."),
							   gettext_noop("Set by billing's own functions (billing._set_change_at) for the subscription "
											"history; microseconds since 1970-01-01 UTC."),
							   &billing::glue::change_at, "", PGC_USERSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE, nullptr,
							   nullptr, nullptr);
	MarkGUCPrefixReserved("billing");
	RegisterXactCallback(billing::glue::ForgetChangeTimesAtXactEnd, nullptr);
	RegisterSubXactCallback(billing::glue::ForgetChangeTimesAtSubXactEnd, nullptr);
	billing::glue::RegisterCounterInvalidation();
}

// billing._setting(key, fallback): a setting's value, or the fallback. In
// C++ with a kept plan: reports and entitlements call it per row, where an
// SQL function would be parsed and planned again on every call.
BILLING_FUNCTION(billing_setting)
{
	using billing::glue::SqlArg;
	std::string key = billing::glue::TextArgRequired(fcinfo, 0, "key");
	std::optional<std::string> value = billing::glue::TextArgOptional(fcinfo, 1);
	billing::glue::Spi spi(billing::glue::Spi::Access::kReadOnly);  // declared STABLE
	auto rows = spi.Query("SELECT s.value FROM billing.settings s WHERE s.key OPERATOR(pg_catalog.=) $1"
						  " AND s.deleted_at IS NULL",
						  {SqlArg::Text(key)});
	if (!rows.empty() && !rows[0].is_null(0))
		value = rows[0].text(0);
	spi.Finish();
	if (!value)
		PG_RETURN_NULL();
	Datum result = 0;
	billing::glue::PgCall([&] { result = PointerGetDatum(cstring_to_text_with_len(value->data(), static_cast<int>(value->size()))); });
	return result;
}

// billing._set_change_at(at): see SetChangeAt; NULL resets.
BILLING_FUNCTION(billing_set_change_at)
{
	std::optional<int64_t> at;
	if (!PG_ARGISNULL(0))
		at = billing::glue::ToCoreTime(PG_GETARG_TIMESTAMPTZ(0));
	billing::glue::SetChangeAt(at);
	PG_RETURN_VOID();
}

// billing._guard_selftest(kind): raises each kind of failure the guard must
// survive. Regression tests create an SQL function over it; the extension does
// not expose it.
BILLING_FUNCTION(billing_guard_selftest)
{
	using billing::Error;
	std::string kind = billing::glue::TextArg(fcinfo, 0);
	std::string ballast(1 << 20, 'x');  // a live object the error must not leak
	if (kind.rfind("billing_error", 0) == 0)  // also with a long tail: the message is cut
		throw Error("QB010", "cannot do that from \"" + kind + "\"", "Detail from deep in the core.",
					"Hint from deep in the core.");
	if (kind == "std_exception")
		throw std::out_of_range("vector index out of range");
	if (kind == "unknown")
		throw 42;
	if (kind == "pg_error") {
		billing::glue::PgCall([] {
			ereport(ERROR, (errcode(ERRCODE_DIVISION_BY_ZERO), errmsg("division by zero from inside PgCall")));
		});
	}
	if (kind == "bad_alloc")
		throw std::bad_alloc();
	if (kind == "cpp_in_pgcall") {
		// A C++ exception out of a PgCall callable (a bug) is caught here and the
		// function returns normally: PostgreSQL's error stacks must be as before.
		try {
			billing::glue::PgCall([] { throw std::runtime_error("thrown inside PgCall"); });
		} catch (const std::runtime_error &) {
		}
		PG_RETURN_INT64(0);
	}
	if (kind == "spi_unfinished") {
		billing::glue::Spi spi;  // never finished: ~Spi warns
		PG_RETURN_INT64(0);
	}
	PG_RETURN_INT64(static_cast<int64_t>(ballast.size()));
}
