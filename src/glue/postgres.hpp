// The only place C++ code includes PostgreSQL's headers.
//
// Standard headers come first, then PostgreSQL's inside extern "C", then the
// macros port.h installs over the C library are removed again, so that both
// std::snprintf and PostgreSQL's own calls keep working.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstring>

extern "C" {
#include "postgres.h"

#include "access/genam.h"
#include "access/hash.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/date.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "parser/parse_coerce.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "catalog/namespace.h"
#include "storage/lmgr.h"
#include "commands/extension.h"
#include "catalog/partition.h"
#include "catalog/pg_operator.h"
#include "commands/event_trigger.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "utils/typcache.h"
#include "catalog/pg_class.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "tcop/tcopprot.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "commands/sequence.h"
#include "access/relscan.h"
#include "utils/rls.h"
#include "rewrite/rewriteHandler.h"
#include "optimizer/optimizer.h"
}

#undef snprintf
#undef vsnprintf
#undef sprintf
#undef vsprintf
#undef fprintf
#undef printf
#undef unlink
#undef bind
