/*
 * headers.c: the raw header block of a response -> a Lua table.
 *
 * The header callback collects the block as received, starting again at
 * every status line, so what arrives here is the final response's: the
 * status line, "Name: value" lines ending in CRLF (or LF), a blank line and
 * possibly trailers. Names are lower-cased (in place: the buffer is ours),
 * values trimmed, repeated names joined with ", ", and obsolete folded
 * lines appended to the value they continue. Malformed lines are skipped.
 * No libcurl here, so the parser can be fuzzed on its own.
 */
#include <string.h>

#include "mde.h"

/* RFC 9110 tchar */
static int is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * t side -> t side: t[name] = value the first time; a repeat goes to the
 * list side[name] = { first, ", ", value, ... }, joined once at the end, so
 * a flood of repeated headers costs linear, not quadratic, time. fold: value
 * continues the name's latest value (obs-fold) after a space, or replaces
 * it when that is empty ("X-A:" then " b" is "b", not " b").
 */
static void add(lua_State *L, const char *name, size_t name_len,
	const char *value, size_t value_len, int fold)
{
	lua_pushlstring(L, name, name_len);         /* t side name */
	if (!lua_isnil(L, -2)) {
		lua_pushvalue(L, -1);
		lua_rawget(L, -3);                  /* t side name list|nil */
		if (!lua_isnil(L, -1)) {
			size_t n = lua_rawlen(L, -1); /* list[n]: the latest value */
			lua_rawgeti(L, -1, (int)n);
			if (fold && lua_rawlen(L, -1) == 0) {
				lua_pop(L, 1);
				lua_pushlstring(L, value, value_len);
				lua_rawseti(L, -2, (int)n);
			} else {
				lua_pop(L, 1);
				lua_pushstring(L, fold ? " " : ", ");
				lua_rawseti(L, -2, (int)n + 1);
				lua_pushlstring(L, value, value_len);
				lua_rawseti(L, -2, (int)n + 2);
			}
			lua_pop(L, 2);              /* t side */
			return;
		}
		lua_pop(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_rawget(L, -4);                          /* t side name first */
	if (lua_isnil(L, -1) || (fold && lua_rawlen(L, -1) == 0)) {
		lua_pop(L, 1);
		lua_pushlstring(L, value, value_len);
		lua_rawset(L, -4);
		return;
	}
	if (lua_isnil(L, -3)) {                     /* first repeat of any name */
		lua_newtable(L);
		lua_replace(L, -4);
	}
	lua_createtable(L, 4, 0);                   /* t side name first list */
	lua_insert(L, -2);
	lua_rawseti(L, -2, 1);                      /* t side name list */
	lua_pushstring(L, fold ? " " : ", ");
	lua_rawseti(L, -2, 2);
	lua_pushlstring(L, value, value_len);
	lua_rawseti(L, -2, 3);
	lua_rawset(L, -3);                          /* t side; side[name] = { first, sep, value } */
}

/* t side -> t, with every repeated name's pieces joined into t[name] */
static void join(lua_State *L)
{
	int t = lua_absindex(L, -2), side = t + 1;
	if (lua_isnil(L, side)) {
		lua_pop(L, 1);
		return;
	}
	lua_pushnil(L);
	while (lua_next(L, side) != 0) {            /* t side name list */
		luaL_Buffer b;
		int list = lua_gettop(L);
		size_t i, n = lua_rawlen(L, list);
		lua_pushvalue(L, list - 1);         /* t side name list name */
		/* absolute indices: the buffer may take stack slots of its own */
		luaL_buffinit(L, &b);
		for (i = 1; i <= n; i++) {
			lua_rawgeti(L, list, (int)i);
			luaL_addvalue(&b);
		}
		luaL_pushresult(&b);                /* t side name list name joined */
		lua_rawset(L, t);
		lua_pop(L, 1);                      /* t side name */
	}
	lua_pop(L, 1);
}

void mde_headers_push(lua_State *L, char *buf, size_t len)
{
	char *p = buf, *end = buf + len;
	const char *last = NULL;   /* name of the previous header, for folded lines */
	size_t last_len = 0;

	size_t lines = 0;
	const char *scan;
	for (scan = buf; scan < end && (scan = memchr(scan, '\n', (size_t)(end - scan))) != NULL; scan++)
		lines++;
	luaL_checkstack(L, 8, "response headers");
	/* room for every line but the status line and the blank one: no rehash */
	lua_createtable(L, 0, lines > 2 ? (int)(lines < 64 ? lines - 2 : 64) : 0);
	lua_pushnil(L);                 /* t side: made on the first repeat */
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *line = p, *stop = nl != NULL ? nl : end, *colon, *v, *q;

		p = nl != NULL ? nl + 1 : end;
		if (stop > line && stop[-1] == '\r')
			stop--;
		if (stop == line || (stop - line >= 5 && memcmp(line, "HTTP/", 5) == 0)) {
			last = NULL;            /* blank line or status line */
			continue;
		}
		if (is_ows(*line)) {            /* obs-fold: continues the last value */
			for (v = line; v < stop && is_ows(*v); v++)
				;
			while (stop > v && is_ows(stop[-1]))
				stop--;
			if (last != NULL && stop > v)
				add(L, last, last_len, v, (size_t)(stop - v), 1);
			continue;
		}
		colon = memchr(line, ':', (size_t)(stop - line));
		if (colon == NULL || colon == line) {
			last = NULL;
			continue;
		}
		for (q = line; q < colon && is_tchar((unsigned char)*q); q++)
			if (*q >= 'A' && *q <= 'Z')
				*q = (char)(*q - 'A' + 'a');
		if (q != colon) {                /* not a token: "Bad Name: x" */
			last = NULL;
			continue;
		}
		for (v = colon + 1; v < stop && is_ows(*v); v++)
			;
		while (stop > v && is_ows(stop[-1]))
			stop--;
		last = line;
		last_len = (size_t)(colon - line);
		add(L, last, last_len, v, (size_t)(stop - v), 0);
	}
	join(L);
}
