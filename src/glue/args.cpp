#include "glue/args.hpp"

#include "core/error.hpp"

namespace billing::glue {

void
RequireArg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		throw Error("22004", std::string("argument \"") + name + "\" must not be null");
}

std::string
TextArgRequired(FunctionCallInfo fcinfo, int n, const char *name)
{
	RequireArg(fcinfo, n, name);
	return TextArg(fcinfo, n);
}

std::optional<std::string>
TextArgOptional(FunctionCallInfo fcinfo, int n)
{
	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return std::nullopt;
	return TextArg(fcinfo, n);
}

int64_t
Int64ArgRequired(FunctionCallInfo fcinfo, int n, const char *name)
{
	RequireArg(fcinfo, n, name);
	return PG_GETARG_INT64(n);
}

int32_t
Int32ArgRequired(FunctionCallInfo fcinfo, int n, const char *name)
{
	RequireArg(fcinfo, n, name);
	return PG_GETARG_INT32(n);
}

bool
BoolArgRequired(FunctionCallInfo fcinfo, int n, const char *name)
{
	RequireArg(fcinfo, n, name);
	return PG_GETARG_BOOL(n);
}

Micros
TimeArgRequired(FunctionCallInfo fcinfo, int n, const char *name)
{
	RequireArg(fcinfo, n, name);
	TimestampTz t = PG_GETARG_TIMESTAMPTZ(n);
	// Compared on PostgreSQL's side, before converting: every timestamptz
	// (also +/-infinity) is a valid comparand, while the conversion of the
	// extreme ones would overflow.
	if (t < ToPgTime(kFirstTime) || t >= ToPgTime(kEndTime)) {
		char *shown = nullptr;
		PgCall([&] { shown = DatumGetCString(DirectFunctionCall1(timestamptz_out, TimestampTzGetDatum(t))); });
		throw Error(sqlstate::kDatetimeFieldOverflow, std::string("argument \"") + name + "\" is out of range",
					std::string("The timestamp ") + shown + " is outside the years 0001 to 9999 (UTC) that billing supports.");
	}
	return ToCoreTime(t);
}

}  // namespace billing::glue
