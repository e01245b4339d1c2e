/*
 * multi.c: the per-state CURLSH, and core.perform_all: many requests in
 * flight on one thread through a CURLM.
 *
 * The share (connections, TLS sessions, DNS) lets every handle of a Lua
 * state reuse what any other has opened, and lives while one is open. It
 * is found through the registry, one per state: states never share it, so
 * it needs no locks even when several states run on several threads
 * (nginx workers with threads, embedders).
 */
#include <stdlib.h>
#include <string.h>

#include "handle.h"

static const char share_key = 's'; /* registry: the state's share_box */

/* the registry's pointer to the state's share: NULL while no handle is open */
struct share_box {
	mde_share *s;
};

/* a new share, not yet counted; NULL when out of memory */
static mde_share *share_new(void)
{
	mde_share *s = (mde_share *)malloc(sizeof *s);
	if (s == NULL)
		return NULL;
	s->refs = 0;
	s->box = NULL;
	s->sh = curl_share_init();
	if (s->sh == NULL
	    || curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK
	    || curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK
	    || curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK) {
		if (s->sh != NULL)
			curl_share_cleanup(s->sh);
		free(s);
		return NULL;
	}
	return s;
}

/*
 * -> the state's share with one more reference (a new handle's), made on
 * demand; NULL when out of memory. Only handles count: when the last one
 * closes, the share goes and its connections close with it.
 */
mde_share *mde_share_acquire(lua_State *L)
{
	struct share_box *box;
	lua_rawgetp(L, LUA_REGISTRYINDEX, &share_key);
	box = (struct share_box *)lua_touserdata(L, -1);
	lua_pop(L, 1);
	if (box == NULL)
		return NULL;
	if (box->s == NULL) {
		box->s = share_new();
		if (box->s == NULL)
			return NULL;
		box->s->box = box;
	}
	box->s->refs++;
	return box->s;
}

void mde_share_release(mde_share *s)
{
	if (--s->refs > 0)
		return;
	if (s->box != NULL)
		s->box->s = NULL;
	curl_share_cleanup(s->sh); /* closes the cached connections */
	free(s);
}

/* The box may be finalized before the last handles (lua_close): they must
 * not write into it afterwards. */
static int share_box_gc(lua_State *L)
{
	struct share_box *box = (struct share_box *)lua_touserdata(L, 1);
	if (box->s != NULL) {
		box->s->box = NULL;
		box->s = NULL;
	}
	return 0;
}

/* the state's (empty) share box, once per state, into the registry */
static void share_open(lua_State *L)
{
	struct share_box *box;
	lua_rawgetp(L, LUA_REGISTRYINDEX, &share_key);
	if (!lua_isnil(L, -1)) {                /* opened before in this state */
		lua_pop(L, 1);
		return;
	}
	lua_pop(L, 1);
	box = (struct share_box *)lua_newuserdatauv(L, sizeof *box, 0);
	box->s = NULL;
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, share_box_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &share_key);
}

/* one transfer of perform_all */
typedef struct slot {
	mde_handle *h;
	int added;   /* in the multi handle */
	int done;    /* the multi handle said how it ended (h->result) */
} slot;

/* the transfers that ended -> their slots */
static void collect(CURLM *m)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(m, &left)) != NULL) {
		char *p = NULL;
		slot *s;
		if (msg->msg != CURLMSG_DONE)
			continue;
		(void)curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
		s = (slot *)(void *)p;
		s->h->result = msg->data.result;
		s->done = 1;
	}
}

/* everything added runs until done; CURLM_OK or why the loop stopped */
static CURLMcode run(CURLM *m)
{
	CURLMcode mc;
	int running = 0;
	for (;;) {
		mc = curl_multi_perform(m, &running);
		collect(m);
		if (mc != CURLM_OK || running == 0)
			return mc;
		/* each request's own timeout bounds the wait */
#if LIBCURL_VERSION_NUM >= 0x074200
		mc = curl_multi_poll(m, NULL, 0, 1000, NULL);
#else
		mc = curl_multi_wait(m, NULL, 0, 1000, NULL);
#endif
		if (mc != CURLM_OK)
			return mc;
	}
}

/* handles at 1 -> slots (scratch userdata pushed), raising on misuse */
static slot *check_handles(lua_State *L, size_t n)
{
	slot *slots = (slot *)lua_newuserdatauv(L, n * sizeof *slots + 1, 0);
	size_t i, j;
	for (i = 0; i < n; i++) {
		mde_handle *h;
		lua_rawgeti(L, 1, (int)i + 1);
		h = (mde_handle *)luaL_testudata(L, -1, MDE_HANDLE);
		if (h == NULL || h->curl == NULL)
			luaL_argerror(L, 1, lua_pushfstring(L,
				"item %d: open mde.Handle expected", (int)i + 1));
		lua_pop(L, 1);
		for (j = 0; j < i; j++)
			if (slots[j].h == h)
				luaL_argerror(L, 1, lua_pushfstring(L,
					"item %d: a handle can take one request at a time", (int)i + 1));
		slots[i].h = h;
		slots[i].added = slots[i].done = 0;
	}
	return slots;
}

/*
 * core.perform_all(handles, reqs) -> results, where results[i] is
 * { resp = resp } or { facts = facts } for reqs[i] on handles[i].
 * Every request is checked before anything is set up; a bad one raises.
 */
static int core_perform_all(lua_State *L)
{
	size_t i, n;
	slot *slots;
	CURLM *m;
	CURLMcode mc = CURLM_OK;

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 2);
	n = lua_rawlen(L, 1);
	if (lua_rawlen(L, 2) != n)
		luaL_argerror(L, 2, "as many requests as handles expected");
	slots = check_handles(L, n);                    /* handles reqs slots */
	for (i = 0; i < n; i++) {
		mde_request r;
		lua_rawgeti(L, 2, (int)i + 1);
		mde_request_check(L, -1, 2, (int)i + 1, &r);
		lua_pop(L, 1);
	}

	/* Set up. What a handle allocates it owns, so a raise leaks nothing;
	 * from curl_multi_init to curl_multi_cleanup nothing raises. */
	for (i = 0; i < n; i++) {
		mde_handle *h = slots[i].h;
		mde_request r;
		lua_rawgeti(L, 2, (int)i + 1);
		mde_request_check(L, -1, 2, (int)i + 1, &r); /* checked above */
		h->result = mde_prepare(L, h, &r);
		lua_pop(L, 1);
		if (h->result == CURLE_OK)
			h->result = curl_easy_setopt(h->curl, CURLOPT_PRIVATE, (void *)&slots[i]);
		/* HTTP/2: wait for the first connection and multiplex over it */
		if (h->result == CURLE_OK)
			h->result = curl_easy_setopt(h->curl, CURLOPT_PIPEWAIT, 1L);
	}
	m = curl_multi_init();
	if (m == NULL)
		return luaL_error(L, "not enough memory");
	for (i = 0; i < n; i++) {
		mde_handle *h = slots[i].h;
		if (h->result != CURLE_OK)
			continue;
		if (curl_multi_add_handle(m, h->curl) == CURLM_OK)
			slots[i].added = 1;
		else
			h->result = CURLE_OUT_OF_MEMORY;
	}
	mc = run(m);
	for (i = 0; i < n; i++) {
		mde_handle *h = slots[i].h;
		if (!slots[i].added)
			continue;
		(void)curl_multi_remove_handle(m, h->curl);
		if (!slots[i].done) {               /* the loop itself failed */
			h->result = mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_SEND_ERROR;
			strncpy(h->errbuf, curl_multi_strerror(mc), CURL_ERROR_SIZE - 1);
			h->errbuf[CURL_ERROR_SIZE - 1] = '\0';
		}
	}
	(void)curl_multi_cleanup(m);

	lua_createtable(L, (int)n, 0);                  /* handles reqs slots results */
	for (i = 0; i < n; i++) {
		lua_createtable(L, 0, 1);
		if (mde_finish(L, slots[i].h, slots[i].h->result) == 1) {
			lua_setfield(L, -2, "resp");        /* results item */
		} else {
			lua_setfield(L, -3, "facts");       /* results item nil */
			lua_pop(L, 1);
		}
		lua_rawseti(L, -2, (int)i + 1);
	}
	return 1;
}

void mde_multi_open(lua_State *L)
{
	share_open(L);
	lua_pushcfunction(L, core_perform_all);
	lua_setfield(L, -2, "perform_all");
}
