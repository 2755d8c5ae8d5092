// Reading SQL arguments into C++ values. A NULL where a value is required,
// an infinite timestamp or one outside the years 0001 to 9999, is a clear
// error (22004 / 22008), never a crash or a silent NULL result.
#pragma once

#include "glue/spi.hpp"

#include "core/calendar.hpp"

#include <optional>
#include <string>

namespace billing::glue {

void RequireArg(FunctionCallInfo fcinfo, int n, const char *name);
std::string TextArgRequired(FunctionCallInfo fcinfo, int n, const char *name);
std::optional<std::string> TextArgOptional(FunctionCallInfo fcinfo, int n);
int64_t Int64ArgRequired(FunctionCallInfo fcinfo, int n, const char *name);
int32_t Int32ArgRequired(FunctionCallInfo fcinfo, int n, const char *name);
bool BoolArgRequired(FunctionCallInfo fcinfo, int n, const char *name);
// A timestamptz argument as core time; NULL (22004), +/-infinity and other
// times outside the years 0001 to 9999 UTC (22008) are refused.
Micros TimeArgRequired(FunctionCallInfo fcinfo, int n, const char *name);

}  // namespace billing::glue
