// A write that writes its own audit_log row in the same statement (the
// lifecycle functions' and the Stripe path's), and the scope in which the
// audit trigger leaves such statements alone. The trigger's own insert is in
// audit.cpp beside AuditedChange, with the same columns and values.
#pragma once

#include "glue/settings.hpp"

#include <string>

namespace billing::glue {

// The statement "WITH <ctes>, audited AS (INSERT INTO billing.audit_log ...)
// <select>": the change is the CTE "changed" (RETURNING the whole new row),
// an UPDATE's old row the CTE "before"; the audit row is what billing._audit
// would write. table_literal: the table's name as an SQL literal
// ("'subscriptions'").
std::string AuditedChange(const char *table_literal, bool update, const std::string &ctes, const std::string &select);

// The table whose statements audit themselves, for one scope: restores what
// was declared before on the way out, an error included (assigns a pointer:
// nothing of PostgreSQL's in the destructor).
class AuditedScope {
public:
	explicit AuditedScope(const char *table) : outer_(AuditedByStatementTable()) { AuditedByStatement(table); }
	~AuditedScope() { AuditedByStatement(outer_); }
	AuditedScope(const AuditedScope &) = delete;
	AuditedScope &operator=(const AuditedScope &) = delete;

private:
	const char *outer_;
};

}  // namespace billing::glue
