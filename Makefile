# tlspeer - TLS and crypto for Lua 5.4 on mbedtls.
#
#   make                 build tlspeer/core.so
#   make test            run the specs (installs missing Debian packages)
#   make demo            the TLS server and client demo
#   make certs           dev CA, server and client certificates in certs/
#   make install         PREFIX=/usr/local DESTDIR=
#   make MBEDTLS_PREFIX=$(scripts/mbedtls3.sh)   build against mbedtls 3.6

LUA_VERSION  ?= 5.4
LUA          ?= lua$(LUA_VERSION)
LUA_INCDIR   ?= $(shell pkg-config --variable=includedir lua$(LUA_VERSION) 2>/dev/null || echo /usr/include)/lua$(LUA_VERSION)
PREFIX       ?= /usr/local
DESTDIR      ?=
LUA_LIBDIR   ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
TLSPEER_SHAREDIR ?= $(PREFIX)/share/tlspeer

CC       ?= cc
WARN     ?= -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
WERROR   ?=
MBEDTLS_PREFIX ?=

ALL_CFLAGS  = $(CFLAGS) $(WARN) $(WERROR) -std=c99 -D_POSIX_C_SOURCE=200809L \
              -fPIC -fvisibility=hidden -I$(LUA_INCDIR) \
              -DTLSPEER_SHAREDIR='"$(TLSPEER_SHAREDIR)"'
ALL_LDFLAGS = $(LDFLAGS) -shared
ifneq ($(MBEDTLS_PREFIX),)
ALL_CFLAGS += -I$(MBEDTLS_PREFIX)/include
LIBS = $(MBEDTLS_PREFIX)/lib/libmbedtls.a $(MBEDTLS_PREFIX)/lib/libmbedx509.a \
       $(MBEDTLS_PREFIX)/lib/libmbedcrypto.a -lpthread
else
LIBS = -lmbedtls -lmbedx509 -lmbedcrypto
endif

# BUILD holds objects and, under BUILD/tlspeer/, a copy of the module; the
# default build also puts the module at ./tlspeer/core.so for the specs.
BUILD  ?= build
SRCS    = $(wildcard src/*.c)
OBJS    = $(SRCS:src/%.c=$(BUILD)/%.o)
TARGET  = $(BUILD)/tlspeer/core.so
BUSTED  = $(LUA) /usr/bin/busted

.PHONY: all deps test demo certs ca-bundle install uninstall clean FORCE

all: $(TARGET)
ifeq ($(BUILD),build)
	@mkdir -p tlspeer && cp -f $(TARGET) tlspeer/core.so
endif

# Rebuild everything when the flags change (another mbedtls, -Werror...).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(LIBS)' | cmp -s - $@ || \
	  echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(LIBS)' > $@

$(BUILD)/%.o: src/%.c src/aux.h src/compat.h $(BUILD)/.flags
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(TARGET): $(OBJS)
	@mkdir -p $(BUILD)/tlspeer
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LIBS)

deps:
	@sh scripts/deps.sh

test: deps all
	$(BUSTED) --cpath='$(BUILD)/?.so' $(BUSTED_ARGS)

certs: deps all
	$(LUA) certs/generate.lua

demo: deps all
	@$(LUA) certs/generate.lua >/dev/null
	$(LUA) examples/demo.lua

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

install: all
	install -d $(DESTDIR)$(LUA_LIBDIR)/tlspeer $(DESTDIR)$(LUA_SHAREDIR)/tlspeer
	install -m 0755 $(TARGET) $(DESTDIR)$(LUA_LIBDIR)/tlspeer/core.so
	install -m 0644 lua/tlspeer/*.lua $(DESTDIR)$(LUA_SHAREDIR)/tlspeer/
	install -m 0644 certs/ca-certificates.crt $(DESTDIR)$(LUA_SHAREDIR)/tlspeer/ca-certificates.crt

uninstall:
	rm -f $(DESTDIR)$(LUA_LIBDIR)/tlspeer/core.so
	rm -f $(addprefix $(DESTDIR)$(LUA_SHAREDIR)/tlspeer/,$(notdir $(wildcard lua/tlspeer/*.lua)) ca-certificates.crt)

clean:
	rm -rf $(BUILD) tlspeer
