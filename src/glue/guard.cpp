#include "glue/guard.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <exception>
#include <new>

namespace billing::glue {
namespace {

// What a caught C++ exception said, kept in plain arrays so the frame that
// raises the PostgreSQL error owns nothing with a destructor.
struct CaughtError {
	char sqlstate[6];
	char message[1024];
	char detail[2048];
	char hint[1024];
};

// Copies at most size - 1 bytes, never cutting a character in two (a cut
// UTF-8 sequence cannot be converted to the client's encoding: 22021).
void
CopyText(char *target, size_t size, const char *source)
{
	const char *text = source ? source : "";
	size_t length = std::strlen(text);
	if (length >= size)
		length = pg_mbcliplen(text, static_cast<int>(std::min(length, size_t{INT_MAX})), static_cast<int>(size - 1));
	std::memcpy(target, text, length);
	target[length] = '\0';
}

void
Capture(CaughtError &caught, const char *state, const char *message, const char *detail, const char *hint)
{
	CopyText(caught.sqlstate, sizeof caught.sqlstate, state);
	CopyText(caught.message, sizeof caught.message, message);
	CopyText(caught.detail, sizeof caught.detail, detail);
	CopyText(caught.hint, sizeof caught.hint, hint);
}

int
ToSqlState(const char *code)
{
	if (std::strlen(code) != 5)
		return ERRCODE_INTERNAL_ERROR;
	return MAKE_SQLSTATE(code[0], code[1], code[2], code[3], code[4]);
}

// The memory context the innermost guarded call was entered in (fmgr's
// caller's). PgCall copies a caught ErrorData there rather than into its own
// current context, which inside an SPI connection is SPI's procedure context:
// that one must not be what keeps the error alive until RunGuarded re-raises
// it (SPI_finish, or anything else that ends the connection early, would free
// it). The caller's context outlives every SPI connection the body opens.
MemoryContext guard_context = nullptr;

}  // namespace

Datum
RunGuarded(GuardedBody body, FunctionCallInfo fcinfo) noexcept
{
	// Saved so that a C++ exception thrown out of a PG_TRY block (a bug, but one
	// we survive) cannot leave PostgreSQL pointing at a dead stack frame.
	sigjmp_buf *saved_exception_stack = PG_exception_stack;
	ErrorContextCallback *saved_context_stack = error_context_stack;
	// Guarded calls nest (a billing function calling SQL that calls another).
	MemoryContext outer_guard_context = guard_context;
	ErrorData *pg_error = nullptr;
	CaughtError caught;
	bool failed = false;

	guard_context = CurrentMemoryContext;
	try {
		Datum result = body(fcinfo);
		guard_context = outer_guard_context;
		return result;
	} catch (const PgError &e) {
		pg_error = e.data();
	} catch (const billing::Error &e) {
		Capture(caught, e.sqlstate().c_str(), e.what(), e.detail().c_str(), e.hint().c_str());
		failed = true;
	} catch (const std::bad_alloc &) {
		Capture(caught, "53200", "out of memory", "", "");
		failed = true;
	} catch (const std::exception &e) {
		Capture(caught, "XX000", "internal error in billing", e.what(), "");
		failed = true;
	} catch (...) {
		Capture(caught, "XX000", "internal error in billing", "An unknown C++ exception was caught.", "");
		failed = true;
	}

	// Every C++ object of the body is gone now; it is safe to longjmp.
	guard_context = outer_guard_context;
	PG_exception_stack = saved_exception_stack;
	error_context_stack = saved_context_stack;
	if (pg_error != nullptr)
		ReThrowError(pg_error);
	if (failed)
		ereport(ERROR,
				(errcode(ToSqlState(caught.sqlstate)), errmsg_internal("%s", caught.message),
				 caught.detail[0] ? errdetail_internal("%s", caught.detail) : 0,
				 caught.hint[0] ? errhint("%s", caught.hint) : 0));
	pg_unreachable();
}

namespace {

// Calls fn(arg) and catches any C++ exception, so that none unwinds out of
// the PG_TRY below past its PG_END_TRY. A PostgreSQL error longjmps through
// this frame, which owns nothing.
void
CallCatching(void (*fn)(void *), void *arg, std::exception_ptr *thrown) noexcept
{
	try {
		fn(arg);
	} catch (...) {
		*thrown = std::current_exception();
	}
}

// The PG_TRY frame; it owns nothing with a destructor. Returns the error
// PostgreSQL raised, copied, or nullptr.
ErrorData *
TryCall(void (*fn)(void *), void *arg, std::exception_ptr *thrown)
{
	MemoryContext caller_context = CurrentMemoryContext;
	ErrorData *volatile error = nullptr;

	PG_TRY();
	{
		CallCatching(fn, arg, thrown);
	}
	PG_CATCH();
	{
		// Copied where it outlives SPI (see guard_context), then the current
		// context is the caller's again.
		MemoryContextSwitchTo(guard_context != nullptr ? guard_context : caller_context);
		error = CopyErrorData();
		MemoryContextSwitchTo(caller_context);
		FlushErrorState();
	}
	PG_END_TRY();
	return error;
}

}  // namespace

void
PgCallRaw(void (*fn)(void *), void *arg)
{
	std::exception_ptr thrown;
	ErrorData *error = TryCall(fn, arg, &thrown);
	// PG_END_TRY has restored PG_exception_stack and error_context_stack on
	// both paths; only now may a C++ exception leave.
	if (thrown)
		std::rethrow_exception(thrown);
	if (error != nullptr)
		throw PgError(error);
}

}  // namespace billing::glue
