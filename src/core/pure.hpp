// Included last by every core .cpp file: a core translation unit must never
// see PostgreSQL's headers, so that it stays unit-testable without a server
// and free of longjmp. (CMake also builds the core with no PostgreSQL include
// path.) Glue files may include core headers; core files may not include glue.
#pragma once
#ifdef POSTGRES_H
#error "billing core sources must not be compiled together with postgres.h"
#endif
