// The one exception type the core throws. It carries everything PostgreSQL
// needs to report it (SQLSTATE, message, detail, hint); the glue's guard turns
// it into an ereport after every C++ frame has unwound.
#pragma once

#include <stdexcept>
#include <string>

namespace billing {

// SQLSTATEs of the billing class (SPEC §7) and the standard ones the core uses.
namespace sqlstate {
inline constexpr const char *kQuotaExceeded = "QB001";
inline constexpr const char *kTransitionNotAllowed = "QB010";
inline constexpr const char *kSignatureInvalid = "QB020";
inline constexpr const char *kInvalidParameterValue = "22023";
inline constexpr const char *kInvalidTextRepresentation = "22P02";
inline constexpr const char *kNumericValueOutOfRange = "22003";
inline constexpr const char *kDatetimeFieldOverflow = "22008";
inline constexpr const char *kInsufficientPrivilege = "42501";
inline constexpr const char *kProgramLimitExceeded = "54000";
inline constexpr const char *kObjectNotInPrerequisiteState = "55000";
inline constexpr const char *kInternalError = "XX000";
}  // namespace sqlstate

class Error : public std::runtime_error {
 public:
	Error(std::string state, const std::string &message, std::string detail = {}, std::string hint = {})
		: std::runtime_error(message), sqlstate_(std::move(state)), detail_(std::move(detail)), hint_(std::move(hint))
	{
	}

	const std::string &sqlstate() const noexcept { return sqlstate_; }
	const std::string &detail() const noexcept { return detail_; }
	const std::string &hint() const noexcept { return hint_; }

 private:
	std::string sqlstate_;
	std::string detail_;
	std::string hint_;
};

// Shorthand for the commonest user error: a bad argument.
inline Error
InvalidParameter(const std::string &message, std::string detail = {}, std::string hint = {})
{
	return Error(sqlstate::kInvalidParameterValue, message, std::move(detail), std::move(hint));
}

}  // namespace billing
