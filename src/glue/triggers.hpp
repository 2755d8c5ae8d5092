// What billing's C++ triggers share (src/glue/audit.cpp holds them).
#pragma once

#include "glue/postgres.hpp"

namespace billing::glue {

// True while a superuser's COPY billing.<table> ... FROM stdin (what
// pg_restore and a plain-format dump run) loads a billing table: the dumped
// rows already hold what the triggers would write.
bool Restoring();

// The trigger data of a call; an internal error (XX000) naming `name` when
// the function was not called as a trigger.
TriggerData *TriggerDataOf(FunctionCallInfo fcinfo, const char *name);

// Positions a read pointer of our own at the start of a transition table
// (other triggers of the statement read the same tuplestore). Call in PgCall.
void RewindTransitionTable(Tuplestorestate *rows);

}  // namespace billing::glue
