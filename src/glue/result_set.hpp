// Rows returned by a set-returning function (materialize mode).
#pragma once

#include "glue/guard.hpp"

#include <optional>
#include <string>
#include <vector>

namespace billing::glue {

class ResultSet {
 public:
	explicit ResultSet(FunctionCallInfo fcinfo);
	// One value per column, as text in the column's input syntax; nullopt is NULL.
	void Add(const std::vector<std::optional<std::string>> &values);

 private:
	FunctionCallInfo fcinfo_;
	AttInMetadata *input_ = nullptr;
};

}  // namespace billing::glue
