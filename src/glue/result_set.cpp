#include "glue/result_set.hpp"

#include "core/error.hpp"

namespace billing::glue {

ResultSet::ResultSet(FunctionCallInfo fcinfo) : fcinfo_(fcinfo)
{
	AttInMetadata *input = nullptr;
	PgCall([&] {
		InitMaterializedSRF(fcinfo, 0);
		ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
		MemoryContext old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		input = TupleDescGetAttInMetadata(rsinfo->setDesc);
		MemoryContextSwitchTo(old);
	});
	input_ = input;
}

void
ResultSet::Add(const std::vector<std::optional<std::string>> &values)
{
	// BuildTupleFromCStrings reads one value per column of the declared result
	// type: a mismatch with the SQL declaration would read past the vector.
	int natts = input_->tupdesc->natts;
	if (values.size() != static_cast<size_t>(natts))
		throw Error(sqlstate::kInternalError, "result row does not match the function's result type",
					"The row has " + std::to_string(values.size()) + " values; the result type has " +
						std::to_string(natts) + " columns.");
	// C strings for BuildTupleFromCStrings; the std::strings outlive the call.
	std::vector<char *> cstrings;
	cstrings.reserve(values.size());
	for (const auto &v : values)
		cstrings.push_back(v ? const_cast<char *>(v->c_str()) : nullptr);
	char **raw = cstrings.data();
	AttInMetadata *input = input_;
	FunctionCallInfo fcinfo = fcinfo_;
	PgCall([&] {
		ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
		HeapTuple tuple = BuildTupleFromCStrings(input, raw);
		tuplestore_puttuple(rsinfo->setResult, tuple);  // copies the tuple
		heap_freetuple(tuple);
	});
}

}  // namespace billing::glue
