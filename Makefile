# tlspeer - TLS and crypto for Lua (5.1, 5.2, 5.3, 5.4, LuaJIT) on mbedtls.
#
#   make                 build tlspeer/core.so
#   make test            run the specs (installs missing Debian packages)
#   make demo            the TLS server and client demo
#   make certs           dev CA, server and client certificates in certs/
#   make install         PREFIX=/usr/local DESTDIR=
#   make repl            a Lua prompt with tlspeer loaded from this checkout
#   make env             the LUA_PATH / LUA_CPATH that find this build
#   make MBEDTLS=tlspeer|debian|system           which mbedtls (tlspeer default)
#   make LUA=5.1|5.2|5.3|5.4|luajit              for another Lua (5.4 default)

# The Lua runtime: LUA names it, LUA_BIN is its interpreter, LUA_VERSION
# the module ABI (LuaJIT's is 5.1's), LUA_INCDIR its headers.  Each
# runtime builds into a directory of its own (5.4 into build/).
LUA          ?= 5.4
ifeq ($(LUA),luajit)
LUA_BIN      ?= luajit
LUA_VERSION  ?= 5.1
LUA_INCDIR   ?= /usr/include/luajit-2.1
LUA_BUILD     = build-luajit
else
LUA_BIN      ?= lua$(LUA)
LUA_VERSION  ?= $(LUA)
LUA_INCDIR   ?= /usr/include/lua$(LUA)
LUA_BUILD     = $(if $(filter 5.4,$(LUA)),build,build-lua$(LUA))
endif

# The mbedtls tlspeer is built against, named by MBEDTLS:
#   tlspeer  (default) mbedtls 3.6 LTS with tlspeer's configuration and
#            flags (scripts/mbedtls-tlspeer.cfg), built once from Debian
#            trixie's source package by scripts/mbedtls3.sh into
#            $(TLSPEER_CACHE)/mbedtls-3.6-tlspeer, linked statically
#   debian   the same 3.6 as Debian configures it ($(TLSPEER_CACHE)/mbedtls-3.6)
#   system   the system's shared libmbedtls (libmbedtls-dev: 2.28 on bookworm)
# MBEDTLS_PREFIX=dir links another static build (an mbedtls install's
# include/ and lib/) instead.  Each mbedtls but tlspeer's builds into a
# directory of its own (BUILD below: build-system, build-luajit-debian...).
MBEDTLS       ?= tlspeer
TLSPEER_CACHE ?= $(HOME)/.cache/tlspeer
ifeq ($(MBEDTLS),system)
MBEDTLS_PREFIX ?=
else ifeq ($(MBEDTLS),debian)
MBEDTLS_PREFIX ?= $(TLSPEER_CACHE)/mbedtls-3.6
else ifeq ($(MBEDTLS),tlspeer)
MBEDTLS_PREFIX ?= $(TLSPEER_CACHE)/mbedtls-3.6-tlspeer
else
$(error MBEDTLS=$(MBEDTLS): tlspeer, debian or system (or MBEDTLS_PREFIX=dir))
endif
# When the prefix is ours, scripts/mbedtls3.sh makes it (the first time,
# a minute or two) and remakes it when its configuration changed; its
# stamp is a prerequisite of every object, so tlspeer is rebuilt then.
ifeq ($(origin MBEDTLS_PREFIX),file)
ifneq ($(MBEDTLS_PREFIX),)
MBEDTLS_STAMP = $(MBEDTLS_PREFIX)/.tlspeer-installed
endif
endif
PREFIX       ?= /usr/local
DESTDIR      ?=
LUA_LIBDIR   ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
TLSPEER_SHAREDIR ?= $(PREFIX)/share/tlspeer

CC       ?= cc
WARN     ?= -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
WERROR   ?=

ALL_CFLAGS  = $(CFLAGS) $(WARN) $(WERROR) -std=c99 -D_POSIX_C_SOURCE=200809L \
              -pthread -fPIC -fvisibility=hidden -I$(LUA_INCDIR) \
              -DTLSPEER_SHAREDIR='"$(TLSPEER_SHAREDIR)"'
ALL_LDFLAGS = $(LDFLAGS) -shared -pthread
ifneq ($(MBEDTLS_PREFIX),)
ALL_CFLAGS += -I$(MBEDTLS_PREFIX)/include
LIBS = $(MBEDTLS_PREFIX)/lib/libmbedtls.a $(MBEDTLS_PREFIX)/lib/libmbedx509.a \
       $(MBEDTLS_PREFIX)/lib/libmbedcrypto.a -lz -lpthread
# The engine linked in stays private to the module: its ~1,200 functions
# are not exported (no clash with another mbedtls in the process), and its
# calls to itself bind directly instead of through the PLT and GOT (the
# same code as in a program linked with it: 5-8 % of a handshake).
ALL_LDFLAGS += -Wl,--exclude-libs,ALL
else
LIBS = -lmbedtls -lmbedx509 -lmbedcrypto -lz
endif

# BUILD holds objects and, under BUILD/tlspeer/, a copy of the module; the
# default build also puts the module at ./tlspeer/core.so for the specs.
BUILD  ?= $(LUA_BUILD)$(if $(filter-out tlspeer,$(MBEDTLS)),-$(MBEDTLS))
SRCS    = $(filter-out src/embed.c,$(wildcard src/*.c))
OBJS    = $(SRCS:src/%.c=$(BUILD)/%.o)
TARGET  = $(BUILD)/tlspeer/core.so
# busted is a Lua program: it runs on the runtime under test (LuaJIT finds
# the 5.1 modules Debian's lua-busted installs on its default paths); the
# specs learn which interpreter to start for subprocesses from TLSPEER_LUA.
BUSTED  = TLSPEER_LUA=$(LUA_BIN) $(LUA_BIN) /usr/bin/busted

.PHONY: all deps test demo love certs dev-certs spec-helpers ca-bundle install uninstall clean FORCE

all: $(TARGET)
ifeq ($(BUILD),build)
	@mkdir -p tlspeer && cp -f $(TARGET) tlspeer/core.so
endif
ifeq ($(filter-out all,$(MAKECMDGOALS)),)
	@echo
	@echo "Built $(TARGET) for $(LUA_BIN). To use it from this checkout:"
	@echo "  make repl$(LUA_ARG)       a $(LUA_BIN) prompt with tls = require \"tlspeer\""
	@echo "  eval \"\$$(make -s env$(LUA_ARG))\"   LUA_PATH and LUA_CPATH for this shell, then"
	@echo "                  $(LUA_BIN) -e 'print(require(\"tlspeer\").Crypto)' works anywhere"
	@echo "  make install     installs it (PREFIX=/usr/local); the reference is docs/README.md"
endif

# From the checkout, without installing: the paths that find the Lua layer
# in lua/ and the C core in $(BUILD)/ (absolute, so any directory works).
LUA_ARG       = $(if $(filter-out 5.4,$(LUA)), LUA=$(LUA))
CHECKOUT_PATH = $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;
CHECKOUT_CPATH = $(CURDIR)/$(BUILD)/?.so;;

.PHONY: env repl
env:
	@echo "export LUA_PATH='$(CHECKOUT_PATH)'"
	@echo "export LUA_CPATH='$(CHECKOUT_CPATH)'"

repl: all
	@env -u LUA_PATH_5_4 -u LUA_PATH_5_3 -u LUA_PATH_5_2 -u LUA_CPATH_5_4 -u LUA_CPATH_5_3 \
	  -u LUA_CPATH_5_2 LUA_PATH='$(CHECKOUT_PATH)' LUA_CPATH='$(CHECKOUT_CPATH)' $(LUA_BIN) -i -e \
	  'tls = require "tlspeer" print("tlspeer " .. tls._VERSION:match("%S+$$") .. " on mbedtls " .. tls.mbedtls_version .. ": tls = require \"tlspeer\"; print(tls.Crypto) lists a class; docs/README.md")'

# Rebuild everything when the flags change (another mbedtls, -Werror...).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(LIBS) $(OBJS)' | cmp -s - $@ || \
	  echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(LIBS) $(OBJS)' > $@

$(BUILD)/%.o: src/%.c src/aux.h src/compat.h $(BUILD)/.flags $(MBEDTLS_STAMP)
	$(CC) $(ALL_CFLAGS) $(EMBED_CFLAGS) -c -o $@ $<

ifneq ($(MBEDTLS_STAMP),)
$(MBEDTLS_STAMP): scripts/mbedtls3.sh $(if $(filter tlspeer,$(MBEDTLS)),scripts/mbedtls-tlspeer.cfg)
	TLSPEER_CACHE='$(TLSPEER_CACHE)' scripts/mbedtls3.sh $(MBEDTLS) >/dev/null
endif

$(TARGET): $(OBJS) $(BUILD)/.flags
	@mkdir -p $(BUILD)/tlspeer
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LIBS)

deps:
	@sh scripts/deps.sh $(LUA)

# ------------------------------------------------------------------ static
# make static [EMBED_CA_BUNDLE=1]: $(BUILD)/libtlspeer.a and tlspeer.h for
# hosts that link Lua themselves (examples/embed).  One relocatable object:
# the C core, the Lua layer (lua/tlspeer/*.lua compiled in as source by
# scripts/embed.lua), src/embed.c and, when tlspeer built mbedtls itself,
# mbedtls too; every symbol but luaopen_tlspeer, luaopen_tlspeer_core and
# tlspeer_preload is made local, so nothing clashes with the host's own
# (even another mbedtls).  EMBED_CA_BUNDLE=1 bakes in the shipped Mozilla
# bundle as the last resort of the default CA bundle (it needs a build
# directory of its own: BUILD=...).
STATIC_LIB     = $(BUILD)/libtlspeer.a
STATIC_EXPORTS = luaopen_tlspeer luaopen_tlspeer_core tlspeer_preload
LUA_MODULES    = $(wildcard lua/tlspeer/*.lua)
EMBED_CA_BUNDLE ?=
ifneq ($(EMBED_CA_BUNDLE),)
EMBED_CFLAGS   = -DTLSPEER_EMBED_CA_BUNDLE
EMBED_OBJS     = $(BUILD)/embedded_bundle.o
endif
STATIC_MBEDTLS = $(if $(MBEDTLS_PREFIX),$(MBEDTLS_PREFIX)/lib/libmbedtls.a \
                   $(MBEDTLS_PREFIX)/lib/libmbedx509.a $(MBEDTLS_PREFIX)/lib/libmbedcrypto.a)

.PHONY: static
static: $(STATIC_LIB) $(BUILD)/tlspeer.h

$(BUILD)/tlspeer.h: src/tlspeer.h
	cp src/tlspeer.h $@

$(BUILD)/embedded_modules.c: $(LUA_MODULES) scripts/embed.lua
	@mkdir -p $(BUILD)
	$(LUA_BIN) scripts/embed.lua $@ modules \
	  $(foreach f,$(LUA_MODULES),$(if $(filter init,$(basename $(notdir $(f)))),tlspeer,tlspeer.$(basename $(notdir $(f))))=$(f))

$(BUILD)/embedded_bundle.c: certs/ca-certificates.crt scripts/embed.lua
	@mkdir -p $(BUILD)
	$(LUA_BIN) scripts/embed.lua $@ bundle certs/ca-certificates.crt

$(BUILD)/embedded_%.o: $(BUILD)/embedded_%.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# examples/embed/host.c linked with libtlspeer.a, Lua and (when libtlspeer.a
# does not carry it) mbedtls, all static: as C and as C++.  LUA_STATIC is
# the runtime's static library.
LUA_STATIC  ?= $(if $(filter luajit,$(LUA)),/usr/lib/x86_64-linux-gnu/libluajit-5.1.a,/usr/lib/x86_64-linux-gnu/liblua$(LUA).a)
CXX         ?= c++
EMBED_LIBS   = $(STATIC_LIB) $(LUA_STATIC) \
               $(if $(MBEDTLS_PREFIX),,-Wl,-Bstatic -lmbedtls -lmbedx509 -lmbedcrypto -Wl,-Bdynamic) \
               -lz -lm -ldl -lpthread
.PHONY: embed-example
embed-example: static $(BUILD)/embed-host $(BUILD)/embed-host-cxx
$(BUILD)/embed-host: examples/embed/host.c $(STATIC_LIB) $(BUILD)/tlspeer.h
	$(CC) -std=c99 $(WARN) $(WERROR) -O2 -I$(BUILD) -I$(LUA_INCDIR) -o $@ $< $(EMBED_LIBS)
$(BUILD)/embed-host-cxx: examples/embed/host.c $(STATIC_LIB) $(BUILD)/tlspeer.h
	$(CXX) -x c++ -Wall -Wextra $(WERROR) -O2 -I$(BUILD) -I$(LUA_INCDIR) -o $@ $< -x none $(EMBED_LIBS)

$(STATIC_LIB): $(OBJS) $(BUILD)/embed.o $(BUILD)/embedded_modules.o $(EMBED_OBJS)
	$(LD) -r -o $(BUILD)/tlspeer-static.o $(OBJS) $(BUILD)/embed.o \
	  $(BUILD)/embedded_modules.o $(EMBED_OBJS) $(STATIC_MBEDTLS)
	objcopy $(foreach s,$(STATIC_EXPORTS),--keep-global-symbol=$(s)) \
	  $(BUILD)/tlspeer-static.o
	rm -f $@
	$(AR) rcs $@ $(BUILD)/tlspeer-static.o
	@echo "$@: exports $$(nm -g --defined-only $@ | awk '$$2 ~ /[TDBR]/ {print $$3}' | sort | tr '\n' ' ')"


# The specs and the demo use the dev certificates: made when missing.
dev-certs: all
	@TLSPEER_BUILD=$(BUILD) $(LUA_BIN) certs/generate.lua >/dev/null

# C helpers of the specs (not part of tlspeer): spec_fork (fork(2)).
SPEC_HELPERS = $(BUILD)/spec_fork.so
spec-helpers: $(SPEC_HELPERS)
$(BUILD)/spec_fork.so: spec/fixtures/fork.c $(BUILD)/.flags
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

test: deps all dev-certs spec-helpers
	$(BUSTED) --cpath='$(BUILD)/?.so' $(BUSTED_ARGS)

certs: deps all
	TLSPEER_BUILD=$(BUILD) $(LUA_BIN) certs/generate.lua

demo: deps all dev-certs
	TLSPEER_BUILD=$(BUILD) $(LUA_BIN) examples/demo.lua

# The LÖVE example game (examples/love), headless under xvfb-run, against
# examples/echo_server.lua: needs the LuaJIT build and the 5.4 one.
love: deps dev-certs
	$(MAKE) LUA=luajit all
	sh scripts/deps.sh luajit
	scripts/love.sh build-luajit

# The fallback CA bundle: Mozilla's roots as Debian's ca-certificates
# package ships them (see certs/CA-BUNDLE.md).
MOZILLA_CERTS ?= /usr/share/ca-certificates/mozilla
ca-bundle:
	@test -d $(MOZILLA_CERTS) || { echo "install Debian's ca-certificates package first" >&2; exit 1; }
	{ echo "# Mozilla's CA roots, from Debian's ca-certificates package"; \
	  echo "# $$(dpkg-query -W -f='$${Version}' ca-certificates 2>/dev/null), made by 'make ca-bundle'"; \
	  for f in $(MOZILLA_CERTS)/*.crt; do echo "# $$(basename $$f .crt)"; cat $$f; done; } \
	  > certs/ca-certificates.crt.tmp && mv certs/ca-certificates.crt.tmp certs/ca-certificates.crt
	@echo "certs/ca-certificates.crt: $$(grep -c 'BEGIN CERTIFICATE' certs/ca-certificates.crt) certificates"

# The LuaLS definition files go to $(TLSPEER_SHAREDIR)/meta: add that
# folder to an editor's "Lua.workspace.library".
install: all
	install -d $(DESTDIR)$(LUA_LIBDIR)/tlspeer $(DESTDIR)$(LUA_SHAREDIR)/tlspeer
	install -m 0755 $(TARGET) $(DESTDIR)$(LUA_LIBDIR)/tlspeer/core.so
	install -m 0644 lua/tlspeer/*.lua $(DESTDIR)$(LUA_SHAREDIR)/tlspeer/
	install -m 0644 certs/ca-certificates.crt $(DESTDIR)$(LUA_SHAREDIR)/tlspeer/ca-certificates.crt
	install -d $(DESTDIR)$(TLSPEER_SHAREDIR)/meta
	install -m 0644 meta/*.lua $(DESTDIR)$(TLSPEER_SHAREDIR)/meta/

uninstall:
	rm -f $(DESTDIR)$(LUA_LIBDIR)/tlspeer/core.so
	rm -f $(addprefix $(DESTDIR)$(LUA_SHAREDIR)/tlspeer/,$(notdir $(wildcard lua/tlspeer/*.lua)) ca-certificates.crt)
	rm -f $(addprefix $(DESTDIR)$(TLSPEER_SHAREDIR)/meta/,$(notdir $(wildcard meta/*.lua)))

clean:
	rm -rf $(BUILD) tlspeer

# ------------------------------------------------------------------ fuzzing
# make fuzz [FUZZ_TIME=60] [FUZZ_TARGETS="key cert tls_server tls_client tls_pair http url streampeer"]
# builds the libFuzzer harnesses in fuzz/build/ (clang, ASan + UBSan,
# tlspeer's sources compiled in, Debian's mbedtls 2.28 and liblua5.4) and
# runs each for FUZZ_TIME seconds from its seeds in fuzz/corpus/<name>/
# (new inputs go to fuzz/build/corpus/<name>/, crashes to
# fuzz/build/crashes/<name>/).  See fuzz/README.md.
FUZZ_CC      ?= clang
FUZZ_TIME    ?= 60
FUZZ_TARGETS ?= key cert tls_server tls_client tls_pair http url streampeer websocket
FUZZ_CFLAGS  ?= -g -O1 -fno-omit-frame-pointer
FUZZ_SAN     ?= -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_ARGS    ?=
FUZZ_BUILD    = fuzz/build
# The harnesses are programs that embed a Lua state, so they (and only
# they) link the Lua library; the module never does.
FUZZ_LUALIB  ?= -llua5.4
FUZZ_OBJS     = $(SRCS:src/%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_ALL_CFLAGS = $(FUZZ_CFLAGS) $(FUZZ_SAN) -std=c99 -D_POSIX_C_SOURCE=200809L -pthread \
              -I$(LUA_INCDIR) -DTLSPEER_SHAREDIR='"$(TLSPEER_SHAREDIR)"'

.PHONY: fuzz fuzz-build
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/crashes/$$t; \
	  echo "== fuzz $$t ($(FUZZ_TIME) s)"; \
	  $(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t/ $(FUZZ_ARGS) \
	    $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t || exit 1; \
	done

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

$(FUZZ_BUILD)/obj/%.o: src/%.c src/aux.h src/compat.h
	@mkdir -p $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/key $(FUZZ_BUILD)/cert $(FUZZ_BUILD)/tls_server $(FUZZ_BUILD)/tls_client \
  $(FUZZ_BUILD)/tls_pair $(FUZZ_BUILD)/http $(FUZZ_BUILD)/url $(FUZZ_BUILD)/streampeer \
  $(FUZZ_BUILD)/websocket: \
  $(FUZZ_BUILD)/%: fuzz/harness.c $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -DFUZZ_TARGET='"$*"' -DFUZZ_ROOT='"$(CURDIR)"' \
	  -o $@ fuzz/harness.c $(FUZZ_OBJS) -lmbedtls -lmbedx509 -lmbedcrypto -lz $(FUZZ_LUALIB) -lm

# -------------------------------------------------------------------- soak
# make soak [MBEDTLS=system|debian]: the load spec at its full
# counts (1,000 concurrent clients echoing 64 KiB each, 10,000 sequential
# handshakes with descriptors and RSS watched, 200 slow-loris connections);
# several minutes.  The figures go to stderr and SOAK_REPORT.
SOAK_REPORT ?= /tmp/tlspeer-soak-report.txt
.PHONY: soak
soak: all dev-certs spec-helpers
	@n=$$(ulimit -n); if [ "$$n" != unlimited ] && [ "$$n" -lt 4096 ]; then ulimit -Sn 4096 2>/dev/null || ulimit -Sn "$$(ulimit -Hn)"; fi; \
	TLSPEER_LOAD=full TLSPEER_LOAD_REPORT='$(SOAK_REPORT)' \
	  $(BUSTED) --cpath='$(BUILD)/?.so' spec/19-load_spec.lua

# -------------------------------------------------------------- sanitizers
# make asan [ASAN_CC=gcc|clang] [MBEDTLS=system|debian]: builds tlspeer with
# AddressSanitizer + UndefinedBehaviorSanitizer (UB is fatal) into
# ASAN_BUILD and runs the whole spec suite with it; scripts/asan.sh says
# how (runtime preloaded into lua5.4, peers left alone, leak checking by
# LeakSanitizer in the interpreters, every report fails the run).
# make valgrind [FULL=1]: the spec subset scripts/valgrind.sh documents (every
# C file; FULL=1: the whole suite) under memcheck against $(BUILD), zero
# errors and zero definite leaks.
ASAN_CC     ?= gcc
ASAN_BUILD  ?= build-asan$(if $(filter-out 5.4,$(LUA)),-$(LUA))$(if $(filter-out tlspeer,$(MBEDTLS)),-$(MBEDTLS))
ASAN_SAN    ?= -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -fno-omit-frame-pointer
ASAN_LINK    = $(ASAN_SAN)$(if $(findstring clang,$(ASAN_CC)), -shared-libasan)

.PHONY: asan asan-build valgrind tsan
# make tsan: the threaded code (lookups, handshake steps on workers) built
# with ThreadSanitizer into build-tsan; scripts/tsan.sh runs the specs that
# drive it, and any report fails.
tsan: deps dev-certs
	$(MAKE) BUILD=build-tsan CFLAGS='-O1 -g -fsanitize=thread' LDFLAGS='-fsanitize=thread' \
	  all spec-helpers
	BUSTED_ARGS='$(BUSTED_ARGS)' scripts/tsan.sh build-tsan
asan: deps asan-build dev-certs
	CC='$(ASAN_CC)' LUA_BIN='$(LUA_BIN)' scripts/asan.sh '$(ASAN_BUILD)' $(BUSTED_ARGS)

asan-build:
	$(MAKE) BUILD='$(ASAN_BUILD)' CC='$(ASAN_CC)' CFLAGS='-O1 -g $(ASAN_SAN)' \
	  LDFLAGS='$(ASAN_LINK)' all spec-helpers

valgrind: deps all dev-certs spec-helpers
	@command -v valgrind >/dev/null || { s=; [ "$$(id -u)" -eq 0 ] || s=sudo; \
	  DEBIAN_FRONTEND=noninteractive $$s apt-get install -y -qq valgrind >/dev/null; }
	FULL='$(FULL)' BUSTED_ARGS='$(BUSTED_ARGS)' scripts/valgrind.sh '$(BUILD)'

# make bench [QUICK=1]: tlspeer, a C baseline on mbedtls and LuaSec (OpenSSL)
# side by side over loopback, on three mbedtls builds in one run (tlspeer's
# 3.6, Debian's 3.6, the system's 2.28), wall-clock and callgrind
# instruction counts; writes BENCHMARKS.md and bench/chart-*.png
# (bench/run.sh, bench/run.lua).  Each section builds its own tlspeer in
# bench/out/ and is checked to be the build it claims; MBEDTLS and
# MBEDTLS_PREFIX do not apply.  QUICK=1 runs in about a minute.  make
# bench-deps installs LuaSec, LuaSocket and gnuplot.
.PHONY: bench
.PHONY: bench-deps
bench:
	QUICK='$(QUICK)' LUA='$(LUA_BIN)' CC='$(CC)' MAKE='$(MAKE)' sh bench/run.sh

bench-deps:
	@$(LUA_BIN) -e 'require "ssl"; require "socket"' 2>/dev/null && command -v gnuplot >/dev/null || \
	  { s=; [ "$$(id -u)" -eq 0 ] || s=sudo; \
	    DEBIAN_FRONTEND=noninteractive $$s apt-get install -y -qq lua-sec lua-socket gnuplot-nox; }
