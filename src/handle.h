/*
 * handle.h: the "mde.Handle" userdata, shared by core.c (one request at a
 * time) and multi.c (many in flight, and the per-state CURLSH).
 */
#ifndef MDE_HANDLE_H
#define MDE_HANDLE_H

#include <curl/curl.h>

#include "mde.h"

#define MDE_HANDLE "mde.Handle"

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
 * Everything here is owned by the userdata, so __gc frees it whatever
 * unwinds. curl == NULL means closed.
 */
typedef struct mde_handle {
	CURL *curl;
	struct curl_slist *headers; /* request headers, kept until perform ends */
	mde_share *share;
	mde_buf body, head;         /* response body and raw header block */
	size_t max_body;
	int decode;
	int too_large;              /* 1: body past max_body, 2: headers too long */
	int oom;                    /* a callback could not grow a buffer */
	CURLcode result;            /* multi.c: how the transfer ended */
	char errbuf[CURL_ERROR_SIZE];
} mde_handle;

/* core.c */
MDE_API mde_handle *mde_check_open(lua_State *L, int idx);
MDE_API CURLcode mde_prepare(lua_State *L, mde_handle *h, const mde_request *r);
MDE_API int mde_finish(lua_State *L, mde_handle *h, CURLcode rc);

/* multi.c */
MDE_API mde_share *mde_share_acquire(lua_State *L);
MDE_API void mde_share_release(mde_share *s);
MDE_API void mde_multi_open(lua_State *L);

#endif
