/*
 * decode.c: the one JSON decode path: a private lua-cjson instance, then,
 * on Lua 5.3+, whole-number floats turned into integers.
 *
 * lua-cjson (Debian's 2.1.0) decodes every number as a float on 5.3+, so
 * an API's "Count": 3 would read 3.0 and print as "3.0". The fix-up walks
 * the decoded value once; cjson's depth limit bounds its recursion. A
 * cjson that makes integers itself (asked once, at load) is not walked.
 */
#include <math.h>
#include <string.h>

#include "mde.h"

/* registry keys: the private instance's decode function, and true when it
 * decodes whole numbers as integers itself (no fix-up needed) */
static const char decode_key = 'd';
#if LUA_VERSION_NUM >= 503
static const char ints_key = 'i';
#endif

/* JSON nesting allowed; cjson raises past it, so the walk never goes deeper */
#define MAX_DEPTH 1000

static int ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* [s, s + len) equals the lower-case word w, ignoring case */
static int same_word(const char *s, size_t len, const char *w)
{
	size_t i;
	if (strlen(w) != len)
		return 0;
	for (i = 0; i < len; i++)
		if (ascii_lower((unsigned char)s[i]) != w[i])
			return 0;
	return 1;
}

/*
 * "application/json" or any "type/subtype+json", case-insensitive, with
 * optional parameters ("application/json; charset=utf-8",
 * "application/problem+json").
 */
int mde_is_json(const char *ct, size_t len)
{
	const char *end = ct + len, *slash, *stop;
	while (ct < end && (*ct == ' ' || *ct == '\t'))
		ct++;
	for (stop = ct; stop < end && *stop != ';' && *stop != ' ' && *stop != '\t'; stop++)
		;
	slash = memchr(ct, '/', (size_t)(stop - ct));
	if (slash == NULL || slash == ct)
		return 0;
	if (same_word(ct, (size_t)(slash - ct), "application")
	    && same_word(slash + 1, (size_t)(stop - slash - 1), "json"))
		return 1;
	return stop - slash - 1 > 5 && same_word(stop - 5, 5, "+json");
}

/* the table on top is empty */
static int is_empty(lua_State *L)
{
	lua_pushnil(L);
	if (lua_next(L, -2) == 0)
		return 1;
	lua_pop(L, 2);
	return 0;
}

/*
 * The record on top: its field (the string at stack index key) made a
 * list: absent or not a table -> {}, an object (a table with entries but
 * no [1]) -> { object }, a list stays. Raw access: decoded records have no
 * metatables.
 */
static void listify(lua_State *L, int key)
{
	lua_pushvalue(L, key);
	lua_rawget(L, -2);                          /* rec value */
	if (lua_type(L, -1) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
	} else {
		int list;
		lua_rawgeti(L, -1, 1);
		list = !lua_isnil(L, -1);
		lua_pop(L, 1);
		if (list || is_empty(L)) {
			lua_pop(L, 1);              /* a list (or empty): as it is */
			return;
		}
		lua_createtable(L, 1, 0);           /* rec object list */
		lua_insert(L, -2);
		lua_rawseti(L, -2, 1);
	}
	lua_pushvalue(L, key);
	lua_insert(L, -2);                          /* rec key list */
	lua_rawset(L, -3);
}

/* every table of the list on top listified (see listify) */
static void listify_all(lua_State *L, int key)
{
	size_t i, n = lua_rawlen(L, -1);
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, (int)i);
		if (lua_type(L, -1) == LUA_TTABLE)
			listify(L, key);
		lua_pop(L, 1);
	}
}

#if LUA_VERSION_NUM >= 503
/* a float that is exactly a lua_Integer -> 1 and *i; the range test comes
 * first because converting an out-of-range float is undefined. -0.0 stays
 * a float: as integer 0 it would lose its sign (1/x: -inf, not inf). */
static int whole(lua_Number n, lua_Integer *i)
{
	if (!(n >= (lua_Number)LUA_MININTEGER && n < -(lua_Number)LUA_MININTEGER))
		return 0;
	if (n == 0 && signbit(n))
		return 0;
	*i = (lua_Integer)n;
	return (lua_Number)*i == n;
}

/* value on top -> integer in its place when it is a whole float */
static int fix_number(lua_State *L)
{
	lua_Integer i;
	if (lua_isinteger(L, -1) || !whole(lua_tonumber(L, -1), &i))
		return 0;
	lua_pop(L, 1);
	lua_pushinteger(L, i);
	return 1;
}

/* what a table is to the walk: plain JSON, a listing (the decoded body of a
 * listing call), or the list of a listing's records */
enum role { PLAIN, LISTING, RECORDS };

/*
 * table on top -> same table, fixed in place. cjson makes arrays as pure
 * sequences and objects with string keys only, so a non-empty sequence part
 * means an array, walked by index (faster than lua_next). With a list field
 * (the string at stack index key, role LISTING), the records of the listing
 * -- the items of a body that is a list, or of its "value" field -- have
 * that field listified right after their own fix-up, while they are still
 * in the cache: one pass over the records, not two.
 */
static void fix_table(lua_State *L, int depth, int key, enum role role) /* NOLINT(misc-no-recursion): depth-bounded */
{
	lua_Integer i, n = (lua_Integer)lua_rawlen(L, -1);
	if (depth > MAX_DEPTH)
		return;
	luaL_checkstack(L, 4, "JSON nesting too deep");
	if (role == LISTING && n > 0)
		role = RECORDS;
	for (i = 1; i <= n; i++) {
		switch (lua_rawgeti(L, -1, i)) {            /* t v */
		case LUA_TNUMBER:
			if (fix_number(L)) {
				lua_rawseti(L, -2, i);
				continue;
			}
			break;
		case LUA_TTABLE:
			fix_table(L, depth + 1, key, PLAIN);
			if (role == RECORDS)
				listify(L, key);
			break;
		}
		lua_pop(L, 1);
	}
	if (n > 0)
		return;
	lua_pushnil(L);
	while (lua_next(L, -2) != 0) {                     /* t k v */
		switch (lua_type(L, -1)) {
		case LUA_TNUMBER:
			if (fix_number(L)) {
				/* assigning an existing field is allowed during lua_next */
				lua_pushvalue(L, -2);
				lua_insert(L, -2);              /* t k k int */
				lua_rawset(L, -4);
				continue;
			}
			break;
		case LUA_TTABLE:
			fix_table(L, depth + 1, key, role == LISTING && lua_type(L, -2) == LUA_TSTRING
				&& strcmp(lua_tostring(L, -2), "value") == 0 ? RECORDS : PLAIN);
			break;
		}
		lua_pop(L, 1);
	}
}
#endif

#if LUA_VERSION_NUM >= 503
/* the private cjson decodes whole numbers as integers (a newer lua-cjson than
 * Debian 12's): then the walk is not needed */
static int native_ints(lua_State *L)
{
	int yes;
	lua_rawgetp(L, LUA_REGISTRYINDEX, &ints_key);
	yes = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return yes;
}
#endif

/*
 * The string at idx -> 1 and the decoded value pushed, or 0 and an error
 * message pushed. With lists (a field name, or NULL), that field of every
 * record of a listing (the items of the body's "value" list, or of the
 * body when it is a list) is made a list (see listify). Raises only when
 * out of stack or memory, so the caller's resources are safe under its
 * pcall.
 */
int mde_decode(lua_State *L, int idx, const char *lists)
{
	int key = 0;
	idx = lua_absindex(L, idx);
	luaL_checkstack(L, 4, "decode");
	if (lists != NULL) {
		lua_pushstring(L, lists);                  /* key */
		key = lua_gettop(L);
	}
	lua_rawgetp(L, LUA_REGISTRYINDEX, &decode_key);
	lua_pushvalue(L, idx);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		if (lua_type(L, -1) != LUA_TSTRING) {
			lua_pop(L, 1);
			lua_pushliteral(L, "invalid JSON");
		}
		if (key)
			lua_remove(L, key);
		return 0;
	}
	switch (lua_type(L, -1)) {
	case LUA_TTABLE:
#if LUA_VERSION_NUM >= 503
		if (!native_ints(L)) {
			fix_table(L, 1, key, key ? LISTING : PLAIN);
			break;
		}
#endif
		if (key) {
			if (lua_rawlen(L, -1) > 0) {
				listify_all(L, key);
			} else {
				lua_getfield(L, -1, "value");
				if (lua_type(L, -1) == LUA_TTABLE)
					listify_all(L, key);
				lua_pop(L, 1);
			}
		}
		break;
#if LUA_VERSION_NUM >= 503
	case LUA_TNUMBER:
		if (!native_ints(L))
			fix_number(L);
		break;
#endif
	}
	if (key)
		lua_remove(L, key);
	return 1;
}

/* core.decode(str [, lists]) -> value | nil, msg */
static int core_decode(lua_State *L)
{
	const char *lists = luaL_optstring(L, 2, NULL);
	luaL_checktype(L, 1, LUA_TSTRING);
	if (mde_decode(L, 1, lists))
		return 1;
	luaL_pushfail(L);
	lua_insert(L, -2);
	return 2;
}

/*
 * core.as_lists(items, field) -> items: field made a list in every table
 * of the list items (see listify): a field the API gives as a list, a
 * single object or nothing (ListScannedTargets) then reads one way.
 */
static int core_as_lists(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TSTRING);
	lua_settop(L, 2);
	lua_pushvalue(L, 1);
	listify_all(L, 2);
	lua_settop(L, 1);
	return 1;
}

/* core.is_json(content_type) -> boolean: the rule perform uses to decode a body */
static int core_is_json(lua_State *L)
{
	size_t len;
	const char *ct = luaL_checklstring(L, 1, &len);
	lua_pushboolean(L, mde_is_json(ct, len));
	return 1;
}

/* core -> core, with decode, is_json and null; keeps a private cjson instance so no
 * other user of cjson can change how we decode */
void mde_decode_open(lua_State *L)
{
	lua_getglobal(L, "require");
	lua_pushliteral(L, "cjson");
	lua_call(L, 1, 1);                          /* core cjson */
	lua_getfield(L, -1, "new");
	if (!lua_isfunction(L, -1))
		luaL_error(L, "mde.core needs lua-cjson 2.1 or later (cjson.new)");
	lua_call(L, 0, 1);                          /* core cjson json */
	/* strict JSON: no NaN, Infinity or hexadecimal numbers */
	lua_getfield(L, -1, "decode_invalid_numbers");
	lua_pushboolean(L, 0);
	lua_call(L, 1, 0);
	lua_getfield(L, -1, "decode_max_depth");
	lua_pushinteger(L, MAX_DEPTH);
	lua_call(L, 1, 0);
	lua_getfield(L, -1, "decode");
#if LUA_VERSION_NUM >= 503
	/* does this cjson make integers of "[1]" itself? */
	lua_pushvalue(L, -1);
	lua_pushliteral(L, "[1]");
	lua_call(L, 1, 1);
	lua_rawgeti(L, -1, 1);
	lua_pushboolean(L, lua_isinteger(L, -1));
	lua_rawsetp(L, LUA_REGISTRYINDEX, &ints_key);
	lua_pop(L, 2);
#endif
	lua_rawsetp(L, LUA_REGISTRYINDEX, &decode_key);
	lua_getfield(L, -1, "null");
	lua_setfield(L, -4, "null");
	lua_pop(L, 2);                              /* core */
	lua_pushcfunction(L, core_decode);
	lua_setfield(L, -2, "decode");
	lua_pushcfunction(L, core_is_json);
	lua_setfield(L, -2, "is_json");
	lua_pushcfunction(L, core_as_lists);
	lua_setfield(L, -2, "as_lists");
}
