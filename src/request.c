/*
 * request.c: checks a request table and reads it into a struct mde_request.
 *
 * Every field is checked here, before the caller allocates anything, so a
 * bad table raises with nothing to undo. Unknown keys are errors: a typo
 * ("timout") must not silently mean "no timeout". No libcurl here, so the
 * checker can be fuzzed on its own.
 */
#include <float.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "mde.h"

const char *const mde_methods[] = { "GET", "POST", "PATCH", "DELETE", "PUT", NULL };

/*
 * The longest timeout in seconds passed on; a longer one waits as long.
 * 1e9 s (some 31 years) is exact in a double, and its milliseconds, rounded
 * up, fit a 64-bit long with room to spare. (double)(LONG_MAX / 1000) is
 * not exact: it rounds up, and (long) of the milliseconds is undefined.
 * With a 32-bit long, LONG_MAX / 1000 is exact and is the limit.
 */
#if LONG_MAX / 1000 > 1000000000L
#define MAX_SECONDS 1e9
#else
#define MAX_SECONDS ((double)(LONG_MAX / 1000))
#endif

/* Raises "bad argument #arg to 'f' (msg)", with "request N: " before msg
 * when the table is item N of a list (core.perform_all). */
static int table_error(lua_State *L, const mde_request *r, const char *msg)
{
	if (r->item > 0)
		msg = lua_pushfstring(L, "request %d: %s", r->item, msg);
	return luaL_argerror(L, r->arg, msg);
}

static int field_error(lua_State *L, const mde_request *r, const char *key, const char *msg)
{
	return table_error(L, r, lua_pushfstring(L, "field '%s': %s", key, msg));
}

static void expect_type(lua_State *L, const mde_request *r, const char *key, int type)
{
	if (lua_type(L, -1) != type) {
		const char *msg = lua_pushfstring(L, "%s expected, got %s",
			lua_typename(L, type), luaL_typename(L, -1));
		field_error(L, r, key, msg);
	}
}

/* value on top -> its bytes, which must hold no NUL (libcurl takes C strings) */
static const char *c_string(lua_State *L, const mde_request *r, const char *key, size_t *len)
{
	const char *s;
	expect_type(L, r, key, LUA_TSTRING);
	s = lua_tolstring(L, -1, len);
	if (strlen(s) != *len)
		field_error(L, r, key, "must not contain NUL");
	return s;
}

static const char *plain_string(lua_State *L, const mde_request *r, const char *key)
{
	size_t len;
	return c_string(L, r, key, &len);
}

/* a header line: no CR, LF or NUL, so nothing can be smuggled into the request */
static int is_header_safe(const char *s, size_t len)
{
	size_t i;
	for (i = 0; i < len; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return 0;
	return 1;
}

/*
 * seconds on top -> milliseconds, rounded up so that 0.0001 s is not
 * "none". Any finite number of seconds is taken: past MAX_SECONDS it is
 * capped, which no caller can tell from waiting longer (the Lua layer
 * takes any positive finite timeout).
 */
static long milliseconds(lua_State *L, const mde_request *r, const char *key)
{
	double secs, ms;
	long whole;
	expect_type(L, r, key, LUA_TNUMBER);
	secs = (double)lua_tonumber(L, -1);
	if (!(secs > 0 && secs <= DBL_MAX)) /* also rejects NaN and infinity */
		field_error(L, r, key, "must be a positive number of seconds");
	if (secs > MAX_SECONDS)
		secs = MAX_SECONDS;
	ms = secs * 1000.0;
	whole = (long)ms;
	return (double)whole < ms ? whole + 1 : whole;
}

static void check_method(lua_State *L, const char *key, mde_request *r)
{
	const char *name = plain_string(L, r, key);
	int i;
	for (i = 0; mde_methods[i] != NULL; i++) {
		if (strcmp(mde_methods[i], name) == 0) {
			r->method = (enum mde_method)i;
			return;
		}
	}
	field_error(L, r, key, lua_pushfstring(L, "invalid method '%s'", name));
}

static void check_url(lua_State *L, const char *key, mde_request *r)
{
	r->url = plain_string(L, r, key);
	if (r->url[0] == '\0')
		field_error(L, r, key, "must not be empty");
}

/* header list on top: every item a safe, non-empty string */
static void check_headers(lua_State *L, const char *key, mde_request *r)
{
	size_t i, n;
	expect_type(L, r, key, LUA_TTABLE);
	n = lua_rawlen(L, -1);
	for (i = 1; i <= n; i++) {
		size_t len;
		const char *line;
		lua_rawgeti(L, -1, (int)i); /* headers -> headers line */
		if (lua_type(L, -1) != LUA_TSTRING)
			field_error(L, r, key, lua_pushfstring(L,
				"item %d: string expected, got %s", (int)i, luaL_typename(L, -1)));
		line = lua_tolstring(L, -1, &len);
		if (len == 0 || !is_header_safe(line, len))
			field_error(L, r, key, lua_pushfstring(L,
				"item %d must be a non-empty line without CR, LF or NUL", (int)i));
		lua_pop(L, 1);
	}
	/* kept in the slot mde_request_check made for it: no lookup (which
	 * could allocate) is needed to find it again */
	lua_pushvalue(L, -1);
	lua_replace(L, r->list_slot);
	r->headers = r->list_slot;
}

static void check_body(lua_State *L, const char *key, mde_request *r)
{
	expect_type(L, r, key, LUA_TSTRING);
	r->body = lua_tolstring(L, -1, &r->body_len);
}

/* The token is never echoed: messages name the field, not the value. */
static void check_bearer(lua_State *L, const char *key, mde_request *r)
{
	size_t i;
	unsigned bad = 0;
	expect_type(L, r, key, LUA_TSTRING);
	r->bearer = lua_tolstring(L, -1, &r->bearer_len);
	if (r->bearer_len == 0)
		field_error(L, r, key, "must not be empty");
	/* '!' .. '~' only; no early exit, so the compiler may check a word at a time */
	for (i = 0; i < r->bearer_len; i++)
		bad |= (unsigned)((unsigned char)r->bearer[i] - 0x21u) > 0x5du;
	if (bad)
		field_error(L, r, key, "must be printable ASCII without spaces");
}

static void check_timeout(lua_State *L, const char *key, mde_request *r)
{
	r->timeout_ms = milliseconds(L, r, key);
}

static void check_connect_timeout(lua_State *L, const char *key, mde_request *r)
{
	r->connect_timeout_ms = milliseconds(L, r, key);
}

static void check_ca_file(lua_State *L, const char *key, mde_request *r)
{
	r->ca_file = plain_string(L, r, key);
}

static void check_proxy(lua_State *L, const char *key, mde_request *r)
{
	r->proxy = plain_string(L, r, key);
}

static void check_user_agent(lua_State *L, const char *key, mde_request *r)
{
	size_t len;
	r->user_agent = c_string(L, r, key, &len);
	if (!is_header_safe(r->user_agent, len))
		field_error(L, r, key, "must not contain CR or LF");
}

static void check_insecure(lua_State *L, const char *key, mde_request *r)
{
	expect_type(L, r, key, LUA_TBOOLEAN);
	r->insecure = lua_toboolean(L, -1);
}

/* a field name: that field of every record of a decoded listing is made a list */
static void check_lists(lua_State *L, const char *key, mde_request *r)
{
	r->lists = plain_string(L, r, key);
	if (r->lists[0] == '\0')
		field_error(L, r, key, "must not be empty");
}

static void check_decode(lua_State *L, const char *key, mde_request *r)
{
	expect_type(L, r, key, LUA_TBOOLEAN);
	r->decode = lua_toboolean(L, -1);
}

/* a whole number of bytes, 0 or more; SIZE_MAX itself means "no limit" */
static void check_max_body(lua_State *L, const char *key, mde_request *r)
{
	uint64_t bytes;
	double n;
	expect_type(L, r, key, LUA_TNUMBER);
#if LUA_VERSION_NUM >= 503
	if (lua_isinteger(L, -1)) {
		lua_Integer i = lua_tointeger(L, -1);
		if (i < 0)
			field_error(L, r, key, "must not be negative");
		bytes = (uint64_t)i;
	} else
#endif
	{
		n = (double)lua_tonumber(L, -1);
		/* range first: the cast below is only defined inside it */
		if (!(n >= 0 && n < 18446744073709551616.0) || (double)(uint64_t)n != n)
			field_error(L, r, key, "must be a whole number of bytes, 0 or more");
		bytes = (uint64_t)n;
	}
	r->max_body = bytes < SIZE_MAX ? (size_t)bytes : SIZE_MAX - 1;
}

typedef void (*field_check)(lua_State *L, const char *key, mde_request *r);

#define FIELD(name, check) { (name), sizeof(name) - 1, (check) }

static const struct field {
	const char *name;
	size_t len;
	field_check check;
} fields[] = {
	FIELD("method", check_method),
	FIELD("url", check_url),
	FIELD("headers", check_headers),
	FIELD("body", check_body),
	FIELD("bearer", check_bearer),
	FIELD("timeout", check_timeout),
	FIELD("connect_timeout", check_connect_timeout),
	FIELD("ca_file", check_ca_file),
	FIELD("insecure", check_insecure),
	FIELD("proxy", check_proxy),
	FIELD("user_agent", check_user_agent),
	FIELD("max_body", check_max_body),
	FIELD("decode", check_decode),
	FIELD("lists", check_lists),
	{ NULL, 0, NULL }
};

/*
 * Reads the request table at idx into *r, raising on the first bad field
 * as a bad argument arg (item > 0: the item-th request of a list), and
 * pushes its header list (nil when it has none: r->headers is then 0).
 * Raw traversal: no metamethod (so no Lua code) runs while we look.
 * The strings in *r belong to the table, which must stay on the stack
 * (at r->table) while they are used, and so must the pushed list.
 */
void mde_request_check(lua_State *L, int idx, int arg, int item, mde_request *r)
{
	memset(r, 0, sizeof *r);
	r->table = lua_absindex(L, idx);
	r->arg = arg;
	r->item = item;
	r->method = MDE_GET;
	r->max_body = SIZE_MAX;
	r->decode = 1;
	if (lua_type(L, r->table) != LUA_TTABLE)
		table_error(L, r, lua_pushfstring(L, "table expected, got %s",
			luaL_typename(L, r->table)));
	luaL_checkstack(L, 6, "request table");

	lua_pushnil(L);                           /* req list (nil until found) */
	r->list_slot = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, r->table) != 0) {      /* req key value */
		const struct field *f;
		const char *key;
		size_t len;
		if (lua_type(L, -2) != LUA_TSTRING)
			table_error(L, r, lua_pushfstring(L,
				"field names must be strings, got %s", luaL_typename(L, -2)));
		key = lua_tolstring(L, -2, &len);
		for (f = fields; f->name != NULL; f++)
			if (f->len == len && memcmp(f->name, key, len) == 0)
				break;
		if (f->name == NULL)
			table_error(L, r, lua_pushfstring(L, "unknown field '%s'", key));
		f->check(L, key, r);
		lua_pop(L, 1);                      /* req key */
	}
	if (r->url == NULL)
		table_error(L, r, "field 'url' is required");
	if (r->body != NULL && r->method == MDE_GET)
		field_error(L, r, "body", "not allowed with GET");
}
