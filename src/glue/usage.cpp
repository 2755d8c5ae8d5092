// billing._usage_span(from_time, to_time, metric): the core's split of a
// usage period into whole UTC days and partial edge days (SplitUsageSpan),
// refused when a partial day cannot be answered exactly
// (RequireExactPartialDays). billing.usage() sums the whole days from the
// daily totals and the partial days from the raw records.
#include "glue/args.hpp"
#include "glue/guard.hpp"
#include "glue/spi.hpp"

#include "core/calendar.hpp"
#include "core/usage.hpp"

#include <optional>
#include <string>

using namespace billing;
using namespace billing::glue;

BILLING_FUNCTION(billing_usage_span)
{
	Micros from = TimeArgRequired(fcinfo, 0, "from_time");
	Micros to = TimeArgRequired(fcinfo, 1, "to_time");
	std::string metric = TextArgRequired(fcinfo, 2, "metric");
	UsageSpan span = SplitUsageSpan(from, to);
	if (span.head || span.tail) {
		// only a partial day needs to know what retention dropped
		std::optional<Micros> dropped_before;
		std::string retention;
		Spi spi(Spi::Access::kReadOnly);  // declared STABLE
		auto rows = spi.Query(
			"SELECT (SELECT s.value::pg_catalog.date OPERATOR(pg_catalog.-) '1970-01-01'::pg_catalog.date FROM billing.settings s"
			"         WHERE s.key OPERATOR(pg_catalog.=) '_usage_records_dropped_before' AND s.deleted_at IS NULL),"
			"       (SELECT s.value FROM billing.settings s"
			"         WHERE s.key OPERATOR(pg_catalog.=) 'usage_record_retention' AND s.deleted_at IS NULL)");
		if (!rows.empty()) {
			if (!rows[0].is_null(0))
				dropped_before = rows[0].int64_required(0) * kMicrosPerDay;  // days since 1970-01-01
			if (!rows[0].is_null(1))
				retention = rows[0].text_required(1);
		}
		spi.Finish();
		RequireExactPartialDays(span, metric, CountedPerDayOnly(metric), dropped_before, retention);
	}
	Datum result = 0;
	PgCall([&] {
		TupleDesc desc = nullptr;
		if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "billing._usage_span must return a record");
		desc = BlessTupleDesc(desc);
		Datum values[6] = {};
		bool nulls[6] = {false, false, true, true, true, true};
		values[0] = TimestampTzGetDatum(ToPgTime(span.whole_from));
		values[1] = TimestampTzGetDatum(ToPgTime(span.whole_to));
		if (span.head) {
			values[2] = TimestampTzGetDatum(ToPgTime(span.head->from));
			values[3] = TimestampTzGetDatum(ToPgTime(span.head->to));
			nulls[2] = nulls[3] = false;
		}
		if (span.tail) {
			values[4] = TimestampTzGetDatum(ToPgTime(span.tail->from));
			values[5] = TimestampTzGetDatum(ToPgTime(span.tail->to));
			nulls[4] = nulls[5] = false;
		}
		result = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	});
	return result;
}
