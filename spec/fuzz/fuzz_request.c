/*
 * libFuzzer target: the request table checker (src/request.c).
 * Input: a little program that builds a request table, field by field
 * (key byte, type byte, value bytes). Checks: a bad table raises a string
 * error, never crashes; a table that passes holds what mde_prepare needs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "mde.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

static const char *const keys[] = {
	"method", "url", "headers", "body", "bearer", "timeout", "connect_timeout",
	"ca_file", "insecure", "proxy", "user_agent", "max_body", "decode",
	"unknown", "Url"
};
#define NKEYS (sizeof keys / sizeof keys[0])

typedef struct reader {
	const uint8_t *p, *end;
} reader;

static unsigned byte(reader *r)
{
	return r->p < r->end ? *r->p++ : 0;
}

static void bytes(reader *r, void *out, size_t n)
{
	size_t have = (size_t)(r->end - r->p) < n ? (size_t)(r->end - r->p) : n;
	memset(out, 0, n);
	memcpy(out, r->p, have);
	r->p += have;
}

/* -> a string of up to 255 input bytes, or a method/URL-like one */
static void push_string(lua_State *S, reader *r)
{
	static const char *const words[] = { "GET", "POST", "PATCH", "DELETE", "PUT",
		"https://127.0.0.1/x", "X-A: b", "" };
	unsigned n = byte(r);
	if (n >= 0xf8) {
		lua_pushstring(S, words[n - 0xf8]);
		return;
	}
	n = n > (unsigned)(r->end - r->p) ? (unsigned)(r->end - r->p) : n;
	lua_pushlstring(S, (const char *)r->p, n);
	r->p += n;
}

/* -> a value of the type the next byte picks */
static void push_value(lua_State *S, reader *r, int depth)
{
	switch (byte(r) % 6) {
	case 0:
		lua_pushboolean(S, (int)(byte(r) & 1));
		break;
	case 1: {
		int64_t i;
		bytes(r, &i, sizeof i);
#if LUA_VERSION_NUM >= 503
		lua_pushinteger(S, (lua_Integer)i);
#else
		lua_pushnumber(S, (lua_Number)i);
#endif
		break;
	}
	case 2: {
		double d;
		bytes(r, &d, sizeof d);
		lua_pushnumber(S, (lua_Number)d);
		break;
	}
	case 3: {
		unsigned i, n = byte(r) % 8;
		lua_createtable(S, (int)n, 0);
		for (i = 1; i <= n && depth < 2; i++) {
			push_value(S, r, depth + 1);
			lua_rawseti(S, -2, (int)i);
		}
		break;
	}
	case 4:
		lua_pushlightuserdata(S, NULL); /* like cjson.null */
		break;
	default:
		push_string(S, r);
		break;
	}
}

static int printable(const char *s, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

/* req -> (raises, or checks what the checker promises) */
static int check(lua_State *S)
{
	mde_request req;
	mde_request_check(S, 1, 1, 0, &req);
	if (req.url == NULL || req.url[0] == '\0' || (unsigned)req.method > MDE_PUT)
		abort();
	if (req.body != NULL && req.method == MDE_GET)
		abort();
	if (req.timeout_ms < 0 || req.connect_timeout_ms < 0)
		abort();
	/* any finite timeout is taken, capped at 1e9 s */
	if ((double)req.timeout_ms > 1e12 || (double)req.connect_timeout_ms > 1e12)
		abort();
	if (req.bearer != NULL && (req.bearer_len == 0 || !printable(req.bearer, req.bearer_len)))
		abort();
	if (req.headers) {
		size_t i, n;
		lua_getfield(S, 1, "headers");
		n = lua_rawlen(S, -1);
		for (i = 1; i <= n; i++) {
			size_t len;
			const char *line;
			lua_rawgeti(S, -1, (int)i);
			line = lua_tolstring(S, -1, &len);
			if (line == NULL || len == 0 || strlen(line) != len
			    || strchr(line, '\r') != NULL || strchr(line, '\n') != NULL)
				abort();
			lua_pop(S, 1);
		}
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	reader r = { data, data + size };
	int n = 0;
	if (L == NULL) {
		L = luaL_newstate();
		luaL_openlibs(L);
	}
	lua_settop(L, 0);
	lua_pushcfunction(L, check);
	lua_newtable(L);
	while (r.p < r.end && n++ < 32) {
		unsigned k = byte(&r);
		if (k % (NKEYS + 1) == NKEYS)
			lua_pushinteger(L, (lua_Integer)(k & 3)); /* a non-string key */
		else
			lua_pushstring(L, keys[k % (NKEYS + 1)]);
		push_value(L, &r, 0);
		lua_rawset(L, -3);
	}
	if (lua_pcall(L, 1, 0, 0) != LUA_OK && lua_type(L, -1) != LUA_TSTRING)
		abort();
	lua_settop(L, 0);
	lua_gc(L, LUA_GCSTEP, 0);
	return 0;
}
