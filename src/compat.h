/*
 * compat.h: the sources are written to the Lua 5.4 API; this maps what they
 * use onto 5.1 (and LuaJIT, which reports 501), 5.2 and 5.3.
 *
 * Helpers are prefixed (mde_compat_*) and bound with a macro, so they never
 * clash with a declaration the headers already make (LuaJIT's lauxlib.h
 * declares luaL_setfuncs and luaL_testudata, plain 5.1's does not).
 */
#ifndef MDE_COMPAT_H
#define MDE_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 504
#define lua_newuserdatauv(L, size, nuv) lua_newuserdata((L), (size))
#define luaL_pushfail(L) lua_pushnil(L)
#endif

#if LUA_VERSION_NUM < 502
#ifndef LUA_OK
#define LUA_OK 0
#endif
#define lua_rawlen(L, i) lua_objlen((L), (i))
#define lua_absindex(L, i) \
	(((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)

/* registry[p] = value on top, pops it */
static inline void mde_compat_rawsetp(lua_State *L, int idx, const void *p)
{
	idx = lua_absindex(L, idx);
	lua_pushlightuserdata(L, (void *)(size_t)p);
	lua_insert(L, -2);
	lua_rawset(L, idx);
}
#define lua_rawsetp mde_compat_rawsetp

/* -> t[p] */
static inline void mde_compat_rawgetp(lua_State *L, int idx, const void *p)
{
	idx = lua_absindex(L, idx);
	lua_pushlightuserdata(L, (void *)(size_t)p);
	lua_rawget(L, idx);
}
#define lua_rawgetp mde_compat_rawgetp

/* the 5.2 luaL_setfuncs: table at -(nup+1), nup upvalues on top; pops them */
static inline void mde_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
	luaL_checkstack(L, nup + 1, "too many upvalues");
	for (; l->name != NULL; l++) {
		int i;
		for (i = 0; i < nup; i++)
			lua_pushvalue(L, -nup);
		lua_pushcclosure(L, l->func, nup);
		lua_setfield(L, -(nup + 2), l->name);
	}
	lua_pop(L, nup);
}
#define luaL_setfuncs mde_compat_setfuncs

/* the 5.2 luaL_testudata: the userdata at ud if its metatable is tname's */
static inline void *mde_compat_testudata(lua_State *L, int ud, const char *tname)
{
	void *p = lua_touserdata(L, ud);
	if (p == NULL || !lua_getmetatable(L, ud))
		return NULL;
	/* ... mt -> ... mt expected */
	luaL_getmetatable(L, tname);
	if (!lua_rawequal(L, -1, -2))
		p = NULL;
	lua_pop(L, 2);
	return p;
}
#define luaL_testudata mde_compat_testudata

/* the 5.2 luaL_setmetatable: sets tname's metatable on the value on top */
static inline void mde_compat_setmetatable(lua_State *L, const char *tname)
{
	luaL_getmetatable(L, tname);
	lua_setmetatable(L, -2);
}
#define luaL_setmetatable mde_compat_setmetatable
#endif /* LUA_VERSION_NUM < 502 */

#endif
