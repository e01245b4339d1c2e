/*
 * handle.h: the "mde.Handle" userdata, shared by core.c (one request at a
 * time) and multi.c (many in flight, and the per-state CURLSH).
 */
#ifndef MDE_HANDLE_H
#define MDE_HANDLE_H

#include <curl/curl.h>

#include "mde.h"

#define MDE_HANDLE "mde.Handle"
#define MDE_RESPONSE "mde.Response"

typedef struct mde_buf {
	char *data;
	size_t len, cap;
} mde_buf;

/* the per-state share of connections, TLS sessions and DNS; it lives as
 * long as a handle of the state is open (refs counts them) */
typedef struct mde_share {
	CURLSH *sh;
	unsigned refs;
	struct share_box *box; /* the registry's pointer to it, NULL once collected */
} mde_share;

/*
 * The options of a handle that rarely change between its requests (a
 * client sends them all alike). While a request's match these, mde_prepare
 * sets only what is the request's own (URL, method, body, headers, timeout)
 * instead of resetting the handle and setting everything again. The
 * strings are our copies (the proxy URL may hold a password: wiped when
 * freed); set == 0: none in effect, the next request resets.
 */
typedef struct mde_config {
	int set;
	char *ca_file, *proxy, *user_agent;
	long connect_timeout_ms;
	size_t max_body;
	int insecure;
} mde_config;

/*
 * Everything here is owned by the userdata, so __gc frees it whatever
 * unwinds. curl == NULL means closed.
 *
 * busy: from mde_prepare until mde_end. Lua code can run in the middle of a
 * call (any allocation may run a GC step and pending __gc finalizers), and
 * it must not reset, perform on or free a handle whose transfer or response
 * is still in use: perform refuses a busy handle, close only marks it
 * (close_pending) and mde_end releases it when the call is over.
 */
typedef struct mde_handle {
	CURL *curl;
	struct curl_slist *headers; /* request headers, kept until perform ends */
	mde_share *share;
	mde_buf body, head;         /* response body and raw header block */
	mde_config conf;            /* the options in effect (see mde_config) */
	size_t max_body;
	int decode;
	const char *lists;          /* the request's, while it is on the stack (mde_end clears it) */
	int too_large;              /* 1: body past max_body, 2: headers too long */
	int oom;                    /* we ran out of memory (callbacks, setup): raise */
	int busy;                   /* a call is using it (see above) */
	int close_pending;          /* close asked for while busy */
	CURLcode result;            /* how the transfer ended */
	char errbuf[CURL_ERROR_SIZE];
} mde_handle;

/* core.c. A call claims a handle with mde_prepare (busy from then on),
 * runs the transfer, drops the request headers (mde_drop_headers), pushes
 * the result with mde_push_result under lua_pcall, and always ends with
 * mde_end, then re-raises what the pcall caught. */
MDE_API CURLcode mde_prepare(lua_State *L, mde_handle *h, const mde_request *r);
MDE_API void mde_drop_headers(mde_handle *h);
MDE_API void mde_drop_config(mde_handle *h);
MDE_API int mde_push_result(lua_State *L, mde_handle *h);
MDE_API void mde_end(mde_handle *h);

/* multi.c */
MDE_API mde_share *mde_share_acquire(lua_State *L);
MDE_API void mde_share_release(mde_share *s);
MDE_API void mde_multi_open(lua_State *L);

#endif
