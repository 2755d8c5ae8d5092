#include "glue/spi.hpp"

#include "core/error.hpp"

#include <exception>
#include <unordered_map>

namespace billing::glue {

SqlArg
SqlArg::Text(const std::string &s)
{
	Datum d = 0;
	const char *data = s.data();
	int len = static_cast<int>(s.size());
	PgCall([&] { d = PointerGetDatum(cstring_to_text_with_len(data, len)); });
	return {TEXTOID, d, false};
}

SqlArg
SqlArg::Text(const std::optional<std::string> &s)
{
	return s ? Text(*s) : Null(TEXTOID);
}

SqlArg
SqlArg::Jsonb(const std::string &json)
{
	Datum d = 0;
	const char *data = json.c_str();
	// jsonb_in leaves its parse state behind; parse in a scratch context and
	// keep only the value.
	PgCall([&] {
		MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext, "billing jsonb argument", ALLOCSET_SMALL_SIZES);
		MemoryContext target = MemoryContextSwitchTo(scratch);
		Datum parsed = DirectFunctionCall1(jsonb_in, CStringGetDatum(data));
		MemoryContextSwitchTo(target);
		d = PointerGetDatum(PG_DETOAST_DATUM_COPY(parsed));  // a plain copy: jsonb_in never toasts
		MemoryContextDelete(scratch);
	});
	return {JSONBOID, d, false};
}

std::string
Row::text_or(int column, const std::string &fallback) const
{
	const auto &v = values_.at(column);
	return v ? *v : fallback;
}

std::optional<int64_t>
Row::int64(int column) const
{
	const auto &v = values_.at(column);
	if (!v)
		return std::nullopt;
	return std::stoll(*v);
}

const std::string &
Row::Required(int column) const
{
	const auto &v = values_.at(column);
	if (!v) {
		std::string name = names_ && column < static_cast<int>(names_->size()) ? (*names_)[column] : "?";
		throw Error(sqlstate::kInternalError, "internal query returned null in column \"" + name + "\"",
					"Billing requires a value in column " + std::to_string(column + 1) + " of the result.");
	}
	return *v;
}

std::string
Row::text_required(int column) const
{
	return Required(column);
}

int64_t
Row::int64_required(int column) const
{
	return std::stoll(Required(column));
}

bool
Row::boolean(int column) const
{
	const auto &v = values_.at(column);
	return v && (*v == "t" || *v == "true");
}

Spi::Spi(Access access) : read_only_(access == Access::kReadOnly), uncaught_at_start_(std::uncaught_exceptions())
{
	PgCall([] {
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
	});
}

Spi::~Spi()
{
	if (finished_ || std::uncaught_exceptions() > uncaught_at_start_)
		return;
	try {
		PgCall([] { elog(WARNING, "SPI connection of a billing function was not finished"); });
	} catch (...) {
		// A destructor must not throw: a warning that cannot be reported is dropped.
	}
}

void
Spi::Finish()
{
	if (finished_)
		return;
	finished_ = true;
	PgCall([] { SPI_finish(); });
}

uint64_t
Spi::Run(const char *sql, const std::vector<SqlArg> &args)
{
	bool read_only = read_only_;
	int nargs = static_cast<int>(args.size());
	// Arrays live in SPI's procedure memory so the PgCall frame owns nothing.
	Oid *types = nullptr;
	Datum *values = nullptr;
	char *nulls = nullptr;
	PgCall([&] {
		types = static_cast<Oid *>(palloc(sizeof(Oid) * (nargs + 1)));
		values = static_cast<Datum *>(palloc(sizeof(Datum) * (nargs + 1)));
		nulls = static_cast<char *>(palloc(nargs + 1));
	});
	for (int i = 0; i < nargs; i++) {
		types[i] = args[i].type;
		values[i] = args[i].value;
		nulls[i] = args[i].isnull ? 'n' : ' ';
	}
	int rc = 0;
	PgCall([&] {
		rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, 0);
		pfree(types);
		pfree(values);
		pfree(nulls);
	});
	if (rc < 0)
		throw Error(sqlstate::kInternalError, "internal query failed", std::string("SPI result code ") + std::to_string(rc));
	return SPI_processed;
}

void
Spi::ReleaseResult()
{
	SPITupleTable *table = SPI_tuptable;
	if (table == nullptr)
		return;
	PgCall([&] { SPI_freetuptable(table); });
	SPI_tuptable = nullptr;
}

uint64_t
Spi::Execute(const char *sql, const std::vector<SqlArg> &args)
{
	uint64_t n = Run(sql, args);
	ReleaseResult();
	return n;
}

std::vector<Row>
Spi::Query(const char *sql, const std::vector<SqlArg> &args)
{
	return CollectRows(Run(sql, args));
}

std::vector<Row>
Spi::QueryPrepared(const char *sql, const std::vector<SqlArg> &args)
{
	return CollectRows(RunPrepared(sql, args));
}

uint64_t
Spi::RunPrepared(const char *sql, const std::vector<SqlArg> &args)
{
	// Keyed by the literal's address: a handful of statements per backend.
	static std::unordered_map<const char *, SPIPlanPtr> plans;
	int nargs = static_cast<int>(args.size());
	SPIPlanPtr plan = nullptr;
	auto found = plans.find(sql);
	if (found != plans.end()) {
		plan = found->second;
	} else {
		Oid *types = nullptr;
		PgCall([&] { types = static_cast<Oid *>(palloc(sizeof(Oid) * (nargs + 1))); });
		for (int i = 0; i < nargs; i++)
			types[i] = args[i].type;
		PgCall([&] {
			plan = SPI_prepare(sql, nargs, types);
			if (plan == nullptr)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			if (SPI_keepplan(plan) != 0)
				elog(ERROR, "SPI_keepplan failed");
			pfree(types);
		});
		plans.emplace(sql, plan);
	}
	Datum *values = nullptr;
	char *nulls = nullptr;
	PgCall([&] {
		values = static_cast<Datum *>(palloc(sizeof(Datum) * (nargs + 1)));
		nulls = static_cast<char *>(palloc(nargs + 1));
	});
	for (int i = 0; i < nargs; i++) {
		values[i] = args[i].value;
		nulls[i] = args[i].isnull ? 'n' : ' ';
	}
	int rc = 0;
	bool read_only = read_only_;
	PgCall([&] {
		rc = SPI_execute_plan(plan, values, nulls, read_only, 0);
		pfree(values);
		pfree(nulls);
	});
	if (rc < 0)
		throw Error(sqlstate::kInternalError, "internal query failed", std::string("SPI result code ") + std::to_string(rc));
	return SPI_processed;
}

// Copies the rows of the last query out of SPI's memory, then frees what SPI
// allocated for them: without that, every query of a long loop (maintenance
// over many subscriptions) would keep its result until SPI_finish.
std::vector<Row>
Spi::CollectRows(uint64_t n)
{
	std::vector<Row> rows;
	SPITupleTable *table = SPI_tuptable;
	if (table == nullptr)
		return rows;
	rows.reserve(n);
	int natts = table->tupdesc->natts;
	std::shared_ptr<std::vector<std::string>> names;
	if (n > 0) {
		names = std::make_shared<std::vector<std::string>>();
		names->reserve(natts);
		for (int c = 0; c < natts; c++)
			names->emplace_back(NameStr(TupleDescAttr(table->tupdesc, c)->attname));
	}
	char **texts = nullptr;
	PgCall([&] { texts = static_cast<char **>(palloc0(sizeof(char *) * (natts + 1))); });
	for (uint64_t r = 0; r < n; r++) {
		PgCall([&] {
			for (int c = 0; c < natts; c++)
				texts[c] = SPI_getvalue(table->vals[r], table->tupdesc, c + 1);
		});
		Row row;
		row.names_ = names;
		row.values_.reserve(natts);
		for (int c = 0; c < natts; c++) {
			if (texts[c] == nullptr)
				row.values_.emplace_back(std::nullopt);
			else
				row.values_.emplace_back(std::string(texts[c]));
		}
		rows.push_back(std::move(row));
		PgCall([&] {
			for (int c = 0; c < natts; c++) {
				if (texts[c] != nullptr)
					pfree(texts[c]);
				texts[c] = nullptr;
			}
		});
	}
	PgCall([&] { pfree(texts); });
	ReleaseResult();
	return rows;
}

Datum
Spi::QueryRowDatum(const char *sql, const std::vector<SqlArg> &args)
{
	uint64_t n = Run(sql, args);
	if (n != 1 || SPI_tuptable == nullptr)
		throw Error(sqlstate::kInternalError, "internal query returned no row");
	Datum result = 0;
	SPITupleTable *table = SPI_tuptable;
	// The first column is a whole-row value; copy it out of SPI's memory into
	// the caller's context so it survives SPI_finish.
	PgCall([&] {
		bool isnull = false;
		Datum value = SPI_getbinval(table->vals[0], table->tupdesc, 1, &isnull);
		if (isnull)
			elog(ERROR, "internal query returned a null row");
		result = SPI_datumTransfer(value, false, -1);
	});
	ReleaseResult();
	return result;
}

namespace {
// PostgreSQL's epoch is 2000-01-01, 946684800 seconds after the Unix epoch.
constexpr int64_t kPgEpochMicros = INT64CONST(946684800000000);
}  // namespace

int64_t
ToCoreTime(TimestampTz t)
{
	int64_t unix_micros = 0;
	if (TIMESTAMP_NOT_FINITE(t) || __builtin_add_overflow(static_cast<int64_t>(t), kPgEpochMicros, &unix_micros))
		throw Error(sqlstate::kDatetimeFieldOverflow, "timestamp out of range",
					"A timestamp of " + std::to_string(t) + " microseconds since 2000-01-01 has no core time.");
	return unix_micros;
}

TimestampTz
ToPgTime(int64_t unix_micros)
{
	int64_t t = 0;
	if (__builtin_sub_overflow(unix_micros, kPgEpochMicros, &t) || !IS_VALID_TIMESTAMP(t))
		throw Error(sqlstate::kDatetimeFieldOverflow, "timestamp out of range",
					"A time of " + std::to_string(unix_micros) +
						" microseconds since 1970-01-01 is outside the range of timestamptz.");
	return static_cast<TimestampTz>(t);
}

std::string
TextArg(FunctionCallInfo fcinfo, int n)
{
	char *s = nullptr;
	PgCall([&] { s = text_to_cstring(PG_GETARG_TEXT_PP(n)); });
	return std::string(s);
}

}  // namespace billing::glue
