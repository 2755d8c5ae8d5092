# billing: a PostgreSQL extension, built with PGXS.
#
#   make demo   install what is missing, build, and play the story on a throwaway cluster
#   make test   the same set-up, then unit, regression and isolation tests
#   make fuzz   the Stripe event parser under libFuzzer for ten minutes
#   make soak   the model-based random test (test/model) with many more seeds and steps
#   make coverage  make test on an instrumented build, then line coverage of src/ (gcovr)
#
# `make`, `make install` and `make installcheck` are the usual PGXS targets.

EXTENSION = billing
EXTVERSION = 0.3.0
MODULE_big = billing

CORE_SRCS = $(sort $(wildcard src/core/*.cpp))
GLUE_SRCS = $(sort $(wildcard src/glue/*.cpp))
OBJS = $(CORE_SRCS:.cpp=.o) $(GLUE_SRCS:.cpp=.o)

# The install script is assembled from ordered parts in src/sql/.
SQL_PARTS = $(sort $(wildcard src/sql/[0-9]*.sql))
DATA_built = billing--$(EXTVERSION).sql
# Earlier releases' install scripts (frozen) and the upgrade scripts.
DATA = $(wildcard src/sql/billing--*.sql)

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --outputdir=build/regress --dbname=billing_regress
ISOLATION = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=build/isolation --dbname=billing_isolation

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

# JIT bitcode would be compiled by clang without our C++ flags; billing's
# functions gain nothing from JIT inlining, so it is not built.
override with_llvm = no

PG_CPPFLAGS += -Isrc -isystem $(shell $(PG_CONFIG) --includedir-server 2>/dev/null)
PG_CXXFLAGS += -std=c++20 -Wno-register -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK += -lcrypto -lstdc++

# PGXS tracks no header dependencies: gcc writes them (.d beside each .o), so a
# changed header (e.g. a class layout in src/glue/spi.hpp) rebuilds every
# object that includes it instead of linking stale ones into billing.so.
PG_CXXFLAGS += -MMD -MP

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
endif

-include $(OBJS:.o=.d)

billing--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

EXTRA_CLEAN = billing--$(EXTVERSION).sql build $(OBJS:.o=.d)

.PHONY: demo test deps unit bench bench-scale fuzz soak coverage
deps:
	bash test/deps.sh

demo: deps
	bash demo/run.sh

test: deps
	bash test/run.sh

# the model-based random test of money and access, more seeds and steps (SEEDS=, STEPS=)
soak: deps
	bash test/model/run.sh

bench: deps
	bash bench/run.sh

coverage: deps
	bash test/coverage.sh

# The Stripe event parser under libFuzzer for ten minutes (make test runs it for 20 s).
fuzz: deps
	bash test/fuzz/run.sh $${FUZZ_SECONDS:-600}

# the scale book (1,000,000 users) and the paths measured on it: bench/scale/README.md
bench-scale: deps
	bash bench/scale/run.sh
