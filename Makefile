# Impasto: two entry points.
#   make demo    install what is missing, build, run the main job on the bundled default model
#   make check   install what is missing, build, run every test (plus an ASan/UBSan build of the
#                unit and ops suites)
# Everything else here is a helper for those two.

BUILD      ?= build
ASAN_BUILD ?= build-asan
MESON_OPTS ?=
DEMO_OUT   ?= demo-output

.PHONY: all deps build check check-main check-asan demo clean

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	meson compile -C $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug $(MESON_OPTS)

# The main suites, then the sanitizer build of unit+ops; both always run, and the
# summary line counts both. Exit status is non-zero when anything failed.
check: build $(ASAN_BUILD)/build.ninja
	@rc=0; \
	meson test -C $(BUILD) --no-suite slow --print-errorlogs --num-processes 2 || rc=1; \
	meson compile -C $(ASAN_BUILD) && \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  meson test -C $(ASAN_BUILD) --suite unit --suite ops --print-errorlogs --num-processes 2 || rc=1; \
	tools/test-summary.py $(BUILD) $(ASAN_BUILD); \
	exit $$rc

demo: build
	tools/demo.sh $(BUILD) $(DEMO_OUT)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
