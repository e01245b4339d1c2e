/*
 * Wall-clock time and sleeping for the Lua layer: pacing windows and token
 * lifetimes are compared across processes (OpenResty workers share them), so
 * the clock is CLOCK_REALTIME, in seconds with a fraction, like ngx.now().
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <time.h>

#include "lua.h"
#include "lauxlib.h"

#include "compat.h"
#include "mde.h"

/* -> seconds since the epoch (float) */
static int clock_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* seconds -> (); sleeps the whole time even when interrupted by a signal */
static int clock_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec ts;
    if (!(s > 0))   /* also rejects NaN */
        return 0;
    if (s > 1e9)
        s = 1e9;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_nsec = 999999999L;
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
    return 0;
}

static const luaL_Reg clock_funcs[] = {
    {"now", clock_now},
    {"sleep", clock_sleep},
    {NULL, NULL}
};

/* module table -> module table */
void mde_clock_open(lua_State *L)
{
    luaL_setfuncs(L, clock_funcs, 0);
}
