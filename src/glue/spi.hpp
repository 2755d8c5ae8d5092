// A small C++ face over SPI. Every call that can raise a PostgreSQL ERROR goes
// through PgCall, so callers may hold std::string and friends freely; results
// come back as plain C++ values copied out of SPI's memory.
#pragma once

#include "glue/guard.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace billing::glue {

// One query argument: a type and a value, NULL when value is empty.
struct SqlArg {
	Oid type;
	Datum value;
	bool isnull;

	static SqlArg Text(const std::string &s);
	static SqlArg Text(const std::optional<std::string> &s);
	static SqlArg Text(const char *s) { return Text(std::string(s)); }
	static SqlArg Int64(int64_t v) { return {INT8OID, Int64GetDatum(v), false}; }
	static SqlArg Int64(const std::optional<int64_t> &v) { return {INT8OID, v ? Int64GetDatum(*v) : 0, !v}; }
	static SqlArg Int32(int32_t v) { return {INT4OID, Int32GetDatum(v), false}; }
	static SqlArg Bool(bool v) { return {BOOLOID, BoolGetDatum(v), false}; }
	static SqlArg Timestamp(int64_t pg_micros) { return {TIMESTAMPTZOID, Int64GetDatum(pg_micros), false}; }
	static SqlArg Timestamp(const std::optional<int64_t> &v) { return {TIMESTAMPTZOID, v ? Int64GetDatum(*v) : 0, !v}; }
	static SqlArg Jsonb(const std::string &json);
	static SqlArg Date(int32_t pg_days) { return {DATEOID, DateADTGetDatum(pg_days), false}; }
	static SqlArg Null(Oid type) { return {type, 0, true}; }
	// One-dimensional arrays (a set-based statement reads them with unnest);
	// an empty optional is a NULL element. Built in the current memory context.
	static SqlArg Int64Array(const std::vector<std::optional<int64_t>> &values);
	static SqlArg TimestampArray(const std::vector<std::optional<int64_t>> &pg_micros);
	static SqlArg BoolArray(const std::vector<bool> &values);
	static SqlArg TextArray(const std::vector<std::optional<std::string>> &values);
};

// One result value, read from the tuple's Datum: integers and booleans in
// binary, text-like types from their bytes, anything else through its type's
// output function.
struct Value {
	enum class Kind : char { kNull, kInteger, kBoolean, kText };
	Kind kind = Kind::kNull;
	int64_t i = 0;  // kInteger and kBoolean (int2/int4/int8/oid, bool)
	std::string s;  // kText: the value's bytes, or its output function's text
};

// One result row, values already converted to C++.
class Row {
 public:
	std::optional<std::string> text(int column) const;
	std::string text_or(int column, const std::string &fallback) const;
	std::optional<int64_t> int64(int column) const;
	// For columns the query never returns NULL in: a NULL there is an internal
	// error (XX000) that names the column, never an empty optional dereferenced.
	std::string text_required(int column) const;
	int64_t int64_required(int column) const;
	bool boolean(int column) const;
	bool is_null(int column) const { return values_.at(column).kind == Value::Kind::kNull; }

	std::vector<Value> values_;
	// The result's column names, shared by its rows (empty for a hand-made Row).
	std::shared_ptr<const std::vector<std::string>> names_;

 private:
	const Value &Required(int column) const;
};

// The connection to SPI for one entry-point call. Connects on construction;
// Finish() must be called on the success path. On an error path the
// transaction (or subtransaction) abort releases the connection.
class Spi {
 public:
	// kReadOnly is for STABLE and IMMUTABLE functions: every query runs with
	// SPI's read_only flag, i.e. in the calling statement's snapshot (which
	// is what STABLE promises) and refusing anything that writes or locks.
	enum class Access { kReadWrite, kReadOnly };

	explicit Spi(Access access = Access::kReadWrite);
	Spi(const Spi &) = delete;
	Spi &operator=(const Spi &) = delete;
	// Never SPI_finish here on the error path. A PostgreSQL error caught by
	// PgCall has not been cleaned up yet: the failed query's executor state is
	// still around, and only the (sub)transaction abort after RunGuarded
	// re-raises the error releases the connection safely (AtEOSubXact_SPI).
	// SPI_finish would also free SPI's procedure memory, which values still in
	// flight may point into, and it can raise an error a destructor cannot report.
	// On the success path without Finish() (a bug) it warns, and still does not
	// finish: the function's result may live in SPI's memory.
	~Spi();

	// Every query runs through a plan prepared once per backend and kept
	// (SPI_prepare + SPI_keepplan), found again by its text and argument
	// types; PostgreSQL's plan cache re-plans a kept plan when a table it
	// uses changes. Results are read from the tuples' Datums (see Value).
	// Runs sql and returns its rows.
	std::vector<Row> Query(const std::string &sql, const std::vector<SqlArg> &args = {});
	// The same as Query, but timestamptz columns are read in binary as the
	// core's time (µs since 1970-01-01 UTC, integers), as billing._micros
	// would return them (an infinity is 22008): a statement that returns
	// many times spares the expressions that convert each.
	std::vector<Row> QueryCoreTimes(const std::string &sql, const std::vector<SqlArg> &args = {});
	// Runs sql and returns the number of rows it processed.
	uint64_t Execute(const std::string &sql, const std::vector<SqlArg> &args = {});
	// Runs sql, expects one row whose first column is a composite value (e.g.
	// SELECT s FROM t s) and returns it in the caller's memory context.
	Datum QueryRowDatum(const std::string &sql, const std::vector<SqlArg> &args);

	// The same as Query (kept for the trigger's call sites).
	std::vector<Row> QueryPrepared(const std::string &sql, const std::vector<SqlArg> &args) { return Query(sql, args); }

	void Finish();

 private:
	uint64_t Run(const std::string &sql, const std::vector<SqlArg> &args);
	std::vector<Row> CollectRows(uint64_t n, bool core_times = false);
	// Frees SPI_tuptable (the last query's result) and clears it.
	void ReleaseResult();
	bool read_only_ = false;
	bool finished_ = false;
	// std::uncaught_exceptions() at construction: more at destruction means
	// the destructor runs while an exception unwinds (the error path).
	int uncaught_at_start_ = 0;
};

// Converts between PostgreSQL timestamptz (µs since 2000-01-01) and the core's
// time (µs since 1970-01-01 UTC). A time the other side cannot hold (an
// infinity, an int64 overflow, or outside timestamptz's range) throws 22008.
int64_t ToCoreTime(TimestampTz t);
TimestampTz ToPgTime(int64_t unix_micros);

// Reads a text argument as std::string (detoasting through PgCall).
std::string TextArg(FunctionCallInfo fcinfo, int n);

}  // namespace billing::glue
