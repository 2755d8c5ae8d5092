// The subscription history written by a subscription write's own statement
// (src/glue/history.cpp holds the triggers that write it otherwise).
#pragma once

#include <string>

namespace billing::glue {

// The CTEs that write, inside a statement changing one subscription, the
// history rows billing._history_inserted / billing._history_updated would
// write after it, with the same columns and values. The statement's CTE
// "changed" RETURNS the whole new row; for an update, "before" holds the old
// one, the change is dated at parameter $at_param (the declared change time,
// glue/settings.hpp), and a row whose recorded columns did not change
// records nothing. Only for new rows without past_due_since (the trigger
// computes their grace end from the setting; the caller leaves those to it).
// The text starts with ", ", to follow the statement's other CTEs; run it
// under HistoriedScope (glue/audit.hpp) so that the triggers leave the
// statement alone.
std::string StatementHistory(bool update, int at_param);

}  // namespace billing::glue
