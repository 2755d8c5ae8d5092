// The boundary between PostgreSQL (setjmp/longjmp errors) and C++ (exceptions).
//
// C++ -> PostgreSQL: every SQL-callable symbol is declared with
// BILLING_FUNCTION(name). Its body runs inside RunGuarded(), which catches
// every C++ exception, copies what it says into a fixed buffer, lets the
// handler finish (so every C++ object is destroyed), and only then raises
// the PostgreSQL error with the exception's SQLSTATE, message, detail, hint.
//
// PostgreSQL -> C++: any PostgreSQL call that can ereport(ERROR) while C++
// objects are alive goes through PgCall(). It catches the longjmp in a frame
// that owns nothing, copies the ErrorData and throws PgError; unwinding then
// runs the destructors, and RunGuarded re-raises the original error unchanged.
#pragma once

#include "glue/postgres.hpp"

#include <exception>
#include <type_traits>

namespace billing::glue {

// A PostgreSQL error caught by PgCall, carried through C++ frames.
class PgError : public std::exception {
 public:
	explicit PgError(ErrorData *data) noexcept : data_(data) {}
	ErrorData *data() const noexcept { return data_; }
	const char *what() const noexcept override { return data_ && data_->message ? data_->message : "postgres error"; }

 private:
	ErrorData *data_;
};

using GuardedBody = Datum (*)(FunctionCallInfo);

// Runs body; never lets a C++ exception out, never longjmps over C++ frames.
Datum RunGuarded(GuardedBody body, FunctionCallInfo fcinfo) noexcept;

// Calls fn(arg); a PostgreSQL ERROR raised inside becomes a thrown PgError.
void PgCallRaw(void (*fn)(void *), void *arg);

// Calls f() (which must own no C++ objects with destructors and must not
// throw) and converts a PostgreSQL ERROR into PgError.
// If f throws anyway, PgCallRaw rethrows only after PG_END_TRY restored PG_exception_stack and error_context_stack.
template <typename F>
void
PgCall(F &&f)
{
	using Fn = std::remove_reference_t<F>;
	PgCallRaw([](void *p) { (*static_cast<Fn *>(p))(); }, static_cast<void *>(&f));
}

}  // namespace billing::glue

// Declares an SQL-callable function whose body is guarded. Use it for every
// entry point PostgreSQL calls through fmgr.
#define BILLING_FUNCTION(name)                                                       \
	static Datum name##_body(FunctionCallInfo fcinfo);                               \
	extern "C" {                                                                     \
	PG_FUNCTION_INFO_V1(name);                                                       \
	}                                                                                \
	extern "C" Datum name(PG_FUNCTION_ARGS)                                          \
	{                                                                                \
		return billing::glue::RunGuarded(name##_body, fcinfo);                       \
	}                                                                                \
	static Datum name##_body(FunctionCallInfo fcinfo)
