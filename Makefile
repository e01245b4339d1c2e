# lua-mde: builds the C core mde.core.
#
#   make                      build/lua5.4/mde/core.so
#   make LUA=5.1|5.2|5.3|5.4|luajit   build/<lua5.1|...|luajit>/mde/core.so
#   make all-luas             all of the above
#   make CC=clang             any of the above with clang
#   make asan                 build/asan/mde/core.so (clang, ASan + UBSan, Lua 5.4)
#   make lint                 cppcheck and clang-tidy over src/
#   make clean
#
# The module never links liblua: the interpreter that loads it provides it.

LUA ?= 5.4
ifeq ($(LUA),luajit)
LUA_PKG := luajit
else
LUA_PKG := lua$(LUA)
endif
BUILD_NAME ?= $(LUA_PKG)

CC ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS ?= -O2 -g
WARNINGS := -std=c99 -Wall -Wextra -Werror -pedantic -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wcast-qual -Wformat=2
LUA_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(LUA_PKG))
CURL_CFLAGS := $(shell $(PKG_CONFIG) --cflags libcurl)
CURL_LIBS := $(shell $(PKG_CONFIG) --libs libcurl)
CRYPTO_CFLAGS := $(shell $(PKG_CONFIG) --cflags libcrypto)
CRYPTO_LIBS := $(shell $(PKG_CONFIG) --libs libcrypto)
DEP_CFLAGS = $(LUA_CFLAGS) $(CURL_CFLAGS) $(CRYPTO_CFLAGS)

SRCS := $(wildcard src/*.c)
HDRS := $(wildcard src/*.h)
OUT := build/$(BUILD_NAME)/mde/core.so

.PHONY: default all-luas asan lint cppcheck clang-tidy clean

default: $(OUT)

$(OUT): $(SRCS) $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(WARNINGS) $(CFLAGS) -fPIC -fvisibility=hidden $(DEP_CFLAGS) \
		-shared -o $@ $(SRCS) $(LDFLAGS) $(CURL_LIBS) $(CRYPTO_LIBS)

all-luas:
	$(MAKE) LUA=5.1
	$(MAKE) LUA=5.2
	$(MAKE) LUA=5.3
	$(MAKE) LUA=5.4
	$(MAKE) LUA=luajit

ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined

asan:
	$(MAKE) CC=clang LUA=5.4 BUILD_NAME=asan CFLAGS="$(ASAN_FLAGS)" \
		LDFLAGS="-fsanitize=address,undefined -shared-libasan"

lint: cppcheck clang-tidy

# luaconf.h needs LLONG_MAX, which cppcheck does not take from <limits.h>
cppcheck:
	cppcheck --quiet --std=c99 --enable=warning,style,performance,portability \
		--error-exitcode=1 --inline-suppr --suppress=missingIncludeSystem \
		-DLLONG_MAX=9223372036854775807LL $(LUA_CFLAGS) $(CURL_CFLAGS) src/

clang-tidy:
	clang-tidy --quiet $(SRCS) -- $(WARNINGS) $(DEP_CFLAGS)

clean:
	rm -rf build
