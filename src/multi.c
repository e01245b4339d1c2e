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
#include <limits.h>
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
	mde_request r; /* checked; its strings are the request table's, kept on the stack */
	int added;     /* in the multi handle */
	int done;      /* the multi handle said how it ended (h->result) */
} slot;

/* what push_results is given */
typedef struct batch {
	const slot *slots;
	size_t n;
} batch;

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
		if (s == NULL) /* only a reset clears it, and busy handles are never reset */
			continue;
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

/* a multi-handle failure -> h's result; running out of memory raises */
static void multi_failed(mde_handle *h, CURLMcode mc, CURLcode rc)
{
	if (mc == CURLM_OUT_OF_MEMORY) {
		h->oom = 1;
		return;
	}
	h->result = rc;
	strncpy(h->errbuf, curl_multi_strerror(mc), CURL_ERROR_SIZE - 1);
	h->errbuf[CURL_ERROR_SIZE - 1] = '\0';
}

/*
 * the handles at 1 -> slots[i].h, raising on misuse. Each handle is pushed
 * and stays on the stack: whatever Lua code does to the caller's table in
 * the middle of the call, no handle of it can be collected before it ends.
 */
static void check_handles(lua_State *L, slot *slots, size_t n)
{
	size_t i, j;
	for (i = 0; i < n; i++) {
		const char *bad = NULL;
		mde_handle *h;
		lua_rawgeti(L, 1, (int)i + 1);
		h = (mde_handle *)luaL_testudata(L, -1, MDE_HANDLE);
		if (h == NULL || h->curl == NULL)
			bad = "open mde.Handle expected";
		else if (h->busy)
			bad = "mde.Handle is in use";
		else
			for (j = 0; j < i; j++)
				if (slots[j].h == h)
					bad = "a handle can take one request at a time";
		if (bad != NULL)
			luaL_argerror(L, 1, lua_pushfstring(L, "item %d: %s", (int)i + 1, bad));
		slots[i].h = h;
		slots[i].added = slots[i].done = 0;
	}
}

/* lua_pcall'ed by core_perform_all: the batch (light userdata) -> results */
static int push_results(lua_State *L)
{
	const batch *b = (const batch *)lua_touserdata(L, 1);
	size_t i;
	lua_createtable(L, (int)b->n, 0);
	for (i = 0; i < b->n; i++) {
		lua_createtable(L, 0, 1);
		if (mde_push_result(L, b->slots[i].h) == 1) {
			lua_setfield(L, -2, "resp");        /* results item */
		} else {
			lua_setfield(L, -3, "facts");       /* results item nil */
			lua_pop(L, 1);
		}
		lua_rawseti(L, -2, (int)i + 1);
	}
	return 1;
}

/*
 * core.perform_all(handles, reqs) -> results, where results[i] is
 * { resp = resp } or { facts = facts } for reqs[i] on handles[i].
 * Every handle and request is checked before anything is set up; a bad
 * one raises.
 */
static int core_perform_all(lua_State *L)
{
	size_t i, n;
	slot *slots;
	batch b;
	CURLM *m;
	CURLMcode mc = CURLM_OK;
	int status;

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 2);
	n = lua_rawlen(L, 1);
	if (lua_rawlen(L, 2) != n)
		luaL_argerror(L, 2, "as many requests as handles expected");
	/* the stack holds every handle and request: luaL_checkstack below
	 * refuses what does not fit; this keeps the count an int */
	if (n > (size_t)(INT_MAX / 4))
		luaL_argerror(L, 1, "too many handles");
	lua_pushcfunction(L, push_results);             /* handles reqs f */
	slots = (slot *)lua_newuserdatauv(L, n * sizeof *slots + 1, 0);
	luaL_checkstack(L, 3 * (int)n + LUA_MINSTACK, "too many requests for one perform_all");

	/* From the first check to the end of the transfers nothing allocates a
	 * Lua object (mde_prepare), so no finalizer runs in between: what is
	 * checked stays true until every handle is claimed. */
	check_handles(L, slots, n);                     /* handles reqs f slots h1..hn */
	for (i = 0; i < n; i++) {
		lua_rawgeti(L, 2, (int)i + 1);          /* stays: r's strings are its */
		mde_request_check(L, -1, 2, (int)i + 1, &slots[i].r); /* and its list */
	}                                               /* ... h1..hn req1 list1..reqn listn */

	/* Set up. Nothing raises from here until every handle is mde_end'ed. */
	for (i = 0; i < n; i++) {
		mde_handle *h = slots[i].h;
		h->result = mde_prepare(L, h, &slots[i].r);
		if (h->result == CURLE_OK)
			h->result = curl_easy_setopt(h->curl, CURLOPT_PRIVATE, (void *)&slots[i]);
		/* HTTP/2: wait for the first connection and multiplex over it */
		if (h->result == CURLE_OK)
			h->result = curl_easy_setopt(h->curl, CURLOPT_PIPEWAIT, 1L);
	}
	m = curl_multi_init();
	for (i = 0; i < n; i++) {
		mde_handle *h = slots[i].h;
		if (m == NULL)
			h->oom = 1;
		if (h->result != CURLE_OK || h->oom)
			continue;
		mc = curl_multi_add_handle(m, h->curl);
		if (mc == CURLM_OK)
			slots[i].added = 1;
		else
			multi_failed(h, mc, CURLE_FAILED_INIT);
	}
	if (m != NULL) {
		mc = run(m);
		for (i = 0; i < n; i++) {
			mde_handle *h = slots[i].h;
			if (!slots[i].added)
				continue;
			(void)curl_multi_remove_handle(m, h->curl);
			if (!slots[i].done)             /* the loop itself failed */
				multi_failed(h, mc, CURLE_SEND_ERROR);
		}
		(void)curl_multi_cleanup(m);
	}
	/* every token wiped before any Lua runs, let alone raises */
	for (i = 0; i < n; i++)
		mde_drop_headers(slots[i].h);

	b.slots = slots;
	b.n = n;
	lua_pushvalue(L, 3);
	lua_pushlightuserdata(L, &b);
	status = lua_pcall(L, 1, 1, 0);                 /* ... results | error */
	for (i = 0; i < n; i++)
		mde_end(slots[i].h);
	if (status != LUA_OK)
		return lua_error(L);
	return 1;
}

void mde_multi_open(lua_State *L)
{
	share_open(L);
	lua_pushcfunction(L, core_perform_all);
	lua_setfield(L, -2, "perform_all");
}
