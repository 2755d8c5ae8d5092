// SQL entry points of the subscription lifecycle (SPEC §3). Each one reads
// rows, asks the core (src/core/subscription.cpp) what happens, and writes the
// outcome. Every body runs inside the guard (BILLING_FUNCTION).
#include "glue/args.hpp"
#include "glue/audit.hpp"
#include "glue/guard.hpp"
#include "glue/lifecycle.hpp"
#include "glue/quota_counter.hpp"
#include "glue/result_set.hpp"
#include "glue/settings.hpp"
#include "glue/spi.hpp"

#include "core/error.hpp"
#include "core/ledger.hpp"
#include "core/money.hpp"
#include "core/subscription.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

namespace billing::glue {

// The core's one-trial-per-tier rule, fed with every tier the user trialed
// (src/glue/lifecycle.hpp: the Stripe path asks the same question).
bool
TrialAvailableForTier(Spi &spi, const std::string &user_id, Tier tier)
{
	std::vector<Tier> trialed;
	for (const auto &row : spi.Query("SELECT DISTINCT p.tier::pg_catalog.text FROM billing.subscriptions s"
									 " JOIN billing.subscription_plans p ON p.id OPERATOR(pg_catalog.=) s.plan_id"
									 " WHERE s.user_id OPERATOR(pg_catalog.=) $1 AND s.trial_start IS NOT NULL AND s.deleted_at IS NULL",
									 {SqlArg::Text(user_id)}))
		trialed.push_back(ParseTier(row.text_required(0)));
	return TrialAvailable(trialed, tier);
}

// Serialises every lifecycle change of one user until the transaction ends,
// by locking the user's row in billing.user_locks (made on first use). ON
// CONFLICT ... WHERE false locks the existing row without updating it; a row
// lock takes no entry in the shared lock table, whatever the number of users.
// The library is shared by every version's SQL: between installing a new
// package and ALTER EXTENSION billing UPDATE, an older database lacks the
// objects this library's lifecycle and maintenance use (billing.user_locks
// is 0.3.0's), and they failed with 42P01 / 42883, saying nothing of why.
// One clear error instead, from the quota trigger's cached check of the
// schema (HasCurrentSchema: a lookup per backend until pg_proc changes);
// skipped while the extension's own script runs (CREATE or ALTER EXTENSION).
void
RequireUpdatedExtension()
{
	bool creating = false;
	PgCall([&] { creating = creating_extension; });
	if (!creating && !HasCurrentSchema())
		throw Error(sqlstate::kObjectNotInPrerequisiteState, "billing library 0.3.0 needs the extension updated",
					"This database's billing extension is older than the installed library (0.3.0).",
					"Run ALTER EXTENSION billing UPDATE in this database.");
}

void
LockUser(Spi &spi, const std::string &user_id)
{
	RequireUpdatedExtension();
	spi.Execute("INSERT INTO billing.user_locks AS l (user_id) VALUES ($1)"
				" ON CONFLICT (user_id) DO UPDATE SET user_id = l.user_id WHERE false",
				{SqlArg::Text(user_id)});
}

// The fence that orders maintenance runs with refunds that reopen an invoice
// (attack findings 3.3, 4.1, 5.1): a lock on the object tag (pg_class,
// billing.maintenance_runs, 0), which PostgreSQL itself never takes (it locks
// relations by their relation tag) and no role can take but through billing.
// Not the table's own lock: a run's insert of its point must never wait for
// a refund. Call inside PgCall.
static Oid
MaintenanceFence()
{
	return get_relname_relid("maintenance_runs", get_namespace_oid("billing", false));
}

// A refund that reopens an upgrade invoice waits for every maintenance run
// in progress (SHARE on the maintenance fence against the run's ROW
// EXCLUSIVE, MaintainedTo). Taken where the refund reads how far maintenance
// ran, after it had locked the user's current subscription FOR UPDATE, it
// closed a cycle with a run holding ROW EXCLUSIVE whose renewal notice's
// foreign key waited for that row (KEY SHARE): 40P01 for one of them (known
// limit until session 10, iso/refund_maintenance_lock_order). So the lock is
// taken here, before the refund locks any other row, in the run's order
// (the fence, then rows): the user's lock row held meanwhile is one a
// run never waits for (it locks users SKIP LOCKED; a refunded payment's user
// has a lock row, written with the payment's subscription). Only a refund
// that may reopen one takes it: the user has a subscription a plan change
// ended (the upgrade the line belongs to; a plan change takes the user's
// lock, held here, so the answer cannot change until the refund commits).
void
LockUserForRefund(Spi &spi, const std::string &user_id)
{
	LockUser(spi, user_id);
	if (spi.Query("SELECT FROM billing.subscriptions s WHERE s.user_id OPERATOR(pg_catalog.=) $1"
				  " AND s.end_reason OPERATOR(pg_catalog.=) 'plan_changed' AND s.deleted_at IS NULL LIMIT 1",
				  {SqlArg::Text(user_id)})
			.empty())
		return;
	PgCall([] { LockDatabaseObject(RelationRelationId, MaintenanceFence(), 0, ShareLock); });
}

namespace {

// Named as the table's columns, so an error about one names it.
constexpr const char *kSubscriptionColumns =
	"id, user_id, plan_id, status::pg_catalog.text AS status, price_cents, currency, billing_interval::pg_catalog.text AS billing_interval, "
	"billing._micros(started_at) AS started_at, billing._micros(billing_anchor) AS billing_anchor, "
	"billing._micros(current_period_start) AS current_period_start, "
	"billing._micros(current_period_end) AS current_period_end, billing._micros(trial_start) AS trial_start, "
	"billing._micros(trial_end) AS trial_end, cancel_at_period_end, billing._micros(canceled_at) AS canceled_at, "
	"billing._micros(ended_at) AS ended_at, billing._micros(paused_at) AS paused_at, "
	"billing._micros(past_due_since) AS past_due_since, scheduled_plan_id, "
	"billing._micros(scheduled_change_at) AS scheduled_change_at, end_reason, "
	"(SELECT billing._micros(pg_catalog.min(i.due_at)) FROM billing.invoices i WHERE i.subscription_id OPERATOR(pg_catalog.=) s.id"
	" AND i.status OPERATOR(pg_catalog.=) 'open' AND i.deleted_at IS NULL) AS unpaid_due_at, "
	"stripe_subscription_id IS NOT NULL AS stripe_managed";

// kSubscriptionColumns with the times as stored, for Spi::QueryCoreTimes
// (which reads them as the core's time, as billing._micros computes it):
// the same row for SubscriptionFromRow without 14 conversions to set up and
// run per statement.
constexpr const char *kSubscriptionColumnsTimes =
	"id, user_id, plan_id, status::pg_catalog.text AS status, price_cents, currency, billing_interval::pg_catalog.text AS billing_interval, "
	"started_at, billing_anchor, current_period_start, current_period_end, trial_start, trial_end, cancel_at_period_end, "
	"canceled_at, ended_at, paused_at, past_due_since, scheduled_plan_id, scheduled_change_at, end_reason, "
	"(SELECT pg_catalog.min(i.due_at) FROM billing.invoices i WHERE i.subscription_id OPERATOR(pg_catalog.=) s.id"
	" AND i.status OPERATOR(pg_catalog.=) 'open' AND i.deleted_at IS NULL) AS unpaid_due_at, "
	"stripe_subscription_id IS NOT NULL AS stripe_managed";

Subscription
SubscriptionFromRow(const Row &row)
{
	Subscription s;
	s.id = row.int64_required(0);
	s.user_id = row.text_required(1);
	s.plan_id = row.int64_required(2);
	s.status = ParseStatus(row.text_required(3));
	s.price_cents = row.int64_required(4);
	s.currency = row.text_required(5);
	s.interval = ParseInterval(row.text_required(6));
	s.started_at = row.int64_required(7);
	s.billing_anchor = row.int64(8);
	s.period_start = row.int64_required(9);
	s.period_end = row.int64(10);
	s.trial_start = row.int64(11);
	s.trial_end = row.int64(12);
	s.cancel_at_period_end = row.boolean(13);
	s.canceled_at = row.int64(14);
	s.ended_at = row.int64(15);
	s.paused_at = row.int64(16);
	s.past_due_since = row.int64(17);
	s.scheduled_plan_id = row.int64(18);
	s.scheduled_change_at = row.int64(19);
	s.end_reason = row.text(20);
	s.unpaid_due_at = row.int64(21);
	s.stripe_managed = row.boolean(22);
	return s;
}

std::optional<TimestampTz>
PgTime(const std::optional<Micros> &t)
{
	if (!t)
		return std::nullopt;
	return ToPgTime(*t);
}

SqlArg
TimeArg(const std::optional<Micros> &t)
{
	return SqlArg::Timestamp(PgTime(t));
}

// Read with an operation's load of the subscription, after
// kSubscriptionColumnsTimes (one statement instead of three): the times of
// its latest payment or refund and of its latest recorded change in
// billing.subscription_history (the start of its open interval: a resume or
// a reactivate leaves no time on the row), which the core's LatestChange
// counts, and past_due_grace in microseconds. The loads read their times
// with Spi::QueryCoreTimes, in binary: through billing._micros (numeric
// arithmetic per time, sixteen expressions set up and run per load) they
// cost about 100,000 instructions per call (callgrind, 20,000-user book:
// cancel 2.19 -> 2.09 million, start_trial 3.41 -> 3.31), for the same
// values and the same 22008 for an infinite one.
constexpr int kLatestChangesColumn = 23;
constexpr const char *kLatestChangesColumnsTimes =
	", (SELECT pg_catalog.max(p.paid_at) FROM billing.payments p"
	" WHERE p.subscription_id OPERATOR(pg_catalog.=) s.id AND p.deleted_at IS NULL) AS last_payment_at"
	", (SELECT pg_catalog.max(h.valid_from) FROM billing.subscription_history h"
	" WHERE h.subscription_id OPERATOR(pg_catalog.=) s.id AND h.valid_to OPERATOR(pg_catalog.=) 'infinity'::pg_catalog.timestamptz)"
	" AS history_from"
	// billing._setting's answer read in place (every caller of these loads is
	// SECURITY DEFINER, as billing._setting runs): the C function with its
	// SET clause cost a GUC save and restore and a statement of its own per load
	", billing._interval_micros(COALESCE((SELECT g.value FROM billing.settings g"
	" WHERE g.key OPERATOR(pg_catalog.=) 'past_due_grace' AND g.deleted_at IS NULL), '14 days')::pg_catalog.interval)"
	" AS past_due_grace";

// A subscription loaded for an operation, with its latest changes, and the grace.
struct ForChange {
	Subscription sub;
	Micros grace = 0;
};

ForChange
ForChangeFromRow(const Row &row)
{
	ForChange loaded{SubscriptionFromRow(row), row.int64_required(kLatestChangesColumn + 2)};
	loaded.sub.last_payment_at = row.int64(kLatestChangesColumn);
	loaded.sub.history_from = row.int64(kLatestChangesColumn + 1);
	return loaded;
}

// The subscription `id`, locked, with its latest changes and the grace.
ForChange
LoadForChange(Spi &spi, int64_t id)
{
	static const std::string sql = std::string("SELECT ") + kSubscriptionColumnsTimes + kLatestChangesColumnsTimes +
								   " FROM billing.subscriptions s WHERE id OPERATOR(pg_catalog.=) $1 AND deleted_at IS NULL FOR UPDATE OF s";
	auto rows = spi.QueryCoreTimes(sql, {SqlArg::Int64(id)});
	if (rows.empty())
		throw InvalidParameter("subscription " + std::to_string(id) + " does not exist");
	return ForChangeFromRow(rows[0]);
}

// The user's current subscription, locked, with its latest changes and the grace.
std::optional<ForChange>
LoadCurrentForChange(Spi &spi, const std::string &user_id)
{
	static const std::string sql = std::string("SELECT ") + kSubscriptionColumnsTimes + kLatestChangesColumnsTimes +
								   " FROM billing.subscriptions s WHERE user_id OPERATOR(pg_catalog.=) $1 AND ended_at IS NULL"
								   " AND deleted_at IS NULL FOR UPDATE OF s";
	auto rows = spi.QueryCoreTimes(sql, {SqlArg::Text(user_id)});
	if (rows.empty())
		return std::nullopt;
	return ForChangeFromRow(rows[0]);
}

Subscription
LoadSubscription(Spi &spi, int64_t id, bool lock)
{
	static const std::string sql[2] = {
		std::string("SELECT ") + kSubscriptionColumnsTimes +
			" FROM billing.subscriptions s WHERE id OPERATOR(pg_catalog.=) $1 AND deleted_at IS NULL",
		std::string("SELECT ") + kSubscriptionColumnsTimes +
			" FROM billing.subscriptions s WHERE id OPERATOR(pg_catalog.=) $1 AND deleted_at IS NULL FOR UPDATE OF s"};
	auto rows = spi.QueryCoreTimes(sql[lock ? 1 : 0], {SqlArg::Int64(id)});
	if (rows.empty())
		throw InvalidParameter("subscription " + std::to_string(id) + " does not exist");
	return SubscriptionFromRow(rows[0]);
}

constexpr const char *kPlanColumns =
	"id, code, name, tier::pg_catalog.text AS tier, billing_interval::pg_catalog.text AS billing_interval, price_cents, currency, trial_days,"
	" active";

// kPlanColumns from column `at` of the row on.
Plan
PlanFromRow(const Row &row, int at = 0)
{
	Plan p;
	p.id = row.int64_required(at + 0);
	p.code = row.text_required(at + 1);
	p.name = row.text_required(at + 2);
	p.tier = ParseTier(row.text_required(at + 3));
	p.interval = ParseInterval(row.text_required(at + 4));
	p.price_cents = row.int64_required(at + 5);
	p.currency = row.text_required(at + 6);
	p.trial_days = static_cast<int32_t>(row.int64_required(at + 7));
	p.active = row.boolean(at + 8);
	return p;
}

// subscribe and start_trial: the user's current subscription, locked, as
// LoadCurrentForChange loads it, with what the two read of it next in the
// same statement (were three statements): its plan (kPlanColumns), whether
// it has an open invoice (Replace voids them), and every tier the user
// trialed (TrialAvailableForTier's question).
struct StartLoad {
	ForChange change;
	Plan plan;
	bool has_open = true;
	std::vector<Tier> trialed;
};

std::optional<StartLoad>
LoadCurrentForStart(Spi &spi, const std::string &user_id)
{
	static const std::string sql =
		std::string("SELECT ") + kSubscriptionColumnsTimes + kLatestChangesColumnsTimes +
		", (SELECT pg_catalog.string_agg(DISTINCT p.tier::pg_catalog.text, ',') FROM billing.subscriptions t"
		" JOIN billing.subscription_plans p ON p.id OPERATOR(pg_catalog.=) t.plan_id"
		" WHERE t.user_id OPERATOR(pg_catalog.=) s.user_id AND t.trial_start IS NOT NULL AND t.deleted_at IS NULL) AS trialed"
		", EXISTS (SELECT FROM billing.invoices i WHERE i.subscription_id OPERATOR(pg_catalog.=) s.id"
		" AND i.status OPERATOR(pg_catalog.=) 'open' AND i.deleted_at IS NULL) AS has_open"
		", cp.* FROM billing.subscriptions s LEFT JOIN LATERAL (SELECT p.id AS plan_row_id, p.code AS plan_code,"
		" p.name AS plan_name, p.tier::pg_catalog.text AS plan_tier, p.billing_interval::pg_catalog.text AS plan_interval,"
		" p.price_cents AS plan_price_cents, p.currency AS plan_currency, p.trial_days AS plan_trial_days,"
		" p.active AS plan_active FROM billing.subscription_plans p WHERE p.id OPERATOR(pg_catalog.=) s.plan_id) cp ON true"
		" WHERE s.user_id OPERATOR(pg_catalog.=) $1 AND s.ended_at IS NULL AND s.deleted_at IS NULL FOR UPDATE OF s";
	constexpr int kTrialed = kLatestChangesColumn + 3;
	auto rows = spi.QueryCoreTimes(sql, {SqlArg::Text(user_id)});
	if (rows.empty())
		return std::nullopt;
	const Row &row = rows[0];
	StartLoad loaded{ForChangeFromRow(row), {}, row.boolean(kTrialed + 1), {}};
	if (row.is_null(kTrialed + 2))  // as LoadPlanById: every subscription's plan exists
		throw Error(sqlstate::kInternalError, "plan " + std::to_string(loaded.change.sub.plan_id) + " does not exist");
	loaded.plan = PlanFromRow(row, kTrialed + 2);
	std::string tiers = row.text_or(kTrialed, "");
	for (size_t from = 0; from < tiers.size();) {
		size_t comma = tiers.find(',', from);
		if (comma == std::string::npos)
			comma = tiers.size();
		loaded.trialed.push_back(ParseTier(tiers.substr(from, comma - from)));
		from = comma + 1;
	}
	return loaded;
}

Plan
LoadPlanById(Spi &spi, int64_t id)
{
	std::string sql = std::string("SELECT ") + kPlanColumns + " FROM billing.subscription_plans WHERE id OPERATOR(pg_catalog.=) $1";
	auto rows = spi.Query(sql.c_str(), {SqlArg::Int64(id)});
	if (rows.empty())
		throw Error(sqlstate::kInternalError, "plan " + std::to_string(id) + " does not exist");
	return PlanFromRow(rows[0]);
}

// A plan a user may move to: it exists, is active and not deleted.
Plan
LoadPlanForSale(Spi &spi, const std::string &code)
{
	std::string sql = std::string("SELECT ") + kPlanColumns +
					  " FROM billing.subscription_plans WHERE code OPERATOR(pg_catalog.=) $1 AND deleted_at IS NULL";
	auto rows = spi.Query(sql.c_str(), {SqlArg::Text(code)});
	if (rows.empty())
		throw InvalidParameter("unknown plan code \"" + code + "\"", "",
							   "SELECT code FROM billing.pricing lists the plans on sale.");
	Plan plan = PlanFromRow(rows[0]);
	if (!plan.active)
		throw InvalidParameter("plan \"" + code + "\" is not on sale", "The plan is marked inactive.");
	return plan;
}


bool
TrialAvailableFor(Spi &spi, const std::string &user_id, const Plan &plan)
{
	return TrialAvailableForTier(spi, user_id, plan.tier);
}

std::vector<SqlArg>
MutableColumns(const Subscription &s)
{
	return {SqlArg::Text(ToString(s.status)),
			SqlArg::Int64(s.price_cents),
			TimeArg(s.billing_anchor),
			SqlArg::Timestamp(ToPgTime(s.period_start)),
			TimeArg(s.period_end),
			TimeArg(s.trial_start),
			TimeArg(s.trial_end),
			SqlArg::Bool(s.cancel_at_period_end),
			TimeArg(s.canceled_at),
			TimeArg(s.ended_at),
			TimeArg(s.paused_at),
			TimeArg(s.past_due_since),
			SqlArg::Int64(s.scheduled_plan_id),
			TimeArg(s.scheduled_change_at),
			SqlArg::Text(s.end_reason)};
}

std::vector<Row>
RunAudited(Spi &spi, const char *table, const std::string &sql, const std::vector<SqlArg> &args)
{
	AuditedScope scope(table);
	return spi.Query(sql, args);
}

void
SaveSubscription(Spi &spi, const Subscription &s)
{
	static const std::string sql = AuditedChange(
		"'subscriptions'", true,
		"before AS (SELECT s.* FROM billing.subscriptions s WHERE s.id OPERATOR(pg_catalog.=) $16),"
		" changed AS (UPDATE billing.subscriptions SET status = $1::pg_catalog.text::billing.subscription_status, price_cents = $2,"
		" billing_anchor = $3, current_period_start = $4, current_period_end = $5, trial_start = $6, trial_end = $7,"
		" cancel_at_period_end = $8, canceled_at = $9, ended_at = $10, paused_at = $11, past_due_since = $12,"
		" scheduled_plan_id = $13, scheduled_change_at = $14, end_reason = $15 WHERE id OPERATOR(pg_catalog.=) $16 RETURNING *)",
		"SELECT FROM changed");
	std::vector<SqlArg> args = MutableColumns(s);
	args.push_back(SqlArg::Int64(s.id));
	RunAudited(spi, "subscriptions", sql, args);
}

int64_t
InsertSubscription(Spi &spi, const Subscription &s)
{
	std::vector<SqlArg> args = MutableColumns(s);
	args.push_back(SqlArg::Text(s.user_id));
	args.push_back(SqlArg::Int64(s.plan_id));
	args.push_back(SqlArg::Text(s.currency));
	args.push_back(SqlArg::Text(ToString(s.interval)));
	args.push_back(SqlArg::Timestamp(ToPgTime(s.started_at)));
	static const std::string sql = AuditedChange(
		"'subscriptions'", false,
		"changed AS (INSERT INTO billing.subscriptions (status, price_cents, billing_anchor, current_period_start,"
		" current_period_end, trial_start, trial_end, cancel_at_period_end, canceled_at, ended_at, paused_at,"
		" past_due_since, scheduled_plan_id, scheduled_change_at, end_reason, user_id, plan_id, currency,"
		" billing_interval, started_at)"
		" VALUES ($1::pg_catalog.text::billing.subscription_status, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
		" $15, $16, $17, $18, $19::pg_catalog.text::billing.billing_interval, $20) RETURNING *)",
		"SELECT id FROM changed");
	auto rows = RunAudited(spi, "subscriptions", sql, args);
	return rows.at(0).int64_required(0);
}

std::string
LinesJson(const std::vector<InvoiceLine> &lines, const std::string &currency)
{
	nlohmann::json out = nlohmann::json::array();
	for (const auto &line : lines)
		out.push_back({{"description", line.description}, {"amount_cents", line.amount_cents}, {"currency", currency}});
	return out.dump();
}

void
LedgerEntry(Spi &spi, const std::string &user_id, const std::string &currency, const char *kind, int64_t amount,
			std::optional<int64_t> payment_id, std::optional<int64_t> invoice_id, Micros at)
{
	if (amount <= 0)
		return;
	spi.Execute("INSERT INTO billing.ledger_entries (user_id, currency, kind, amount_cents, payment_id, invoice_id, at)"
				" VALUES ($1, $2, $3, $4, $5, $6, $7)",
				{SqlArg::Text(user_id), SqlArg::Text(currency), SqlArg::Text(std::string(kind)), SqlArg::Int64(amount),
				 SqlArg::Int64(payment_id), SqlArg::Int64(invoice_id), SqlArg::Timestamp(ToPgTime(at))});
}

// The credit balance, the one definition (billing.credit_balance() is this
// C++ too): what credit received, less what invoices took. Queried directly,
// through a kept plan, so it is neither parsed nor planned per call.
// kCreditBalanceEntries is the predicate of the index that serves it
// (ledger_entries_credit, src/sql/02_tables.sql): change both together.
constexpr const char *kCreditBalanceSum =
	"COALESCE(pg_catalog.sum(CASE WHEN e.kind OPERATOR(pg_catalog.=) ANY"
	" ('{credit_to_invoice,credit_refunded,credit_to_deleted_user}'::pg_catalog.text[])"
	" THEN OPERATOR(pg_catalog.-) e.amount_cents ELSE e.amount_cents END), 0)::pg_catalog.int8";
constexpr const char *kCreditBalanceEntries =
	" FROM billing.ledger_entries e WHERE e.deleted_at IS NULL"
	" AND e.kind OPERATOR(pg_catalog.=) ANY"
	" ('{payment_to_credit,proration_credit,void_to_credit,credit_to_invoice,credit_refunded,"
	"credit_to_deleted_user}'::pg_catalog.text[])";

// A user's credit balance in each currency with credit entries, by the
// same sums (what a deleted user's credit moves, what a rename finds held).
std::vector<std::pair<std::string, int64_t>>
CreditBalancesOf(Spi &spi, const std::string &user_id)
{
	static const std::string sql = std::string("SELECT e.currency, ") + kCreditBalanceSum + kCreditBalanceEntries +
								   " AND e.user_id OPERATOR(pg_catalog.=) $1 GROUP BY e.currency ORDER BY e.currency";
	std::vector<std::pair<std::string, int64_t>> balances;
	for (const Row &row : spi.Query(sql, {SqlArg::Text(user_id)}))
		balances.emplace_back(row.text_required(0), row.int64_required(1));
	return balances;
}

int64_t
CreditBalance(Spi &spi, const std::string &user_id, const std::string &currency)
{
	static const std::string sql = std::string("SELECT ") + kCreditBalanceSum + kCreditBalanceEntries +
								   " AND e.user_id OPERATOR(pg_catalog.=) $1 AND e.currency OPERATOR(pg_catalog.=) $2";
	auto rows = spi.Query(sql, {SqlArg::Text(user_id), SqlArg::Text(currency)});
	return rows.at(0).int64_required(0);
}

bool
HasOpenInvoice(Spi &spi, int64_t subscription_id)
{
	auto rows = spi.Query("SELECT EXISTS (SELECT 1 FROM billing.invoices WHERE subscription_id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'open'"
						  " AND deleted_at IS NULL)",
						  {SqlArg::Int64(subscription_id)});
	return rows.at(0).boolean(0);
}

// What a customer paid net in a currency ($1 user, $2 currency): payments
// placed in the ledger (on invoices or credit) less their refunds. A Stripe
// payment waiting for its invoice is not placed yet and does not count.
constexpr const char *kPaidNet =
	"SELECT COALESCE(pg_catalog.sum(p.amount_cents), 0)::pg_catalog.int8 FROM billing.payments p"
	" WHERE p.user_id OPERATOR(pg_catalog.=) $1 AND p.currency OPERATOR(pg_catalog.=) $2"
	" AND p.status OPERATOR(pg_catalog.=) 'succeeded' AND p.deleted_at IS NULL"
	" AND EXISTS (SELECT FROM billing.ledger_entries e"
	"   WHERE e.payment_id OPERATOR(pg_catalog.=) COALESCE(p.refund_of, p.id) AND e.deleted_at IS NULL"
	"   AND e.kind OPERATOR(pg_catalog.=) ANY ('{payment_to_invoice,payment_to_credit}'::pg_catalog.text[]))";

// What the customer holds (credit balance plus what open invoices hold: a
// void would return it) and what they paid net, for CreditForUnusedTime.
struct Holdings {
	int64_t held = 0;
	int64_t paid_net = 0;
};

Holdings
CustomerHoldings(Spi &spi, const std::string &user_id, const std::string &currency)
{
	static const std::string sql =
		std::string("SELECT (SELECT ") + kCreditBalanceSum + kCreditBalanceEntries +
		" AND e.user_id OPERATOR(pg_catalog.=) $1 AND e.currency OPERATOR(pg_catalog.=) $2)"
		" OPERATOR(pg_catalog.+) (SELECT COALESCE(pg_catalog.sum(i.amount_paid_cents OPERATOR(pg_catalog.+) i.credit_applied_cents), 0)::pg_catalog.int8"
		"   FROM billing.invoices i WHERE i.user_id OPERATOR(pg_catalog.=) $1 AND i.currency OPERATOR(pg_catalog.=) $2"
		"   AND i.status OPERATOR(pg_catalog.=) 'open' AND i.deleted_at IS NULL), (" + std::string(kPaidNet) + ")";
	auto rows = spi.Query(sql, {SqlArg::Text(user_id), SqlArg::Text(currency)});
	return {rows.at(0).int64_required(0), rows.at(0).int64_required(1)};
}

// What refunds took back of what paid the subscription's current period
// (refund_of_paid_invoice entries on its invoices issued since the period
// started, and the credit a refund's conservation bound took of what an
// upgrade's line had put into the balance, recorded against them:
// BoundTakeOfLine), for the core's proration.
int64_t
RefundedForPeriod(Spi &spi, const Subscription &sub)
{
	auto rows = spi.Query(
		"SELECT COALESCE(pg_catalog.sum(e.amount_cents), 0)::pg_catalog.int8 FROM billing.invoices i"
		" JOIN billing.ledger_entries e ON e.invoice_id OPERATOR(pg_catalog.=) i.id"
		" WHERE i.subscription_id OPERATOR(pg_catalog.=) $1 AND i.issued_at OPERATOR(pg_catalog.>=) $2"
		" AND i.deleted_at IS NULL AND e.deleted_at IS NULL AND (e.kind OPERATOR(pg_catalog.=) 'refund_of_paid_invoice'"
		"   OR (e.kind OPERATOR(pg_catalog.=) 'credit_refunded' AND e.payment_id IS NOT NULL))",
		{SqlArg::Int64(sub.id), SqlArg::Timestamp(ToPgTime(sub.period_start))});
	return rows.at(0).int64_required(0);
}

// How long the subscription was paused in its current period, up to `at`
// (its history's paused intervals since the period started; each from its
// paused_at, which a backfilled interval may start before), for the core's
// proration: the resume moved the period end by it, and it is not billed.
Micros
PausedInPeriod(Spi &spi, const Subscription &sub, Micros at)
{
	auto rows = spi.Query(
		"SELECT COALESCE(pg_catalog.sum(billing._micros(LEAST(h.valid_to, $3)) OPERATOR(pg_catalog.-)"
		" billing._micros(GREATEST(h.valid_from, h.paused_at, $2))), 0)::pg_catalog.int8"
		" FROM billing.subscription_history h"
		" WHERE h.subscription_id OPERATOR(pg_catalog.=) $1 AND h.status OPERATOR(pg_catalog.=) 'paused'"
		" AND h.deleted_at IS NULL AND h.valid_from OPERATOR(pg_catalog.<) $3"
		" AND LEAST(h.valid_to, $3) OPERATOR(pg_catalog.>) GREATEST(h.valid_from, h.paused_at, $2)",
		{SqlArg::Int64(sub.id), SqlArg::Timestamp(ToPgTime(sub.period_start)), SqlArg::Timestamp(ToPgTime(at))});
	return rows.at(0).int64_required(0);
}

struct IssuedInvoice {
	int64_t id;
	bool settled;  // nothing left to pay (credit covered it, or the total was not positive)
	int64_t due_cents;  // amount_due_cents as stored
};

// Issues an invoice, due on issue. The credit balance pays what it can first;
// a negative total (a proration credit) becomes credit. `credit_cents`: the
// balance in the draft's currency when the caller read it in this call and
// nothing wrote the ledger since (else it is read here).
IssuedInvoice
InsertInvoice(Spi &spi, const std::string &user_id, int64_t subscription_id, const InvoiceDraft &draft,
			  std::optional<int64_t> credit_cents = std::nullopt)
{
	IssuedAmounts amounts = IssueAgainstCredit(
		draft.total_cents, credit_cents ? *credit_cents : CreditBalance(spi, user_id, draft.currency));
	if (amounts.credit_added_cents > 0) {
		Holdings now = CustomerHoldings(spi, user_id, draft.currency);
		amounts.credit_added_cents = CreditForUnusedTime(amounts.credit_added_cents, now.held, now.paid_net);
	}
	int64_t credit = amounts.credit_applied_cents;
	int64_t due = amounts.amount_due_cents;
	bool settled = amounts.settled;
	static const std::string sql = AuditedChange(
		"'invoices'", false,
		"changed AS (INSERT INTO billing.invoices (number, user_id, subscription_id, status, billing_reason, currency,"
		" period_start, period_end, subtotal_cents, total_cents, amount_due_cents, lines, issued_at, paid_at, due_at,"
		" credit_applied_cents)"
		" VALUES (billing._next_invoice_number($7), $1, $2, $3, $4, $5, $6, $8, $9, $9, $10, $11, $7,"
		" CASE WHEN $3 OPERATOR(pg_catalog.=) 'paid' THEN $7 END, $13, $12) RETURNING *)",
		"SELECT id FROM changed");
	auto rows = RunAudited(spi, "invoices", sql,
		{SqlArg::Text(user_id), SqlArg::Int64(subscription_id), SqlArg::Text(std::string(settled ? "paid" : "open")),
		 SqlArg::Text(draft.billing_reason), SqlArg::Text(draft.currency),
		 SqlArg::Timestamp(ToPgTime(draft.period_start)), SqlArg::Timestamp(ToPgTime(draft.issued_at)),
		 TimeArg(draft.period_end), SqlArg::Int64(draft.total_cents), SqlArg::Int64(due),
		 SqlArg::Jsonb(LinesJson(draft.lines, draft.currency)), SqlArg::Int64(credit),
		 SqlArg::Timestamp(ToPgTime(draft.due_at))});
	int64_t id = rows.at(0).int64_required(0);
	LedgerEntry(spi, user_id, draft.currency, "credit_to_invoice", credit, std::nullopt, id, draft.issued_at);
	LedgerEntry(spi, user_id, draft.currency, "proration_credit", amounts.credit_added_cents, std::nullopt, id,
				draft.issued_at);
	return {id, settled, due};
}

// What a void of invoice `i` gives back, the one definition for both void
// paths: the invoice is undone, so what was paid toward it (by payment or by
// credit) returns as void_to_credit, and the credit lines it netted (an
// upgrade's credit for the unused paid time, the negative lines) return as
// proration_credit. Columns: id, user_id, currency, returned paid, subscription_id,
// returned credit lines, whether the subscription was canceled at its period
// end (CreditLinesBackOnVoid; a cancel time alone is no sign: an upgrade's
// end records one too).
constexpr const char *kVoidReturning =
	" RETURNING i.id, i.user_id, i.currency, i.amount_paid_cents OPERATOR(pg_catalog.+) i.credit_applied_cents,"
	" i.subscription_id, COALESCE((SELECT pg_catalog.sum(OPERATOR(pg_catalog.-) (l.e OPERATOR(pg_catalog.->>) 'amount_cents')::bigint)"
	"   FROM pg_catalog.jsonb_array_elements(i.lines) AS l(e)"
	"   WHERE (l.e OPERATOR(pg_catalog.->>) 'amount_cents')::bigint OPERATOR(pg_catalog.<) 0), 0)::bigint,"
	" COALESCE((SELECT c.cancel_at_period_end FROM billing.subscriptions c"
	"   WHERE c.id OPERATOR(pg_catalog.=) i.subscription_id), false)";

// A subscription that ends leaves no invoice open: each becomes void and
// gives back what kVoidReturning says.
void
VoidOpenInvoices(Spi &spi, int64_t subscription_id, const std::string &reason, Micros at,
				 bool billing_own_only = false)
{
	// `billing_own_only`: leave Stripe's mirrored invoices alone (Stripe voids its own)
	auto voided = spi.Query(
		std::string("UPDATE billing.invoices i SET status = 'void', void_reason = $2, amount_due_cents = 0"
					" WHERE i.subscription_id OPERATOR(pg_catalog.=) $1 AND i.status OPERATOR(pg_catalog.=) 'open'"
					" AND i.deleted_at IS NULL AND (NOT $3 OR i.stripe_invoice_id IS NULL)") + kVoidReturning,
		{SqlArg::Int64(subscription_id), SqlArg::Text(reason), SqlArg::Bool(billing_own_only)});
	for (const auto &row : voided)
		LedgerEntry(spi, row.text_required(1), row.text_required(2), "void_to_credit", row.int64_required(3),
					std::nullopt, row.int64_required(0), at);
	// then the credit lines, once everything paid toward them is back
	for (const auto &row : voided)
		if (int64_t lines = CreditLinesBackOnVoid(reason, row.int64_required(5), row.boolean(6)); lines > 0) {
			// only the replaced period's time still unused at the void (review X1)
			auto when = spi.Query(
				"SELECT billing._micros(i.issued_at), billing._micros(p.current_period_end) FROM billing.invoices i"
				" LEFT JOIN LATERAL (SELECT p.current_period_end FROM billing.subscriptions p"
				"   WHERE p.user_id OPERATOR(pg_catalog.=) i.user_id AND p.ended_at OPERATOR(pg_catalog.=) i.issued_at"
				"   AND p.id OPERATOR(pg_catalog.<) i.subscription_id AND p.deleted_at IS NULL"
				"   ORDER BY p.id DESC LIMIT 1) p ON true"
				" WHERE i.id OPERATOR(pg_catalog.=) $1",
				{SqlArg::Int64(row.int64_required(0))});
			if (!when.empty())
				lines = CreditLineUnusedAt(reason, lines, when[0].int64_required(0), when[0].int64(1), at);
			if (lines <= 0)
				continue;
			Holdings now = CustomerHoldings(spi, row.text_required(1), row.text_required(2));
			LedgerEntry(spi, row.text_required(1), row.text_required(2), "proration_credit",
						CreditForUnusedTime(lines, now.held, now.paid_net), std::nullopt, row.int64_required(0), at);
		}
}

void
Notify(Spi &spi, const std::string &user_id, int64_t subscription_id, const std::string &kind,
	   const std::string &dedupe_key, Micros at)
{
	spi.Query("SELECT billing._notify($1, $2, $3, $4, $5)",
			  {SqlArg::Text(user_id), SqlArg::Int64(subscription_id), SqlArg::Text(kind), SqlArg::Text(dedupe_key),
			   SqlArg::Timestamp(ToPgTime(at))});
}

struct Persisted {
	int64_t subscription_id;         // the one to return: the successor if there is one
	std::optional<int64_t> invoice_id;
	bool invoice_settled = false;    // the invoice issued paid (nothing left to pay)
	int64_t invoice_due_cents = 0;   // its amount_due_cents as stored
};

// Whether two states of one subscription store the same values in every
// column SaveSubscription writes.
bool
SameStoredColumns(const Subscription &a, const Subscription &b)
{
	return a.id == b.id && a.status == b.status && a.price_cents == b.price_cents && a.billing_anchor == b.billing_anchor &&
		   a.period_start == b.period_start && a.period_end == b.period_end && a.trial_start == b.trial_start &&
		   a.trial_end == b.trial_end && a.cancel_at_period_end == b.cancel_at_period_end &&
		   a.canceled_at == b.canceled_at && a.ended_at == b.ended_at && a.paused_at == b.paused_at &&
		   a.past_due_since == b.past_due_since && a.scheduled_plan_id == b.scheduled_plan_id &&
		   a.scheduled_change_at == b.scheduled_change_at && a.end_reason == b.end_reason;
}

// Writes what the core decided, in an order the one-current index accepts.
// `stored`, when the caller holds the row as stored (locked, and read in
// this transaction after its last write), lets an outcome that leaves every
// column as it is skip its UPDATE: that UPDATE changed no value (updated_at
// is the transaction's start either way) and wrote an audit row whose old
// and new rows were the same; the caller holds the user's lock through
// LockUserForChange (its lock row written: see there). `credit_cents`: the
// credit balance in the subscription's currency as the caller read it in
// this call, for the outcome's invoice when nothing here writes the ledger
// before it (no void, no credit for unused time); else InsertInvoice reads it.
Persisted
PersistOutcome(Spi &spi, const Outcome &out, Micros at, const Subscription *stored = nullptr,
			   std::optional<int64_t> credit_cents = std::nullopt)
{
	Persisted result{out.updated.id, std::nullopt};
	// The subscription history dates these changes at `at`, not at the clock.
	SetChangeAt(at);
	if (out.updated.id != 0) {
		// Left as stored, it is still a write under the user's lock: the
		// caller took that lock with LockUserForChange, which wrote the lock
		// row, so a refund under REPEATABLE READ whose snapshot predates this
		// call fails with 40001 (it writes the same row) instead of reading
		// the credit without it.
		if (stored == nullptr || !SameStoredColumns(*stored, out.updated))
			SaveSubscription(spi, out.updated);
	} else
		result.subscription_id = InsertSubscription(spi, out.updated);
	if (out.void_reason)
		VoidOpenInvoices(spi, result.subscription_id, *out.void_reason, out.updated.ended_at.value_or(at));
	if (out.unused_time_credit_cents > 0) {
		// after the voids, as InsertInvoice adds a plan change's credit line
		Holdings now = CustomerHoldings(spi, out.updated.user_id, out.updated.currency);
		LedgerEntry(spi, out.updated.user_id, out.updated.currency, "proration_credit",
					CreditForUnusedTime(out.unused_time_credit_cents, now.held, now.paid_net), std::nullopt, std::nullopt,
					out.updated.ended_at.value_or(at));
	}
	if (out.open_invoices_due_later > 0)
		spi.Execute("UPDATE billing.invoices SET due_at = due_at OPERATOR(pg_catalog.+) ($2::pg_catalog.float8 OPERATOR(pg_catalog.*) interval '1 microsecond')"
					" WHERE subscription_id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'open' AND deleted_at IS NULL",
					{SqlArg::Int64(result.subscription_id), SqlArg::Int64(out.open_invoices_due_later)});
	Subscription owner = out.successor ? *out.successor : out.updated;
	if (out.successor)
		result.subscription_id = InsertSubscription(spi, *out.successor);
	owner.id = result.subscription_id;
	if (out.invoice) {
		bool credit_known = credit_cents && !out.void_reason && out.unused_time_credit_cents <= 0 &&
							out.invoice->currency == out.updated.currency;
		IssuedInvoice issued = InsertInvoice(spi, out.updated.user_id, result.subscription_id, *out.invoice,
											 credit_known ? credit_cents : std::nullopt);
		result.invoice_id = issued.id;
		result.invoice_settled = issued.settled;
		result.invoice_due_cents = issued.due_cents;
		// Credit paid it: an incomplete (or dunned) subscription with nothing open is settled.
		if (issued.settled)
			if (std::optional<Subscription> settled = SettledOnIssue(owner, true, HasOpenInvoice(spi, owner.id)))
				SaveSubscription(spi, *settled);
	}
	if (out.fall_back_to_free)
		spi.Query("SELECT billing._start_free($1, $2)",
				  {SqlArg::Text(out.updated.user_id), SqlArg::Timestamp(ToPgTime(out.free_from))});
	for (const auto &kind : out.notifications) {
		Micros when = out.updated.ended_at.value_or(out.updated.past_due_since.value_or(at));
		Notify(spi, out.updated.user_id, out.updated.id, kind,
			   kind + ":" + std::to_string(out.updated.id) + ":" + std::to_string(when), when);
	}
	// A later write in the same transaction (a Stripe event, a DBA's UPDATE)
	// declares its own time or is dated by its row, not by this `at`.
	SetChangeAt(std::nullopt);
	return result;
}

Micros
PastDueGrace(Spi &spi)
{
	auto rows = spi.Query("SELECT billing._interval_micros(billing._setting('past_due_grace', '14 days')::interval)");
	return rows.at(0).int64_required(0);
}

// A subscription as stored with its open invoices and the credit balance,
// for the core's projection (read only: nothing is locked).
Book
LoadBook(Spi &spi, const Subscription &sub, std::optional<int64_t> credit_cents = std::nullopt)
{
	Book book;
	book.sub = sub;
	// An open invoice without a due date (mirrored from Stripe, which chases
	// it itself) is not the projection's to chase, as maintenance's due query
	// never selects it.
	for (const auto &row : spi.Query("SELECT billing._micros(due_at), amount_paid_cents OPERATOR(pg_catalog.+) credit_applied_cents"
									 " FROM billing.invoices WHERE subscription_id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'open'"
									 " AND deleted_at IS NULL AND due_at IS NOT NULL",
									 {SqlArg::Int64(sub.id)}))
		book.open.push_back({row.int64_required(0), row.int64_required(1)});
	book.credit_cents = credit_cents ? *credit_cents : CreditBalance(spi, sub.user_id, sub.currency);
	return book;
}

// The core's projection of a stored subscription to `at`, as if maintenance
// had run (nothing is written).
Projection
ProjectSubscription(Spi &spi, const Subscription &sub, Micros at, Micros grace,
					std::optional<int64_t> credit_cents = std::nullopt)
{
	billing::Plan plan = LoadPlanById(spi, sub.plan_id);
	std::optional<billing::Plan> scheduled;
	if (sub.scheduled_plan_id)
		scheduled = LoadPlanById(spi, *sub.scheduled_plan_id);
	return Project(LoadBook(spi, sub, credit_cents), plan, scheduled, at, grace);
}

// What run_maintenance counts a due step as.
std::string
StepName(Action action, const Outcome &out)
{
	if (action != Action::kPeriodEnd)
		return ToString(action);
	return out.updated.Ended() ? (out.successor ? "plan_changed" : "ended_at_period_end") : "renewed";
}

// Applies, in time order, everything due for `sub` up to `at` (renewals,
// dunning, trial and grace ends, scheduled changes), following a successor;
// maintenance and every operation call it, so an answer never depends on
// when maintenance last ran. Returns the id of the subscription it ended on.
// At most kMaxCatchUpSteps actions: an operation (no `counts`) with more due
// is refused (54000) before anything else; maintenance stops there and its
// next run goes on.
int64_t
CatchUp(Spi &spi, Subscription sub, Micros at, Micros grace, std::map<std::string, int64_t> *counts = nullptr)
{
	const Micros first_period_start = sub.period_start;
	for (int step = 0;; step++) {
		std::optional<Action> action = DueAction(sub, at, grace);
		if (!action)
			break;
		if (step == kMaxCatchUpSteps) {
			if (counts)
				break;
			throw CatchUpTooLong(sub.id, first_period_start, at);
		}
		billing::Plan plan = LoadPlanById(spi, sub.plan_id);
		std::optional<billing::Plan> scheduled;
		if (sub.scheduled_plan_id)
			scheduled = LoadPlanById(spi, *sub.scheduled_plan_id);
		// a trial end reads the credit balance: credit covering the first period converts it
		int64_t credit = *action == Action::kTrialEnd ? CreditBalance(spi, sub.user_id, sub.currency) : 0;
		Outcome out = ApplyDue(sub, *action, plan, scheduled, at, grace, credit);
		Persisted saved = PersistOutcome(spi, out, DueTime(sub, *action, grace));
		if (counts)
			(*counts)[StepName(*action, out)]++;
		if (out.updated.Ended() && !out.successor)
			break;
		sub = LoadSubscription(spi, saved.subscription_id, true);
	}
	return sub.id;
}

// The user's lock row held, the quota invalidation of the user's
// subscription writes waits for ReturnSubscription (one instead of one per
// statement; glue/settings.hpp). The lock row is written, not only locked,
// by the one statement that locks it: the invalidation's write of it (a
// REPEATABLE READ quota fill that did not see it then fails), and the write
// a payment that leaves its subscription as stored owes a REPEATABLE READ
// refund (PersistOutcome), are this one, made when the lock is taken instead
// of by a second statement at the end (the row stays locked to the end of
// the transaction either way; FOR NO KEY UPDATE instead of FOR UPDATE: no
// foreign key references the lock rows, and every other taker of one (an
// operation, a quota fill's FOR SHARE, maintenance's FOR UPDATE SKIP LOCKED)
// conflicts with it as before).
// Every user who ever had a subscription has the row (the upgrade from 0.2.0
// made them): an UPDATE writes it (one WAL record; the upsert locked the
// row and then updated it), the upsert only makes a missing one.
void
LockUserForChange(Spi &spi, const std::string &user_id)
{
	RequireUpdatedExtension();
	if (spi.Execute("UPDATE billing.user_locks l SET updated_at = pg_catalog.now()"
					" WHERE l.user_id OPERATOR(pg_catalog.=) $1",
					{SqlArg::Text(user_id)}) == 0)
		spi.Execute("INSERT INTO billing.user_locks AS l (user_id) VALUES ($1)"
					" ON CONFLICT (user_id) DO UPDATE SET updated_at = pg_catalog.now()",
					{SqlArg::Text(user_id)});
	DeferQuotaInvalidation(user_id);
}

// LockUserForChange for the user of subscription `id` (not locked; loaded
// and locked under the user's lock afterwards), found by the statement that
// writes the lock row; the user, or an error when there is no such
// subscription. (Reading the user and then locking were two statements.)
std::string
LockUserOfSubscriptionForChange(Spi &spi, int64_t id)
{
	RequireUpdatedExtension();
	auto rows = spi.Query("UPDATE billing.user_locks l SET updated_at = pg_catalog.now() FROM billing.subscriptions s"
						  " WHERE s.id OPERATOR(pg_catalog.=) $1 AND s.deleted_at IS NULL"
						  " AND l.user_id OPERATOR(pg_catalog.=) s.user_id RETURNING l.user_id",
						  {SqlArg::Int64(id)});
	if (rows.empty())  // no lock row yet, or no such subscription
		rows = spi.Query("INSERT INTO billing.user_locks AS l (user_id) SELECT s.user_id FROM billing.subscriptions s"
						 " WHERE s.id OPERATOR(pg_catalog.=) $1 AND s.deleted_at IS NULL"
						 " ON CONFLICT (user_id) DO UPDATE SET updated_at = pg_catalog.now() RETURNING l.user_id",
						 {SqlArg::Int64(id)});
	if (rows.empty())
		throw InvalidParameter("subscription " + std::to_string(id) + " does not exist");
	std::string user_id = rows[0].text_required(0);
	DeferQuotaInvalidation(user_id);
	return user_id;
}

// A call that rewrote one subscription in place: the subscription as it
// loaded it, before its first write (nothing caught up), and as its last
// write left it (every column, unpaid_due_at included), for the quota
// cache's rule (EntitlementMayDifferFrom).
struct InPlaceChange {
	Subscription before;
	Subscription after;
	Micros grace = 0;
};

// Whether PersistOutcome wrote `out.updated` as it is and nothing else a
// grant reads: no successor, no invoice issued or voided, no Free one after.
bool
WritesOnlyInPlace(const Outcome &out)
{
	return out.updated.id != 0 && !out.successor && !out.invoice && !out.void_reason && !out.fall_back_to_free &&
		   out.open_invoices_due_later == 0;
}

// The owner's cached limits valid past `from` cleared (from '-infinity':
// all of them, as InvalidateUsersQuota clears them for one owner whose lock
// row the caller wrote, with LockUserForChange; a counter already clear
// left alone) and subscription `id` read, in one statement instead of two
// (each paid the executor's start and end: callgrind, 20,000-user book,
// bench/scale/callgrind.sh). The newest
// snapshot for both: the invalidation needs it (a counter committed after a
// REPEATABLE READ caller's snapshot too), and the subscription reads the
// same there as in the caller's snapshot, as the caller locked it (or
// inserted it) under the user's lock: a version committed by another
// transaction after the snapshot would have failed that lock with 40001.
// Call after spi.Finish(): the row is copied into the caller's context.
Datum
InvalidateQuotaAndReadRow(int64_t id, const std::string &user_id, TimestampTz from)
{
	static SPIPlanPtr plan = nullptr;
	Datum row = 0;
	PgCall([&] {
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (plan == nullptr) {
			Oid types[3] = {INT8OID, TEXTOID, TIMESTAMPTZOID};
			// "> '-infinity'" is InvalidateCachedLimits' "<> '-infinity'": a
			// cache already clear is left alone
			SPIPlanPtr prepared = SPI_prepare_cursor(
				"WITH invalidated AS (UPDATE billing.quota_counters q"
				" SET cap_valid_until = '-infinity'::pg_catalog.timestamptz"
				" WHERE q.owner_id OPERATOR(pg_catalog.=) $2 AND q.cap_valid_until OPERATOR(pg_catalog.>) $3)"
				" SELECT s FROM billing.subscriptions s WHERE s.id OPERATOR(pg_catalog.=) $1",
				3, types, CURSOR_OPT_GENERIC_PLAN);
			if (prepared == nullptr)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			if (SPI_keepplan(prepared) != 0)
				elog(ERROR, "SPI_keepplan failed");
			plan = prepared;
		}
		Datum values[3] = {Int64GetDatum(id), CStringGetTextDatum(user_id.c_str()), TimestampTzGetDatum(from)};
		if (SPI_execute_snapshot(plan, values, nullptr, GetLatestSnapshot(), InvalidSnapshot, false, true, 0) !=
			SPI_OK_SELECT)
			elog(ERROR, "invalidating quota counters failed");
		bool isnull = true;
		Datum value = 0;
		if (SPI_processed == 1)
			value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			elog(ERROR, "internal query returned no row");
		row = SPI_datumTransfer(value, false, -1);
		SPI_finish();
	});
	return row;
}

// Ends the call: the user's deferred quota invalidation, then the row. A
// call that rewrote one subscription in place (`in_place`) clears only the
// cached limits valid past the first time its plan may be granted
// differently (none when never: a cache valid until before then holds for
// every moment it covers); any other call clears them all.
Datum
ReturnSubscription(Spi &spi, int64_t id, const std::string &user_id, const InPlaceChange *in_place = nullptr)
{
	if (FinishDeferredQuotaInvalidation(user_id)) {
		std::optional<Micros> from = std::numeric_limits<Micros>::min();
		if (in_place != nullptr && in_place->before.id == id && in_place->after.id == id)
			from = EntitlementMayDifferFrom(in_place->before, in_place->after, in_place->grace);
		if (from) {
			// the lock row: LockUserForChange
			TimestampTz after = from == std::numeric_limits<Micros>::min() ? DT_NOBEGIN : ToPgTime(*from);
			spi.Finish();
			return InvalidateQuotaAndReadRow(id, user_id, after);
		}
	}
	Datum row = spi.QueryRowDatum("SELECT s FROM billing.subscriptions s WHERE s.id OPERATOR(pg_catalog.=) $1", {SqlArg::Int64(id)});
	spi.Finish();
	return row;
}

// subscribe and start_trial share everything but the trial rule.
Datum
StartSubscription(FunctionCallInfo fcinfo, bool trial_only)
{
	std::string user_id = TextArgRequired(fcinfo, 0, "user_id");
	std::string plan_code = TextArgRequired(fcinfo, 1, "plan_code");
	Micros at = TimeArgRequired(fcinfo, 2, "at");
	bool with_trial = trial_only ? true : BoolArgRequired(fcinfo, 3, "with_trial");
	RequireUserId(user_id);

	Spi spi;
	Plan plan = LoadPlanForSale(spi, plan_code);
	LockUserForChange(spi, user_id);
	std::optional<Subscription> current;
	// read with the current subscription when nothing was caught up
	std::optional<billing::Plan> current_plan;
	std::optional<std::vector<Tier>> trialed;
	bool current_has_open = true;
	if (std::optional<StartLoad> loaded = LoadCurrentForStart(spi, user_id)) {
		current = loaded->change.sub;
		RequireNotBeforeLatestChange(*current, at);
		// What time made due is applied first, so the decision sees the state at `at`.
		if (DueAction(*current, at, loaded->change.grace)) {
			CatchUp(spi, *current, at, loaded->change.grace);
			std::optional<ForChange> again = LoadCurrentForChange(spi, user_id);
			current = again ? std::optional<Subscription>(again->sub) : std::nullopt;
		} else {
			current_plan = loaded->plan;
			trialed = loaded->trialed;
			current_has_open = loaded->has_open;
		}
	}
	// The trial rule is asked only when its answer counts (the core's
	// Subscribe reads it for a trial of a paid plan with trial days).
	bool available = (trial_only || (with_trial && !plan.IsFree() && plan.trial_days > 0))
						 ? (trialed ? TrialAvailable(*trialed, plan.tier) : TrialAvailableFor(spi, user_id, plan))
						 : false;
	Outcome out = trial_only ? StartTrial(user_id, plan, at, available)
							 : Subscribe(user_id, plan, at, with_trial, available);
	if (current) {
		// Only a Free or an unpaid (incomplete) subscription is replaced here;
		// anything paid changes through change_plan.
		Outcome replaced = Replace(*current, current_plan ? *current_plan : LoadPlanById(spi, current->plan_id), plan, at);
		if (!current_has_open)
			replaced.void_reason.reset();  // nothing open to void: its UPDATE would change no row
		PersistOutcome(spi, replaced, at);
	}
	Persisted saved = PersistOutcome(spi, out, at);
	return ReturnSubscription(spi, saved.subscription_id, user_id);
}

// Loads and locks the subscription named by argument 0, under its user's
// lock, with everything due up to `at` applied first. A time before its
// latest change is refused before anything is caught up.
// `in_place`, when given and nothing was caught up, gets the subscription as
// loaded (before) and the grace, for ReturnSubscription's quota rule.
Subscription
LockedSubscriptionArg(Spi &spi, FunctionCallInfo fcinfo, Micros at, std::optional<InPlaceChange> *in_place = nullptr)
{
	int64_t id = Int64ArgRequired(fcinfo, 0, "subscription_id");
	LockUserOfSubscriptionForChange(spi, id);
	ForChange loaded = LoadForChange(spi, id);
	Subscription sub = loaded.sub;
	if (!sub.Ended())
		RequireNotBeforeLatestChange(sub, at);
	if (at >= sub.started_at && DueAction(sub, at, loaded.grace)) {
		CatchUp(spi, sub, at, loaded.grace);
		sub = LoadForChange(spi, id).sub;
	} else if (in_place != nullptr) {
		*in_place = InPlaceChange{sub, sub, loaded.grace};
	}
	return sub;
}

// reactivate, pause and resume: (subscription_id, at) -> one core operation.
Datum
ApplyToSubscription(FunctionCallInfo fcinfo, Outcome (*operation)(const Subscription &, Micros))
{
	Micros at = TimeArgRequired(fcinfo, 1, "at");
	Spi spi;
	Subscription sub = LockedSubscriptionArg(spi, fcinfo, at);
	Persisted saved = PersistOutcome(spi, operation(sub, at), at);
	return ReturnSubscription(spi, saved.subscription_id, sub.user_id);
}

// run_maintenance reads what is due in phases, each served by its own index
// (src/sql/02_tables.sql): what time made due (subscriptions_due), then
// past_due subscriptions whose grace ended (subscriptions_grace), and so on
// below. Arguments:
// due by, keyset (due time, id) to start after, page size. Column 2 is the
// due time in the core's microseconds, for the keyset.
struct DuePhase {
	bool grace;
	const char *query;
};
constexpr DuePhase kDuePhases[] = {
	{false,
	 "SELECT s.id, billing._micros(billing._due_at(s.status, s.current_period_end, s.trial_end, s.started_at)) AS due"
	 " FROM billing.subscriptions s"
	 " WHERE billing._due_at(s.status, s.current_period_end, s.trial_end, s.started_at) OPERATOR(pg_catalog.<=) $1"
	 " AND (billing._due_at(s.status, s.current_period_end, s.trial_end, s.started_at), s.id) OPERATOR(pg_catalog.>) ($2, $3)"
	 " AND s.ended_at IS NULL AND s.deleted_at IS NULL AND s.stripe_subscription_id IS NULL"
	 " ORDER BY billing._due_at(s.status, s.current_period_end, s.trial_end, s.started_at), s.id"
	 " LIMIT $4 FOR UPDATE OF s SKIP LOCKED"},
	{true,
	 "SELECT s.id, billing._micros(s.past_due_since) AS due"
	 " FROM billing.subscriptions s"
	 " WHERE s.status OPERATOR(pg_catalog.=) 'past_due' AND s.past_due_since OPERATOR(pg_catalog.<=) $1 AND (s.past_due_since, s.id) OPERATOR(pg_catalog.>) ($2, $3)"
	 " AND s.ended_at IS NULL AND s.deleted_at IS NULL AND s.stripe_subscription_id IS NULL"
	 " ORDER BY s.past_due_since, s.id LIMIT $4 FOR UPDATE OF s SKIP LOCKED"},
	// A subscription canceled at period end while in dunning ends at its grace
	// end, before the period end (subscriptions_canceled_grace).
	{true,
	 "SELECT s.id, billing._micros(s.past_due_since) AS due"
	 " FROM billing.subscriptions s"
	 " WHERE s.status OPERATOR(pg_catalog.=) 'canceled' AND s.past_due_since OPERATOR(pg_catalog.<=) $1 AND (s.past_due_since, s.id) OPERATOR(pg_catalog.>) ($2, $3)"
	 " AND s.ended_at IS NULL AND s.deleted_at IS NULL AND s.stripe_subscription_id IS NULL"
	 " ORDER BY s.past_due_since, s.id LIMIT $4 FOR UPDATE OF s SKIP LOCKED"},
	// An invoice unpaid past its due date starts dunning (invoices_open_due).
	{false,
	 "SELECT s.id, billing._micros(i.due_at) AS due"
	 " FROM billing.invoices i JOIN billing.subscriptions s ON s.id OPERATOR(pg_catalog.=) i.subscription_id"
	 " WHERE i.status OPERATOR(pg_catalog.=) 'open' AND i.deleted_at IS NULL AND i.due_at OPERATOR(pg_catalog.<=) $1 AND (i.due_at, s.id) OPERATOR(pg_catalog.>) ($2, $3)"
	 " AND s.status OPERATOR(pg_catalog.=) ANY ('{active,canceled}'::billing.subscription_status[])"
	 " AND s.past_due_since IS NULL"
	 " AND s.ended_at IS NULL AND s.deleted_at IS NULL AND s.stripe_subscription_id IS NULL"
	 " ORDER BY i.due_at, s.id LIMIT $4 FOR UPDATE OF s SKIP LOCKED"},
};
constexpr int64_t kMaintenancePage = 1000;

// Applies everything due for one subscription, locked by the due query.
void
MaintainOne(Spi &spi, int64_t id, Micros at, Micros grace, std::map<std::string, int64_t> &counts)
{
	Subscription sub = LoadSubscription(spi, id, true);
	if (!DueAction(sub, at, grace))
		return;  // e.g. a second overdue invoice of a subscription this run already dunned
	counts["subscriptions_processed"]++;
	// A subscription that missed several periods renews once per period.
	CatchUp(spi, sub, at, grace, &counts);
}

// A due step the page writes set-based: one step that keeps the
// subscription's row (no successor), does not move open invoices, and does
// not both void and issue. Renewals, renewals into dunning, overdue invoices,
// trial ends, grace ends and timeouts (with their Free fallback, voided
// invoices and notifications) all qualify; scheduled plan changes, several
// steps to catch up and an invoice that credit settles on issue go row by
// row through CatchUp. The decision itself is the core's (ApplyDue) either
// way, and billing.maintenance_row_by_row (superusers) sends every step row
// by row, for comparison (sql/25_scale.sql).
bool
SetBasedStep(const Subscription &sub, const Outcome &out)
{
	return !maintenance_row_by_row && out.updated.id == sub.id && !out.successor && out.open_invoices_due_later == 0 &&
		   !(out.invoice && out.void_reason) && (!out.invoice || out.invoice->currency == sub.currency);
}

// One due step of a page, decided and not yet written.
struct PageStep {
	Outcome out;
	IssuedAmounts amounts;  // the invoice against the credit balance (the core's IssueAgainstCredit)
	Micros change_at = 0;   // DueTime: what PersistOutcome would date it at
};

std::optional<int64_t>
PgTimeOpt(const std::optional<Micros> &t)
{
	return t ? std::optional<int64_t>(ToPgTime(*t)) : std::nullopt;
}

// "pg_catalog.unnest($1), ..., pg_catalog.unnest($n)": ROWS FROM over n
// arrays (the multi-argument unnest is only the unqualified name's syntax).
std::string
UnnestArgs(int n)
{
	std::string out;
	for (int i = 1; i <= n; i++)
		out += (i > 1 ? ", " : "") + std::string("pg_catalog.unnest($") + std::to_string(i) + ")";
	return out;
}

// The ledger entries of a page, written with one INSERT.
struct PageLedger {
	std::vector<std::optional<std::string>> user, currency, kind;
	std::vector<std::optional<int64_t>> amount, invoice, at;

	void Add(const std::string &user_id, const std::string &entry_currency, const char *entry_kind, int64_t cents,
			 int64_t invoice_id, Micros entry_at)
	{
		if (cents <= 0)
			return;
		user.push_back(user_id);
		currency.push_back(entry_currency);
		kind.push_back(std::string(entry_kind));
		amount.push_back(cents);
		invoice.push_back(invoice_id);
		at.push_back(ToPgTime(entry_at));
	}

	void Write(Spi &spi) const
	{
		if (user.empty())
			return;
		spi.Execute("INSERT INTO billing.ledger_entries (user_id, currency, kind, amount_cents, invoice_id, at)"
					" SELECT u.user_id, u.currency, u.kind, u.amount, u.invoice_id, u.at"
					" FROM ROWS FROM (" + UnnestArgs(6) + ") AS u(user_id, currency, kind, amount, invoice_id, at)",
					{SqlArg::TextArray(user), SqlArg::TextArray(currency), SqlArg::TextArray(kind),
					 SqlArg::Int64Array(amount), SqlArg::Int64Array(invoice), SqlArg::TimestampArray(at)});
	}
};

// The page's new invoices, one INSERT; the credit they take (and negative
// totals given back as credit) go to `ledger`, as InsertInvoice.
void
WritePageInvoices(Spi &spi, const std::vector<PageStep> &steps, PageLedger &ledger)
{
	std::vector<std::optional<std::string>> user, status, reason, currency, lines;
	std::vector<std::optional<int64_t>> subscription, period_start, period_end, total, due, issued, due_at, credit;
	for (const auto &r : steps) {
		if (!r.out.invoice)
			continue;
		const InvoiceDraft &d = *r.out.invoice;
		user.push_back(r.out.updated.user_id);
		subscription.push_back(r.out.updated.id);
		status.push_back(std::string(r.amounts.settled ? "paid" : "open"));
		reason.push_back(d.billing_reason);
		currency.push_back(d.currency);
		period_start.push_back(ToPgTime(d.period_start));
		period_end.push_back(PgTimeOpt(d.period_end));
		total.push_back(d.total_cents);
		due.push_back(r.amounts.amount_due_cents);
		lines.push_back(LinesJson(d.lines, d.currency));
		issued.push_back(ToPgTime(d.issued_at));
		due_at.push_back(ToPgTime(d.due_at));
		credit.push_back(r.amounts.credit_applied_cents);
	}
	if (user.empty())
		return;
	auto inserted = spi.Query(
		"INSERT INTO billing.invoices (number, user_id, subscription_id, status, billing_reason, currency, period_start,"
		" period_end, subtotal_cents, total_cents, amount_due_cents, lines, issued_at, paid_at, due_at,"
		" credit_applied_cents)"
		" SELECT billing._next_invoice_number(u.issued_at), u.user_id, u.subscription_id, u.status, u.reason, u.currency,"
		" u.period_start, u.period_end, u.total, u.total, u.due, u.lines::pg_catalog.jsonb, u.issued_at,"
		" CASE WHEN u.status OPERATOR(pg_catalog.=) 'paid' THEN u.issued_at END, u.due_at, u.credit"
		" FROM ROWS FROM (" + UnnestArgs(13) + ")"
		" AS u(user_id, subscription_id, status, reason, currency, period_start, period_end, total, due, lines, issued_at,"
		" due_at, credit)"
		" RETURNING id, subscription_id",
		{SqlArg::TextArray(user), SqlArg::Int64Array(subscription), SqlArg::TextArray(status), SqlArg::TextArray(reason),
		 SqlArg::TextArray(currency), SqlArg::TimestampArray(period_start), SqlArg::TimestampArray(period_end),
		 SqlArg::Int64Array(total), SqlArg::Int64Array(due), SqlArg::TextArray(lines), SqlArg::TimestampArray(issued),
		 SqlArg::TimestampArray(due_at), SqlArg::Int64Array(credit)});
	std::map<int64_t, int64_t> invoice_of;  // subscription -> its new invoice
	for (const auto &row : inserted)
		invoice_of[row.int64_required(1)] = row.int64_required(0);

	for (const auto &r : steps) {
		if (!r.out.invoice)
			continue;
		const InvoiceDraft &d = *r.out.invoice;
		int64_t invoice_id = invoice_of.at(r.out.updated.id);
		ledger.Add(r.out.updated.user_id, d.currency, "credit_to_invoice", r.amounts.credit_applied_cents, invoice_id,
				   d.issued_at);
		ledger.Add(r.out.updated.user_id, d.currency, "proration_credit", r.amounts.credit_added_cents, invoice_id,
				   d.issued_at);
	}
}

// Writes a page's steps in PersistOutcome's order, each part one statement
// over arrays: the subscriptions (one UPDATE, each row's change time declared
// for the history trigger whatever the due times), their voided invoices
// (what was paid toward them back to credit), their new invoices, the ledger,
// the Free fallbacks and the notifications (the rows billing._start_free and
// billing._notify write, one statement each for the page).
void
WritePageSteps(Spi &spi, const std::vector<PageStep> &steps)
{
	{
		std::vector<std::optional<int64_t>> id, price, plan, anchor, start, end, trial_start, trial_end, canceled, ended,
			paused, past_due, scheduled_plan, scheduled_at;
		std::vector<std::optional<std::string>> status, end_reason;
		std::vector<bool> cancel_at_end;
		for (const PageStep &r : steps) {
			DeclareChangeAt(r.out.updated.id, r.change_at);
			const Subscription &s = r.out.updated;
			id.push_back(s.id);
			status.push_back(ToString(s.status));
			price.push_back(s.price_cents);
			anchor.push_back(PgTimeOpt(s.billing_anchor));
			start.push_back(ToPgTime(s.period_start));
			end.push_back(PgTimeOpt(s.period_end));
			trial_start.push_back(PgTimeOpt(s.trial_start));
			trial_end.push_back(PgTimeOpt(s.trial_end));
			cancel_at_end.push_back(s.cancel_at_period_end);
			canceled.push_back(PgTimeOpt(s.canceled_at));
			ended.push_back(PgTimeOpt(s.ended_at));
			paused.push_back(PgTimeOpt(s.paused_at));
			past_due.push_back(PgTimeOpt(s.past_due_since));
			scheduled_plan.push_back(s.scheduled_plan_id);
			scheduled_at.push_back(PgTimeOpt(s.scheduled_change_at));
			end_reason.push_back(s.end_reason);
		}
		spi.Execute(
			"UPDATE billing.subscriptions s SET status = u.status::billing.subscription_status,"
			" price_cents = u.price_cents, billing_anchor = u.billing_anchor, current_period_start = u.period_start,"
			" current_period_end = u.period_end, trial_start = u.trial_start, trial_end = u.trial_end,"
			" cancel_at_period_end = u.cancel_at_end, canceled_at = u.canceled_at, ended_at = u.ended_at,"
			" paused_at = u.paused_at, past_due_since = u.past_due_since, scheduled_plan_id = u.scheduled_plan_id,"
			" scheduled_change_at = u.scheduled_at, end_reason = u.end_reason"
			" FROM ROWS FROM (" + UnnestArgs(16) + ")"
			" AS u(id, status, price_cents, billing_anchor, period_start, period_end, trial_start, trial_end,"
			" cancel_at_end, canceled_at, ended_at, paused_at, past_due_since, scheduled_plan_id, scheduled_at, end_reason)"
			" WHERE s.id OPERATOR(pg_catalog.=) u.id",
			{SqlArg::Int64Array(id), SqlArg::TextArray(status), SqlArg::Int64Array(price), SqlArg::TimestampArray(anchor),
			 SqlArg::TimestampArray(start), SqlArg::TimestampArray(end), SqlArg::TimestampArray(trial_start),
			 SqlArg::TimestampArray(trial_end), SqlArg::BoolArray(cancel_at_end), SqlArg::TimestampArray(canceled),
			 SqlArg::TimestampArray(ended), SqlArg::TimestampArray(paused), SqlArg::TimestampArray(past_due),
			 SqlArg::Int64Array(scheduled_plan), SqlArg::TimestampArray(scheduled_at), SqlArg::TextArray(end_reason)});
	}
	ClearDeclaredChangeTimes();  // later writes in the transaction declare their own time

	PageLedger ledger;
	{
		// A subscription that ends leaves no invoice open (VoidOpenInvoices).
		std::vector<std::optional<int64_t>> id;
		std::vector<std::optional<std::string>> reason;
		std::map<int64_t, Micros> void_at;
		std::map<int64_t, std::string> void_reason;
		for (const PageStep &r : steps)
			if (r.out.void_reason) {
				id.push_back(r.out.updated.id);
				reason.push_back(r.out.void_reason);
				void_at[r.out.updated.id] = r.out.updated.ended_at.value_or(r.change_at);
				void_reason[r.out.updated.id] = *r.out.void_reason;
			}
		if (!id.empty()) {
			// Each subscription's open invoices found by their own index probe
			// (o, per subscription; o and v kept subqueries by OFFSET 0), then
			// each invoice by its key. As one join, the plan kept from
			// statistics that saw few open invoices (a maintenance run issues
			// them by the thousand, uncommitted) read and hashed every open
			// invoice for every page: 150-200 ms a page after 70,000 renewals,
			// growing with the backlog. The invoice's own conditions stay on i
			// (against v's 'open', so that they are not taken for the open
			// invoices' index predicate), checked again on the newest row after
			// a concurrent change.
			auto voided = spi.Query(
				"UPDATE billing.invoices i SET status = 'void', void_reason = v.reason, amount_due_cents = 0"
				" FROM (SELECT o.id, u.reason, 'open'::pg_catalog.text AS open"
				"  FROM ROWS FROM (" + UnnestArgs(2) + ") AS u(subscription_id, reason)"
				"  CROSS JOIN LATERAL (SELECT x.id FROM billing.invoices x"
				"   WHERE x.subscription_id OPERATOR(pg_catalog.=) u.subscription_id"
				"   AND x.status OPERATOR(pg_catalog.=) 'open' AND x.deleted_at IS NULL OFFSET 0) o OFFSET 0) v"
				" WHERE i.id OPERATOR(pg_catalog.=) v.id AND i.status OPERATOR(pg_catalog.=) v.open"
				" AND i.deleted_at IS NULL" + kVoidReturning,
				{SqlArg::Int64Array(id), SqlArg::TextArray(reason)});
			// credit not yet written (the page's ledger is written at the end),
			// per user and currency, for CustomerHoldings
			std::map<std::pair<std::string, std::string>, int64_t> pending;
			for (const auto &row : voided) {
				ledger.Add(row.text_required(1), row.text_required(2), "void_to_credit", row.int64_required(3),
						   row.int64_required(0), void_at.at(row.int64_required(4)));
				pending[{row.text_required(1), row.text_required(2)}] += row.int64_required(3);
			}
			for (const auto &row : voided)
				if (int64_t lines = CreditLinesBackOnVoid(void_reason.at(row.int64_required(4)), row.int64_required(5),
														  row.boolean(6));
					lines > 0) {
					auto key = std::make_pair(row.text_required(1), row.text_required(2));
					Holdings now = CustomerHoldings(spi, key.first, key.second);
					int64_t credit = CreditForUnusedTime(lines, now.held + pending[key], now.paid_net);
					ledger.Add(key.first, key.second, "proration_credit", credit, row.int64_required(0),
							   void_at.at(row.int64_required(4)));
					pending[key] += credit;
				}
		}
	}
	WritePageInvoices(spi, steps, ledger);
	ledger.Write(spi);
	std::vector<std::optional<std::string>> free_user;
	std::vector<std::optional<int64_t>> free_from;
	std::vector<std::optional<std::string>> note_user, note_kind, note_key;
	std::vector<std::optional<int64_t>> note_subscription, note_at;
	for (const PageStep &r : steps) {
		const Outcome &out = r.out;
		if (out.fall_back_to_free) {
			free_user.push_back(out.updated.user_id);
			free_from.push_back(ToPgTime(out.free_from));
		}
		for (const auto &kind : out.notifications) {
			Micros when = out.updated.ended_at.value_or(out.updated.past_due_since.value_or(r.change_at));
			note_user.push_back(out.updated.user_id);
			note_subscription.push_back(out.updated.id);
			note_kind.push_back(kind);
			note_key.push_back(kind + ":" + std::to_string(out.updated.id) + ":" + std::to_string(when));
			note_at.push_back(ToPgTime(when));
		}
	}
	// The rows billing._start_free and billing._notify write, for the whole
	// page in one statement each (called per user and per notification, each
	// was an INSERT with its statement triggers: 0.4 ms per Free fallback).
	// sql/26_scale_dunning.sql compares them with the row-by-row path's.
	if (!free_user.empty())
		spi.Execute("INSERT INTO billing.subscriptions"
					" (user_id, plan_id, status, price_cents, currency, billing_interval, started_at, current_period_start)"
					" SELECT u.user_id, p.id, 'active', p.price_cents, p.currency, p.billing_interval, u.at, u.at"
					" FROM ROWS FROM (" + UnnestArgs(2) + ") WITH ORDINALITY AS u(user_id, at, n)"
					" CROSS JOIN billing.subscription_plans p WHERE p.code OPERATOR(pg_catalog.=) 'free' ORDER BY u.n"
					" ON CONFLICT (user_id) WHERE ended_at IS NULL AND deleted_at IS NULL DO NOTHING",
					{SqlArg::TextArray(free_user), SqlArg::TimestampArray(free_from)});
	if (!note_user.empty())
		spi.Execute("WITH added AS (INSERT INTO billing.notifications AS n"
					" (user_id, subscription_id, kind, dedupe_key, due_at, payload)"
					" SELECT u.user_id, u.subscription_id, u.kind, u.dedupe_key, u.at,"
					" pg_catalog.jsonb_build_object('user_id', u.user_id, 'subscription_id', u.subscription_id, 'kind', u.kind,"
					" 'due_at', u.at)"
					" FROM ROWS FROM (" + UnnestArgs(5) + ") WITH ORDINALITY AS u(user_id, subscription_id, kind, dedupe_key, at, o)"
					" ORDER BY u.o ON CONFLICT (dedupe_key) DO NOTHING RETURNING n.id, n.subscription_id, n.kind)"
					// ids only: any role may LISTEN (as billing._notify)
					" SELECT pg_catalog.pg_notify('billing_events', pg_catalog.jsonb_build_object('id', a.id,"
					" 'subscription_id', a.subscription_id, 'kind', a.kind)::pg_catalog.text) FROM added a ORDER BY a.id",
					{SqlArg::TextArray(note_user), SqlArg::Int64Array(note_subscription), SqlArg::TextArray(note_kind),
					 SqlArg::TextArray(note_key), SqlArg::TimestampArray(note_at)});
}

// One page of due subscriptions (locked by the due query, oldest due first):
// loaded with one query, decided in the core one by one, single steps
// written set-based (WritePageSteps), the rest row by row (MaintainOne).
void
MaintainPage(Spi &spi, const std::vector<int64_t> &ids, Micros at, Micros grace,
			 std::map<int64_t, billing::Plan> &plans, std::map<std::string, int64_t> &counts)
{
	std::vector<std::optional<int64_t>> id_array(ids.begin(), ids.end());
	static const std::string load = std::string("SELECT ") + kSubscriptionColumns +
									" FROM billing.subscriptions s WHERE s.id OPERATOR(pg_catalog.=) ANY ($1)"
									" AND s.deleted_at IS NULL";
	std::map<int64_t, Subscription> loaded;
	std::vector<std::optional<std::string>> users;
	for (const auto &row : spi.Query(load, {SqlArg::Int64Array(id_array)})) {
		Subscription sub = SubscriptionFromRow(row);
		users.push_back(sub.user_id);
		loaded.emplace(sub.id, std::move(sub));
	}
	// The page's users are locked without waiting, before anything is
	// written: a user whose billing.user_locks row another transaction holds
	// (a quota fill keeps it FOR SHARE until it commits, an operation locks
	// it) waits for the next run. So an idle application transaction cannot
	// stall maintenance for the whole book, and maintenance never waits for a
	// user while holding subscriptions (an operation locks the user first,
	// then the subscription: waiting here the other way round deadlocked).
	// Every subscriber has a lock row (a subscription write makes it), so
	// the rows are locked first; only users the lock did not return (no row
	// yet, or busy) have theirs inserted, and are tried again.
	static const char *const lock_users = "SELECT l.user_id FROM billing.user_locks l"
										  " WHERE l.user_id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY l.user_id"
										  " FOR UPDATE SKIP LOCKED";
	std::set<std::string> locked_users;
	for (const auto &row : spi.Query(lock_users, {SqlArg::TextArray(users)}))
		locked_users.insert(row.text_required(0));
	std::vector<std::optional<std::string>> unlocked;
	for (const auto &user : users)
		if (locked_users.count(*user) == 0)
			unlocked.push_back(user);
	if (!unlocked.empty()) {
		spi.Execute("INSERT INTO billing.user_locks (user_id) SELECT DISTINCT u.id FROM pg_catalog.unnest($1) AS u(id)"
					" ORDER BY u.id ON CONFLICT (user_id) DO NOTHING",
					{SqlArg::TextArray(unlocked)});
		for (const auto &row : spi.Query(lock_users, {SqlArg::TextArray(unlocked)}))
			locked_users.insert(row.text_required(0));
	}
	for (auto it = loaded.begin(); it != loaded.end();) {
		if (locked_users.count(it->second.user_id) == 0) {
			counts["deferred_user_busy"]++;
			it = loaded.erase(it);
		} else {
			++it;
		}
	}
	// The quota invalidation of the page's users waits for the end of the
	// page, as a lifecycle call's does (LockUserForChange): one statement
	// for the page instead of one per statement writing their subscriptions
	// (the renewals' UPDATE, the Free fallbacks' INSERT, each row-by-row step).
	std::vector<std::string> deferred;
	for (const auto &[id, sub] : loaded)
		if (DeferQuotaInvalidation(sub.user_id))
			deferred.push_back(sub.user_id);
	static const std::string balances = std::string("SELECT e.user_id, e.currency, ") + kCreditBalanceSum +
										kCreditBalanceEntries +
										" AND e.user_id OPERATOR(pg_catalog.=) ANY ($1) GROUP BY e.user_id, e.currency";
	std::map<std::pair<std::string, std::string>, int64_t> credit;
	for (const auto &row : spi.Query(balances, {SqlArg::TextArray(users)}))
		credit[{row.text_required(0), row.text_required(1)}] = row.int64_required(2);
	auto plan_of = [&](int64_t id) -> const billing::Plan & {
		auto found = plans.find(id);
		if (found == plans.end())
			found = plans.emplace(id, LoadPlanById(spi, id)).first;
		return found->second;
	};

	std::vector<PageStep> steps;
	std::vector<int64_t> row_by_row;
	std::set<int64_t> seen;  // the overdue-invoice phase may name a subscription twice
	for (int64_t id : ids) {
		auto found = loaded.find(id);
		if (found == loaded.end() || !seen.insert(id).second)
			continue;
		const Subscription &sub = found->second;
		std::optional<Action> action = DueAction(sub, at, grace);
		if (!action)
			continue;  // e.g. a second overdue invoice of a subscription this run already dunned
		std::optional<billing::Plan> scheduled;
		if (sub.scheduled_plan_id)
			scheduled = plan_of(*sub.scheduled_plan_id);
		int64_t trial_credit = *action == Action::kTrialEnd ? credit[{sub.user_id, sub.currency}] : 0;
		Outcome out = ApplyDue(sub, *action, plan_of(sub.plan_id), scheduled, at, grace, trial_credit);
		if (!SetBasedStep(sub, out)) {
			row_by_row.push_back(id);
			continue;
		}
		PageStep r{out, {}, DueTime(sub, *action, grace)};
		Subscription &updated = r.out.updated;
		int64_t *balance = nullptr;
		if (r.out.void_reason)
			updated.unpaid_due_at.reset();  // its open invoices become void
		if (r.out.invoice) {
			balance = &credit[{sub.user_id, r.out.invoice->currency}];
			r.amounts = IssueAgainstCredit(r.out.invoice->total_cents, *balance);
			if (!r.amounts.settled)
				updated.unpaid_due_at = std::min(updated.unpaid_due_at.value_or(INT64_MAX), r.out.invoice->due_at);
		}
		// credit settling an incomplete or dunned subscription's invoice on
		// issue, and anything else due by `at`: row by row (CatchUp walks it)
		bool settles = r.out.invoice && SettledOnIssue(updated, r.amounts.settled, sub.unpaid_due_at.has_value());
		if (settles || DueAction(updated, at, grace)) {
			row_by_row.push_back(id);
			continue;
		}
		if (balance != nullptr)
			*balance = *balance - r.amounts.credit_applied_cents + r.amounts.credit_added_cents;
		counts["subscriptions_processed"]++;
		counts[StepName(*action, r.out)]++;
		steps.push_back(std::move(r));
	}
	if (!steps.empty())
		WritePageSteps(spi, steps);
	for (int64_t id : row_by_row)
		MaintainOne(spi, id, at, grace, counts);
	std::vector<std::optional<std::string>> written;
	for (const auto &user : deferred)
		if (FinishDeferredQuotaInvalidation(user))
			written.push_back(user);
	if (!written.empty())
		InvalidateUsersQuota(spi, written, false);
}

}  // namespace

bool
CatchUpBeforeStripe(Spi &spi, const std::string &user_id, Micros at)
{
	LockUser(spi, user_id);
	std::optional<ForChange> loaded = LoadCurrentForChange(spi, user_id);
	if (loaded && at >= loaded->sub.started_at && DueAction(loaded->sub, at, loaded->grace))
		CatchUp(spi, loaded->sub, at, loaded->grace);
	return loaded.has_value();
}

// A Stripe subscription billing does not hold yet replaces the user's
// current one (stripe::TakeoverOf said kEnd): under the user's lock, what
// time made due before `at` first (CatchUp, as every operation), then the
// core's ReplaceByStripe, written as every lifecycle outcome is
// (PersistOutcome: the voids, the credit for unused paid time).
std::optional<StripeReplaced>
EndForStripeSubscription(Spi &spi, const std::string &user_id, Micros at)
{
	LockUser(spi, user_id);
	std::optional<ForChange> loaded = LoadCurrentForChange(spi, user_id);
	if (!loaded)
		return std::nullopt;
	if (at >= loaded->sub.started_at && DueAction(loaded->sub, at, loaded->grace)) {
		CatchUp(spi, loaded->sub, at, loaded->grace);
		loaded = LoadCurrentForChange(spi, user_id);
		if (!loaded)
			return std::nullopt;
	}
	const Subscription &current = loaded->sub;
	Outcome out = ReplaceByStripe(current, at, !HasOpenInvoice(spi, current.id), RefundedForPeriod(spi, current),
								  PausedInPeriod(spi, current, at));
	PersistOutcome(spi, out, out.updated.ended_at.value_or(at), &current);
	return StripeReplaced{out.updated.ended_at.value_or(at), current.price_cents == 0};
}

// Stripe adopts billing's own subscription (stripe::TakeoverOf said kAdopt):
// its open invoices become void, what was paid toward them credit.
void
VoidForStripeAdoption(Spi &spi, const std::string &user_id, int64_t subscription_id, Micros at)
{
	LockUser(spi, user_id);
	VoidOpenInvoices(spi, subscription_id, "plan_changed", at);
}

namespace {
bool
EndsWithItsUser(const Subscription &sub)
{
	return CanceledWithItsUser(sub) || ClosedWithItsUser(sub);
}

// Under the user's lock: the current subscription the core says ends with
// its user (CanceledWithItsUser: canceled; ClosedWithItsUser: a plain Free
// one closed) ends now, or at its latest change if that is later (a payment
// dated ahead), with what time made due first (CatchUp, as every operation);
// no Free one follows (EndWithItsUser). Returns when it ended (`now` if
// nothing did).
Micros
EndCurrentWithItsUser(Spi &spi, const std::string &user_id, Micros now)
{
	Micros at = now;
	std::optional<ForChange> loaded = LoadCurrentForChange(spi, user_id);
	if (!loaded || !EndsWithItsUser(loaded->sub))
		return at;
	at = UserDeletionTime(loaded->sub, now);
	if (at >= loaded->sub.started_at && DueAction(loaded->sub, at, loaded->grace)) {
		CatchUp(spi, loaded->sub, at, loaded->grace);
		loaded = LoadCurrentForChange(spi, user_id);
		if (!loaded || !EndsWithItsUser(loaded->sub))
			return at;
	}
	PersistOutcome(spi, EndWithItsUser(loaded->sub, at), at);
	return at;
}
}  // namespace

// A user deleted from the attached users table: its current subscription
// ends with it (EndCurrentWithItsUser), then its credit and Stripe links
// leave the id.
void
CancelForDeletedUser(Spi &spi, const std::string &user_id, Micros now)
{
	LockUser(spi, user_id);
	Micros at = EndCurrentWithItsUser(spi, user_id, now);
	// Billing keys credit by the id: what the deleted customer holds (the
	// cancel's voids included) leaves the id with them, in each currency, as
	// a ledger entry that keeps it owed to them (review D1: whoever took the
	// id next spent it). Stripe-managed or not: this is billing's own credit
	// (Stripe keeps its customer balance on its deleted customer).
	for (const auto &[currency, balance] : CreditBalancesOf(spi, user_id))
		LedgerEntry(spi, user_id, currency, "credit_to_deleted_user", CreditLeavingWithItsUser(balance), std::nullopt,
					std::nullopt, at);
	// The user's Stripe customers are the deleted person's, not the id's:
	// their links close (kept, with when the user was deleted), so a late
	// event of such a customer is not applied to whoever registers the id
	// next (stripe::HeldForDeletedUser), and the id may be renamed.
	spi.Execute("UPDATE billing.stripe_customers c SET deleted_at = $2, user_deleted_at = $2 "
				"WHERE c.user_id OPERATOR(pg_catalog.=) $1 AND c.deleted_at IS NULL",
				{SqlArg::Text(user_id), SqlArg::Timestamp(ToPgTime(at))});
}

// A user id the application renames in the attached users table (attack
// finding 70): the old id's lock first, as a lifecycle call takes it (a
// change in progress is waited for; in REPEATABLE READ one committed after
// the snapshot fails with 40001, as at a deletion), then what billing holds
// for the id, read with the newest snapshot (as PostgreSQL's foreign-key
// checks read: also a Stripe customer linked after the snapshot, which takes
// no user lock), and the core's UserRenameRefusal.
std::optional<Error>
UserRenameRefusalFor(const std::string &user_id, const std::string &table, const std::string &column)
{
	{
		Spi spi;
		LockUser(spi, user_id);
		spi.Finish();
	}
	PgCall([] {
		CommandCounterIncrement();
		PushActiveSnapshot(GetLatestSnapshot());
	});
	Spi spi(Spi::Access::kReadOnly);  // its queries run on the active snapshot
	HeldForUser held = ReadHeldForUser(spi, user_id);
	spi.Finish();
	PgCall([] { PopActiveSnapshot(); });
	return UserRenameRefusal(held, table, column, user_id);
}

// An id renamed away while billing held nothing live for it (the rename was
// allowed, the old id is gone at the end of the statement): its plain Free
// subscription is closed as a deleted user's is (attack finding 3/6), so the
// reports count the user once, on the new id. Run as billing's owner, after
// UserRenameRefusalFor (which took the old id's lock).
void
CloseForRenamedUser(const std::string &user_id, Micros now)
{
	Spi spi;  // the old id's lock is held already (UserRenameRefusalFor)
	(void) EndCurrentWithItsUser(spi, user_id, now);
	spi.Finish();
}

// What billing holds for a user id (UserRenameRefusal's and
// UsersTruncateRefusal's measure), read with the Spi's snapshot.
HeldForUser
ReadHeldForUser(Spi &spi, const std::string &user_id)
{
	HeldForUser held;
	static const std::string current = std::string("SELECT ") + kSubscriptionColumns +
									   " FROM billing.subscriptions s WHERE s.user_id OPERATOR(pg_catalog.=) $1"
									   " AND s.ended_at IS NULL AND s.deleted_at IS NULL";
	auto rows = spi.Query(current, {SqlArg::Text(user_id)});
	if (!rows.empty())
		held.current = SubscriptionFromRow(rows[0]);
	held.credit = CreditBalancesOf(spi, user_id);
	for (const Row &row : spi.Query("SELECT i.number FROM billing.invoices i WHERE i.user_id OPERATOR(pg_catalog.=) $1"
									" AND i.status OPERATOR(pg_catalog.=) 'open' AND i.deleted_at IS NULL ORDER BY i.id",
									{SqlArg::Text(user_id)}))
		held.open_invoices.push_back(row.text_required(0));
	for (const Row &row : spi.Query("SELECT c.customer_id FROM billing.stripe_customers c"
									" WHERE c.user_id OPERATOR(pg_catalog.=) $1 AND c.deleted_at IS NULL"
									" ORDER BY c.customer_id",
									{SqlArg::Text(user_id)}))
		held.stripe_customers.push_back(row.text_required(0));
	return held;
}

// A TRUNCATE of the attached users table: the ids that may hold something
// live (a subscription not ended that is not plain Free, or on Stripe; an
// open invoice; an open Stripe customer link; a non-zero credit balance),
// one of each at most, each measured by the core (UsersTruncateRefusal); the
// first refused is the error. TRUNCATE holds the table's ACCESS EXCLUSIVE
// lock: no user is inserted or deleted meanwhile.
std::optional<Error>
UsersTruncateRefusalFor(const std::string &table, bool detaching)
{
	return UsersRemovalRefusalFor(table, detaching ? UsersDetachRefusal : UsersTruncateRefusal);
}

// The same, for a users table (or partition) dropped: the core's
// UsersDropRefusal (session 11; billing._after_users_dropped).
std::optional<Error>
UsersDropRefusalFor(const std::string &table)
{
	return UsersRemovalRefusalFor(table, UsersDropRefusal);
}

// The candidates' loop of UsersTruncateRefusalFor, with the rule that names
// the statement.
std::optional<Error>
UsersRemovalRefusalFor(const std::string &table,
					   std::optional<Error> (*rule)(const HeldForUser &held, const std::string &table))
{
	Spi spi(Spi::Access::kReadOnly);
	static const std::string candidates =
		std::string("(SELECT s.user_id FROM billing.subscriptions s WHERE s.ended_at IS NULL AND s.deleted_at IS NULL"
					" AND (s.price_cents OPERATOR(pg_catalog.<>) 0 OR s.current_period_end IS NOT NULL"
					" OR s.status OPERATOR(pg_catalog.<>) 'active' OR s.stripe_subscription_id IS NOT NULL) LIMIT 1)"
					" UNION ALL (SELECT i.user_id FROM billing.invoices i WHERE i.status OPERATOR(pg_catalog.=) 'open'"
					" AND i.deleted_at IS NULL LIMIT 1)"
					" UNION ALL (SELECT c.user_id FROM billing.stripe_customers c WHERE c.deleted_at IS NULL LIMIT 1)"
					" UNION ALL (SELECT e.user_id") +
		kCreditBalanceEntries + " GROUP BY e.user_id, e.currency HAVING " + kCreditBalanceSum +
		" OPERATOR(pg_catalog.<>) 0 LIMIT 1)";
	std::optional<Error> refusal;
	for (const Row &row : spi.Query(candidates, {})) {
		std::string user_id = row.text_required(0);
		HeldForUser held = ReadHeldForUser(spi, user_id);
		refusal = rule(held, table);
		if (refusal)
			break;
	}
	spi.Finish();
	return refusal;
}

}  // namespace billing::glue

using namespace billing;
using namespace billing::glue;

BILLING_FUNCTION(billing_subscribe)
{
	return StartSubscription(fcinfo, false);
}

BILLING_FUNCTION(billing_start_trial)
{
	return StartSubscription(fcinfo, true);
}

BILLING_FUNCTION(billing_cancel)
{
	bool at_period_end = BoolArgRequired(fcinfo, 1, "at_period_end");
	Micros at = TimeArgRequired(fcinfo, 2, "at");
	Spi spi;
	std::optional<InPlaceChange> in_place;
	Subscription sub = LockedSubscriptionArg(spi, fcinfo, at, &in_place);
	Outcome out = Cancel(sub, at_period_end, at);
	Persisted saved = PersistOutcome(spi, out, at);
	if (in_place && WritesOnlyInPlace(out))
		in_place->after = out.updated;
	else
		in_place.reset();
	return ReturnSubscription(spi, saved.subscription_id, sub.user_id, in_place ? &*in_place : nullptr);
}

BILLING_FUNCTION(billing_reactivate)
{
	return ApplyToSubscription(fcinfo, Reactivate);
}

BILLING_FUNCTION(billing_pause)
{
	return ApplyToSubscription(fcinfo, Pause);
}

BILLING_FUNCTION(billing_resume)
{
	return ApplyToSubscription(fcinfo, Resume);
}

BILLING_FUNCTION(billing_change_plan)
{
	std::string plan_code = TextArgRequired(fcinfo, 1, "plan_code");
	Micros at = TimeArgRequired(fcinfo, 2, "at");
	Spi spi;
	billing::Plan to = LoadPlanForSale(spi, plan_code);
	Subscription sub = LockedSubscriptionArg(spi, fcinfo, at);
	billing::Plan from = LoadPlanById(spi, sub.plan_id);
	Outcome out = ChangePlan(sub, from, to, at, !HasOpenInvoice(spi, sub.id), TrialAvailableFor(spi, sub.user_id, to),
							 RefundedForPeriod(spi, sub), PausedInPeriod(spi, sub, at));
	Persisted saved = PersistOutcome(spi, out, at);
	return ReturnSubscription(spi, saved.subscription_id, sub.user_id);
}

BILLING_FUNCTION(billing_preview_change)
{
	ResultSet result(fcinfo);
	int64_t id = Int64ArgRequired(fcinfo, 0, "subscription_id");
	std::string plan_code = TextArgRequired(fcinfo, 1, "plan_code");
	Micros at = TimeArgRequired(fcinfo, 2, "at");
	Spi spi(Spi::Access::kReadOnly);  // declared STABLE
	billing::Plan to = LoadPlanForSale(spi, plan_code);
	Subscription sub = LoadSubscription(spi, id, false);
	// As change_plan sees it: everything due up to `at` applied first (projected,
	// not written), then the same checks, without writing anything.
	bool period_paid = !HasOpenInvoice(spi, sub.id);
	if (at >= sub.started_at) {
		Projection projected = ProjectSubscription(spi, sub, at, PastDueGrace(spi));
		sub = projected.stored;
		if (projected.book.sub.id == sub.id)
			period_paid = projected.book.open.empty();
	}
	billing::Plan from = LoadPlanById(spi, sub.plan_id);
	Outcome out =
		ChangePlan(sub, from, to, at, period_paid, TrialAvailableFor(spi, sub.user_id, to), RefundedForPeriod(spi, sub),
				   PausedInPeriod(spi, sub, at));
	if (out.invoice)
		for (const auto &line : out.invoice->lines)
			result.Add({line.description, std::to_string(line.amount_cents), sub.currency});
	spi.Finish();
	return (Datum) 0;
}

// The subscription of `user_id` that was current at `at`, if any, with
// past_due_grace and the user's credit balance in its currency read by the
// same statement (columns 23 and 24), its times read in binary
// (Spi::QueryCoreTimes: fourteen conversions fewer to set up and run).
struct SubscriptionAtResult {
	Subscription sub;
	Micros grace = 0;
	int64_t credit_cents = 0;
	// when its stored state began: the open history interval's valid_from
	// (column 25; one probe of subscription_history_open), nullopt without
	// history
	std::optional<Micros> latest_change;
};

std::optional<SubscriptionAtResult>
SubscriptionAt(Spi &spi, const std::string &user_id, Micros at)
{
	// (billing._setting's answer read in place, as kLatestChangesColumnsTimes
	// does: every caller is billing's owner)
	static const std::string sql =
		std::string("SELECT ") + kSubscriptionColumnsTimes +
		", billing._interval_micros(COALESCE((SELECT g.value FROM billing.settings g"
		" WHERE g.key OPERATOR(pg_catalog.=) 'past_due_grace' AND g.deleted_at IS NULL), '14 days')::pg_catalog.interval)"
		" AS past_due_grace"
		", (SELECT " + kCreditBalanceSum + kCreditBalanceEntries +
		" AND e.user_id OPERATOR(pg_catalog.=) s.user_id AND e.currency OPERATOR(pg_catalog.=) s.currency) AS credit_cents"
		", (SELECT pg_catalog.max(h.valid_from) FROM billing.subscription_history h"
		" WHERE h.subscription_id OPERATOR(pg_catalog.=) s.id"
		" AND h.valid_to OPERATOR(pg_catalog.=) 'infinity'::pg_catalog.timestamptz) AS latest_change"
		" FROM billing.subscriptions s WHERE s.user_id OPERATOR(pg_catalog.=) $1 AND s.deleted_at IS NULL"
		" AND s.started_at OPERATOR(pg_catalog.<=) $2 AND (s.ended_at IS NULL OR s.ended_at OPERATOR(pg_catalog.>) $2)"
		" ORDER BY s.started_at DESC, s.id DESC LIMIT 1";
	auto rows = spi.QueryCoreTimes(sql, {SqlArg::Text(user_id), SqlArg::Timestamp(ToPgTime(at))});
	if (rows.empty())
		return std::nullopt;
	return SubscriptionAtResult{SubscriptionFromRow(rows[0]), rows[0].int64_required(23), rows[0].int64_required(24),
								rows[0].int64(25)};
}

// The plan that applies to `user_id` at `at` and until when it may hold
// unchanged: one load of the subscription current at `at` and one
// projection, shared by effective_plan (through _entitled_plan_id), the
// quota cache's fill (glue/quota_trigger.cpp) and _entitlement_changes_at.
Entitlement
billing::glue::EntitlementAt(Spi &spi, const std::string &user_id, Micros at)
{
	Entitlement result;
	if (std::optional<SubscriptionAtResult> found = SubscriptionAt(spi, user_id, at)) {
		const Subscription *sub = &found->sub;
		Micros grace = found->grace;
		// the core's rule: an ended subscription, or a time before the
		// current one's latest change, is judged by its history at `at`
		std::optional<Row> state;
		if (JudgedByHistory(*sub, found->latest_change, at)) {
			auto h = spi.Query(
				"SELECT h.plan_id, h.status::pg_catalog.text, billing._micros(h.current_period_start),"
				" billing._micros(h.current_period_end), billing._micros(h.trial_end), billing._micros(h.grace_end),"
				" billing._micros(CASE WHEN pg_catalog.isfinite(h.valid_to) THEN LEAST(h.valid_to, h.ended_at)"
				"   ELSE h.ended_at END),"
				" COALESCE(h.cancel_at_period_end, false)"
				" FROM billing.subscription_history h WHERE h.subscription_id OPERATOR(pg_catalog.=) $1"
				" AND h.valid_from OPERATOR(pg_catalog.<=) $2 AND h.valid_to OPERATOR(pg_catalog.>) $2 AND NOT h.removed"
				" AND h.deleted_at IS NULL ORDER BY h.valid_from DESC, h.id DESC LIMIT 1",
				{SqlArg::Int64(sub->id), SqlArg::Timestamp(ToPgTime(at))});
			if (!h.empty() && !h[0].is_null(1) && !h[0].is_null(2))
				state = h[0];
		}
		if (sub->Ended() || state) {
			// asked about a time before its end (review H1: by its final row,
			// expired with the period it ended in, a past date lost the plan
			// the user had then once maintenance ended the subscription) or
			// before the current one's latest change (review R1: a later
			// pause, resume or first payment rewrote the date): judged by the
			// state its history holds at `at`, ending no later than that
			// state did; without history (a transaction older than the write
			// that ended it), an ended one by its stored row, a current one
			// by the projection below
			Subscription then = *sub;
			if (state) {
				const Row *h = &*state;
				then.plan_id = h->int64(0).value_or(sub->plan_id);
				then.status = ParseStatus(h->text_required(1));
				then.period_start = h->int64_required(2);
				then.period_end = h->int64(3);
				then.trial_end = h->int64(4);
				then.past_due_since.reset();
				if (std::optional<Micros> grace_end = h->int64(5))
					then.past_due_since = *grace_end - grace;
				if (std::optional<Micros> until = h->int64(6))
					then.ended_at = std::min(*until, sub->ended_at.value_or(*until));
				then.cancel_at_period_end = h->boolean(7);
			}
			if (GrantsAt(then, at, grace))
				result.plan_id = then.plan_id;
			result.changes_at = EndedEntitlementChange(then, at, grace);
		} else {
			// Its open invoices are read only when it has some (unpaid_due_at,
			// read by the same statement as the subscription). (Its plans
			// joined to that statement cost more than their own statements:
			// a wide row through two more nested loops; callgrind, per first
			// participant: 0.89 M instructions joined, 0.79 M apart.)
			Book book;
			if (sub->unpaid_due_at)
				book = LoadBook(spi, *sub, found->credit_cents);
			else
				book = Book{*sub, {}, found->credit_cents};
			billing::Plan plan = LoadPlanById(spi, sub->plan_id);
			std::optional<billing::Plan> scheduled;
			if (sub->scheduled_plan_id)
				scheduled = LoadPlanById(spi, *sub->scheduled_plan_id);
			Projection projection = Project(book, plan, scheduled, at, grace);
			result.plan_id = EntitledPlanId(projection, at, grace);
			result.changes_at = NextEntitlementChange(projection, at, grace);
		}
	} else {
		// None at `at`: Free until the user's next subscription starts (one
		// written after `at` by a transaction newer than the asker's).
		auto next = spi.Query("SELECT billing._micros(pg_catalog.min(s.started_at)) FROM billing.subscriptions s"
							  " WHERE s.user_id OPERATOR(pg_catalog.=) $1 AND s.deleted_at IS NULL"
							  " AND s.started_at OPERATOR(pg_catalog.>) $2",
							  {SqlArg::Text(user_id), SqlArg::Timestamp(ToPgTime(at))});
		result.changes_at = next.at(0).int64(0);
	}
	if (!result.plan_id) {
		auto free = spi.Query("SELECT p.id FROM billing.subscription_plans p WHERE p.code OPERATOR(pg_catalog.=) 'free'");
		if (!free.empty())
			result.plan_id = free[0].int64_required(0);
	}
	return result;
}

// billing._entitled_plan_id(user_id, at): the id of the plan that applies to
// the user at `at` (billing.effective_plan returns its row), decided by the
// core: the subscription current at `at`, projected to `at` as if maintenance
// had run. A time before the current subscription started is answered from
// the subscription that was current then, as stored.
BILLING_FUNCTION(billing_entitled_plan_id)
{
	std::string user_id = TextArgRequired(fcinfo, 0, "user_id");
	Micros at = TimeArgRequired(fcinfo, 1, "at");
	Spi spi(Spi::Access::kReadOnly);  // declared STABLE
	Entitlement entitlement = EntitlementAt(spi, user_id, at);
	spi.Finish();
	if (!entitlement.plan_id)
		PG_RETURN_NULL();
	PG_RETURN_INT64(*entitlement.plan_id);
}

// billing._entitlement_changes_at(user_id, at): until when the quota cache may
// keep the limit of the plan effective at `at` (the core's
// NextEntitlementChange on the same projection; 'infinity' when nothing is due).
BILLING_FUNCTION(billing_entitlement_changes_at)
{
	std::string user_id = TextArgRequired(fcinfo, 0, "user_id");
	Micros at = TimeArgRequired(fcinfo, 1, "at");
	Spi spi(Spi::Access::kReadOnly);  // declared STABLE
	Entitlement entitlement = EntitlementAt(spi, user_id, at);
	spi.Finish();
	PG_RETURN_TIMESTAMPTZ(entitlement.changes_at ? ToPgTime(*entitlement.changes_at) : DT_NOEND);
}

// billing._grants_plan_core(status, trial_end, period_end, grace_end, at): the
// core's GrantsAt, so that a test can compare billing._grants_plan with it.
BILLING_FUNCTION(billing_grants_plan_core)
{
	auto optional_time = [&](int n) -> std::optional<Micros> {
		if (PG_ARGISNULL(n))
			return std::nullopt;
		return TimeArgRequired(fcinfo, n, "time");
	};
	Subscription sub;
	sub.status = ParseStatus(TextArgRequired(fcinfo, 0, "status"));
	sub.trial_end = optional_time(1);
	sub.period_end = optional_time(2);
	sub.past_due_since = optional_time(3);  // the grace end itself: grace 0
	Micros at = TimeArgRequired(fcinfo, 4, "at");
	sub.started_at = kFirstTime;
	PG_RETURN_BOOL(GrantsAt(sub, at, 0));
}

BILLING_FUNCTION(billing_record_payment)
{
	int64_t amount = Int64ArgRequired(fcinfo, 1, "amount_cents");
	std::string currency = NormalizeCurrency(TextArgRequired(fcinfo, 2, "currency"));
	bool succeeded = BoolArgRequired(fcinfo, 3, "succeeded");
	Micros at = TimeArgRequired(fcinfo, 4, "at");
	std::optional<std::string> external_id = TextArgOptional(fcinfo, 5);
	RequirePaymentAmount(amount, succeeded);
	if (external_id && external_id->empty())
		throw InvalidParameter("external id must not be empty");
	if (external_id && external_id->size() > kMaxKeyBytes)
		throw InvalidParameter("external id is too long", "At most " + std::to_string(kMaxKeyBytes) + " bytes.");

	Spi spi;
	int64_t id = Int64ArgRequired(fcinfo, 0, "subscription_id");
	// The payment stored under `external_id`, if any (the unique index covers
	// every row, deleted or not).
	auto recorded_with_external_id = [&]() -> std::optional<RecordedPayment> {
		auto seen = spi.Query("SELECT id, subscription_id, amount_cents, currency, status OPERATOR(pg_catalog.=) 'succeeded'"
							  " FROM billing.payments WHERE external_id OPERATOR(pg_catalog.=) $1",
							  {SqlArg::Text(*external_id)});
		if (seen.empty())
			return std::nullopt;
		return RecordedPayment{seen[0].int64_required(0), seen[0].int64(1).value_or(0), seen[0].int64_required(2),
							   seen[0].text_required(3), seen[0].boolean(4)};
	};
	if (external_id) {
		Subscription peek = LoadSubscription(spi, id, false);
		LockUser(spi, peek.user_id);
		if (std::optional<RecordedPayment> recorded = recorded_with_external_id()) {
			RequireSameAsRecorded(*external_id, *recorded, id, amount, currency, succeeded);
			return ReturnSubscription(spi, id, peek.user_id);  // the same payment again: stored once
		}
	}
	std::optional<InPlaceChange> in_place;
	Subscription sub = LockedSubscriptionArg(spi, fcinfo, at, &in_place);
	if (currency != sub.currency)
		throw InvalidParameter("payment currency \"" + currency + "\" does not match the subscription",
							   "Subscription " + std::to_string(sub.id) + " is billed in \"" + sub.currency + "\".");
	billing::Plan plan = LoadPlanById(spi, sub.plan_id);
	auto load_open = [&] {
		std::vector<OpenInvoice> open;
		for (const auto &row : spi.Query("SELECT id, amount_due_cents FROM billing.invoices WHERE subscription_id OPERATOR(pg_catalog.=) $1"
										 " AND status OPERATOR(pg_catalog.=) 'open' AND deleted_at IS NULL ORDER BY issued_at, id FOR UPDATE",
										 {SqlArg::Int64(sub.id)}))
			open.push_back({row.int64_required(0), row.int64_required(1)});
		return open;
	};
	std::vector<OpenInvoice> open = load_open();
	RequirePayable(sub, plan, !open.empty(), at, succeeded);
	Outcome out;
	if (succeeded && sub.status == Status::kTrialing && !sub.stripe_managed) {
		// A trial converts when credit and this payment cover the first period:
		// its invoice is issued first (credit applies), then this payment pays it.
		int64_t credit = CreditBalance(spi, sub.user_id, currency);
		out = PaymentSucceeded(sub, plan, at, false, CheckedAdd(credit, amount));
		// the balance read above is the one its invoice is issued against
		Persisted converted = PersistOutcome(spi, out, at, nullptr, credit);
		if (out.successor || out.fall_back_to_free || out.updated.id != sub.id)
			in_place.reset();  // (its invoice is read again below, with the row)
		// Nothing was open and the outcome only rewrote the subscription and
		// issued its invoice: what is open now is that invoice unless it was
		// issued paid, as written (and locked: this transaction inserted it).
		// Otherwise read again.
		bool open_known = open.empty() && !out.successor && !out.fall_back_to_free && out.updated.id == sub.id &&
						  !out.void_reason && out.open_invoices_due_later == 0 &&
						  out.invoice.has_value() == converted.invoice_id.has_value();
		if (open_known && converted.invoice_id && !converted.invoice_settled)
			open.push_back({*converted.invoice_id, converted.invoice_due_cents});
		out = Outcome();
		if (!open_known)
			open = load_open();
	}

	Settlement settlement;
	if (succeeded)
		settlement = SettlePayment(open, amount);
	std::optional<int64_t> first_invoice;
	if (!settlement.to_invoices.empty())
		first_invoice = settlement.to_invoices.front().invoice_id;
	static const std::string insert_payment = AuditedChange(
		"'payments'", false,
		"changed AS (INSERT INTO billing.payments (user_id, subscription_id, invoice_id, amount_cents, currency, status,"
		" external_id, failure_code, paid_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
		" ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING RETURNING *)",
		"SELECT id FROM changed");
	auto payment = RunAudited(spi, "payments", insert_payment,
		{SqlArg::Text(sub.user_id), SqlArg::Int64(sub.id), SqlArg::Int64(first_invoice), SqlArg::Int64(amount),
		 SqlArg::Text(currency), SqlArg::Text(std::string(succeeded ? "succeeded" : "failed")), SqlArg::Text(external_id),
		 succeeded ? SqlArg::Null(TEXTOID) : SqlArg::Text(std::string("payment_failed")), SqlArg::Timestamp(ToPgTime(at))});
	if (payment.empty()) {
		// Another user's transaction committed the same external id after our
		// check (the user lock does not serialise different users): the same
		// answer as sequentially, not the unique index's 23505.
		if (std::optional<RecordedPayment> recorded = recorded_with_external_id())
			RequireSameAsRecorded(*external_id, *recorded, sub.id, amount, currency, succeeded);
		throw InvalidParameter("external id \"" + external_id.value_or("") + "\" was recorded by a concurrent payment");
	}
	int64_t payment_id = payment.at(0).int64_required(0);

	Subscription stored;  // the row as stored when the last outcome is decided
	if (succeeded) {
		// Open invoices oldest first, the rest to the customer's credit balance.
		size_t settled = 0;
		for (const Allocation &a : settlement.to_invoices) {
			// the invoice's update, its audit row and the payment's ledger
			// entry for it (LedgerEntry's row, written when the amount is
			// positive) in one statement
			static const std::string pay_invoice = AuditedChange(
				"'invoices'", true,
				"before AS (SELECT i.* FROM billing.invoices i WHERE i.id OPERATOR(pg_catalog.=) $1),"
				" changed AS (UPDATE billing.invoices SET amount_paid_cents = amount_paid_cents OPERATOR(pg_catalog.+) $2,"
				" amount_due_cents = amount_due_cents OPERATOR(pg_catalog.-) $2,"
				" status = CASE WHEN $4 THEN 'paid' ELSE status END,"
				" paid_at = CASE WHEN $4 THEN $3 ELSE paid_at END WHERE id OPERATOR(pg_catalog.=) $1 RETURNING *),"
				" ledger AS (INSERT INTO billing.ledger_entries (user_id, currency, kind, amount_cents, payment_id, invoice_id, at)"
				" SELECT $5, $6, 'payment_to_invoice', $2, $7, $1, $3 WHERE $2 OPERATOR(pg_catalog.>) 0)",
				"SELECT FROM changed");
			RunAudited(spi, "invoices", pay_invoice,
					   {SqlArg::Int64(a.invoice_id), SqlArg::Int64(a.amount_cents), SqlArg::Timestamp(ToPgTime(at)),
						SqlArg::Bool(a.settles), SqlArg::Text(sub.user_id), SqlArg::Text(currency), SqlArg::Int64(payment_id)});
			settled += a.settles ? 1 : 0;
		}
		LedgerEntry(spi, sub.user_id, currency, "payment_to_credit", settlement.to_credit_cents, payment_id,
					std::nullopt, at);
		Subscription now = LoadSubscription(spi, sub.id, true);
		stored = now;
		// The core reads the credit balance only for a trial still running.
		int64_t credit = now.status == Status::kTrialing ? CreditBalance(spi, sub.user_id, currency) : 0;
		out = PaymentSucceeded(now, plan, at, settled < open.size(), credit);
		if (now.status == Status::kTrialing)
			out.invoice.reset();  // still short of the first period: held as credit
	} else {
		out = PaymentFailed(sub, at, !open.empty());
		out.notifications.clear();  // keyed by the payment below
		stored = sub;
	}
	Persisted saved = PersistOutcome(spi, out, at, &stored);
	if (!succeeded)
		Notify(spi, sub.user_id, sub.id, "payment_failed", "payment_failed:" + std::to_string(payment_id), at);
	// `stored` was read after the payment's invoice writes (or, failed, has
	// the invoices as loaded): the outcome's row carries their unpaid due date
	if (in_place && WritesOnlyInPlace(out))
		in_place->after = out.updated;
	else
		in_place.reset();
	return ReturnSubscription(spi, saved.subscription_id, sub.user_id, in_place ? &*in_place : nullptr);
}

// What payment `payment_id` has on each invoice of `status` it paid, newest
// first: its own money, plus what the invoice took of its credit (`lots`,
// from CreditOf), net of what its refunds took off the invoice or were
// recorded against it; the invoices are locked.
std::vector<Allocation>
PaymentOnInvoices(Spi &spi, int64_t payment_id, const char *status, const std::vector<Allocation> &lots = {})
{
	std::vector<std::optional<int64_t>> lot_invoice, lot_cents;
	for (const Allocation &lot : lots) {
		lot_invoice.push_back(lot.invoice_id);
		lot_cents.push_back(lot.amount_cents);
	}
	std::vector<Allocation> placed;
	for (const auto &r : spi.Query(
			 // driven by the payment's invoices (its ledger entries, its credit's
			 // lots), each found by its key: never a scan of all invoices
			 "WITH d AS (SELECT e.invoice_id, pg_catalog.sum(e.amount_cents) AS cents FROM billing.ledger_entries e"
			 "   WHERE e.payment_id OPERATOR(pg_catalog.=) $1 AND e.kind OPERATOR(pg_catalog.=) 'payment_to_invoice'"
			 "   AND e.deleted_at IS NULL GROUP BY 1),"
			 " l AS (SELECT u.invoice_id, pg_catalog.sum(u.cents) AS cents"
			 "   FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.int8[]), pg_catalog.unnest($4::pg_catalog.int8[])) AS u(invoice_id, cents)"
			 "   GROUP BY 1),"
			 " b AS (SELECT e.invoice_id, pg_catalog.sum(e.amount_cents) AS cents FROM billing.ledger_entries e"
			 "   WHERE e.kind OPERATOR(pg_catalog.=) ANY ('{refund_from_invoice,refund_of_paid_invoice,credit_refunded}'::pg_catalog.text[])"
			 "   AND e.invoice_id IS NOT NULL"
			 "   AND e.deleted_at IS NULL AND e.payment_id OPERATOR(pg_catalog.=) ANY"
			 "     (SELECT r.id FROM billing.payments r WHERE r.refund_of OPERATOR(pg_catalog.=) $1)"
			 "   GROUP BY 1)"
			 " SELECT i.id, (COALESCE(d.cents, 0) OPERATOR(pg_catalog.+) COALESCE(l.cents, 0)"
			 "   OPERATOR(pg_catalog.-) COALESCE(b.cents, 0))::pg_catalog.int8"
			 " FROM (SELECT d.invoice_id FROM d UNION SELECT l.invoice_id FROM l) c"
			 " JOIN billing.invoices i ON i.id OPERATOR(pg_catalog.=) c.invoice_id"
			 " LEFT JOIN d ON d.invoice_id OPERATOR(pg_catalog.=) i.id"
			 " LEFT JOIN l ON l.invoice_id OPERATOR(pg_catalog.=) i.id"
			 " LEFT JOIN b ON b.invoice_id OPERATOR(pg_catalog.=) i.id"
			 " WHERE i.status OPERATOR(pg_catalog.=) $2 AND i.deleted_at IS NULL"
			 " ORDER BY i.issued_at DESC, i.id DESC FOR UPDATE OF i",
			 {SqlArg::Int64(payment_id), SqlArg::Text(status), SqlArg::Int64Array(lot_invoice),
			  SqlArg::Int64Array(lot_cents)}))
		placed.push_back({r.int64_required(0), r.int64_required(1), false});
	return placed;
}

// How far maintenance has run (the latest ran_to), for a refund that may
// reopen an invoice (CreditLineTakenBack's maintained_to), ordered with every
// maintenance run (attack finding 3.3): a run records its point when it
// starts and holds the fence (MaintenanceFence) in ROW EXCLUSIVE until it
// commits, if it is free; this SHARE lock on the fence waits for every such
// run in progress to commit (runs stay compatible with each other, refunds
// too). A run starting while this refund holds it does not wait (attack
// finding 4.1) and records its point all the same; it does not see this
// refund's invoice, dated from the point before, which the next run duns.
// In READ COMMITTED the read after the lock sees the committed runs. Under REPEATABLE READ or SERIALIZABLE the transaction's
// snapshot may predate a run that committed since: the same read with the
// newest snapshot says so, and the refund fails with 40001 rather than date
// the invoice before a point a committed run passed. Only a refund that
// reopens an invoice gets here (two index probes); it took the lock already,
// before its row locks (LockUserForRefund), so the lock here finds it held.
std::optional<Micros>
MaintainedTo(Spi &spi)
{
	static const char *const ran_to = "SELECT billing._micros(pg_catalog.max(r.ran_to)) FROM billing.maintenance_runs r"
									  " WHERE r.deleted_at IS NULL";
	PgCall([] { LockDatabaseObject(RelationRelationId, MaintenanceFence(), 0, ShareLock); });
	std::optional<Micros> seen = spi.Query(ran_to).at(0).int64(0);
	if (!IsolationUsesXactSnapshot())
		return seen;
	PgCall([] { PushActiveSnapshot(GetLatestSnapshot()); });
	std::optional<Micros> newest;
	{
		Spi latest(Spi::Access::kReadOnly);  // its query runs on the active snapshot
		newest = latest.Query(ran_to).at(0).int64(0);
		latest.Finish();
	}
	PgCall([] { PopActiveSnapshot(); });
	if (newest != seen)
		throw Error("40001", "could not serialize access due to a concurrent maintenance run",
					"A maintenance run committed after this transaction's snapshot; the refund reopens an invoice "
					"due after how far maintenance has run.",
					"Retry the transaction.");
	return seen;
}

// What a refund takes back besides the cash (billing::TakeBackForRefund),
// written as ledger entries on the refund: the one home of the refund rule
// for billing.refund and Stripe's charge.refunded. Called with the user's
// lock and the payment's row lock held, once the refund row is inserted.
void
billing::glue::TakeBackForRefundOf(Spi &spi, int64_t payment_id, int64_t refund_id, const std::string &user_id,
								   const std::string &currency, int64_t amount, Micros at)
{
	// Under REPEATABLE READ or SERIALIZABLE the reads below use the
	// transaction's snapshot, so serialise with every other movement of the
	// user's credit: a refund writes the user's lock row (an operation after
	// it, locking that row, then fails with 40001 instead of reading a balance
	// without it), and locks the current subscription, which every other
	// movement writes, or the lock row when it leaves the subscription as it
	// is (a refund after one fails with 40001 the same way).
	spi.Execute("UPDATE billing.user_locks SET updated_at = pg_catalog.now() WHERE user_id OPERATOR(pg_catalog.=) $1",
				{SqlArg::Text(user_id)});
	spi.Query("SELECT FROM billing.subscriptions s WHERE s.user_id OPERATOR(pg_catalog.=) $1 AND s.ended_at IS NULL"
			  " AND s.deleted_at IS NULL FOR UPDATE",
			  {SqlArg::Text(user_id)});
	// The user's credit movements in ledger order, for CreditOf: what
	// a void returned belongs to the payments that had paid the invoice (one
	// row per payment), a take-back to the payment refunded.
	std::vector<CreditMovement> movements;
	std::optional<int64_t> last_entry;
	for (const auto &r : spi.Query(
			 "SELECT e.id, e.kind, e.amount_cents, e.payment_id, r.refund_of, o.payment_id, o.net, e.invoice_id"
			 " FROM billing.ledger_entries e"
			 " LEFT JOIN billing.payments r ON r.id OPERATOR(pg_catalog.=) e.payment_id"
			 "   AND e.kind OPERATOR(pg_catalog.=) ANY ('{credit_refunded,deleted_user_credit_refunded}'::pg_catalog.text[])"
			 " LEFT JOIN LATERAL (SELECT COALESCE(b.refund_of, f.payment_id) AS payment_id,"
			 "     pg_catalog.sum(CASE WHEN f.kind OPERATOR(pg_catalog.=) 'payment_to_invoice' THEN f.amount_cents"
			 "       ELSE OPERATOR(pg_catalog.-) f.amount_cents END)::pg_catalog.int8 AS net"
			 "   FROM billing.ledger_entries f LEFT JOIN billing.payments b ON b.id OPERATOR(pg_catalog.=) f.payment_id"
			 "     AND f.kind OPERATOR(pg_catalog.=) 'refund_from_invoice'"
			 "   WHERE e.kind OPERATOR(pg_catalog.=) 'void_to_credit' AND f.invoice_id OPERATOR(pg_catalog.=) e.invoice_id"
			 "   AND f.kind OPERATOR(pg_catalog.=) ANY ('{payment_to_invoice,refund_from_invoice}'::pg_catalog.text[])"
			 "   AND f.deleted_at IS NULL GROUP BY 1) o ON o.net OPERATOR(pg_catalog.>) 0"
			 " WHERE e.user_id OPERATOR(pg_catalog.=) $1 AND e.currency OPERATOR(pg_catalog.=) $2 AND e.deleted_at IS NULL"
			 " AND e.kind OPERATOR(pg_catalog.=) ANY"
			 "   ('{payment_to_credit,proration_credit,void_to_credit,credit_to_invoice,credit_refunded,"
			 "credit_to_deleted_user,deleted_user_credit_refunded}'::pg_catalog.text[])"
			 " ORDER BY e.id, o.payment_id",
			 {SqlArg::Text(user_id), SqlArg::Text(currency)})) {
		int64_t entry = r.int64_required(0);
		std::string kind = r.text_required(1);
		if (last_entry == entry) {  // another payment of the same void
			movements.back().owners.emplace_back(r.int64_required(5), r.int64_required(6));
			continue;
		}
		last_entry = entry;
		CreditMovement m;
		m.amount_cents = r.int64_required(2);
		if (kind == "credit_to_invoice") {
			m.kind = CreditMovement::Kind::kSpend;
			m.invoice_id = r.int64(7).value_or(0);
		} else if (kind == "credit_refunded") {
			m.kind = CreditMovement::Kind::kTakeBack;
			m.for_payment = r.int64(4).value_or(0);
		} else if (kind == "credit_to_deleted_user") {
			m.kind = CreditMovement::Kind::kLeaveWithUser;  // the whole balance: every lot, owed to them
		} else if (kind == "deleted_user_credit_refunded") {
			m.kind = CreditMovement::Kind::kOwedRefunded;
			m.for_payment = r.int64(4).value_or(0);
		} else if (kind == "payment_to_credit")
			m.owners.emplace_back(r.int64_required(3), m.amount_cents);
		else if (!r.is_null(5))
			m.owners.emplace_back(r.int64_required(5), r.int64_required(6));
		movements.push_back(std::move(m));
	}
	int64_t credit_balance = CreditBalance(spi, user_id, currency);
	PaymentCredit credit = CreditOf(payment_id, movements);
	int64_t payment_credit = std::min({amount, credit.unspent, credit_balance});
	// The invoices the payment paid that are still open, newest first, with
	// what it has on each net of earlier refunds.
	std::vector<Allocation> placed = PaymentOnInvoices(spi, payment_id, "open");
	// Every open invoice of the user, newest first, with what a void would return.
	std::vector<HeldInvoice> open;
	for (const auto &r : spi.Query(
			 "SELECT i.id, i.amount_paid_cents, i.credit_applied_cents FROM billing.invoices i"
			 " WHERE i.user_id OPERATOR(pg_catalog.=) $1 AND i.currency OPERATOR(pg_catalog.=) $2"
			 " AND i.status OPERATOR(pg_catalog.=) 'open' AND i.deleted_at IS NULL"
			 " ORDER BY i.issued_at DESC, i.id DESC FOR UPDATE OF i",
			 {SqlArg::Text(user_id), SqlArg::Text(currency)}))
		open.push_back({r.int64_required(0), r.int64_required(1), r.int64_required(2)});
	// paid net, the new refund included
	auto net = spi.Query(kPaidNet, {SqlArg::Text(user_id), SqlArg::Text(currency)});
	// The paid invoices the payment paid, with its money or its credit,
	// newest first, net of what earlier refunds of it were recorded against.
	std::vector<Allocation> paid_placed = PaymentOnInvoices(spi, payment_id, "paid", credit.spent_on);
	// A deleted user's payment: its credit left the id with them and is owed
	// to them (credit_to_deleted_user); the core takes the refund's credit
	// part from there (attack finding 3.2).
	RefundTakeBack back = TakeBackForRefund(amount, payment_credit, placed, open, credit_balance,
											net.at(0).int64_required(0) + amount, paid_placed,
											credit.owed);
	// A period refunded after an upgrade already credited its unused time:
	// that credit line comes down to what the upgrade would have credited had
	// the refund come first (UpgradeCreditTakenBack), on an invoice still
	// open, or one the line itself settled (its total was not positive: the
	// customer paid nothing toward it), and the invoice owes the difference
	// (the latter reopens if its total becomes positive, due anew, or is void
	// if its subscription has ended: CreditLineTakenBack). The upgrade's
	// invoice is the one the direct successor (the next subscription of the
	// user, started when this one ended) was issued at that moment; its credit
	// line is its first. Read before anything is written: the bound's take
	// from a balance such a line settled is recorded against the period.
	std::vector<std::optional<int64_t>> refunded_invoices;
	for (const Allocation &of : back.of_paid)
		refunded_invoices.push_back(of.invoice_id);
	static const std::string upgraded =
		"SELECT s.id, u.id, OPERATOR(pg_catalog.-) (u.lines OPERATOR(pg_catalog.->) 0"
		"   OPERATOR(pg_catalog.->>) 'amount_cents')::pg_catalog.int8, u.status OPERATOR(pg_catalog.=) 'paid', u.total_cents,"
		" u.amount_due_cents, billing._micros(u.issued_at), billing._micros(u.due_at), n.id, n.ended_at IS NOT NULL,"
		" n.end_reason, n.stripe_subscription_id IS NOT NULL,"
		" (SELECT pg_catalog.max(i.id) FROM billing.invoices i WHERE i.id OPERATOR(pg_catalog.=) ANY ($1)"
		"   AND i.subscription_id OPERATOR(pg_catalog.=) s.id)"
		" FROM billing.subscriptions s"
		" CROSS JOIN LATERAL (SELECT n.id, n.ended_at, n.end_reason, n.stripe_subscription_id FROM billing.subscriptions n"
		"   WHERE n.user_id OPERATOR(pg_catalog.=) s.user_id"
		"   AND n.started_at OPERATOR(pg_catalog.=) s.ended_at AND n.id OPERATOR(pg_catalog.>) s.id ORDER BY n.id LIMIT 1) n"
		" JOIN billing.invoices u ON u.subscription_id OPERATOR(pg_catalog.=) n.id"
		"   AND u.billing_reason OPERATOR(pg_catalog.=) 'subscription_update' AND u.issued_at OPERATOR(pg_catalog.=) s.ended_at"
		"   AND (u.status OPERATOR(pg_catalog.=) 'open' OR (u.status OPERATOR(pg_catalog.=) 'paid'"
		"     AND u.total_cents OPERATOR(pg_catalog.<=) 0)) AND u.deleted_at IS NULL"
		" WHERE s.id OPERATOR(pg_catalog.=) ANY (SELECT i.subscription_id FROM billing.invoices i"
		"   WHERE i.id OPERATOR(pg_catalog.=) ANY ($1))"
		" AND s.end_reason OPERATOR(pg_catalog.=) 'plan_changed' AND s.deleted_at IS NULL"
		" ORDER BY s.id FOR UPDATE OF u";
	struct UpgradedLine {
		int64_t ended_id, invoice_id, credited, successor_id, period_invoice_id;
		UpgradeInvoice invoice;
		bool due_null, successor_ended, stripe_managed;
		std::optional<std::string> end_reason;
		int64_t bound_took = 0;
	};
	std::vector<UpgradedLine> lines;
	if (!back.of_paid.empty())
		for (const auto &r : spi.Query(upgraded, {SqlArg::Int64Array(refunded_invoices)}))
			lines.push_back({r.int64_required(0), r.int64_required(1), r.int64(2).value_or(0), r.int64_required(8),
							 r.int64_required(12),
							 UpgradeInvoice{!r.boolean(3), r.int64_required(4), r.int64_required(5), r.int64_required(6),
											r.int64(7).value_or(r.int64_required(6) + kInvoiceDueAfter)},
							 r.is_null(7), r.boolean(9), r.boolean(11), r.text(10)});
	// What the conservation bound took of a balance part a line had put there
	// was refunded of the replaced period (review R3 variant): recorded
	// against the period's invoice, the rest of the take-back against none.
	int64_t excess_left = back.excess_credit_cents, of_periods = 0;
	for (UpgradedLine &line : lines) {
		line.bound_took = BoundTakeOfLine(line.invoice, excess_left);
		excess_left -= line.bound_took;
		of_periods += line.bound_took;
	}
	LedgerEntry(spi, user_id, currency, "credit_refunded", back.credit_cents - of_periods, refund_id, std::nullopt, at);
	// paid back as this refund's cash: owed to the deleted customer no more
	LedgerEntry(spi, user_id, currency, "deleted_user_credit_refunded", back.owed_credit_cents, refund_id, std::nullopt,
				at);
	for (const UpgradedLine &line : lines)
		LedgerEntry(spi, user_id, currency, "credit_refunded", line.bound_took, refund_id, line.period_invoice_id, at);
	// What leaves an open invoice is owed again.
	for (const Allocation &off : back.paid_off) {
		spi.Execute("UPDATE billing.invoices SET amount_paid_cents = amount_paid_cents OPERATOR(pg_catalog.-) $2,"
					" amount_due_cents = amount_due_cents OPERATOR(pg_catalog.+) $2 WHERE id OPERATOR(pg_catalog.=) $1",
					{SqlArg::Int64(off.invoice_id), SqlArg::Int64(off.amount_cents)});
		LedgerEntry(spi, user_id, currency, "refund_from_invoice", off.amount_cents, refund_id, off.invoice_id, at);
	}
	for (const Allocation &off : back.credit_off) {
		spi.Execute("UPDATE billing.invoices SET credit_applied_cents = credit_applied_cents OPERATOR(pg_catalog.-) $2,"
					" amount_due_cents = amount_due_cents OPERATOR(pg_catalog.+) $2 WHERE id OPERATOR(pg_catalog.=) $1",
					{SqlArg::Int64(off.invoice_id), SqlArg::Int64(off.amount_cents)});
		LedgerEntry(spi, user_id, currency, "refund_credit_from_invoice", off.amount_cents, refund_id, off.invoice_id,
					at);
	}
	// What paid invoices were paid with: they stay paid; recorded so that an
	// upgrade does not credit the refunded time (RefundedForPeriod).
	for (const Allocation &of : back.of_paid)
		LedgerEntry(spi, user_id, currency, "refund_of_paid_invoice", of.amount_cents, refund_id, of.invoice_id, at);
	// The lines were read before the take-back above: what it took off an
	// upgrade invoice still open (its payments' money, the credit it took) is
	// owed again on top of what the line's reduction adds (session 10, L2: the
	// line's update wrote the amount due read before, 25801 short)
	for (UpgradedLine &line : lines)
		for (const std::vector<Allocation> *taken : {&back.paid_off, &back.credit_off})
			for (const Allocation &off : *taken)
				if (off.invoice_id == line.invoice_id)
					line.invoice.amount_due_cents += off.amount_cents;
	int64_t balance_left = credit_balance - back.credit_cents;
	// how far maintenance has run: a reopened invoice falls due after it
	std::optional<Micros> maintained_to;
	if (!lines.empty())
		maintained_to = MaintainedTo(spi);
	for (const UpgradedLine &line : lines) {
		Subscription ended = LoadSubscription(spi, line.ended_id, false);
		int64_t invoice_id = line.invoice_id;
		int64_t credited = line.credited;
		bool settled_by_line = !line.invoice.open;
		// what refunds took back of the period, this one's included (its
		// bound's take from the balance the line settled too: recorded above)
		int64_t refunded = RefundedForPeriod(spi, ended);
		int64_t off = UpgradeCreditTakenBack(ended, credited, refunded, PausedInPeriod(spi, ended, *ended.ended_at));
		if (off <= 0)
			continue;
		// What the line settled beyond the charge went to the credit balance
		// (proration_credit); the refund's conservation bound takes it back
		// from there. What the invoice becomes is the core's.
		// A successor Stripe has adopted is billed by Stripe: billing neither
		// duns nor collects its own invoice there, so nothing would settle it
		// either (review Y3): void, as the adoption voided billing's own.
		bool stripe_managed = line.stripe_managed;
		UpgradeInvoiceChange change = CreditLineTakenBack(line.invoice, off, line.successor_ended || stripe_managed, at,
															maintained_to);
		// written open when void: VoidOpenInvoices below voids it as the end would have
		bool to_void = change.status == InvoiceStatus::kVoid;
		spi.Execute(
			"UPDATE billing.invoices SET lines = pg_catalog.jsonb_set(lines, '{0,amount_cents}',"
			" pg_catalog.to_jsonb(OPERATOR(pg_catalog.-) $2::pg_catalog.int8)),"
			" subtotal_cents = $3, total_cents = $3, amount_due_cents = $4, status = $5, due_at = $6,"
			" paid_at = CASE WHEN $5 OPERATOR(pg_catalog.=) 'paid' THEN paid_at END"
			" WHERE id OPERATOR(pg_catalog.=) $1",
			{SqlArg::Int64(invoice_id), SqlArg::Int64(credited - off),
			 SqlArg::Int64(change.total_cents), SqlArg::Int64(to_void ? change.total_cents : change.amount_due_cents),
			 SqlArg::Text(std::string(to_void ? "open" : ToString(change.status))),
			 // an invoice without a due date (Stripe chases it) keeps none unless it reopens
			 TimeArg(line.due_null && !change.reopened ? std::nullopt : std::optional<Micros>(change.due_at))});
		LedgerEntry(spi, user_id, currency, "refund_credit_line_from_invoice", off, refund_id, invoice_id, at);
		// the part of the balance the line had put there goes with it (review
		// R3), named by the invoice, not the refund: it is no part of the
		// refund's amount (the refund returns cash; this undoes proration
		// credit), and CreditOf takes it from nobody's lots first, as the line
		// put it there
		if (settled_by_line) {
			int64_t rest = LineRestTakenBack(line.invoice.total_cents, off, line.bound_took, balance_left);
			LedgerEntry(spi, user_id, currency, "credit_refunded", rest, std::nullopt, invoice_id, at);
			balance_left -= rest;
		}
		// owed again: dunning may now end the plan before the limit a quota
		// counter cached (its bound came from a projection without this invoice)
		if (change.reopened)
			InvalidateUsersQuota(spi, {user_id}, false);
		if (to_void)
			VoidOpenInvoices(spi, line.successor_id,
							 stripe_managed && !line.successor_ended ? std::string("plan_changed")
																	 : line.end_reason.value_or("canceled"),
							 at, stripe_managed);
	}
}

BILLING_FUNCTION(billing_refund)
{
	int64_t payment_id = Int64ArgRequired(fcinfo, 0, "payment_id");
	int64_t amount = Int64ArgRequired(fcinfo, 1, "amount_cents");
	Micros at = TimeArgRequired(fcinfo, 2, "at");
	if (amount <= 0)
		throw InvalidParameter("refund amount must be positive", "Amount given: " + std::to_string(amount) + ".");
	Spi spi;
	auto owner = spi.Query("SELECT user_id FROM billing.payments WHERE id OPERATOR(pg_catalog.=) $1 AND deleted_at IS NULL",
						   {SqlArg::Int64(payment_id)});
	if (owner.empty())
		throw InvalidParameter("payment " + std::to_string(payment_id) + " does not exist");
	// The user's lock: the credit balance a refund may take back from is read and
	// written under the same lock as every other movement of it.
	LockUserForRefund(spi, owner[0].text_required(0));
	// Refunds of one payment are serialised on its row. Updating it (not only
	// locking it) makes a concurrent refund under REPEATABLE READ or
	// SERIALIZABLE fail with a serialization error instead of reading a stale sum.
	auto rows = spi.Query(
		"UPDATE billing.payments p SET updated_at = pg_catalog.now() WHERE p.id OPERATOR(pg_catalog.=) $1 AND p.deleted_at IS NULL"
		" RETURNING p.amount_cents, p.status, p.refund_of IS NOT NULL, billing._micros(p.paid_at), p.user_id, p.currency",
		{SqlArg::Int64(payment_id)});
	if (rows.empty())
		throw InvalidParameter("payment " + std::to_string(payment_id) + " does not exist");
	int64_t paid = rows[0].int64_required(0);
	std::string user_id = rows[0].text_required(4), currency = rows[0].text_required(5);
	if (rows[0].boolean(2) || rows[0].text_required(1) != "succeeded")
		throw InvalidParameter("payment " + std::to_string(payment_id) + " cannot be refunded",
							   "Only succeeded payments that are not refunds themselves can be refunded.");
	// Read after the lock: a new statement sees every refund committed before it.
	auto refunded = spi.Query("SELECT COALESCE(OPERATOR(pg_catalog.-) pg_catalog.sum(r.amount_cents), 0)::bigint"
							  " FROM billing.payments r WHERE r.refund_of OPERATOR(pg_catalog.=) $1 AND r.deleted_at IS NULL",
							  {SqlArg::Int64(payment_id)});
	RequireRefund(payment_id, paid, refunded.at(0).int64_required(0), amount, rows[0].int64_required(3), at);
	auto inserted = spi.Query(
		"INSERT INTO billing.payments AS r (user_id, subscription_id, invoice_id, amount_cents, currency, status,"
		" refund_of, paid_at) SELECT p.user_id, p.subscription_id, p.invoice_id, OPERATOR(pg_catalog.-) $2, p.currency, 'succeeded', p.id, $3"
		" FROM billing.payments p WHERE p.id OPERATOR(pg_catalog.=) $1 RETURNING r.id",
		{SqlArg::Int64(payment_id), SqlArg::Int64(amount), SqlArg::Timestamp(ToPgTime(at))});
	int64_t refund_id = inserted.at(0).int64_required(0);
	TakeBackForRefundOf(spi, payment_id, refund_id, user_id, currency, amount, at);
	Datum row = spi.QueryRowDatum("SELECT r FROM billing.payments r WHERE r.id OPERATOR(pg_catalog.=) $1", {SqlArg::Int64(refund_id)});
	spi.Finish();
	return row;
}

BILLING_FUNCTION(billing_run_maintenance)
{
	RequireUpdatedExtension();
	ResultSet result(fcinfo);
	Micros at = TimeArgRequired(fcinfo, 0, "at");
	std::optional<int64_t> batch;
	if (!PG_ARGISNULL(1)) {
		batch = PG_GETARG_INT32(1);
		if (*batch <= 0)
			throw InvalidParameter("batch size must be positive");
	}
	Spi spi;
	SqlArg at_arg = SqlArg::Timestamp(ToPgTime(at));
	// How far maintenance runs, recorded first (every call, each batch of
	// run_maintenance_batches included), with the fence (MaintenanceFence)
	// held in ROW EXCLUSIVE until this run commits, which a refund that
	// reopens an invoice waits for (SHARE, MaintainedTo) before it reads
	// ran_to. So the reopened invoice falls due after this run's `at`
	// (attack finding 3.3: a run in progress was invisible to the refund).
	// Runs do not wait on each other (ROW EXCLUSIVE is self-compatible), and
	// a run never waits for a refund either: the fence is taken only if free
	// (attack finding 4.1: a refund left in an open transaction held SHARE
	// and stopped every run). A run that finds a reopening refund in
	// progress leaves that refund's user, busy, to the next run, and still
	// records its point (attack finding 5.1: a run that did not left every
	// later refund, of any user, dating its invoice from the point before,
	// one a committed run had passed, and the next run ended it back then).
	// The fence is not the table's lock, so the insert never waits.
	PgCall([&] { (void) ConditionalLockDatabaseObject(RelationRelationId, MaintenanceFence(), 0, RowExclusiveLock); });
	// Only the latest point is read (MaintainedTo: max(ran_to)), so a run
	// that records a new one deletes the points before it: the table stays
	// at a row or so (known limit until session 10: a row per run, for ever;
	// sql/104_limits_maintenance_runs). Rows a concurrent run holds are
	// skipped (runs never wait on each other) and left to the next run, as
	// under REPEATABLE READ, where deleting a row a run committed since the
	// snapshot would fail with 40001. The new point commits with the delete,
	// so a refund never reads a smaller maximum.
	if (spi.Execute("INSERT INTO billing.maintenance_runs (ran_to) SELECT $1 WHERE NOT EXISTS"
					" (SELECT FROM billing.maintenance_runs r WHERE r.ran_to OPERATOR(pg_catalog.>=) $1"
					" AND r.deleted_at IS NULL)",
					{at_arg}) > 0 &&
		!IsolationUsesXactSnapshot())
		spi.Execute("DELETE FROM billing.maintenance_runs d WHERE d.id OPERATOR(pg_catalog.=) ANY (ARRAY("
					"SELECT r.id FROM billing.maintenance_runs r WHERE r.ran_to OPERATOR(pg_catalog.<) $1"
					" FOR UPDATE SKIP LOCKED))",
					{at_arg});
	Micros grace = PastDueGrace(spi);
	std::map<std::string, int64_t> counts;
	std::map<int64_t, billing::Plan> plans;  // read once per call
	int64_t left = batch.value_or(INT64_MAX);
	for (const DuePhase &phase : kDuePhases) {
		// Keyset pagination: each page starts after the last row of the one
		// before, so it reads only its own index entries.
		TimestampTz after_due = DT_NOBEGIN;
		int64_t after_id = 0;
		// A grace reaching back before timestamptz's range makes nothing due.
		Micros by = at;
		if (phase.grace && (__builtin_sub_overflow(at, grace, &by) || by < ToCoreTime(MIN_TIMESTAMP)))
			continue;
		TimestampTz due_by = ToPgTime(by);
		while (left > 0) {
			int64_t limit = std::min<int64_t>(left, kMaintenancePage);
			// A nested SPI connection per page: whatever its queries allocate
			// is freed when it finishes, so memory does not grow with the backlog.
			Spi page;
			auto due = page.Query(phase.query, {SqlArg::Timestamp(due_by), SqlArg::Timestamp(after_due),
												 SqlArg::Int64(after_id), SqlArg::Int64(limit)});
			std::vector<int64_t> ids;
			for (const auto &row : due)
				ids.push_back(row.int64_required(0));
			MaintainPage(page, ids, at, grace, plans, counts);
			if (!due.empty()) {
				after_due = ToPgTime(due.back().int64_required(1));
				after_id = due.back().int64_required(0);
			}
			page.Finish();
			left -= static_cast<int64_t>(due.size());
			if (static_cast<int64_t>(due.size()) < limit)
				break;
		}
	}
	// Notifications and the usage rollup once the due backlog is done: a run in
	// batches (run_maintenance_batches) does them in its last batch, not in each.
	if (left <= 0) {
		for (const auto &[name, count] : counts)
			if (count > 0)
				result.Add({name, std::to_string(count)});
		spi.Finish();
		return (Datum) 0;
	}
	for (const auto &row : spi.Query("SELECT action, count FROM billing._queue_upcoming($1)", {at_arg}))
		counts[row.text_required(0)] += row.int64_required(1);
	auto rollup = spi.Query("SELECT pg_catalog.to_regprocedure('billing.rollup_usage(timestamptz)') IS NOT NULL");
	if (rollup.at(0).boolean(0)) {
		auto rolled = spi.Query("SELECT billing.rollup_usage($1)::pg_catalog.text", {at_arg});
		if (!rolled.empty() && rolled[0].text(0))
			counts["usage_rolled_up"] += std::stoll(rolled[0].text_required(0));
	}
	// Usage partitions for this month and the next two, and records past
	// usage_record_retention (not counted in the result)
	auto partitions = spi.Query("SELECT pg_catalog.to_regprocedure('billing._usage_partitions(timestamptz)') IS NOT NULL");
	if (partitions.at(0).boolean(0))
		(void) spi.Query("SELECT pg_catalog.count(*) FROM billing._usage_partitions($1)", {at_arg});
	// Stripe payloads past stripe_event_retention (their rows stay, for duplicate detection)
	auto pruned = spi.Query("SELECT billing._stripe_prune($1)", {at_arg});
	counts["stripe_payloads_pruned"] += pruned.at(0).int64(0).value_or(0);
	for (const auto &[name, count] : counts)
		if (count > 0)
			result.Add({name, std::to_string(count)});
	spi.Finish();
	return (Datum) 0;
}

// billing._valid_user_id(user_id): the core's one user id rule for the SQL
// routes (record_usage, attach_users' backfill); returns the id.
BILLING_FUNCTION(billing_valid_user_id)
{
	RequireUserId(TextArgRequired(fcinfo, 0, "user_id"));
	return PG_GETARG_DATUM(0);  // the argument as given (no detoasting)
}

// billing.credit_balance(user_id, currency): see CreditBalance.
BILLING_FUNCTION(billing_credit_balance)
{
	std::string user_id = TextArgRequired(fcinfo, 0, "user_id");
	// the one currency check (core/money): 22023 for an unknown code, so a
	// typo is an error and not a balance of 0
	std::string currency = NormalizeCurrency(TextArgRequired(fcinfo, 1, "currency"));
	Spi spi(Spi::Access::kReadOnly);  // declared STABLE
	int64_t balance = CreditBalance(spi, user_id, currency);
	spi.Finish();
	return Int64GetDatum(balance);
}

BILLING_FUNCTION(billing_transitions)
{
	ResultSet result(fcinfo);
	for (const Transition &t : TransitionTable())
		result.Add({ToString(t.from), ToString(t.action), ToString(t.to), t.effects});
	return (Datum) 0;
}
