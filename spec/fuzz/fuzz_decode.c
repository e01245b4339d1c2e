/*
 * libFuzzer target: the JSON decode path (src/decode.c): the private
 * cjson instance, then the integer fix-up, plain and with a list field
 * (inputs of odd length); and the content-type test.
 * Checks: decode returns a value or a message, never raises; after the
 * fix-up no float that is exactly an integer remains anywhere.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include <lualib.h>

#include "mde.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

/* str -> ok, value|message */
static int decode(lua_State *S)
{
	size_t len;
	int ok;
	(void)lua_tolstring(S, 1, &len);
	ok = mde_decode(S, 1, (len & 1) ? "L" : NULL);
	lua_pushboolean(S, ok);
	lua_insert(S, -2);
	return 2;
}

#if LUA_VERSION_NUM >= 503
/* value on top: no whole float left inside but -0.0, which keeps its sign
 * (depth is bounded by cjson) */
static void check_fixed(lua_State *S, int depth)
{
	if (depth > 1100)
		abort();
	if (lua_type(S, -1) == LUA_TNUMBER && !lua_isinteger(S, -1)) {
		lua_Number n = lua_tonumber(S, -1);
		if (n >= (lua_Number)LUA_MININTEGER && n < -(lua_Number)LUA_MININTEGER
		    && (lua_Number)(lua_Integer)n == n && !(n == 0 && signbit(n)))
			abort();
	}
	if (lua_type(S, -1) != LUA_TTABLE)
		return;
	luaL_checkstack(S, 3, "check");
	lua_pushnil(S);
	while (lua_next(S, -2) != 0) {
		check_fixed(S, depth + 1);
		lua_pop(S, 1);
	}
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (L == NULL) {
		L = luaL_newstate();
		luaL_openlibs(L);
		lua_newtable(L);
		mde_decode_open(L);    /* loads cjson from the system's cpath */
		lua_settop(L, 0);
	}
	(void)mde_is_json((const char *)data, size);
	lua_settop(L, 0);
	lua_pushcfunction(L, decode);
	lua_pushlstring(L, (const char *)data, size);
	if (lua_pcall(L, 1, 2, 0) != LUA_OK)
		abort();
	if (!lua_toboolean(L, 1) && lua_type(L, 2) != LUA_TSTRING)
		abort();
#if LUA_VERSION_NUM >= 503
	if (lua_toboolean(L, 1))
		check_fixed(L, 0);
#endif
	lua_settop(L, 0);
	lua_gc(L, LUA_GCSTEP, 0);
	return 0;
}
