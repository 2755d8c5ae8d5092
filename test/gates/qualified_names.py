#!/usr/bin/env python3
"""Lint: every function, operator, type and cast in the SQL billing runs is
schema-qualified (issue 9; run by qualified_names.sh).

  qualified_names.py [--pending NAME,...] --bodies FILE --cpp FILE...
    --bodies FILE  rows "name<TAB>language<TAB>pinned|caller<TAB>body" (COPY
                   text format) of the functions in schema billing
    --cpp FILE...  C++ sources: every SQL text in them (cpp_sql_texts)
    --pending      function names whose findings are counted, not failed
  Prints one line per finding, then a summary line; exits 1 on a finding.
  qualified_names.py --self-test
    the lint on known texts (SELF_TEST): the gate runs it first.
  qualified_names.py --fix [--skip NAME,...] FILE.sql|FILE.cpp...
    rewrites what it can in place (fix_spans) and prints the rest.

A small lexer (PostgreSQL's lexical rules: strings, E'' strings, dollar
quotes, quoted identifiers, nested comments, operators) turns a text into
tokens; the checks (check_tokens) then read the tokens:
  - an operator symbol must be the x of OPERATOR(pg_catalog.x);
  - name( must be schema.name( unless name( is SQL grammar (GRAMMAR_CALLS);
  - ::type, CAST(x AS type) and typed literals (type 'text') need schema.type
    unless the type is a keyword the grammar itself maps to pg_catalog
    (GRAMMAR_TYPES);
  - LIKE, ILIKE, SIMILAR TO and BETWEEN resolve operators (~~, >=, ...)
    through search_path: written with OPERATOR();
  - IS DISTINCT FROM, IN (...), NULLIF and CASE x WHEN look = up by name
    with no qualified spelling: allowed only where search_path is pinned.
Not operators: PL/pgSQL assignment (x := v, x = v), SET col = v in UPDATE,
GET DIAGNOSTICS x = ROW_COUNT, RAISE ... USING opt = v, named arguments
(=>), %TYPE/%ROWTYPE, #variable_conflict, <<label>>, * in SELECT * and
count(*), and - before a number (a negative constant, folded by the grammar
without operator lookup). PL/pgSQL declarations are skipped up to their
default expression (their types are resolved when the function is compiled,
with its pinned search_path).
"""
import re
import sys

# name( that is SQL (or PL/pgSQL) grammar, not a call of a function found by
# name: no search_path lookup happens for these words.
GRAMMAR_CALLS = {
    # conditional expressions: parse nodes, no function behind them
    'case', 'coalesce', 'greatest', 'least', 'nullif',
    # SQL-standard syntax gram.y rewrites to pg_catalog.<function> itself
    'extract', 'overlay', 'position', 'substring', 'trim', 'normalize',
    # subqueries, row and array constructors, IN/ANY/ALL lists
    'exists', 'array', 'row', 'values', 'in', 'any', 'all', 'some',
    # CAST(x AS type): the type is checked on its own
    'cast',
    # FROM clause: ROWS FROM (...), LATERAL (...), JOIN (...), USING (...)
    'from', 'lateral', 'join', 'using', 'on', 'only',
    # aggregates and windows: FILTER (WHERE ...), OVER (...), WITHIN GROUP (...)
    'filter', 'over', 'group', 'by', 'partition',
    # DML: ON CONFLICT (...), SET (...) = (...), INSERT INTO x AS a (...)
    'conflict', 'set', 'into', 'returning', 'table', 'as', 'default', 'key',
    # keywords a parenthesized expression may follow
    'select', 'where', 'and', 'or', 'not', 'when', 'then', 'else', 'is', 'distinct',
    'having', 'limit', 'offset', 'union', 'intersect', 'except', 'with', 'materialized',
    'recursive', 'for', 'of', 'order', 'escape', 'variadic', 'end',
    # PL/pgSQL statements followed by an expression in parentheses
    'if', 'elsif', 'while', 'return', 'query', 'perform', 'execute', 'assert', 'raise',
}

# Type names the grammar turns into pg_catalog.<type> itself (gram.y's
# SystemTypeName: ::bigint is pg_catalog.int8 whatever search_path says);
# other names (text, jsonb, timestamptz, date, int8, bool, regclass, ...) are
# looked up through search_path and must be written pg_catalog.<name>.
GRAMMAR_TYPES = {
    'bigint', 'int', 'integer', 'smallint', 'boolean', 'numeric', 'decimal', 'dec',
    'real', 'float', 'double', 'interval', 'timestamp', 'time', 'char', 'character',
    'varchar', 'bit', 'national', 'nchar',
}

# Keywords that are operators in disguise (resolved by name through
# search_path): written a OPERATOR(pg_catalog.~~) b and so on instead.
KEYWORD_OPERATORS = {'like', 'ilike', 'similar', 'between'}

# Words after which an identifier followed by a string is not a typed literal.
NOT_TYPE_WORDS = GRAMMAR_CALLS | KEYWORD_OPERATORS | {
    'exception', 'notice', 'warning', 'info', 'log', 'debug', 'errcode', 'message',
    'detail', 'hint', 'zone', 'in', 'to', 'else', 'then', 'when', 'like', 'by',
    'is', 'null', 'true', 'false', 'interval', 'timestamp', 'time', 'date_part',
    'language', 'collate', 'distinct', 'not', 'uescape',
}

OP_CHARS = set('+-*/<>=~!@#%^&|`?')

# PL/pgSQL: the statements after which the next token starts a statement.
STATEMENT_STARTERS = {'begin', 'then', 'else', 'loop', 'declare', 'exception'}


class Token:
    __slots__ = ('kind', 'text', 'line', 'start', 'end')

    def __init__(self, kind, text, line, start, end):
        self.kind, self.text, self.line, self.start, self.end = kind, text, line, start, end

    @property
    def word(self):
        return self.text.lower() if self.kind == 'ident' else None

    def __repr__(self):
        return f'{self.kind}:{self.text}'


def lex(text):
    """PostgreSQL's lexical rules, enough to find every operator, name and
    cast outside literals and comments."""
    tokens = []
    i, n, line = 0, len(text), 1

    def add(kind, start, end):
        tokens.append(Token(kind, text[start:end], line, start, end))

    while i < n:
        c = text[i]
        if c == '\n':
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith('--', i):
            j = text.find('\n', i)
            i = n if j < 0 else j
        elif text.startswith('/*', i):
            depth, j = 1, i + 2  # nested, as PostgreSQL allows
            while j < n and depth:
                if text.startswith('/*', j):
                    depth, j = depth + 1, j + 2
                elif text.startswith('*/', j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            line += text.count('\n', i, j)
            i = j
        elif c == "'" or (c in 'eEbBxXnN' and text.startswith("'", i + 1)) or \
                (c in 'uU' and text.startswith("&'", i + 1)):
            escapes = c in 'eE'
            j = text.index("'", i) + 1
            while j < n:
                if escapes and text[j] == '\\':
                    j += 2
                    continue
                if text[j] == "'":
                    if text.startswith("''", j):
                        j += 2
                        continue
                    break
                j += 1
            j += 1
            add('string', i, j)
            line += text.count('\n', i, j)
            i = j
        elif c == '"' or (c in 'uU' and text.startswith('&"', i + 1)):
            j = text.index('"', i) + 1
            while j < n:
                if text[j] == '"':
                    if text.startswith('""', j):
                        j += 2
                        continue
                    break
                j += 1
            add('qident', i, j + 1)
            i = j + 1
        elif c == '$' and (m := re.match(r'\$([A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$', text[i:])):
            tag = m.group(0)
            j = text.find(tag, i + len(tag))
            j = n if j < 0 else j + len(tag)
            add('string', i, j)
            line += text.count('\n', i, j)
            i = j
        elif c == '$':
            m = re.match(r'\$\d*', text[i:])
            add('param', i, i + len(m.group(0)))
            i += len(m.group(0))
        elif c.isdigit() or (c == '.' and i + 1 < n and text[i + 1].isdigit()):
            m = re.match(r'(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?', text[i:])
            if text.startswith('..', i + len(m.group(1)) - 1) and m.group(1).endswith('.'):
                m = re.match(r'\d+', text[i:])  # 1..10 in a PL/pgSQL FOR loop
            add('number', i, i + len(m.group(0)))
            i += len(m.group(0))
        elif c.isalpha() or c == '_' or ord(c) > 127:
            m = re.match(r'[\w$\x80-\uffff]+', text[i:])
            add('ident', i, i + len(m.group(0)))
            i += len(m.group(0))
        elif text.startswith('::', i):
            add('cast', i, i + 2)
            i += 2
        elif text.startswith(':=', i):
            add('assign', i, i + 2)
            i += 2
        elif text.startswith('=>', i) and not (i + 2 < n and text[i + 2] in OP_CHARS):
            add('named', i, i + 2)
            i += 2
        elif text.startswith('..', i):
            add('punct', i, i + 2)
            i += 2
        elif c in OP_CHARS:
            j = i
            while j < n and text[j] in OP_CHARS and not text.startswith('--', j) and not text.startswith('/*', j):
                j += 1
            # PostgreSQL: a multi-character operator ends in + or - only if it
            # contains one of ~ ! @ # % ^ & | ` ?
            op = text[i:j]
            if len(op) > 1 and not any(ch in '~!@#%^&|`?' for ch in op):
                while len(op) > 1 and op[-1] in '+-':
                    op = op[:-1]
            add('op', i, i + len(op))
            i += len(op)
        else:
            add('punct', i, i + 1)
            i += 1
    return tokens


def matching_paren(tokens, k):
    """Index of the ')' closing the '(' at k (or len(tokens))."""
    depth = 0
    for j in range(k, len(tokens)):
        if tokens[j].text == '(':
            depth += 1
        elif tokens[j].text == ')':
            depth -= 1
            if depth == 0:
                return j
    return len(tokens)


class Finding:
    """kind: 'op' (token k is a bare operator), 'type' (token k names an
    unqualified type), 'func' (token k names an unqualified function),
    'keyword' (LIKE/ILIKE at k, NOT LIKE from k-1), 'manual' (no automatic fix)."""
    __slots__ = ('k', 'kind', 'line', 'message')

    def __init__(self, k, kind, line, message):
        self.k, self.kind, self.line, self.message = k, kind, line, message


def type_finding(tokens, k, what):
    """A finding for the type name starting at tokens[k], or None."""
    if k >= len(tokens):
        return None
    t = tokens[k]
    if k + 1 < len(tokens) and tokens[k + 1].text == '.':
        return None  # schema.type
    if t.kind == 'ident' and t.word in GRAMMAR_TYPES:
        return None
    if t.kind in ('ident', 'qident'):
        return Finding(k, 'type', t.line, f'unqualified type in {what}: {t.text}')
    return None


def check_sql(text, plpgsql=False, pinned=False):
    """The findings in one SQL or PL/pgSQL text. pinned: it runs with
    search_path = pg_catalog, pg_temp (its function's SET clause), where an
    operator the grammar looks up by name without a qualified spelling (IS
    DISTINCT FROM, IN (...), NULLIF, CASE x WHEN) can only be pg_catalog's;
    elsewhere (inlined functions, C++ texts, which run with the caller's
    search_path) those are findings too."""
    tokens = lex(text)
    findings = check_tokens(tokens, plpgsql, pinned)
    for k, inner, offset in dynamic_queries(tokens):
        found, _ = check_sql(inner, False, pinned)
        line = tokens[k].line + text.count('\n', tokens[k].start, offset) - 1
        findings += [Finding(k, 'nested', line + f.line, 'in EXECUTE: ' + f.message) for f in found]
    return findings, tokens


def dynamic_queries(tokens):
    """(token index, text, offset of the text) of each query PL/pgSQL runs
    with EXECUTE: a string literal right after EXECUTE, or the template of
    EXECUTE format('...', ...) with its %I, %L and %s as a name, a literal and
    a name. DDL (CREATE, DROP, ALTER, LOCK) is left out: it names billing's
    objects with their schema and runs no operator or function."""
    out = []
    for k, t in enumerate(tokens):
        if t.kind != 'string' or k == 0:
            continue
        if tokens[k - 1].word == 'execute':
            template = False
        elif (k >= 4 and tokens[k - 1].text == '(' and tokens[k - 2].word == 'format'
              and tokens[k - 3].text == '.' and tokens[k - 5].word == 'execute'):
            template = True
        else:
            continue
        if t.text.startswith('$'):
            tag = re.match(r'\$[^$]*\$', t.text).group(0)
            inner, offset = t.text[len(tag):-len(tag)], t.start + len(tag)
        elif t.text.startswith("'"):
            inner, offset = t.text[1:-1].replace("''", "'"), t.start + 1
        else:
            continue
        if template:
            inner = re.sub(r'%(\d+\$)?([IsL%])', lambda m: {'I': 'fmt_i', 's': 'fmt_s', 'L': "'fmt'", '%': '%'}[m.group(2)], inner)
        if re.match(r'\s*(create|drop|alter|lock)\b', inner, re.I):
            continue
        out.append((k, inner, offset))
    return out


def check_tokens(tokens, plpgsql, pinned):
    findings = []
    n = len(tokens)

    def prev(k, back=1):
        return tokens[k - back] if k - back >= 0 else None

    def word(k):
        return tokens[k].word if 0 <= k < n else None

    def add(k, kind, message):
        findings.append(Finding(k, kind, tokens[k].line, message))

    skip = set()               # token indexes already judged (inside OPERATOR(...))
    assign_depth = None        # paren depth of a SET / GET DIAGNOSTICS / USING list
    assign_item_start = False  # the next = in that list is an assignment
    depth = 0
    statement_start = True     # PL/pgSQL: the next token starts a statement
    in_declare = plpgsql and word(0) == 'declare'
    declare_default = False    # inside a DECLARE's := default expression
    cast_as = []               # paren depths of open CAST( ... )
    raise_statement = False

    for k, t in enumerate(tokens):
        w = t.word
        starts_statement = statement_start
        statement_start = False
        if t.text == '(':
            depth += 1
        elif t.text == ')':
            depth -= 1
            if cast_as and cast_as[-1] > depth:
                cast_as.pop()
            if assign_depth is not None and depth < assign_depth:
                assign_depth = None
        elif t.text == ';':
            statement_start = plpgsql
            assign_depth = None
            raise_statement = False
        if plpgsql and w in STATEMENT_STARTERS:
            statement_start = True
        if plpgsql and w == 'begin':
            in_declare = False
        if plpgsql and w == 'raise' and starts_statement:
            raise_statement = True
        if in_declare and not declare_default:
            # declarations: names and types (resolved with the function's
            # search_path when it is compiled); their defaults run, checked
            if t.kind == 'assign' or w == 'default' or (t.kind == 'op' and t.text == '='):
                declare_default = True
            continue
        if declare_default and t.text == ';':
            declare_default = False
            continue
        if k in skip:
            continue
        if plpgsql and t.kind == 'op' and t.text == '#' and word(k + 1) in (
                'variable_conflict', 'print_strict_params', 'option'):
            line = t.line  # a compiler option: #variable_conflict use_column
            skip.update(j for j in range(k, n) if tokens[j].line == line)
            continue

        # SET a = 1, b = 2 / GET DIAGNOSTICS x = ROW_COUNT / RAISE ... USING ERRCODE = '...'
        if w == 'set' or (plpgsql and w == 'diagnostics') or (raise_statement and w == 'using'):
            assign_depth, assign_item_start = depth, True
            continue
        if assign_depth is not None and depth == assign_depth:
            if t.text == ',':
                assign_item_start = True
                continue
            if w in ('from', 'where', 'returning'):
                assign_depth = None

        if t.kind == 'ident' and w == 'operator' and k + 1 < n and tokens[k + 1].text == '(':
            close = matching_paren(tokens, k + 1)
            inner = tokens[k + 2:close]
            # psprintf's OPERATOR(%s.%s) (glue/quota_trigger.cpp) is filled
            # with the equality operator's own schema and name from pg_operator
            if not (len(inner) == 3 and inner[0].word in ('pg_catalog', 'fmt_s') and inner[1].text == '.'):
                add(k, 'manual', 'OPERATOR() not in pg_catalog: ' + ' '.join(x.text for x in inner))
            skip.update(range(k + 1, close + 1))
            continue

        if t.kind == 'op':
            op = t.text
            p = prev(k)
            if op == '=' and assign_depth is not None and depth == assign_depth and assign_item_start:
                assign_item_start = False
                continue
            if op == '*' and (p is None or p.text in (',', '(', '.') or p.word in ('select', 'distinct', 'returning', 'all')):
                continue  # SELECT *, t.*, count(*)
            if op == '-' and k + 1 < n and tokens[k + 1].kind == 'number' and (
                    p is None or p.kind in ('op', 'cast', 'assign', 'named') or p.text in ('(', ',', '[')
                    or (p.kind == 'ident' and p.word in GRAMMAR_CALLS | {'then', 'else', 'return'})):
                continue  # a negative constant
            if plpgsql and op == '%' and word(k + 1) in ('type', 'rowtype'):
                continue
            if plpgsql and op in ('<<', '>>') and (starts_statement or op == '>>'):
                continue  # <<label>>
            if plpgsql and op == '=' and is_plpgsql_target(tokens, k):
                continue  # PL/pgSQL assignment written with =
            add(k, 'op', f'unqualified operator {op}')
            continue

        if t.kind == 'cast':
            f = type_finding(tokens, k + 1, '::')
            if f:
                findings.append(f)
            continue

        if t.kind == 'ident' and w == 'as' and cast_as and cast_as[-1] == depth:
            f = type_finding(tokens, k + 1, 'CAST(... AS type)')
            if f:
                findings.append(f)
            continue

        if t.kind == 'ident' and w in ('like', 'ilike'):
            add(k, 'keyword', f'{t.text.upper()} resolves its operator through search_path')
            continue
        if t.kind == 'ident' and w in ('similar', 'between'):
            add(k, 'manual', f'{t.text.upper()} resolves its operators through search_path: write OPERATOR(pg_catalog.x)')
            continue
        if not pinned:
            # grammar that looks = up by name, with no qualified spelling
            if w == 'distinct' and word(k - 1) in ('is', 'not') and word(k + 1) == 'from':
                add(k, 'manual', 'IS DISTINCT FROM resolves = through search_path')
            elif w == 'in' and k + 1 < n and tokens[k + 1].text == '(' and word(k + 2) != 'select' \
                    and not (plpgsql and word(k - 2) == 'for'):
                add(k, 'manual', 'IN (list) resolves = through search_path: write OPERATOR(pg_catalog.=) ANY (ARRAY[...])')
            elif w == 'nullif' and word(k + 1) is None and tokens[k + 1].text == '(':
                add(k, 'manual', 'NULLIF resolves = through search_path')
            elif w == 'case' and word(k + 1) != 'when':
                add(k, 'manual', 'CASE x WHEN resolves = through search_path: write CASE WHEN x OPERATOR(pg_catalog.=) ...')

        if t.kind in ('ident', 'qident') and k + 1 < n and tokens[k + 1].text == '(':
            p = prev(k)
            if p is not None and p.text == '.':
                continue  # schema.function(
            if w == 'cast':
                cast_as.append(depth + 1)
            if w in GRAMMAR_CALLS:
                continue
            if p is not None and (p.text == ')' or p.word == 'as'):
                continue  # alias(column, ...) after a FROM item
            close = matching_paren(tokens, k + 1)
            if word(close + 1) == 'as' and (close + 2 < n and tokens[close + 2].text == '('
                                            or word(close + 2) in ('materialized', 'not')):
                continue  # WITH name(column, ...) AS [NOT MATERIALIZED] (...)
            add(k, 'func', f'unqualified function {t.text}(')
            continue

        if t.kind == 'ident' and k + 1 < n and tokens[k + 1].kind == 'string' and w not in NOT_TYPE_WORDS:
            p = prev(k)
            if not (p is not None and p.text == '.') and not tokens[k + 1].text.startswith('$'):
                add(k, 'type', f"unqualified type in typed literal: {t.text} '...'")
    return findings


def is_plpgsql_target(tokens, k):
    """tokens[k] is '=': is it 'target = value' at the start of a statement?"""
    j = k - 1
    if j >= 0 and tokens[j].text == ']':  # target[subscript]
        depth = 0
        while j >= 0:
            if tokens[j].text == ']':
                depth += 1
            elif tokens[j].text == '[':
                depth -= 1
                if depth == 0:
                    break
            j -= 1
        j -= 1
    while j >= 0 and tokens[j].kind in ('ident', 'qident'):
        if j - 1 >= 0 and tokens[j - 1].text == '.':
            j -= 2
            continue
        break
    if j < 0 or tokens[j].kind not in ('ident', 'qident'):
        return False
    before = tokens[j - 1] if j > 0 else None
    return before is None or before.text == ';' or before.word in STATEMENT_STARTERS


# ---- C++: the string literals that reach SPI

# Calls whose string arguments are messages, names or patterns, not SQL.
CPP_NOT_SQL_CALLS = {
    'Error', 'elog', 'ereport', 'errmsg', 'errdetail', 'errhint', 'errcontext', 'errmsg_internal',
    'errdetail_internal', 'AllocSetContextCreate', 'SPI_fnumber', 'strcmp', 'strncmp',
    'pg_strncasecmp', 'pg_strcasecmp', 'GetConfigOption', 'GetConfigOptionByName', 'DefineCustomStringVariable',
    'DefineCustomIntVariable', 'DefineCustomBoolVariable', 'DefineCustomEnumVariable',
    'MarkGUCPrefixReserved', 'set_config_option', 'CStringGetTextDatum', 'TriggerDataOf', 'Required',
    'text_required', 'int64_required', 'static_assert', 'PG_MODULE_MAGIC', 'load_external_function',
    'get_role_oid', 'get_namespace_oid', 'get_extension_oid', 'LookupFuncName', 'Rethrow',
    'find', 'compare', 'at', 'count', 'append', 'push_back', 'emplace', 'emplace_back', 'Counts',
    'Jsonb', 'Text', 'Fail', 'Refuse', 'RefuseNull', 'format_type_be', 'quote_identifier',
    'gettext_noop', '_',
}

# The calls that run SQL (glue/spi.hpp and PostgreSQL's SPI).
SPI_CALLS = {'Query', 'Execute', 'QueryRowDatum', 'QueryPrepared', 'SPI_prepare', 'SPI_prepare_cursor',
             'SPI_execute', 'SPI_exec', 'SPI_execute_with_args', 'SPI_cursor_open_with_args', 'psprintf'}

CPP_LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def cpp_literal_pieces(source):
    """(line, pieces, enclosing call) for each run of adjacent C++ string
    literals (the compiler joins them), comments and char literals skipped;
    a piece is (value, offset of its raw text in source, raw text)."""
    out = []
    i, n, line = 0, len(source), 1
    calls = []  # the name before each open parenthesis
    group, group_line, group_call = None, 0, None
    last_ident = None

    def flush():
        nonlocal group
        if group is not None:
            out.append((group_line, group, group_call))
            group = None

    while i < n:
        c = source[i]
        if c == '\n':
            line += 1
            i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if source.startswith('//', i):
            j = source.find('\n', i)
            i = n if j < 0 else j
            continue
        if source.startswith('/*', i):
            j = source.find('*/', i) + 2
            line += source.count('\n', i, j)
            i = j
            continue
        if c == '"':
            m = CPP_LITERAL.match(source, i)
            raw = m.group(1)
            value = re.sub(r'\\(.)', lambda e: {'n': '\n', 't': '\t'}.get(e.group(1), e.group(1)), raw)
            piece = (value, m.start(1), raw)
            if group is None:
                group, group_line, group_call = [piece], line, calls[-1] if calls else None
            else:
                group.append(piece)
            i = m.end()
            continue
        flush()
        if c == "'":
            m = re.match(r"'(?:[^'\\]|\\.)*'", source[i:])
            i += len(m.group(0))
            last_ident = None
            continue
        if c.isalpha() or c == '_':
            m = re.match(r'\w+', source[i:])
            last_ident = m.group(0)
            i += len(last_ident)
            continue
        if c == '(':
            calls.append(last_ident)
        elif c == ')' and calls:
            calls.pop()
        last_ident = None
        i += 1
    flush()
    return out


def is_cpp_sql(text, call):
    """A literal passed to SPI itself is SQL; a constant (or a piece of a
    statement built with +) is when it reads like SQL. Messages are not."""
    if call in CPP_NOT_SQL_CALLS:
        return False
    return call in SPI_CALLS or bool(re.search(
        r'\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|SET|JOIN|AND|OR|ON|VALUES|RETURNING|ORDER|LIMIT|'
        r'OPERATOR|pg_catalog)\b|::|\$\d|[=<>]', text))


def cpp_sql_texts(path):
    """The SQL texts of one C++ file, psprintf's %s made a name."""
    with open(path, encoding='utf-8') as f:
        source = f.read()
    texts = []
    for line, pieces, call in cpp_literal_pieces(source):
        text = ''.join(p[0] for p in pieces)
        if is_cpp_sql(text, call):
            texts.append((line, text.replace('%s', 'fmt_s') if call == 'psprintf' else text))
    return texts


# ---- --fix: rewrites what it can (operators, casts, function names, LIKE),
# keeping the parse: OPERATOR(x) has one precedence for every operator, so a
# right operand that held an operator binding tighter than its parent is
# parenthesized. The rest (BETWEEN, IS DISTINCT FROM, IN lists, ...) is
# printed for a human.

STOP_WORDS = {
    # reserved, type/function-name and column-name keywords that cannot start an operand
    'all', 'analyse', 'analyze', 'and', 'any', 'as', 'asc', 'asymmetric', 'both', 'check', 'collate', 'column',
    'constraint', 'create', 'default', 'deferrable', 'desc', 'distinct', 'do', 'else', 'end', 'except', 'fetch',
    'for', 'foreign', 'from', 'grant', 'group', 'having', 'in', 'initially', 'intersect', 'into', 'lateral',
    'leading', 'limit', 'not', 'offset', 'on', 'only', 'or', 'order', 'placing', 'primary', 'references',
    'returning', 'select', 'some', 'symmetric', 'table', 'then', 'to', 'trailing', 'union', 'unique', 'using',
    'variadic', 'when', 'where', 'window', 'with', 'authorization', 'binary', 'collation', 'concurrently',
    'cross', 'freeze', 'full', 'ilike', 'inner', 'is', 'isnull', 'join', 'left', 'like', 'natural', 'notnull',
    'outer', 'overlaps', 'right', 'similar', 'tablesample', 'verbose', 'between', 'escape',
    # PL/pgSQL
    'loop', 'elsif', 'if', 'raise', 'exit', 'continue', 'perform', 'return', 'query', 'execute', 'get',
    'diagnostics', 'exception', 'declare', 'begin', 'strict', 'nulls', 'first', 'last', 'filter', 'over',
    'ordinality', 'rows', 'range', 'set', 'conflict', 'nothing', 'skip', 'locked', 'nowait', 'of', 'update',
    'delete', 'insert', 'values', 'by', 'zone', 'time',
}

PRECEDENCE = {'^': 7, '*': 6, '/': 6, '%': 6, '+': 5, '-': 5,
              '<': 2, '>': 2, '=': 2, '<=': 2, '>=': 2, '<>': 2, '!=': 2, 'like': 3, 'ilike': 3}


def fix_spans(text, plpgsql, pinned):
    """The edits (start, end, (before, replacement or None, after)) that qualify text."""
    findings, tokens = check_sql(text, plpgsql, pinned)
    n = len(tokens)
    edits = {}   # token index -> (before, replacement or None, after)
    manual = []
    binary = {}  # token index of a rewritten operator -> (original precedence, tokens it covers)

    def edit(k, before='', replace=None, after=''):
        b, r, a = edits.get(k, ('', None, ''))
        edits[k] = (before + b, replace if replace is not None else r, a + after)

    for f in findings:
        t = tokens[f.k]
        if f.kind == 'op':
            op = '<>' if t.text == '!=' else t.text
            glued = f.k + 1 < n and tokens[f.k + 1].start == t.end  # -x: keep a space after
            edit(f.k, replace=f'OPERATOR(pg_catalog.{op})' + (' ' if glued else ''))
            binary[f.k] = (PRECEDENCE.get(t.text, 4), 1)
        elif f.kind in ('type', 'func'):
            edit(f.k, before='pg_catalog.')
        elif f.kind == 'keyword':
            negated = tokens[f.k - 1].word == 'not'
            op = {'like': '~~', 'ilike': '~~*'}[t.word]
            if negated:  # NOT LIKE: the NOT goes
                edit(f.k - 1, replace='')
                edit(f.k, before='\b')
                op = '!' + op
            edit(f.k, replace=f'OPERATOR(pg_catalog.{op})')
            binary[f.k] = (PRECEDENCE[t.word], 1)
        elif f.kind != 'nested':  # (EXECUTE's query: fixed on its own below)
            manual.append(f)

    # operands: the token span of one operand starting at k, or None
    def match(k, open_, close):
        depth = 0
        for j in range(k, n):
            if tokens[j].text == open_:
                depth += 1
            elif tokens[j].text == close:
                depth -= 1
                if depth == 0:
                    return j
        return n - 1

    def is_op_at(j):
        """(end, precedence) of a binary operator at j, or None."""
        if j >= n:
            return None
        if j in binary:
            return j + 1, binary[j][0]
        t = tokens[j]
        if t.word == 'operator' and j + 1 < n and tokens[j + 1].text == '(':
            return match(j + 1, '(', ')') + 1, 4
        if t.word == 'not' and j + 1 in binary and tokens[j + 1].word in ('like', 'ilike'):
            return j + 2, 3
        return None

    def at_time_zone(j):  # AT TIME ZONE, not a parameter named at
        return tokens[j].word == 'at' and j + 1 < n and tokens[j + 1].word == 'time'

    def operand(k):
        j = k
        unary = False
        while j < n and (tokens[j].kind == 'op' or is_op_at(j)) and not (j in binary and j > k):
            end = is_op_at(j)
            j = end[0] if end else j + 1
            unary = True
        if j >= n:
            return None
        t = tokens[j]
        w = t.word
        if t.kind in ('string', 'number', 'param'):
            j += 1
        elif t.text == '(':
            j = match(j, '(', ')') + 1
        elif w == 'case':
            depth = 0
            while j < n:
                if tokens[j].word == 'case':
                    depth += 1
                elif tokens[j].word == 'end':
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            j += 1
        elif w == 'array' and j + 1 < n and tokens[j + 1].text in ('[', '('):
            j = match(j + 1, tokens[j + 1].text, ']' if tokens[j + 1].text == '[' else ')') + 1
        elif t.kind == 'qident' or (t.kind == 'ident' and w not in STOP_WORDS and not at_time_zone(j)):
            j += 1
            while j + 1 < n and tokens[j].text == '.' and tokens[j + 1].kind in ('ident', 'qident'):
                j += 2
            if j < n and tokens[j].text == '(':
                j = match(j, '(', ')') + 1
                while j + 1 < n and tokens[j].word in ('filter', 'over') and tokens[j + 1].text == '(':
                    j = match(j + 1, '(', ')') + 1
            elif j < n and tokens[j].kind == 'string':
                j += 1  # typed literal
        else:
            return None
        while j < n:  # postfix: subscripts, casts, COLLATE
            if tokens[j].text == '[':
                j = match(j, '[', ']') + 1
            elif tokens[j].kind == 'cast':
                j += 2
                while j + 1 < n and tokens[j].text == '.':
                    j += 2
                if j < n and tokens[j - 1].word == 'double' and tokens[j].word == 'precision':
                    j += 1
                if j < n and tokens[j].text == '(' and tokens[j - 1].kind != 'cast':
                    j = match(j, '(', ')') + 1
                while j + 1 < n and tokens[j].text == '[' and tokens[j + 1].text == ']':
                    j += 2
            else:
                break
        return k, j, unary

    wraps = []  # (first token, last token)
    seen = set()
    for k in range(n):
        if k in seen:
            continue
        p = tokens[k - 1] if k else None
        exempt_op = p is not None and p.kind == 'op' and (k - 1) not in binary  # SET x = ..., x = ... in PL/pgSQL
        if p is not None and not exempt_op and (p.kind in ('op', 'cast') or p.text == '.' or is_op_at(k - 1)
                              or p.kind in ('string', 'number', 'param', 'qident')
                              or (p.kind == 'ident' and p.word not in STOP_WORDS and not at_time_zone(k - 1))):
            continue
        first = operand(k)
        if first is None:
            continue
        atoms, ops = [first], []
        j = first[1]
        while True:
            o = is_op_at(j)
            if o is None:
                break
            nxt = operand(o[0])
            if nxt is None:
                break
            ops.append((j, o[1]))
            atoms.append(nxt)
            seen.add(j)
            j = nxt[1]
        if not any(o[0] in binary for o in ops) and not any(a[2] for a in atoms):
            continue
        for i, (oj, prec) in enumerate(ops):
            last = i + 1
            while last < len(ops) and ops[last][1] > prec:
                last += 1
            if last > i + 1:
                wraps.append((atoms[i + 1][0], atoms[last][1] - 1))
        for a in atoms[1:] if len(atoms) > 1 else []:
            if a[2] and any(x in binary for x in range(a[0], a[1])):
                wraps.append((a[0], a[1] - 1))
    for first, last in wraps:
        edit(first, before='(')
        edit(last, after=')')
    for k in binary:
        if k not in seen and tokens[k - 1].word != 'not':
            manual.append(Finding(k, 'check', tokens[k].line, f'rewritten {tokens[k].text} outside a parsed '
                                  'expression: check its operands keep their grouping'))

    spans = [(tokens[k].start, tokens[k].end, edits[k]) for k in sorted(edits)]
    for k, inner, offset in dynamic_queries(tokens):
        if tokens[k - 1].word != 'execute' or not tokens[k].text.startswith('$'):
            continue  # a format() template or a quoted string: by hand
        inner_spans, inner_manual = fix_spans(inner, False, pinned)
        spans += [(offset + a, offset + b, e) for a, b, e in inner_spans]
        manual += inner_manual
    spans.sort(key=lambda x: x[0])
    return spans, manual


def fix_text(text, plpgsql, pinned):
    spans, manual = fix_spans(text, plpgsql, pinned)
    out, pos = [], 0
    for start, end, (before, replace, after) in spans:
        out.append(text[pos:start])
        out.append(before + (text[start:end] if replace is None else replace) + after)
        pos = end
    out.append(text[pos:])
    return re.sub(r'\s*\x08', ' ', ''.join(out)), manual


def fix_sql_file(path, skip):
    """Rewrites the bodies of the functions and procedures path creates."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    tokens = lex(text)
    edits, k = [], 0
    while k < len(tokens):
        if tokens[k].word == 'create':
            j = k + 1
            if tokens[j].word == 'or':
                j += 2
            if tokens[j].word in ('function', 'procedure'):
                name = tokens[j + 1].text + (tokens[j + 2].text + tokens[j + 3].text if tokens[j + 2].text == '.' else '')
                end, depth = j, 0
                while end < len(tokens) and not (tokens[end].text == ';' and depth == 0):
                    depth += tokens[end].text == '('
                    depth -= tokens[end].text == ')'
                    end += 1
                words = [t.word for t in tokens[j:end]]
                language = words[words.index('language') + 1] if 'language' in words else None
                pinned = 'search_path' in words
                body = next((tokens[b] for b in range(j, end) if tokens[b].kind == 'string'
                             and tokens[b].text.startswith('$') and tokens[b - 1].word == 'as'), None)
                if body is not None and language in ('sql', 'plpgsql') and name.split('.')[-1] not in skip:
                    tag = re.match(r'\$[^$]*\$', body.text).group(0)
                    inner = body.text[len(tag):-len(tag)]
                    fixed, manual = fix_text(inner, language == 'plpgsql', pinned)
                    for f in manual:
                        print(f'{path}: {name} body line {f.line}: {f.message}')
                    if fixed != inner:
                        edits.append((body.start, body.end, tag + fixed + tag))
                k = end
        k += 1
    for start, end, new in reversed(edits):
        text = text[:start] + new + text[end:]
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    print(f'{path}: {len(edits)} bodies rewritten')


def fix_cpp_file(path):
    """Rewrites the SQL texts of one C++ file (see cpp_sql_texts), literal by
    literal: an edit lands in the literal that holds its token."""
    with open(path, encoding='utf-8') as f:
        source = f.read()
    edits = []
    for line, pieces, call in cpp_literal_pieces(source):
        text = ''.join(p[0] for p in pieces)
        if not is_cpp_sql(text, call) or call == 'psprintf':
            continue
        where = []  # source offset of each character of text, and its end
        for value, raw_start, raw in pieces:
            i = 0
            while i < len(raw):
                width = 2 if raw[i] == '\\' else 1
                where.append((raw_start + i, raw_start + i + width))
                i += width
        spans, manual = fix_spans(text, False, False)
        for f in manual:
            print(f'{path}:{line}: {f.message}  [{text.strip()[:90]}]')
        for start, end, (before, replace, after) in spans:
            if before:
                edits.append((where[start][0], where[start][0], before))
            if replace is not None:
                edits.append((where[start][0], where[end - 1][1], replace.replace('\x08', '')))
            if after:
                edits.append((where[end - 1][1], where[end - 1][1], after))
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        source = source[:start] + new + source[end:]
    with open(path, 'w', encoding='utf-8') as f:
        f.write(source)
    print(f'{path}: {len(edits)} edits')


# ---- --self-test: the lint on known texts (run by the gate first, so a
# lint that stopped finding anything fails instead of passing everything)
SELF_TEST = [
    # (text, plpgsql, pinned, expected findings)
    ("SELECT a = b", False, True, ['op']),
    ("SELECT a OPERATOR(pg_catalog.=) b, pg_catalog.now(), x::pg_catalog.text, y::bigint", False, True, []),
    ("SELECT now(), x::text, CAST(y AS jsonb), timestamptz 'infinity'", False, True, ['func', 'type', 'type', 'type']),
    ("SELECT 'a = b', \"x=y\", $q$ now() $q$ -- a = b\n /* now() */", False, True, []),
    ("SELECT a LIKE b, c BETWEEN 1 AND 2", False, True, ['keyword', 'manual']),
    ("SELECT a IS DISTINCT FROM b, c IN (1, 2), NULLIF(d, 0), CASE e WHEN 1 THEN 2 END", False, True, []),
    ("SELECT a IS DISTINCT FROM b, c IN (1, 2), NULLIF(d, 0), CASE e WHEN 1 THEN 2 END", False, False,
     ['manual', 'manual', 'manual', 'manual']),
    ("UPDATE t SET a = 1, b = c WHERE d = 2", False, True, ['op']),
    ("SELECT count(*), t.*, -1, COALESCE(a, 0), EXISTS (SELECT 1) FROM f() AS x(a, b)", False, True, ['func', 'func']),
    ("WITH w(a) AS (SELECT 1), v(b) AS MATERIALIZED (SELECT 2) SELECT * FROM w, v", False, True, []),
    ("#variable_conflict use_column\nDECLARE\n\tn bigint := 0;\n\tr billing.t%ROWTYPE;\nBEGIN\n"
     "\t<<outer>>\n\tFOR i IN 1..10 LOOP\n\t\tn := n OPERATOR(pg_catalog.+) i;\n\t\tn = i;\n\tEND LOOP;\n"
     "\tGET DIAGNOSTICS n = ROW_COUNT;\n\tIF NOT FOUND THEN\n\t\tRAISE EXCEPTION 'bad %', n USING ERRCODE = '22023';\n"
     "\tEND IF;\n\tRETURN billing.f(x => 1);\nEND", True, True, []),
    ("BEGIN\n\tIF n > 0 THEN\n\t\tn := n + 1;\n\tEND IF;\nEND", True, True, ['op', 'op']),
    ("BEGIN\n\tRETURN QUERY EXECUTE $q$ SELECT a = b $q$ USING x;\n"
     "\tEXECUTE pg_catalog.format('SELECT %I = %L', c, d);\n\tEXECUTE 'DROP TABLE x';\nEND", True, True,
     ['nested', 'nested']),
]


def self_test():
    failures = 0
    for text, plpgsql, pinned, expected in SELF_TEST:
        found, _ = check_sql(text, plpgsql, pinned)
        if sorted(f.kind for f in found) != sorted(expected):
            failures += 1
            print(f'self-test: {text!r}: expected {expected}, found {[(f.kind, f.message) for f in found]}')
    if fix_text("SELECT a = b + c * d", False, True)[0] != \
            'SELECT a OPERATOR(pg_catalog.=) (b OPERATOR(pg_catalog.+) (c OPERATOR(pg_catalog.*) d))':
        failures += 1
        print('self-test: --fix lost the precedence of a = b + c * d')
    return failures


def main(argv):
    findings, checked_bodies, checked_cpp = [], 0, 0
    pending, pending_findings, pending_seen = set(), 0, set()
    mode = None
    if argv[1:2] == ['--self-test']:
        failures = self_test()
        print(f'self-test: {len(SELF_TEST) + 1} cases, {failures} failed')
        return 1 if failures else 0
    if argv[1:2] == ['--fix']:
        skip = set(argv[argv.index('--skip') + 1].split(',')) if '--skip' in argv else set()
        for path in argv[2:]:
            if path.endswith('.sql'):
                fix_sql_file(path, skip)
            elif path.endswith('.cpp'):
                fix_cpp_file(path)
        return 0
    for arg in argv[1:]:
        if arg in ('--bodies', '--cpp', '--pending'):
            mode = arg
            continue
        if mode == '--pending':
            pending = set(arg.split(','))
            continue
        if mode == '--bodies':
            with open(arg, encoding='utf-8') as f:
                for row in f:
                    name, language, pinned, body = row.rstrip('\n').split('\t', 3)
                    body = re.sub(r'\\(.)', lambda m: {'n': '\n', 't': '\t'}.get(m.group(1), m.group(1)), body)
                    checked_bodies += 1
                    found, _ = check_sql(body, plpgsql=language == 'plpgsql', pinned=pinned == 'pinned')
                    if name.split('(')[0].split('.')[-1] in pending:
                        pending_findings += len(found)
                        pending_seen.add(name.split('(')[0].split('.')[-1])
                        continue
                    for f in found:
                        findings.append(f'{name} line {f.line}: {f.message}')
        elif mode == '--cpp':
            for line, text in cpp_sql_texts(arg):
                checked_cpp += 1
                found, _ = check_sql(text)
                for f in found:
                    findings.append(f'{arg}:{line + f.line - 1}: {f.message}  [{text.strip()[:90]}]')
    for f in findings:
        print(f)
    if pending - pending_seen:  # gone: the name can leave --pending
        print('no SQL body any more (drop from --pending): ' + ', '.join(sorted(pending - pending_seen)))
    print(f'qualified_names: {checked_bodies} SQL bodies and {checked_cpp} C++ SQL texts checked, '
          f'{len(findings)} unqualified names' +
          (f' ({pending_findings} more in {len(pending)} bodies being replaced: --pending)' if pending else ''))
    return 1 if findings else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
