// billing._after_users_dropped(): a DROP of the attached users table, or of
// a partition of it at any depth (DROP TABLE, DROP TABLE ... CASCADE of a
// parent, DROP SCHEMA ... CASCADE, DROP OWNED), takes its users away as a
// TRUNCATE of it would, and no row trigger fires: their subscriptions would
// renew and their credit stay on the ids for whoever registers them next.
// Refused while billing holds anything live, by the TRUNCATE's measure (the
// core's UsersDropRefusal, 55000, the same DETAIL; known limit until session
// 11).
//
// Seen at sql_drop, whatever statement dropped the table: every table billing
// watches as users (the attached table and each of its partitions, at every
// level: attach_users and billing._after_partition_change) carries billing's
// BEFORE TRUNCATE trigger billing_user_truncated, and that trigger is among
// the objects the drop removed, next to its table. The refusal aborts the
// statement, so nothing was dropped. A table billing.detach() left (or a
// partition detached while nothing was live) carries no such trigger and
// drops freely.
#include "glue/guard.hpp"
#include "glue/lifecycle.hpp"
#include "glue/quota_counter.hpp"
#include "glue/rights.hpp"
#include "glue/spi.hpp"

#include "core/error.hpp"

#include <optional>
#include <string>

using namespace billing::glue;

BILLING_FUNCTION(billing_after_users_dropped)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		throw billing::Error("39P01", "billing._after_users_dropped() may only be called as an event trigger");
	// the first table dropped with its billing_user_truncated trigger (the
	// one the statement named, if it is one), read as the dropping user
	std::optional<std::string> table;
	{
		Spi spi(Spi::Access::kReadOnly);
		auto rows = spi.Query("SELECT r.object_name FROM pg_catalog.pg_event_trigger_dropped_objects() r"
							  " WHERE r.object_type OPERATOR(pg_catalog.=) 'table'"
							  " AND EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() t"
							  "   WHERE t.object_type OPERATOR(pg_catalog.=) 'trigger'"
							  "   AND t.address_names OPERATOR(pg_catalog.=)"
							  "     (r.address_names OPERATOR(pg_catalog.||) 'billing_user_truncated'::pg_catalog.text))"
							  " ORDER BY r.original DESC, r.object_name LIMIT 1",
							  {});
		if (!rows.empty())
			table = rows.at(0).text(0);
		spi.Finish();
	}
	if (!table)
		return PointerGetDatum(nullptr);
	std::optional<billing::Error> refusal;
	AsBillingOwner(CountersOwner(), [&] { refusal = UsersDropRefusalFor(*table); });
	if (refusal)
		throw *refusal;
	return PointerGetDatum(nullptr);
}
