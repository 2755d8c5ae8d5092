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

namespace {

// A one-dimensional array of `n` elements of a by-value 8-byte or bool type, or
// of text; element i comes from datum(i), which sets its null flag.
template <typename Fill>
SqlArg
ArrayArg(Oid array_type, Oid element_type, size_t n, Fill fill)
{
	Datum d = 0;
	int count = static_cast<int>(n);
	PgCall([&] {
		Datum *elements = static_cast<Datum *>(palloc0(sizeof(Datum) * (n + 1)));
		bool *nulls = static_cast<bool *>(palloc0(sizeof(bool) * (n + 1)));
		for (int i = 0; i < count; i++)
			elements[i] = fill(i, &nulls[i]);
		int16 len = 0;
		bool byval = false;
		char align = 0;
		get_typlenbyvalalign(element_type, &len, &byval, &align);
		int dims[1] = {count};
		int lbs[1] = {1};
		d = PointerGetDatum(construct_md_array(elements, nulls, 1, dims, lbs, element_type, len, byval, align));
		pfree(elements);
		pfree(nulls);
	});
	return {array_type, d, false};
}

}  // namespace

SqlArg
SqlArg::Int64Array(const std::vector<std::optional<int64_t>> &values)
{
	return ArrayArg(INT8ARRAYOID, INT8OID, values.size(), [&](int i, bool *null) {
		*null = !values[i];
		return Int64GetDatum(values[i].value_or(0));
	});
}

SqlArg
SqlArg::TimestampArray(const std::vector<std::optional<int64_t>> &pg_micros)
{
	return ArrayArg(TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, pg_micros.size(), [&](int i, bool *null) {
		*null = !pg_micros[i];
		return TimestampTzGetDatum(pg_micros[i].value_or(0));
	});
}

SqlArg
SqlArg::BoolArray(const std::vector<bool> &values)
{
	return ArrayArg(BOOLARRAYOID, BOOLOID, values.size(), [&](int i, bool *null) {
		*null = false;
		return BoolGetDatum(values[i]);
	});
}

// Called inside PgCall (ArrayArg): cstring_to_text_with_len may raise.
SqlArg
SqlArg::TextArray(const std::vector<std::optional<std::string>> &values)
{
	return ArrayArg(TEXTARRAYOID, TEXTOID, values.size(), [&](int i, bool *null) {
		*null = !values[i];
		return values[i] ? PointerGetDatum(cstring_to_text_with_len(values[i]->data(), static_cast<int>(values[i]->size())))
						 : Datum(0);
	});
}

std::optional<std::string>
Row::text(int column) const
{
	const Value &v = values_.at(column);
	switch (v.kind) {
	case Value::Kind::kNull:
		return std::nullopt;
	case Value::Kind::kInteger:
		return std::to_string(v.i);
	case Value::Kind::kBoolean:
		return std::string(v.i ? "t" : "f");
	case Value::Kind::kText:
		break;
	}
	return v.s;
}

std::string
Row::text_or(int column, const std::string &fallback) const
{
	std::optional<std::string> v = text(column);
	return v ? *v : fallback;
}

std::optional<int64_t>
Row::int64(int column) const
{
	const Value &v = values_.at(column);
	if (v.kind == Value::Kind::kNull)
		return std::nullopt;
	if (v.kind == Value::Kind::kText)
		return std::stoll(v.s);
	return v.i;
}

const Value &
Row::Required(int column) const
{
	const Value &v = values_.at(column);
	if (v.kind == Value::Kind::kNull) {
		std::string name = names_ && column < static_cast<int>(names_->size()) ? (*names_)[column] : "?";
		throw Error(sqlstate::kInternalError, "internal query returned null in column \"" + name + "\"",
					"Billing requires a value in column " + std::to_string(column + 1) + " of the result.");
	}
	return v;
}

std::string
Row::text_required(int column) const
{
	Required(column);
	return *text(column);
}

int64_t
Row::int64_required(int column) const
{
	Required(column);
	return *int64(column);
}

bool
Row::boolean(int column) const
{
	const Value &v = values_.at(column);
	switch (v.kind) {
	case Value::Kind::kNull:
		return false;
	case Value::Kind::kInteger:
	case Value::Kind::kBoolean:
		return v.i != 0;
	case Value::Kind::kText:
		break;
	}
	return v.s == "t" || v.s == "true";
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

namespace {

// Kept plans, found by argument types and query text. Bounded, so that a
// caller building many distinct texts cannot grow a backend's memory: past
// the bound a query is planned for its one execution, as SPI_execute would.
constexpr size_t kMaxKeptPlans = 512;

std::unordered_map<std::string, SPIPlanPtr> &
KeptPlans()
{
	static std::unordered_map<std::string, SPIPlanPtr> plans;
	return plans;
}

std::string
PlanKey(const std::string &sql, const std::vector<SqlArg> &args)
{
	std::string key;
	key.reserve(sql.size() + args.size() * sizeof(Oid) + 1);
	for (const auto &arg : args)
		key.append(reinterpret_cast<const char *>(&arg.type), sizeof(Oid));
	key.push_back('\0');
	key.append(sql);
	return key;
}

}  // namespace

uint64_t
Spi::Run(const std::string &sql, const std::vector<SqlArg> &args)
{
	bool read_only = read_only_;
	int nargs = static_cast<int>(args.size());
	const char *text = sql.c_str();
	auto &plans = KeptPlans();
	std::string key = PlanKey(sql, args);
	auto found = plans.find(key);
	SPIPlanPtr plan = found == plans.end() ? nullptr : found->second;
	bool keep = plan == nullptr && plans.size() < kMaxKeptPlans;
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
	if (keep) {
		// Prepared and kept first, remembered at once: a failing execution
		// below must not leave a kept plan nobody can find again.
		PgCall([&] {
			// A generic plan, planned once: left to choose, the plan cache plans
			// a query again on every execution whenever a custom plan looks
			// cheaper (generate_series(1, $n), LIMIT $n, = ANY ($n) ...).
			SPIPlanPtr prepared = SPI_prepare_cursor(text, nargs, types, CURSOR_OPT_GENERIC_PLAN);
			if (prepared == nullptr)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			if (SPI_keepplan(prepared) != 0)
				elog(ERROR, "SPI_keepplan failed");
			plan = prepared;
		});
		plans.emplace(std::move(key), plan);
	}
	int rc = 0;
	PgCall([&] {
		if (plan != nullptr)
			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);
		else
			rc = SPI_execute_with_args(text, nargs, types, values, nulls, read_only, 0);
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
Spi::Execute(const std::string &sql, const std::vector<SqlArg> &args)
{
	uint64_t n = Run(sql, args);
	ReleaseResult();
	return n;
}

std::vector<Row>
Spi::Query(const std::string &sql, const std::vector<SqlArg> &args)
{
	return CollectRows(Run(sql, args));
}

std::vector<Row>
Spi::QueryCoreTimes(const std::string &sql, const std::vector<SqlArg> &args)
{
	return CollectRows(Run(sql, args), true);
}

namespace {

// How one result column is read.
enum class ColumnRead : char { kInt8, kInt4, kInt2, kOid, kBool, kBytes, kOutput, kCoreTime };

ColumnRead
ReadOf(Oid type, bool core_times)
{
	switch (type) {
	case TIMESTAMPTZOID:
		return core_times ? ColumnRead::kCoreTime : ColumnRead::kOutput;
	case INT8OID:
		return ColumnRead::kInt8;
	case INT4OID:
		return ColumnRead::kInt4;
	case INT2OID:
		return ColumnRead::kInt2;
	case OIDOID:
		return ColumnRead::kOid;
	case BOOLOID:
		return ColumnRead::kBool;
	case TEXTOID:
	case VARCHAROID:
		return ColumnRead::kBytes;
	default:
		return ColumnRead::kOutput;
	}
}

// One row's values as PgCall leaves them: plain data, nothing to destroy.
struct RawValue {
	bool null;
	int64_t i;
	const char *bytes;
	int len;
	void *to_free;  // a detoasted copy or an output function's text
};

}  // namespace

// Copies the rows of the last query out of SPI's memory, then frees what SPI
// allocated for them: without that, every query of a long loop (maintenance
// over many subscriptions) would keep its result until SPI_finish.
std::vector<Row>
Spi::CollectRows(uint64_t n, bool core_times)
{
	std::vector<Row> rows;
	SPITupleTable *table = SPI_tuptable;
	if (table == nullptr)
		return rows;
	rows.reserve(n);
	TupleDesc desc = table->tupdesc;
	int natts = desc->natts;
	std::shared_ptr<std::vector<std::string>> names;
	std::vector<ColumnRead> reads;
	if (n > 0) {
		names = std::make_shared<std::vector<std::string>>();
		names->reserve(natts);
		for (int c = 0; c < natts; c++) {
			names->emplace_back(NameStr(TupleDescAttr(desc, c)->attname));
			reads.push_back(ReadOf(TupleDescAttr(desc, c)->atttypid, core_times));
		}
	}
	RawValue *raw = nullptr;
	FmgrInfo *outputs = nullptr;
	const ColumnRead *read = reads.data();
	PgCall([&] {
		raw = static_cast<RawValue *>(palloc0(sizeof(RawValue) * (natts + 1)));
		outputs = static_cast<FmgrInfo *>(palloc0(sizeof(FmgrInfo) * (natts + 1)));
		for (int c = 0; c < natts && n > 0; c++) {
			if (read[c] != ColumnRead::kOutput)
				continue;
			Oid output = InvalidOid;
			bool varlena = false;
			getTypeOutputInfo(TupleDescAttr(desc, c)->atttypid, &output, &varlena);
			fmgr_info(output, &outputs[c]);
		}
	});
	for (uint64_t r = 0; r < n; r++) {
		HeapTuple tuple = table->vals[r];
		PgCall([&] {
			for (int c = 0; c < natts; c++) {
				RawValue &v = raw[c];
				v = RawValue{false, 0, nullptr, 0, nullptr};
				Datum d = heap_getattr(tuple, c + 1, desc, &v.null);
				if (v.null)
					continue;
				switch (read[c]) {
				case ColumnRead::kInt8:
					v.i = DatumGetInt64(d);
					break;
				case ColumnRead::kInt4:
					v.i = DatumGetInt32(d);
					break;
				case ColumnRead::kInt2:
					v.i = DatumGetInt16(d);
					break;
				case ColumnRead::kOid:
					v.i = DatumGetObjectId(d);
					break;
				case ColumnRead::kBool:
					v.i = DatumGetBool(d) ? 1 : 0;
					break;
				case ColumnRead::kCoreTime: {
					// as billing._micros(t) computes it (t - '1970-01-01'): an
					// infinity or a time beyond int64 is 22008, as there
					TimestampTz t = DatumGetTimestampTz(d);
					if (TIMESTAMP_NOT_FINITE(t))
						ereport(ERROR, (errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
										errmsg("cannot subtract infinite timestamps")));
					if (pg_add_s64_overflow(t, (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY, &v.i))
						ereport(ERROR, (errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE), errmsg("timestamp out of range")));
					break;
				}
				case ColumnRead::kBytes: {
					struct varlena *original = reinterpret_cast<struct varlena *>(DatumGetPointer(d));
					struct varlena *text = pg_detoast_datum_packed(original);
					if (text != original)
						v.to_free = text;
					v.bytes = VARDATA_ANY(text);
					v.len = static_cast<int>(VARSIZE_ANY_EXHDR(text));
					break;
				}
				case ColumnRead::kOutput: {
					char *out = OutputFunctionCall(&outputs[c], d);
					v.to_free = out;
					v.bytes = out;
					v.len = static_cast<int>(std::strlen(out));
					break;
				}
				}
			}
		});
		Row row;
		row.names_ = names;
		row.values_.resize(natts);
		for (int c = 0; c < natts; c++) {
			Value &value = row.values_[c];
			const RawValue &v = raw[c];
			if (v.null)
				value.kind = Value::Kind::kNull;
			else if (read[c] == ColumnRead::kBool)
				value.kind = Value::Kind::kBoolean, value.i = v.i;
			else if (v.bytes == nullptr)
				value.kind = Value::Kind::kInteger, value.i = v.i;
			else
				value.kind = Value::Kind::kText, value.s.assign(v.bytes, v.len);
		}
		rows.push_back(std::move(row));
		PgCall([&] {
			for (int c = 0; c < natts; c++)
				if (raw[c].to_free != nullptr) {
					pfree(raw[c].to_free);
					raw[c].to_free = nullptr;
				}
		});
	}
	PgCall([&] {
		pfree(raw);
		pfree(outputs);
	});
	ReleaseResult();
	return rows;
}

Datum
Spi::QueryRowDatum(const std::string &sql, const std::vector<SqlArg> &args)
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
