// Process-wide values of the billing.* settings (defined in module.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace billing::glue {
extern bool enforce_quotas;
// billing.maintenance_row_by_row (superusers): run_maintenance writes every
// due step row by row, as every operation does, instead of a page's single
// steps set-based; a diagnostic the set-based writes are compared with.
extern bool maintenance_row_by_row;

// Declares when the subscription changes this transaction writes next take
// effect (billing.change_at, transaction-local; microseconds since 1970 UTC),
// for the history trigger; nullopt resets it, so the trigger falls back to
// the rows' own times. The one writer of the setting (billing._set_change_at
// calls it too): a direct call, no statement.
void SetChangeAt(std::optional<int64_t> unix_micros);

// Per-row change times, for a writer whose one statement changes
// subscriptions that take effect at different times (maintenance's page of
// renewals): the history trigger dates subscription_id's change at
// unix_micros, before billing.change_at. Backend-local; the writer clears
// them after its statement, and every transaction or subtransaction end
// clears them too (an error between the two).
void DeclareChangeAt(int64_t subscription_id, int64_t unix_micros);
void ClearDeclaredChangeTimes();

// When the change of subscription_id the history is writing took effect, as
// declared: its per-row time, else billing.change_at (when it holds an
// integer of at most 18 digits, as SetChangeAt writes it), else nullopt (the
// trigger dates the change by the row's own times).
std::optional<int64_t> DeclaredChangeAt(int64_t subscription_id);

// A lifecycle call that writes one user's subscriptions invalidates that
// user's cached quota limits once, when it is done, instead of once per
// statement that writes the user's subscriptions (billing._quota_invalidate_users).
// DeferQuotaInvalidation(user), after the user's lock row is held, returns
// true when this call started the deferral (false: an outer call holds it,
// and the deferral counts this one too);
// while deferred, the trigger leaves the user out and notes that it did
// (QuotaInvalidationDeferred); FinishDeferredQuotaInvalidation(user) ends
// this call's hold and, when it was the last, the deferral, returning whether
// a write was left out; the caller then invalidates as the trigger would
// have (InvalidateUsersQuota). Backend-local:
// a transaction's end forgets every deferral, a subtransaction's abort those
// it started (an error in between: its writes are rolled back with it).
bool DeferQuotaInvalidation(const std::string &user_id);
bool QuotaInvalidationDeferred(const std::string &user_id);
bool FinishDeferredQuotaInvalidation(const std::string &user_id);

// A statement that writes its own audit rows (a lifecycle write: the change
// and its audit_log row in one statement, as plain SQL would): between
// AuditedByStatement("table") and AuditedByStatement(nullptr), billing._audit
// leaves billing.table's statements alone. Backend-local; every transaction
// end and subtransaction abort clears it (an error in between).
void AuditedByStatement(const char *table);
bool IsAuditedByStatement(const char *table);
// The table declared now (nullptr: none), to restore after a nested declaration.
const char *AuditedByStatementTable();
}

