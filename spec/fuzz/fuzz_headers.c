/*
 * libFuzzer target: the response header parser (src/headers.c).
 * Input: a raw header block, as the header callback collects it.
 * Checks: the result is a table of lower-case token names to strings, none
 * of which begins with a space or tab (values are trimmed, folded lines
 * joined with one space, and never to an empty value).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "mde.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

/* copy -> headers table (the parser lower-cases in place: give it a copy) */
static int parse(lua_State *S)
{
	size_t len;
	const char *s = lua_tolstring(S, 1, &len);
	char *copy = (char *)lua_newuserdatauv(S, len + 1, 0);
	memcpy(copy, s, len);
	mde_headers_push(S, copy, len);
	return 1;
}

static int is_lower_token(const char *s, size_t len)
{
	size_t i;
	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'A' && c <= 'Z') || c <= ' ' || c >= 0x7f || c == ':')
			return 0;
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (L == NULL) {
		L = luaL_newstate();
		luaL_openlibs(L);
	}
	lua_settop(L, 0);
	lua_pushcfunction(L, parse);
	lua_pushlstring(L, (const char *)data, size);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK)
		abort(); /* the parser never raises on any input */
	lua_pushnil(L);
	while (lua_next(L, 1) != 0) {
		size_t len;
		const char *name, *value;
		if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
			abort();
		name = lua_tolstring(L, -2, &len);
		if (!is_lower_token(name, len))
			abort();
		value = lua_tolstring(L, -1, &len);
		if (len > 0 && (value[0] == ' ' || value[0] == '\t'))
			abort();
		lua_pop(L, 1);
	}
	lua_settop(L, 0);
	lua_gc(L, LUA_GCSTEP, 0);
	return 0;
}
