// Subscription operations (SPEC §3) as pure functions: given the subscription
// as stored and the time `at`, they return what it becomes and what else must
// happen (a successor subscription, an invoice, notifications). The glue loads
// rows, calls these, and writes the outcome; no decision is made in SQL.
#pragma once

#include "core/calendar.hpp"
#include "core/error.hpp"
#include "core/ledger.hpp"
#include "core/lifecycle.hpp"
#include "core/proration.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace billing {

enum class Tier { kFree, kPro, kEnterprise, kCustom };

// User ids and external payment ids are keys of unique indexes: longer ones
// are refused (22023) instead of failing in the index (54000).
inline constexpr size_t kMaxKeyBytes = 255;
void RequireUserId(const std::string &user_id);
Tier ParseTier(std::string_view text);

struct Plan {
	int64_t id = 0;
	std::string code;
	std::string name;
	Tier tier = Tier::kFree;
	Interval interval = Interval::kMonthly;
	int64_t price_cents = 0;
	std::string currency;
	int32_t trial_days = 0;
	bool active = true;

	// Price 0 plans have no billing periods and never renew.
	bool IsFree() const { return price_cents == 0; }
};

struct Subscription {
	int64_t id = 0;
	std::string user_id;
	int64_t plan_id = 0;
	Status status = Status::kActive;
	int64_t price_cents = 0;
	std::string currency;
	Interval interval = Interval::kMonthly;
	Micros started_at = 0;
	std::optional<Micros> billing_anchor;
	Micros period_start = 0;
	std::optional<Micros> period_end;
	std::optional<Micros> trial_start;
	std::optional<Micros> trial_end;
	bool cancel_at_period_end = false;
	std::optional<Micros> canceled_at;
	std::optional<Micros> ended_at;
	std::optional<Micros> paused_at;
	std::optional<Micros> past_due_since;
	std::optional<int64_t> scheduled_plan_id;
	std::optional<Micros> scheduled_change_at;
	std::optional<std::string> end_reason;
	// Not stored on the row: when the oldest open invoice fell due (loaded
	// with the subscription); an unpaid invoice past this starts dunning.
	std::optional<Micros> unpaid_due_at;
	// Not stored on the row either: when its latest payment (or refund) was made.
	std::optional<Micros> last_payment_at;
	// Nor this: when its latest recorded change took effect (its history's open interval).
	std::optional<Micros> history_from;
	bool stripe_managed = false;  // Stripe drives its lifecycle: maintenance leaves it alone

	bool Ended() const { return ended_at.has_value(); }
	bool Dunning() const { return past_due_since.has_value(); }
};

struct InvoiceDraft {
	std::string billing_reason;  // subscription_create | subscription_cycle | subscription_update
	std::string currency;
	Micros period_start = 0;
	std::optional<Micros> period_end;
	std::vector<InvoiceLine> lines;
	int64_t total_cents = 0;
	Micros issued_at = 0;
	Micros due_at = 0;  // issued_at + kInvoiceDueAfter; unpaid after it, dunning starts
};

// What an operation decided. `updated` replaces the stored row; `successor`
// (if any) is inserted as the user's new current subscription; `invoice` (if
// any) belongs to the successor when there is one, else to `updated`.
struct Outcome {
	Subscription updated;
	std::optional<Subscription> successor;
	std::optional<InvoiceDraft> invoice;
	bool fall_back_to_free = false;      // the user gets a Free subscription from `free_from`
	Micros free_from = 0;
	std::vector<std::string> notifications;  // kinds: subscription_ended, payment_failed, ...
	Action action = Action::kPeriodEnd;
	// Set when `updated` ends: its open invoices become void with this reason
	// (what was paid toward them goes to the customer's credit balance).
	std::optional<std::string> void_reason;
	// Set by resume: the open invoices of `updated` fall due this much later
	// (the paused time), so dunning never starts, nor ends the subscription,
	// at a time before it was resumed.
	Micros open_invoices_due_later = 0;
	// Set when `updated` ends for a replacement that billing does not invoice
	// (a Stripe subscription): credit for its period's unused paid time, the
	// credit line a plan change would net into the new plan's invoice. The
	// glue adds it as proration_credit after the voids (CreditForUnusedTime
	// bounds it by what the customer paid net).
	int64_t unused_time_credit_cents = 0;
};

inline constexpr Micros kIncompleteTimeout = 23LL * 3600 * kMicrosPerSecond;
// An invoice is due three days after it is issued (time to pay a renewal
// without falling into dunning); src/sql/05_entitlements.sql's effective_plan
// uses the same figure for a renewal maintenance has not issued yet.
inline constexpr Micros kInvoiceDueAfter = 3 * kMicrosPerDay;

// A new subscription to `plan` for `user_id` at `at`. Free plans start
// active with no period end; a paid plan starts trialing when `with_trial`
// and a trial of its tier is still available, else incomplete with its first
// invoice (subscription_create) to pay.
Outcome Subscribe(const std::string &user_id, const Plan &plan, Micros at, bool with_trial, bool trial_available);

// start_trial: like Subscribe with a trial, but refuses (QB010) when the
// trial of that tier was already used or the plan has no trial.
Outcome StartTrial(const std::string &user_id, const Plan &plan, Micros at, bool trial_available);

// One trial per tier per user, whatever the route (subscribe, start_trial,
// a plan switch during a trial, Stripe): `tiers_trialed` are the tiers of
// every subscription the user ever had with a trial.
bool TrialAvailable(const std::vector<Tier> &tiers_trialed, Tier tier);

// Billing's lifecycle calls (cancel, reactivate, pause, resume, change_plan,
// a subscribe that would replace it) on a subscription Stripe manages are
// refused (QB010): Stripe is the source of truth for it, and a local change
// would be undone by, or bill beside, Stripe's next event. Payments and
// refunds are still recorded on it (they are money that moved).
void RequireManagedByBilling(const Subscription &sub, Action action);

// The one rule for a subscription that another one replaces now (change_plan's
// upgrade, subscribe over an unpaid one, a Stripe subscription): canceled at
// `at` as plan_changed, its scheduled change dropped, what it leaves open void.
Outcome EndForPlanChange(const Subscription &sub, Micros at);

// What paid the current period and may be credited for its unused time:
// the price, less what refunds took back of it; 0 when the period is not paid.
int64_t PaidForPeriod(const Subscription &sub, bool period_paid, int64_t refunded_for_period);

// A Stripe subscription replaces the user's current one at `at` (its start;
// never before the current one's latest recorded change, LatestChange: a
// Stripe event cannot be refused, so it is not refused as a backdated
// operation is, it ends the subscription no earlier).
// Billing's own subscription ends by EndForPlanChange: its open invoices void
// (what was paid toward them back as credit) and, as change_plan credits it,
// the unused paid time of its period as credit (PreviewChange's credit line:
// PaidForPeriod x unused / period, from ProratedPeriodStart). Stripe's own
// subscription ends without either: Stripe voids and prorates its invoices.
Outcome ReplaceByStripe(const Subscription &sub, Micros at, bool period_paid, int64_t refunded_for_period,
						Micros paused_in_period);

// subscribe() on top of the user's current subscription: only a Free or an
// unpaid (incomplete) one is replaced; it ends now and its invoice is void.
Outcome Replace(const Subscription &current, const Plan &current_plan, const Plan &plan, Micros at);

// The latest time the subscription records a change at: the latest of its
// start, period start, billing anchor, trial start, cancel, end, pause,
// dunning start, latest payment and latest recorded change (history). Every operation on it (cancel,
// reactivate, pause, resume, change_plan, record_payment, a replacing
// subscribe) dated before this is refused (22023): a backdated operation
// would rewrite a history that later operations already built on.
Micros LatestChange(const Subscription &sub);
void RequireNotBeforeLatestChange(const Subscription &sub, Micros at);

Outcome Cancel(const Subscription &sub, bool at_period_end, Micros at);

// A user deleted from the application's users table: whether this
// subscription of theirs is canceled now (a Free one that grants nothing and
// cannot be canceled stays; a Stripe-managed one ends by Stripe's own event),
// and when: now, or its latest recorded change if that is later.
bool CanceledWithItsUser(const Subscription &sub);
// A user deleted from the users table, or an id renamed away in it while
// billing held nothing live for it (attack finding 3/6): whether this
// subscription of theirs is closed with the user: a plain Free one, not
// ended, not Stripe-managed. Left current, it counted the gone user (and,
// after a rename, the same user twice) in every report of later dates.
bool ClosedWithItsUser(const Subscription &sub);
// The deleted (or renamed-away) user's subscription ended at `at`: canceled
// now when CanceledWithItsUser (the cancel rule, no refund), closed (status
// canceled, end_reason user_gone: no cancellation in the reports, nothing
// voided) when ClosedWithItsUser; in both cases the id gets
// no Free subscription after it: the user is gone. QB010 for any other.
Outcome EndWithItsUser(const Subscription &sub, Micros at);
Micros UserDeletionTime(const Subscription &sub, Micros now);
// What of a deleted user's credit balance in a currency (`balance`) leaves
// the id with them: all of it (never below 0). Billing keys credit by the
// id, so it would otherwise pay whoever takes the id next (review D1); the
// glue records it as credit_to_deleted_user, owed to the deleted customer.
// The same for a Stripe-managed customer: this is billing's own credit.
int64_t CreditLeavingWithItsUser(int64_t balance);

// What billing holds for a user id (read under the user's lock, with the
// newest snapshot) when the application's UPDATE changes that id in the
// attached users table (attack finding 70).
struct HeldForUser {
	std::optional<Subscription> current;  // not ended, not soft-deleted
	std::vector<std::pair<std::string, int64_t>> credit;  // currency, balance (each currency with entries)
	std::vector<std::string> open_invoices;     // their numbers
	std::vector<std::string> stripe_customers;  // Stripe customer ids linked to the id
};
// A renamed id is refused, as a foreign key refuses it (23503, the id in
// DETAIL; the glue checks at the end of the statement, as the default NO
// ACTION does), while billing holds anything live for it: a
// subscription not ended (but a plain Free one, which grants what no
// subscription grants), a non-zero credit balance, an open invoice, a
// Stripe customer link. Billing keys all of these by the id's text: left on
// the old id they would renew and bill nobody, and whoever registers the old
// id next would take them over. An id billing holds nothing live for may be
// renamed (its history stays with the old id, as a deleted user's does).
// Empty: allowed. `table` and `column` name the users table and its id
// column, for the message.
std::optional<Error> UserRenameRefusal(const HeldForUser &held, const std::string &table, const std::string &column,
									   const std::string &user_id);
// A TRUNCATE of the attached users table deletes every user at once, and
// no row trigger fires: their subscriptions would renew, their credit stay
// on the ids, for whoever registers them next. Refused (55000, with a HINT:
// DELETE, or detach / session_replication_role = replica for a reload)
// while billing holds anything live for an id, by the same measure as
// UserRenameRefusal; `held` is what billing holds for one such id (named
// nowhere in the error: the truncating role may not read billing).
// Treating it as deleting every user would make a reload cancel the book.
std::optional<Error> UsersTruncateRefusal(const HeldForUser &held, const std::string &table);
// A partition of the attached users table detached (ALTER TABLE ... DETACH
// PARTITION) takes its users out of the table as a TRUNCATE of it would, and
// no row trigger fires either: refused by the same measure (55000), whose
// HINT says to DELETE its users first or detach billing from the users table
// (known limit until session 10, attack finding 4.2).
std::optional<Error> UsersDetachRefusal(const HeldForUser &held, const std::string &partition);
// The attached users table, or a partition of it at any depth, dropped
// (DROP TABLE, DROP ... CASCADE of a parent, DROP SCHEMA, DROP OWNED) takes
// its users away as a TRUNCATE would, and no row trigger fires: refused by
// the same measure (55000, the same DETAIL), whose HINT says to DELETE its
// users first or detach billing from the users table (known limit until
// session 11). `table` names the table dropped, for the message.
std::optional<Error> UsersDropRefusal(const HeldForUser &held, const std::string &table);
Outcome Reactivate(const Subscription &sub, Micros at);
Outcome Pause(const Subscription &sub, Micros at);
Outcome Resume(const Subscription &sub, Micros at);

// A payment is accepted only when something can take it: refused (QB010) on
// a Free or ended subscription, and on a canceled one with nothing open. The
// refusal names the attempted action: payment_succeeded, or payment_failed
// when `succeeded` is false (review L1).
void RequirePayable(const Subscription &sub, const Plan &plan, bool has_open_invoice, Micros at,
					bool succeeded = true);

// After a succeeded payment has settled open invoices (oldest first) and left
// the rest as credit: with nothing open any more, incomplete and past_due
// become active and dunning stops; a trial converts when the credit balance
// covers its first period (the first invoice is issued, paid from credit).
// On a Stripe-managed subscription nothing of that: the outcome changes
// nothing (Stripe converts its trials and sets its statuses; review Y2).
Outcome PaymentSucceeded(const Subscription &sub, const Plan &plan, Micros at, bool open_invoices_remain,
						 int64_t credit_balance);
// A failed payment: dunning starts only when an invoice is open (nothing owed,
// nothing to chase).
Outcome PaymentFailed(const Subscription &sub, Micros at, bool has_open_invoice);

// A subscription whose every open invoice got paid by credit when issued.
Outcome Settled(const Subscription &sub, Micros at);

// Upgrade now with proration, or schedule a downgrade at period end.
bool IsUpgrade(const Plan &from, const Plan &to);
ProrationResult PreviewChange(const Subscription &sub, const Plan &from, const Plan &to, Micros at,
							  bool period_paid = true, int64_t refunded_for_period = 0, Micros paused_in_period = 0);
// `period_paid`: the current period's invoices are all paid, so its unused
// time may be credited (proration credits only time that was paid for);
// `refunded_for_period`: what refunds took back of what paid the current
// period, so only the price less that is credited.
// `paused_in_period`: how long the subscription was paused in its current
// period (a resume moved the period end by it): not billed, so the period
// is prorated as if it started that much later.
// `trial_available`: the new plan's tier may still be trialed (a switch
// during a trial to a tier already trialed must be paid for). A switch
// during a trial to a plan without a trial (trial_days 0) must be paid for
// too, like subscribing to it (review V1).
Outcome ChangePlan(const Subscription &sub, const Plan &from, const Plan &to, Micros at, bool period_paid = true,
				   bool trial_available = true, int64_t refunded_for_period = 0, Micros paused_in_period = 0);

// Where the proration of `sub`'s current period at `at` starts: the period
// start moved later by the time it was paused in it (not billed), never
// after `at`.
Micros ProratedPeriodStart(const Subscription &sub, Micros at, Micros paused_in_period);

// An upgrade ended `ended` (at its ended_at, after `paused_in_period` of
// pause in that period) and credited `credited` for its period's unused time;
// refunds have since taken back `refunded_for_period` of what paid that
// period. Returns how much of the credit line comes off: the line becomes
// what the upgrade would have credited had the refunds come first.
int64_t UpgradeCreditTakenBack(const Subscription &ended, int64_t credited, int64_t refunded_for_period,
							   Micros paused_in_period = 0);

// Maintenance: the earliest action time has made due for `sub` at `at`, if
// any (events are taken in time order, so a long gap is caught up exactly).
std::optional<Action> DueAction(const Subscription &sub, Micros at, Micros past_due_grace);
// When that action falls due.
Micros DueTime(const Subscription &sub, Action action, Micros past_due_grace);
// An operation applies what time made due before it decides (the glue's
// CatchUp), at most this many actions: 1000 monthly renewals are 83 years.
// Beyond it the operation is refused (54000) rather than running until a
// statement timeout; maintenance instead stops there and goes on at its next run.
inline constexpr int kMaxCatchUpSteps = 1000;
// The error, for subscription `id` whose period started at `period_start`.
Error CatchUpTooLong(int64_t id, Micros period_start, Micros at);

// Applies a due action. `scheduled` is the plan of a scheduled change, if any.
// `credit_cents` is the customer's credit balance in the subscription's
// currency, read only by a trial end: a trial whose customer's credit covers
// the first period converts at its end (the first invoice, issued then, is
// paid from credit: the ledger's "credit applies to the next invoice the
// moment it is issued") instead of expiring (review T1).
Outcome ApplyDue(const Subscription &sub, Action action, const Plan &plan, const std::optional<Plan> &scheduled,
				 Micros at, Micros past_due_grace, int64_t credit_cents = 0);

// Whether a trial ending at its trial end converts from the credit balance
// (`credit_cents`, in its currency) rather than expiring: the credit covers
// its first period.
bool TrialConvertsFromCredit(const Subscription &sub, int64_t credit_cents);

// What a void of an invoice gives back of its credit lines (an upgrade's
// credit for the unused paid time of the period it replaced), before the
// conservation bound (CreditForUnusedTime), by why its subscription ended:
// all of them when it was replaced (plan_changed: M4, two upgrades in one
// second before the first is paid keep the original period's credit) or ran
// out (trial, grace, incomplete); none when it was canceled, now or at its
// period end ("canceled"): a cancel forfeits the unused time of a paid period
// (or it was used), whether or not an unpaid upgrade came between (review U1:
// upgrade, then cancel now, turned the forfeited time into 28721 credit).
// `canceled`: the subscription was canceled at its period end whatever
// ended it: canceled at its period end and then expired at the grace end
// with the upgrade still unpaid ("payment_failed") forfeits the lines as a
// cancel now does (review C1: it gave the 28721 line back as credit).
int64_t CreditLinesBackOnVoid(const std::string &void_reason, int64_t lines, bool canceled = false);

// What a credit line given back by a void (CreditLinesBackOnVoid) is worth at
// the void: the line credited the replaced period's time unused at the
// upgrade (`line_at`, up to `period_end`, the replaced period's end); by the
// void, the time since the upgrade was spent on the upgraded plan (never
// paid), so only the time still unused comes back: line x (period_end - at)
// / (period_end - line_at), rounded half up; 0 from period_end on; the whole
// line when the void is at the upgrade or the period end is unknown (review
// X1: a Stripe replacement 9 days after an unpaid upgrade gave back 28721,
// the Pro time unused at the upgrade, instead of 28011 at the replacement).
// Applied to a `plan_changed` void only (a replacement: Stripe's, or another
// plan change); the grace-end void (`payment_failed`) still gives the whole
// line, as 27_review_money U1 (c) holds, pending the local credit-line rules
// (C1) being settled.
int64_t CreditLineUnusedAt(const std::string &void_reason, int64_t line, Micros line_at,
						   std::optional<Micros> period_end, Micros at);

// An upgrade invoice whose credit line a refund takes down by `off`
// (UpgradeCreditTakenBack): still open, or settled by the line itself (paid,
// total not positive).
struct UpgradeInvoice {
	bool open = false;
	int64_t total_cents = 0;
	int64_t amount_due_cents = 0;
	Micros issued_at = 0;
	Micros due_at = 0;
};
enum class InvoiceStatus { kOpen, kPaid, kVoid };
const char *ToString(InvoiceStatus status);
struct UpgradeInvoiceChange {
	InvoiceStatus status = InvoiceStatus::kOpen;
	int64_t total_cents = 0;
	int64_t amount_due_cents = 0;
	Micros due_at = 0;
	bool reopened = false;  // it was paid and owes again
};
// An open invoice owes `off` more, due when it was. One the line settled owes
// what its total becomes above 0 and is open again, due three days after the
// refund reopened it (never before its issue plus three days), as a resume
// moves due dates: dunning never starts, nor ends the subscription, before
// the refund that made it owe (review R2: it was due at its old due date, so
// the customer was dunned and expired in the past). A refund may be dated
// back (recorded late); it reopens the invoice when it is recorded, and
// maintenance has already written the dates up to `maintained_to` (how far
// it has run): the three days count from the latest of the refund's `at`,
// the issue and `maintained_to`, so dunning never starts, nor ends the
// subscription, at a date maintenance had already passed and a report of
// such a date never changes (review R4: refunded dated 2 Feb after
// maintenance to 25 Feb, it fell due 5 Feb and expired the subscription on
// 19 Feb, changing plan_distribution of 20 Feb). When the subscription it
// belongs to has ended (`subscription_ended`), nothing can pay it any more
// (payments to an ended subscription are refused): instead of reopening it is
// void, as the end would have voided it had the refund come first (review
// R1: it stayed open for ever).
UpgradeInvoiceChange CreditLineTakenBack(const UpgradeInvoice &invoice, int64_t off, bool subscription_ended,
										 Micros at, std::optional<Micros> maintained_to = std::nullopt);

// A line that settled its invoice (total not positive) put what it settled
// beyond the charge into the credit balance. When a refund takes the line
// down by `off`, that part of the balance goes with it: the rest it put there
// before (-total_cents) less the rest it puts there after, less what the
// refund's conservation bound already took of it (`already_taken`), never
// more than the balance holds. So k refunds summing to A end as one refund of
// A (review R3: after a 10000 refund the line came down by 9151 but the
// balance kept its 16355; the second refund's bound then took the balance,
// and the line kept 8374 although nothing was paid net).
int64_t LineRestTakenBack(int64_t total_cents, int64_t off, int64_t already_taken, int64_t credit_balance);

// Of what a refund's conservation bound takes from the credit balance
// (`excess_left`: what it took and no earlier line of the same refund
// claimed), the part that the balance part of a line that settled its
// invoice (`invoice`: paid, total not positive) accounts for, up to that part
// (-total). It was refunded of the replaced period as much as what is
// recorded against its paid invoices: the glue records it against the
// period's invoice (a credit_refunded entry naming it), so later refunds and
// upgrades read it as refunded of the period (RefundedForPeriod), and split
// refunds end as one refund of their sum (review R3 variant: 20000 then 8800
// left 3086 owed, one 28800 leaves 9999: the first bound's 7555 was counted
// for the first refund only). 0 for an open invoice.
int64_t BoundTakeOfLine(const UpgradeInvoice &invoice, int64_t excess_left);

// A subscription that waited for money (incomplete, or in dunning) is
// settled when an invoice issued to it is paid in full (by credit) and
// nothing else is open: what it becomes, or nothing.
std::optional<Subscription> SettledOnIssue(const Subscription &owner, bool invoice_settled, bool other_open);

// -- Entitlements for any `at`, whether or not maintenance has run since.

// An open invoice as the projection sees it: when it falls due, and what was
// already paid toward it (payments and credit), which returns to credit if
// the invoice is voided.
struct OpenInvoiceState {
	Micros due_at = 0;
	int64_t paid_toward_cents = 0;
};

// One user's billing state as stored: the current subscription, its open
// invoices, the credit balance in its currency.
struct Book {
	Subscription sub;
	std::vector<OpenInvoiceState> open;
	int64_t credit_cents = 0;
};

struct Projection {
	Book book;                   // the current subscription at `at` (a successor has id 0) and its ledger
	Subscription stored;         // the stored subscription as of `at` (ended, if it ended by then)
	bool fell_back_to_free = false;  // it ended with no successor: the user is on Free
};

// What maintenance would leave at `at`: every due action (renewals against
// the credit balance, dunning, trial and grace ends, scheduled changes)
// applied in time order, with the ledger's rules (IssueAgainstCredit,
// SettledOnIssue, voiding what an ending subscription leaves open). `plan` is
// the subscription's plan, `scheduled` the plan of its scheduled change.
Projection Project(const Book &book, const Plan &plan, const std::optional<Plan> &scheduled, Micros at,
				   Micros past_due_grace);

// Whether a subscription's state gives its plan at `at`: trialing before its
// trial end; active, past_due or canceled before the grace end of its
// dunning, canceled at most until its period end. Applied to a projection
// (effective_plan), it needs no maintenance; src/sql/05_entitlements.sql's
// billing._grants_plan is its one SQL mirror, for set-based reports.
bool GrantsAt(const Subscription &sub, Micros at, Micros past_due_grace);

// Whether what a subscription grants at `at` is judged by the state its
// history holds at `at` (then GrantsAt and EndedEntitlementChange on that
// state, as plan_distribution reads it) rather than by its stored row
// projected to `at` (Project, EntitledPlanId): when it has ended (review H1),
// or when `at` is before `latest_change`, the time its stored state began
// (the open history interval's valid_from; review R1: a pause, a payment of
// an incomplete subscription or a resume written later must not rewrite an
// earlier date). At or after its latest change (the quota trigger's `at` =
// now), the stored row is the state and the projection is exact.
bool JudgedByHistory(const Subscription &sub, std::optional<Micros> latest_change, Micros at);

// The plan that applies at `at` after Project: the subscription's, or
// nullopt for Free.
std::optional<int64_t> EntitledPlanId(const Projection &projection, Micros at, Micros past_due_grace);

// The first time after `at` when time alone (no write) may change what the
// projection grants: the next due action of the projected subscription, or
// the end of its trial, period or grace. nullopt: never (Free). The quota
// cache keeps a limit no longer than this.
std::optional<Micros> NextEntitlementChange(const Projection &projection, Micros at, Micros past_due_grace);

// The same for a subscription that has ended, asked about a time `at`
// before its end (a transaction that began before the end was written):
// what it grants changes at its end at the latest, or earlier at its trial,
// period or grace end. The quota cache must not keep its plan past that.
std::optional<Micros> EndedEntitlementChange(const Subscription &sub, Micros at, Micros past_due_grace);

// Whether a subscription has been paid for from a change on: the history
// interval the change opens starts `paid_since` (SPEC 8, History: "Subscriptions
// never paid count 0 in MRR and churn"; a later interval carries it over).
// `status` is billing's status after the change, `stripe_status` Stripe's
// verbatim for a Stripe-managed subscription (empty for billing's own),
// `first_interval` whether the change is the subscription's insertion.
// Billing's own: `active` or `past_due` (billing's own dunning always
// follows a paid period). Stripe-managed: Stripe's `active` (billing's
// `canceled` too when it is cancel_at_period_end), or a first interval in
// dunning (past_due/unpaid seen first, its earlier events late: Stripe's
// past_due follows a paid period); a trial whose first payment failed
// (trialing -> past_due or unpaid) has never been paid (session 10, P1).
bool StartsPaying(std::string_view status, std::string_view stripe_status, bool first_interval);

// A write that changed subscription `before` into `after` in place (the same
// subscription, no successor, nothing ended or started): the first time from
// which the plan it grants may differ from the plan it granted, at some
// moment; nullopt when it grants the same plan at every moment. Before the
// first due action of either state (its trial, grace, invoice or period end,
// its incomplete timeout) the projection is the state itself, so what it
// grants is GrantsAt of its plan; from that due action on, it depends on
// more than the row (credit, invoices, the scheduled plan) and may differ.
// A cached limit valid until at most this time (a fill's cap_valid_until) is
// still the limit of every moment it covers: only caches valid past it need
// clearing (a payment converting a trial: the trial's end; a cancel at period
// end: the period's end). Any other difference (another plan, a different
// start or end) is a difference from the start: the time returned is then
// the smallest Micros.
std::optional<Micros> EntitlementMayDifferFrom(const Subscription &before, const Subscription &after,
											   Micros past_due_grace);

}  // namespace billing
