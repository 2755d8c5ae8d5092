// SQL entry points of the subscription lifecycle (SPEC §3). Each one reads
// rows, asks the core (src/core/subscription.cpp) what happens, and writes the
// outcome. Every body runs inside the guard (BILLING_FUNCTION).
#include "glue/args.hpp"
#include "glue/guard.hpp"
#include "glue/result_set.hpp"
#include "glue/spi.hpp"

#include "core/error.hpp"
#include "core/money.hpp"
#include "core/subscription.hpp"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

namespace billing::glue {
namespace {

// Named as the table's columns, so an error about one names it.
constexpr const char *kSubscriptionColumns =
	"id, user_id, plan_id, status::text AS status, price_cents, currency, billing_interval::text AS billing_interval, "
	"billing._micros(started_at) AS started_at, billing._micros(billing_anchor) AS billing_anchor, "
	"billing._micros(current_period_start) AS current_period_start, "
	"billing._micros(current_period_end) AS current_period_end, billing._micros(trial_start) AS trial_start, "
	"billing._micros(trial_end) AS trial_end, cancel_at_period_end, billing._micros(canceled_at) AS canceled_at, "
	"billing._micros(ended_at) AS ended_at, billing._micros(paused_at) AS paused_at, "
	"billing._micros(past_due_since) AS past_due_since, scheduled_plan_id, "
	"billing._micros(scheduled_change_at) AS scheduled_change_at, end_reason";

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

Subscription
LoadSubscription(Spi &spi, int64_t id, bool lock)
{
	std::string sql = std::string("SELECT ") + kSubscriptionColumns +
					  " FROM billing.subscriptions WHERE id = $1 AND deleted_at IS NULL" + (lock ? " FOR UPDATE" : "");
	auto rows = spi.Query(sql.c_str(), {SqlArg::Int64(id)});
	if (rows.empty())
		throw InvalidParameter("subscription " + std::to_string(id) + " does not exist");
	return SubscriptionFromRow(rows[0]);
}

std::optional<Subscription>
LoadCurrentSubscription(Spi &spi, const std::string &user_id)
{
	std::string sql = std::string("SELECT ") + kSubscriptionColumns +
					  " FROM billing.subscriptions WHERE user_id = $1 AND ended_at IS NULL AND deleted_at IS NULL"
					  " FOR UPDATE";
	auto rows = spi.Query(sql.c_str(), {SqlArg::Text(user_id)});
	if (rows.empty())
		return std::nullopt;
	return SubscriptionFromRow(rows[0]);
}

constexpr const char *kPlanColumns =
	"id, code, name, tier::text AS tier, billing_interval::text AS billing_interval, price_cents, currency, trial_days,"
	" active";

Plan
PlanFromRow(const Row &row)
{
	Plan p;
	p.id = row.int64_required(0);
	p.code = row.text_required(1);
	p.name = row.text_required(2);
	p.tier = ParseTier(row.text_required(3));
	p.interval = ParseInterval(row.text_required(4));
	p.price_cents = row.int64_required(5);
	p.currency = row.text_required(6);
	p.trial_days = static_cast<int32_t>(row.int64_required(7));
	p.active = row.boolean(8);
	return p;
}

Plan
LoadPlanById(Spi &spi, int64_t id)
{
	std::string sql = std::string("SELECT ") + kPlanColumns + " FROM billing.subscription_plans WHERE id = $1";
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
					  " FROM billing.subscription_plans WHERE code = $1 AND deleted_at IS NULL";
	auto rows = spi.Query(sql.c_str(), {SqlArg::Text(code)});
	if (rows.empty())
		throw InvalidParameter("unknown plan code \"" + code + "\"", "",
							   "SELECT code FROM billing.pricing lists the plans on sale.");
	Plan plan = PlanFromRow(rows[0]);
	if (!plan.active)
		throw InvalidParameter("plan \"" + code + "\" is not on sale", "The plan is marked inactive.");
	return plan;
}

// Serialises every lifecycle change of one user until the transaction ends,
// by locking the user's row in billing.user_locks (made on first use). ON
// CONFLICT ... WHERE false locks the existing row without updating it; a row
// lock takes no entry in the shared lock table, whatever the number of users.
void
LockUser(Spi &spi, const std::string &user_id)
{
	spi.Execute("INSERT INTO billing.user_locks AS l (user_id) VALUES ($1)"
				" ON CONFLICT (user_id) DO UPDATE SET user_id = l.user_id WHERE false",
				{SqlArg::Text(user_id)});
}

bool
TrialAvailable(Spi &spi, const std::string &user_id, const Plan &plan)
{
	auto rows = spi.Query(
		"SELECT NOT EXISTS (SELECT 1 FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id"
		" WHERE s.user_id = $1 AND p.tier = (SELECT tier FROM billing.subscription_plans WHERE id = $2)"
		" AND s.trial_start IS NOT NULL AND s.deleted_at IS NULL)",
		{SqlArg::Text(user_id), SqlArg::Int64(plan.id)});
	return rows.at(0).boolean(0);
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

void
SaveSubscription(Spi &spi, const Subscription &s)
{
	std::vector<SqlArg> args = MutableColumns(s);
	args.push_back(SqlArg::Int64(s.id));
	spi.Execute(
		"UPDATE billing.subscriptions SET status = $1::text::billing.subscription_status, price_cents = $2,"
		" billing_anchor = $3, current_period_start = $4, current_period_end = $5, trial_start = $6, trial_end = $7,"
		" cancel_at_period_end = $8, canceled_at = $9, ended_at = $10, paused_at = $11, past_due_since = $12,"
		" scheduled_plan_id = $13, scheduled_change_at = $14, end_reason = $15 WHERE id = $16",
		args);
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
	auto rows = spi.Query(
		"INSERT INTO billing.subscriptions (status, price_cents, billing_anchor, current_period_start,"
		" current_period_end, trial_start, trial_end, cancel_at_period_end, canceled_at, ended_at, paused_at,"
		" past_due_since, scheduled_plan_id, scheduled_change_at, end_reason, user_id, plan_id, currency,"
		" billing_interval, started_at)"
		" VALUES ($1::text::billing.subscription_status, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
		" $15, $16, $17, $18, $19::text::billing.billing_interval, $20) RETURNING id",
		args);
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

// Issues an invoice; one whose total is not positive is settled at once.
int64_t
InsertInvoice(Spi &spi, const std::string &user_id, int64_t subscription_id, const InvoiceDraft &draft, Micros at)
{
	bool settled = draft.total_cents <= 0;
	auto rows = spi.Query(
		"INSERT INTO billing.invoices (number, user_id, subscription_id, status, billing_reason, currency,"
		" period_start, period_end, subtotal_cents, total_cents, amount_due_cents, lines, issued_at, paid_at)"
		" VALUES (billing._next_invoice_number($7), $1, $2, $3, $4, $5, $6, $8, $9, $9, $10, $11, $7,"
		" CASE WHEN $3 = 'paid' THEN $7 END) RETURNING id",
		{SqlArg::Text(user_id), SqlArg::Int64(subscription_id), SqlArg::Text(std::string(settled ? "paid" : "open")),
		 SqlArg::Text(draft.billing_reason), SqlArg::Text(draft.currency),
		 SqlArg::Timestamp(ToPgTime(draft.period_start)), SqlArg::Timestamp(ToPgTime(at)), TimeArg(draft.period_end),
		 SqlArg::Int64(draft.total_cents), SqlArg::Int64(settled ? 0 : draft.total_cents),
		 SqlArg::Jsonb(LinesJson(draft.lines, draft.currency))});
	return rows.at(0).int64_required(0);
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
};

// Writes what the core decided, in an order the one-current index accepts.
Persisted
PersistOutcome(Spi &spi, const Outcome &out, Micros at)
{
	Persisted result{out.updated.id, std::nullopt};
	if (out.updated.id != 0)
		SaveSubscription(spi, out.updated);
	else
		result.subscription_id = InsertSubscription(spi, out.updated);
	if (out.successor)
		result.subscription_id = InsertSubscription(spi, *out.successor);
	if (out.invoice)
		result.invoice_id = InsertInvoice(spi, out.updated.user_id, result.subscription_id, *out.invoice, at);
	if (out.fall_back_to_free)
		spi.Query("SELECT billing._start_free($1, $2)",
				  {SqlArg::Text(out.updated.user_id), SqlArg::Timestamp(ToPgTime(out.free_from))});
	for (const auto &kind : out.notifications) {
		Micros when = out.updated.ended_at.value_or(at);
		Notify(spi, out.updated.user_id, out.updated.id, kind,
			   kind + ":" + std::to_string(out.updated.id) + ":" + std::to_string(when), when);
	}
	return result;
}

Datum
ReturnSubscription(Spi &spi, int64_t id)
{
	Datum row = spi.QueryRowDatum("SELECT s FROM billing.subscriptions s WHERE s.id = $1", {SqlArg::Int64(id)});
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
	if (user_id.empty())
		throw InvalidParameter("user id must not be empty");

	Spi spi;
	Plan plan = LoadPlanForSale(spi, plan_code);
	LockUser(spi, user_id);
	std::optional<Subscription> current = LoadCurrentSubscription(spi, user_id);
	bool available = TrialAvailable(spi, user_id, plan);
	Outcome out = trial_only ? StartTrial(user_id, plan, at, available)
							 : Subscribe(user_id, plan, at, with_trial, available);
	if (current) {
		// Only a Free or an unpaid (incomplete) subscription is replaced here;
		// anything paid changes through change_plan.
		bool replaceable = (current->price_cents == 0 && current->status == Status::kActive) ||
						   current->status == Status::kIncomplete;
		if (current->plan_id == plan.id && current->status != Status::kIncomplete)
			throw Error(sqlstate::kTransitionNotAllowed, "user \"" + user_id + "\" is already on plan \"" + plan.code + "\"",
						"Subscription " + std::to_string(current->id) + " is " + ToString(current->status) + ".");
		if (!replaceable)
			throw Error(sqlstate::kTransitionNotAllowed,
						std::string("cannot subscribe while a subscription is ") + ToString(current->status),
						"User \"" + user_id + "\" has subscription " + std::to_string(current->id) + ".",
						"Use billing.change_plan() to move an existing subscription to another plan.");
		if (at < current->started_at)
			throw InvalidParameter("time " + FormatTimestamp(at) + " is before the current subscription started",
								   "Subscription " + std::to_string(current->id) + " started at " +
									   FormatTimestamp(current->started_at) + ".");
		Subscription ended = *current;
		ended.status = Status::kCanceled;
		ended.ended_at = at;
		ended.canceled_at = at;
		ended.end_reason = "plan_changed";
		SaveSubscription(spi, ended);
	}
	Persisted saved = PersistOutcome(spi, out, at);
	return ReturnSubscription(spi, saved.subscription_id);
}

// Loads and locks the subscription named by argument 0, under its user's lock.
Subscription
LockedSubscriptionArg(Spi &spi, FunctionCallInfo fcinfo)
{
	int64_t id = Int64ArgRequired(fcinfo, 0, "subscription_id");
	Subscription peek = LoadSubscription(spi, id, false);
	LockUser(spi, peek.user_id);
	return LoadSubscription(spi, id, true);
}

Micros
PastDueGrace(Spi &spi)
{
	auto rows = spi.Query("SELECT billing._interval_micros(billing._setting('past_due_grace', '14 days')::interval)");
	return rows.at(0).int64_required(0);
}

// reactivate, pause and resume: (subscription_id, at) -> one core operation.
Datum
ApplyToSubscription(FunctionCallInfo fcinfo, Outcome (*operation)(const Subscription &, Micros))
{
	Micros at = TimeArgRequired(fcinfo, 1, "at");
	Spi spi;
	Subscription sub = LockedSubscriptionArg(spi, fcinfo);
	Persisted saved = PersistOutcome(spi, operation(sub, at), at);
	return ReturnSubscription(spi, saved.subscription_id);
}

// run_maintenance reads what is due in two phases, each served by its own
// index (src/sql/02_tables.sql): what time made due (subscriptions_due), then
// past_due subscriptions whose grace ended (subscriptions_grace). Arguments:
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
	 " WHERE billing._due_at(s.status, s.current_period_end, s.trial_end, s.started_at) <= $1"
	 " AND (billing._due_at(s.status, s.current_period_end, s.trial_end, s.started_at), s.id) > ($2, $3)"
	 " AND s.ended_at IS NULL AND s.deleted_at IS NULL AND s.stripe_subscription_id IS NULL"
	 " ORDER BY billing._due_at(s.status, s.current_period_end, s.trial_end, s.started_at), s.id"
	 " LIMIT $4 FOR UPDATE OF s SKIP LOCKED"},
	{true,
	 "SELECT s.id, billing._micros(s.past_due_since) AS due"
	 " FROM billing.subscriptions s"
	 " WHERE s.status = 'past_due' AND s.past_due_since <= $1 AND (s.past_due_since, s.id) > ($2, $3)"
	 " AND s.ended_at IS NULL AND s.deleted_at IS NULL AND s.stripe_subscription_id IS NULL"
	 " ORDER BY s.past_due_since, s.id LIMIT $4 FOR UPDATE OF s SKIP LOCKED"},
};
constexpr int64_t kMaintenancePage = 1000;

// Applies everything due for one subscription, locked by the due query.
void
MaintainOne(Spi &spi, int64_t id, Micros at, Micros grace, std::map<std::string, int64_t> &counts)
{
	Subscription sub = LoadSubscription(spi, id, true);
	counts["subscriptions_processed"]++;
	// A subscription that missed several periods renews once per period.
	for (int step = 0; step < 1000; step++) {
		std::optional<Action> action = DueAction(sub, at, grace);
		if (!action)
			break;
		billing::Plan plan = LoadPlanById(spi, sub.plan_id);
		std::optional<billing::Plan> scheduled;
		if (sub.scheduled_plan_id)
			scheduled = LoadPlanById(spi, *sub.scheduled_plan_id);
		Outcome out = ApplyDue(sub, *action, plan, scheduled, at, grace);
		PersistOutcome(spi, out, at);
		std::string name = ToString(*action);
		if (*action == Action::kPeriodEnd)
			name = out.updated.Ended() ? (out.successor ? "plan_changed" : "ended_at_period_end") : "renewed";
		counts[name]++;
		if (out.updated.Ended())
			break;
		sub = out.updated;
	}
}

}  // namespace
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
	Subscription sub = LockedSubscriptionArg(spi, fcinfo);
	Persisted saved = PersistOutcome(spi, Cancel(sub, at_period_end, at), at);
	return ReturnSubscription(spi, saved.subscription_id);
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
	Subscription sub = LockedSubscriptionArg(spi, fcinfo);
	billing::Plan from = LoadPlanById(spi, sub.plan_id);
	Persisted saved = PersistOutcome(spi, ChangePlan(sub, from, to, at), at);
	return ReturnSubscription(spi, saved.subscription_id);
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
	billing::Plan from = LoadPlanById(spi, sub.plan_id);
	// The same checks as change_plan, without writing anything.
	Outcome out = ChangePlan(sub, from, to, at);
	if (out.invoice)
		for (const auto &line : out.invoice->lines)
			result.Add({line.description, std::to_string(line.amount_cents), sub.currency});
	spi.Finish();
	return (Datum) 0;
}

BILLING_FUNCTION(billing_record_payment)
{
	int64_t amount = Int64ArgRequired(fcinfo, 1, "amount_cents");
	std::string currency = NormalizeCurrency(TextArgRequired(fcinfo, 2, "currency"));
	bool succeeded = BoolArgRequired(fcinfo, 3, "succeeded");
	Micros at = TimeArgRequired(fcinfo, 4, "at");
	std::optional<std::string> external_id = TextArgOptional(fcinfo, 5);
	if (amount < 0)
		throw InvalidParameter("payment amount must not be negative", "Amount given: " + std::to_string(amount) + ".",
							   "Record refunds with billing.refund().");
	if (external_id && external_id->empty())
		throw InvalidParameter("external id must not be empty");

	Spi spi;
	Subscription sub = LockedSubscriptionArg(spi, fcinfo);
	if (external_id) {
		auto seen = spi.Query("SELECT subscription_id FROM billing.payments WHERE external_id = $1",
							  {SqlArg::Text(*external_id)});
		if (!seen.empty()) {
			if (seen[0].int64(0) != std::optional<int64_t>(sub.id))
				throw InvalidParameter("external id \"" + *external_id + "\" belongs to another subscription");
			return ReturnSubscription(spi, sub.id);  // the same payment again: stored once
		}
	}
	if (currency != sub.currency)
		throw InvalidParameter("payment currency \"" + currency + "\" does not match the subscription",
							   "Subscription " + std::to_string(sub.id) + " is billed in \"" + sub.currency + "\".");

	auto open = spi.Query("SELECT id, amount_due_cents FROM billing.invoices WHERE subscription_id = $1"
						  " AND status = 'open' AND deleted_at IS NULL ORDER BY issued_at, id LIMIT 1",
						  {SqlArg::Int64(sub.id)});
	std::optional<int64_t> invoice_id;
	int64_t due = 0;
	if (!open.empty()) {
		invoice_id = open[0].int64(0);
		due = open[0].int64_required(1);
	}

	Outcome out;
	if (succeeded) {
		bool covers = open.empty() ? (sub.status != Status::kTrialing || amount >= sub.price_cents) : amount >= due;
		billing::Plan plan = LoadPlanById(spi, sub.plan_id);
		out = PaymentSucceeded(sub, plan, at, covers);
	} else {
		out = PaymentFailed(sub, at);
		out.notifications.clear();  // keyed by the payment below
	}
	Persisted saved = PersistOutcome(spi, out, at);
	if (saved.invoice_id)
		invoice_id = saved.invoice_id;  // a converted trial's first invoice, paid below
	auto payment = spi.Query(
		"INSERT INTO billing.payments (user_id, subscription_id, invoice_id, amount_cents, currency, status,"
		" external_id, failure_code, paid_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
		{SqlArg::Text(sub.user_id), SqlArg::Int64(sub.id), SqlArg::Int64(invoice_id), SqlArg::Int64(amount),
		 SqlArg::Text(currency), SqlArg::Text(std::string(succeeded ? "succeeded" : "failed")), SqlArg::Text(external_id),
		 succeeded ? SqlArg::Null(TEXTOID) : SqlArg::Text(std::string("payment_failed")), SqlArg::Timestamp(ToPgTime(at))});
	int64_t payment_id = payment.at(0).int64_required(0);
	if (succeeded && invoice_id) {
		spi.Execute("UPDATE billing.invoices SET amount_paid_cents = amount_paid_cents + $2,"
					" amount_due_cents = GREATEST(amount_due_cents - $2, 0),"
					" status = CASE WHEN amount_due_cents - $2 <= 0 THEN 'paid' ELSE status END,"
					" paid_at = CASE WHEN amount_due_cents - $2 <= 0 THEN $3 ELSE paid_at END WHERE id = $1",
					{SqlArg::Int64(*invoice_id), SqlArg::Int64(amount), SqlArg::Timestamp(ToPgTime(at))});
	}
	if (!succeeded)
		Notify(spi, sub.user_id, sub.id, "payment_failed", "payment_failed:" + std::to_string(payment_id), at);
	return ReturnSubscription(spi, saved.subscription_id);
}

BILLING_FUNCTION(billing_refund)
{
	int64_t payment_id = Int64ArgRequired(fcinfo, 0, "payment_id");
	int64_t amount = Int64ArgRequired(fcinfo, 1, "amount_cents");
	Micros at = TimeArgRequired(fcinfo, 2, "at");
	if (amount <= 0)
		throw InvalidParameter("refund amount must be positive", "Amount given: " + std::to_string(amount) + ".");
	Spi spi;
	auto rows = spi.Query(
		"SELECT p.amount_cents, p.status, p.refund_of IS NOT NULL,"
		" COALESCE((SELECT -sum(r.amount_cents) FROM billing.payments r WHERE r.refund_of = p.id AND r.deleted_at IS NULL), 0)"
		" FROM billing.payments p WHERE p.id = $1 AND p.deleted_at IS NULL FOR UPDATE",
		{SqlArg::Int64(payment_id)});
	if (rows.empty())
		throw InvalidParameter("payment " + std::to_string(payment_id) + " does not exist");
	int64_t paid = rows[0].int64_required(0);
	int64_t refunded = rows[0].int64_required(3);
	if (rows[0].boolean(2) || rows[0].text_required(1) != "succeeded")
		throw InvalidParameter("payment " + std::to_string(payment_id) + " cannot be refunded",
							   "Only succeeded payments that are not refunds themselves can be refunded.");
	if (CheckedAdd(refunded, amount) > paid)
		throw InvalidParameter("refund exceeds what was paid",
							   "Payment " + std::to_string(payment_id) + " was " + std::to_string(paid) + " cents; " +
								   std::to_string(refunded) + " already refunded, " + std::to_string(amount) +
								   " asked.");
	Datum row = spi.QueryRowDatum(
		"INSERT INTO billing.payments AS r (user_id, subscription_id, invoice_id, amount_cents, currency, status,"
		" refund_of, paid_at) SELECT p.user_id, p.subscription_id, p.invoice_id, -$2, p.currency, 'succeeded', p.id, $3"
		" FROM billing.payments p WHERE p.id = $1 RETURNING r",
		{SqlArg::Int64(payment_id), SqlArg::Int64(amount), SqlArg::Timestamp(ToPgTime(at))});
	spi.Finish();
	return row;
}

BILLING_FUNCTION(billing_run_maintenance)
{
	ResultSet result(fcinfo);
	Micros at = TimeArgRequired(fcinfo, 0, "at");
	std::optional<int64_t> batch;
	if (!PG_ARGISNULL(1)) {
		batch = PG_GETARG_INT32(1);
		if (*batch <= 0)
			throw InvalidParameter("batch size must be positive");
	}
	Spi spi;
	Micros grace = PastDueGrace(spi);
	SqlArg at_arg = SqlArg::Timestamp(ToPgTime(at));
	std::map<std::string, int64_t> counts;
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
			for (const auto &row : due)
				MaintainOne(page, row.int64_required(0), at, grace, counts);
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
		auto rolled = spi.Query("SELECT billing.rollup_usage($1)::text", {at_arg});
		if (!rolled.empty() && rolled[0].text(0))
			counts["usage_rolled_up"] += std::stoll(rolled[0].text_required(0));
	}
	for (const auto &[name, count] : counts)
		if (count > 0)
			result.Add({name, std::to_string(count)});
	spi.Finish();
	return (Datum) 0;
}

BILLING_FUNCTION(billing_transitions)
{
	ResultSet result(fcinfo);
	for (const Transition &t : TransitionTable())
		result.Add({ToString(t.from), ToString(t.action), ToString(t.to), t.effects});
	return (Datum) 0;
}
