/*
 * core.c: luaopen_mde_core and the "mde.Handle" userdata: one CURL easy
 * handle, reused for every request so its connections and TLS sessions
 * carry over (curl_easy_reset keeps both; curl_easy_init per request would
 * not).
 *
 * h:perform(req) -> resp | nil, facts. Transport failures come back as
 * facts, never raised; misuse (a bad req table, a handle in use) and running
 * out of memory raise. No Lua runs inside the libcurl callbacks: they only
 * fill C buffers owned by the handle.
 *
 * Lua code can still run in the middle of a call: in Lua any allocation may
 * run a GC step and with it pending __gc finalizers, which may close or use
 * any handle. Hence the busy flag (handle.h), and the rule that nothing
 * allocates a Lua object between checking a call's handle and request and
 * the end of its transfer (mde_prepare).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "handle.h"

#if LIBCURL_VERSION_NUM < 0x073e00
#error "mde.core needs libcurl 7.62 or later"
#endif

/*
 * The final response's header block is refused past this by on_header
 * (kind "too_large"). libcurl has limits of its own, checked before the
 * bytes reach on_header: one header line longer than CURL_MAX_HTTP_HEADER
 * (100 KB) fails the transfer with CURLE_OUT_OF_MEMORY (CURLE_TOO_LARGE
 * from 8.6), which kind_of reports as "too_large" too; and since 8.3 all
 * the headers of a response, 1xx and CONNECT replies included, may not
 * pass 300 KB, which this limit stays below.
 */
#define MAX_HEAD ((size_t)256 * 1024)
/* the most on_body reserves up front for an announced Content-Length: the
 * header is only the server's claim; past this the buffer doubles as the
 * bytes really arrive */
#define MAX_RESERVE ((size_t)16 * 1024 * 1024)
/* buffers up to this size are kept for the next request: a paged listing
 * reuses the same few megabytes page after page instead of regrowing them */
#define KEEP_BODY ((size_t)4 * 1024 * 1024)
#define KEEP_HEAD ((size_t)64 * 1024)

enum { TOO_LARGE_BODY = 1, TOO_LARGE_HEAD = 2 };

static int have_http2; /* libcurl was built with HTTP/2 (set once, see global_init_once) */

/* Buffers */

/* make room for at least `want` bytes in all */
static int buf_reserve(mde_buf *b, size_t want)
{
	char *data;
	if (want <= b->cap)
		return 1;
	data = realloc(b->data, want);
	if (data == NULL)
		return 0;
	b->data = data;
	b->cap = want;
	return 1;
}

static int buf_add(mde_buf *b, const char *p, size_t n)
{
	if (n > b->cap - b->len) {
		size_t cap = b->cap != 0 ? b->cap : 4096;
		while (cap - b->len < n) {
			if (cap > SIZE_MAX / 2)
				return 0;
			cap *= 2;
		}
		if (!buf_reserve(b, cap))
			return 0;
	}
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 1;
}

static void buf_free(mde_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* empty it, and give back what one large response made it grow to */
static void buf_trim(mde_buf *b, size_t keep)
{
	b->len = 0;
	if (b->cap > keep)
		buf_free(b);
}

/* libcurl callbacks: C only, a return short of the size aborts the transfer */

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	mde_handle *h = ud;
	size_t len = size * n; /* size is always 1 */
	if (len > h->max_body - h->body.len) {
		h->too_large = TOO_LARGE_BODY;
		return 0;
	}
	if (h->body.len == 0) {
		/* the first bytes: room for the announced body at once, so a large
		 * page is not copied again and again while the buffer doubles; at
		 * most max_body and MAX_RESERVE, whatever the server announces */
		curl_off_t announced = -1;
		if (curl_easy_getinfo(h->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK
		    && announced > 0) {
			size_t want = MAX_RESERVE;
			if ((uint64_t)announced < (uint64_t)want)
				want = (size_t)announced;
			if (h->max_body < want)
				want = h->max_body;
			(void)buf_reserve(&h->body, want);
		}
	}
	if (!buf_add(&h->body, data, len)) {
		h->oom = 1;
		return 0;
	}
	return len;
}

/* Every response (1xx, a proxy's CONNECT reply, the final one) begins with
 * a status line: starting again there leaves only the final headers. */
static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
	mde_handle *h = ud;
	size_t len = size * n;
	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0)
		h->head.len = 0;
	if (len > MAX_HEAD - h->head.len) {
		h->too_large = TOO_LARGE_HEAD;
		return 0;
	}
	if (!buf_add(&h->head, data, len)) {
		h->oom = 1;
		return 0;
	}
	return len;
}

/* Request headers */

/* The list may hold the bearer token: wipe it before it goes back to malloc. */
void mde_drop_headers(mde_handle *h)
{
	struct curl_slist *l;
	for (l = h->headers; l != NULL; l = l->next)
		OPENSSL_cleanse(l->data, strlen(l->data));
	curl_slist_free_all(h->headers);
	h->headers = NULL;
}

static int add_header(mde_handle *h, const char *line)
{
	struct curl_slist *l = curl_slist_append(h->headers, line);
	if (l == NULL)
		return 0;
	h->headers = l;
	return 1;
}

/* "Authorization: Bearer <token>" in a private copy, wiped once libcurl has
 * its own (which mde_drop_headers wipes in turn). */
static int add_bearer(mde_handle *h, const char *token, size_t len)
{
	static const char prefix[] = "Authorization: Bearer ";
	size_t size = sizeof prefix + len; /* prefix, token, NUL */
	char *line = malloc(size);
	int ok;
	if (line == NULL)
		return 0;
	memcpy(line, prefix, sizeof prefix - 1);
	memcpy(line + sizeof prefix - 1, token, len);
	line[size - 1] = '\0';
	ok = add_header(h, line);
	OPENSSL_cleanse(line, size);
	free(line);
	return ok;
}

/* the request's header lines -> h->headers; 0 when out of memory */
static int build_headers(lua_State *L, mde_handle *h, const mde_request *r)
{
	int ok = 1;
	/* no "Expect: 100-continue" round trip before a large body */
	if (r->body != NULL && !add_header(h, "Expect:"))
		return 0;
	if (r->bearer != NULL && !add_bearer(h, r->bearer, r->bearer_len))
		return 0;
	if (r->headers) {
		size_t i, n = lua_rawlen(L, r->headers); /* the list (checked) */
		for (i = 1; ok && i <= n; i++) {
			lua_rawgeti(L, r->headers, (int)i);
			ok = add_header(h, lua_tostring(L, -1));
			lua_pop(L, 1);
		}
	}
	return ok;
}

/* Requests */

static void drop_string(char **s)
{
	if (*s != NULL) {
		OPENSSL_cleanse(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

/* forget the options in effect: the next request resets the handle */
void mde_drop_config(mde_handle *h)
{
	drop_string(&h->conf.ca_file);
	drop_string(&h->conf.proxy);
	drop_string(&h->conf.user_agent);
	h->conf.set = 0;
}

static int same_string(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* r asks for the options in effect */
static int same_config(const mde_handle *h, const mde_request *r)
{
	const mde_config *c = &h->conf;
	return c->set && c->insecure == r->insecure && c->max_body == r->max_body
		&& c->connect_timeout_ms == r->connect_timeout_ms
		&& same_string(c->ca_file, r->ca_file) && same_string(c->proxy, r->proxy)
		&& same_string(c->user_agent, r->user_agent);
}

/* *to = a copy of s (NULL stays NULL); 0 when out of memory */
static int copy_string(char **to, const char *s)
{
	size_t n;
	if (s == NULL)
		return 1;
	n = strlen(s) + 1;
	*to = malloc(n);
	if (*to == NULL)
		return 0;
	memcpy(*to, s, n);
	return 1;
}

#define SET(opt, val) do { \
		if (rc == CURLE_OK) \
			rc = curl_easy_setopt(h->curl, (opt), (val)); \
	} while (0)

/* reset h and set the options of r that its next requests will share */
static CURLcode configure(mde_handle *h, const mde_request *r)
{
	CURLcode rc = CURLE_OK;

	mde_drop_config(h);
	curl_easy_reset(h->curl); /* options only: connections, TLS sessions stay */
	SET(CURLOPT_ERRORBUFFER, h->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SET(CURLOPT_FOLLOWLOCATION, 0L); /* the Lua layer decides on redirects */
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_ACCEPT_ENCODING, ""); /* whatever libcurl can decode */
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (have_http2)
		SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, (void *)h);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, (void *)h);
	/* refuses a too long Content-Length up front; on_body catches the rest
	 * (chunked or compressed bodies) */
	if (r->max_body > 0 && (uint64_t)r->max_body < (uint64_t)INT64_MAX)
		SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
	if (r->connect_timeout_ms > 0)
		SET(CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
	if (r->ca_file != NULL)
		SET(CURLOPT_CAINFO, r->ca_file);
	if (r->insecure) {
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (r->proxy != NULL)
		SET(CURLOPT_PROXY, r->proxy);
	if (r->user_agent != NULL)
		SET(CURLOPT_USERAGENT, r->user_agent);
	if (rc != CURLE_OK)
		return rc;
	if (!copy_string(&h->conf.ca_file, r->ca_file) || !copy_string(&h->conf.proxy, r->proxy)
	    || !copy_string(&h->conf.user_agent, r->user_agent)) {
		mde_drop_config(h);
		return CURLE_OUT_OF_MEMORY;
	}
	h->conf.insecure = r->insecure;
	h->conf.max_body = r->max_body;
	h->conf.connect_timeout_ms = r->connect_timeout_ms;
	h->conf.set = 1;
	return CURLE_OK;
}

/*
 * Claims the open, idle handle h (busy until mde_end) and sets it up for
 * the checked request r; CURLE_OK or why not (h->oom when out of memory).
 * What a request sets of its own is set every time, so nothing of the
 * previous request's carries over (a custom method, a body, a timeout).
 *
 * Allocates no Lua object, so no finalizer runs between the caller's checks
 * and the end of the transfer: the handle stays as checked and the request
 * table as read into r (libcurl copies the strings of r, except the body,
 * which the table keeps alive).
 */
CURLcode mde_prepare(lua_State *L, mde_handle *h, const mde_request *r)
{
	CURLcode rc = CURLE_OK;

	h->busy = 1;
	mde_drop_headers(h);
	h->body.len = h->head.len = 0;
	h->max_body = r->max_body;
	h->decode = r->decode;
	h->lists = r->lists;
	h->too_large = h->oom = 0;
	h->result = CURLE_OK;
	h->errbuf[0] = '\0';

	if (!same_config(h, r))
		rc = configure(h, r);
	SET(CURLOPT_URL, r->url);
	SET(CURLOPT_TIMEOUT_MS, r->timeout_ms); /* 0: none */
	SET(CURLOPT_CUSTOMREQUEST,
		r->method != MDE_GET && r->method != MDE_POST ? mde_methods[r->method] : NULL);
	/* POST, PUT, PATCH always send a body (Content-Length: 0 at least);
	 * the string is the request table's, alive until perform returns */
	if (r->body != NULL || (r->method != MDE_GET && r->method != MDE_DELETE)) {
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
		SET(CURLOPT_POSTFIELDS, r->body != NULL ? r->body : "");
	} else { /* no body: back from the last request's POST, if any */
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
		SET(CURLOPT_POSTFIELDS, (char *)NULL);
		SET(CURLOPT_HTTPGET, 1L);
	}
	if (rc == CURLE_OK && !build_headers(L, h, r))
		rc = CURLE_OUT_OF_MEMORY;
	SET(CURLOPT_HTTPHEADER, h->headers);
	/* here (unlike after a transfer) it is our own memory, or libcurl's
	 * copy of our options: raise */
	if (rc == CURLE_OUT_OF_MEMORY)
		h->oom = 1;
	if (rc != CURLE_OK)
		mde_drop_config(h); /* set up halfway: start afresh next time */
	return rc;
}

#undef SET

/* Results */

/* what libcurl answers to a response header line too long for it (see
 * MAX_HEAD): from a transfer, out of memory means that in practice */
static int is_long_header(CURLcode rc)
{
#if LIBCURL_VERSION_NUM >= 0x080600
	if (rc == CURLE_TOO_LARGE)
		return 1;
#endif
	return rc == CURLE_OUT_OF_MEMORY;
}

static const char *kind_of(CURLcode rc, int too_large)
{
	if (too_large || rc == CURLE_FILESIZE_EXCEEDED || is_long_header(rc))
		return "too_large";
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return "timeout";
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_USE_SSL_FAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
#if LIBCURL_VERSION_NUM >= 0x074d00
	case CURLE_SSL_CLIENTCERT:
#endif
		return "tls";
	/* what no retry can mend: a bad URL, a scheme other than http(s) */
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_NOT_BUILT_IN:
	case CURLE_BAD_FUNCTION_ARGUMENT:
	case CURLE_UNKNOWN_OPTION:
		return "invalid";
	default:
		return "network";
	}
}

/* -> facts { kind, curl_code, message }; libcurl's messages hold no
 * request header, so no token */
static void push_facts(lua_State *L, const mde_handle *h, CURLcode rc)
{
	const char *why = h->errbuf[0] != '\0' ? h->errbuf : curl_easy_strerror(rc);
	lua_createtable(L, 0, 3);
	lua_pushstring(L, kind_of(rc, h->too_large));
	lua_setfield(L, -2, "kind");
	lua_pushinteger(L, (lua_Integer)rc);
	lua_setfield(L, -2, "curl_code");
	if (h->too_large == TOO_LARGE_BODY || rc == CURLE_FILESIZE_EXCEEDED)
		lua_pushliteral(L, "response body larger than max_body");
	else if (h->too_large == TOO_LARGE_HEAD)
		lua_pushliteral(L, "response headers too large");
	else if (is_long_header(rc))
		lua_pushfstring(L, "a response header was too large (libcurl: %s)", why);
	else
		lua_pushstring(L, why);
	lua_setfield(L, -2, "message");
}

static const char *version_name(long v)
{
	switch (v) {
	case CURL_HTTP_VERSION_1_0:
		return "1.0";
	case CURL_HTTP_VERSION_1_1:
		return "1.1";
	case CURL_HTTP_VERSION_2_0:
		return "2";
#if LIBCURL_VERSION_NUM >= 0x074200
	case CURL_HTTP_VERSION_3:
		return "3";
#endif
	default:
		return "unknown";
	}
}

/* the response's Content-Type is JSON */
static int is_json_response(const mde_handle *h)
{
	char *type = NULL;
	(void)curl_easy_getinfo(h->curl, CURLINFO_CONTENT_TYPE, &type);
	return type != NULL && mde_is_json(type, strlen(type));
}

/*
 * the transfer that just ended -> resp. The strings libcurl lends (URL,
 * Content-Type) are fetched right before each use, as Lua code may run at
 * every allocation in between; busy keeps that code from touching h.
 */
static void push_response(lua_State *L, mde_handle *h)
{
	static char empty[1];
	long status = 0, version = 0;
	char *url = NULL;
	double total = 0;
	int json;

	(void)curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
	(void)curl_easy_getinfo(h->curl, CURLINFO_HTTP_VERSION, &version);
	(void)curl_easy_getinfo(h->curl, CURLINFO_TOTAL_TIME, &total);

	lua_createtable(L, 0, 7);
	luaL_setmetatable(L, MDE_RESPONSE);
	lua_pushinteger(L, (lua_Integer)status);
	lua_setfield(L, -2, "status");
	/* the table of headers is built when first asked for (see resp_index):
	 * most calls only need the status and the body */
	lua_pushlstring(L, h->head.data != NULL ? h->head.data : empty, h->head.len);
	lua_setfield(L, -2, "raw_headers");
	json = h->decode && is_json_response(h);
	lua_pushlstring(L, h->body.data != NULL ? h->body.data : empty, h->body.len);
	if (json) {
		if (h->body.len == 0) {
			lua_pushliteral(L, "empty body");
			lua_setfield(L, -3, "decode_error");
		} else if (mde_decode(L, -1, h->lists)) {
			lua_replace(L, -2);             /* resp value */
		} else {
			lua_setfield(L, -3, "decode_error"); /* resp raw */
		}
	}
	lua_setfield(L, -2, "body");
	(void)curl_easy_getinfo(h->curl, CURLINFO_EFFECTIVE_URL, &url);
	lua_pushstring(L, url != NULL ? url : "");
	lua_setfield(L, -2, "url");
	lua_pushstring(L, version_name(version));
	lua_setfield(L, -2, "http_version");
	lua_pushnumber(L, (lua_Number)total);
	lua_setfield(L, -2, "time");
}

/*
 * __index of a response: resp.headers, the first time it is read, parsed
 * from resp.raw_headers and kept in resp (a plain field from then on).
 * The parser lower-cases names in place, so it works on a copy held by a
 * userdata, which the GC frees whatever raises.
 */
static int resp_index(lua_State *L)
{
	size_t len;
	const char *raw;
	char *copy;
	if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "headers") != 0)
		return 0;
	lua_getfield(L, 1, "raw_headers");          /* resp key raw */
	if (lua_type(L, -1) != LUA_TSTRING)
		return 0;
	raw = lua_tolstring(L, -1, &len);
	copy = (char *)lua_newuserdatauv(L, len > 0 ? len : 1, 0);
	memcpy(copy, raw, len);
	mde_headers_push(L, copy, len);             /* resp key raw copy headers */
	lua_pushvalue(L, -1);
	lua_setfield(L, 1, "headers");
	return 1;
}

/*
 * After the transfer of the busy handle h (h->result): -> resp (1) or nil,
 * facts (2). Raises when we ran out of memory (h->oom), and Lua may raise
 * at any allocation: call it under lua_pcall, and mde_end h whatever it
 * did. A server's doing never raises.
 */
int mde_push_result(lua_State *L, mde_handle *h)
{
	if (h->oom)
		return luaL_error(L, "not enough memory");
	if (h->result == CURLE_OK) {
		push_response(L, h);
		return 1;
	}
	luaL_pushfail(L);
	push_facts(L, h, h->result);
	return 2;
}

/* The handle */

/* idempotent: NULLs what it frees, so close, __close and __gc can all run */
static void release(mde_handle *h)
{
	if (h->curl != NULL) {
		curl_easy_cleanup(h->curl); /* detaches it from the share too */
		h->curl = NULL;
	}
	mde_drop_headers(h);
	mde_drop_config(h);
	buf_free(&h->body);
	buf_free(&h->head);
	if (h->share != NULL) {
		mde_share_release(h->share);
		h->share = NULL;
	}
	h->busy = h->close_pending = 0;
}

/* The call that claimed h is over: wipe the request headers, give back
 * the buffers of a large response, and do the close asked for meanwhile.
 * Runs no Lua and never raises. */
void mde_end(mde_handle *h)
{
	h->lists = NULL;
	mde_drop_headers(h);
	buf_trim(&h->body, KEEP_BODY);
	buf_trim(&h->head, KEEP_HEAD);
	h->busy = 0;
	if (h->close_pending)
		release(h);
}

static mde_handle *check_handle(lua_State *L, int idx)
{
	return (mde_handle *)luaL_checkudata(L, idx, MDE_HANDLE);
}

/* the handle at idx, open and not in use by another call (a finalizer's
 * perform in the middle of one) */
static mde_handle *check_idle(lua_State *L, int idx)
{
	mde_handle *h = check_handle(L, idx);
	if (h->curl == NULL)
		luaL_error(L, "attempt to use a closed mde.Handle");
	if (h->busy)
		luaL_error(L, "mde.Handle is in use");
	return h;
}

/* core.new() -> handle */
static int core_new(lua_State *L)
{
	mde_handle *h = (mde_handle *)lua_newuserdatauv(L, sizeof *h, 0);
	memset(h, 0, sizeof *h); /* closed until curl_easy_init succeeds */
	luaL_setmetatable(L, MDE_HANDLE);
	h->share = mde_share_acquire(L);
	if (h->share == NULL)
		return luaL_error(L, "cannot create a curl share");
	h->curl = curl_easy_init();
	if (h->curl == NULL)
		return luaL_error(L, "cannot create a curl handle");
	/* kept by curl_easy_reset, so set once */
	if (curl_easy_setopt(h->curl, CURLOPT_SHARE, h->share->sh) != CURLE_OK)
		return luaL_error(L, "cannot attach the curl share");
	return 1;
}

/* lua_pcall'ed by h_perform: the handle (light userdata) -> its result */
static int push_result(lua_State *L)
{
	return mde_push_result(L, (mde_handle *)lua_touserdata(L, 1));
}

/* h:perform(req) -> resp | nil, facts */
static int h_perform(lua_State *L)
{
	mde_handle *h;
	mde_request r;
	int status;
	lua_settop(L, 2);
	/* before the checks: on 5.1 pushing a C function allocates, and from
	 * the checks to the end of the transfer nothing may (mde_prepare) */
	lua_pushcfunction(L, push_result);          /* h req f */
	h = check_idle(L, 1);
	mde_request_check(L, 2, 2, 0, &r);          /* h req f list */
	h->result = mde_prepare(L, h, &r);
	if (h->result == CURLE_OK)
		h->result = curl_easy_perform(h->curl);
	mde_drop_headers(h);                        /* the token: gone before any Lua runs */
	lua_pushvalue(L, 3);
	lua_pushlightuserdata(L, h);
	status = lua_pcall(L, 1, LUA_MULTRET, 0);
	mde_end(h);
	if (status != LUA_OK)
		return lua_error(L);
	return lua_gettop(L) - 4;
}

/* close and __close: a handle in use is closed when its call ends */
static int h_close(lua_State *L)
{
	mde_handle *h = check_handle(L, 1);
	if (h->busy)
		h->close_pending = 1;
	else
		release(h);
	return 0;
}

/* A call keeps its handles on the stack, so __gc never meets a busy one,
 * except from lua_close under a call that never resumes (os.exit(c, true)
 * in a finalizer): freeing is right either way. */
static int h_gc(lua_State *L)
{
	release(check_handle(L, 1));
	return 0;
}

static int h_tostring(lua_State *L)
{
	const mde_handle *h = check_handle(L, 1);
	if (h->curl == NULL)
		lua_pushliteral(L, "mde.Handle (closed)");
	else if (h->busy)
		lua_pushliteral(L, "mde.Handle (in use)"); /* seen from a finalizer mid-call */
	else
		lua_pushliteral(L, "mde.Handle (open)");
	return 1;
}

static const luaL_Reg handle_methods[] = {
	{ "perform", h_perform },
	{ "close", h_close },
	{ NULL, NULL }
};

static const luaL_Reg handle_metamethods[] = {
	{ "__gc", h_gc },
	{ "__close", h_close },
	{ "__tostring", h_tostring },
	{ NULL, NULL }
};

static const luaL_Reg core_funcs[] = {
	{ "new", core_new },
	{ NULL, NULL }
};

/* libcurl's global state, once per process, even when Lua states on
 * several threads load the module at once (OpenResty's worker-thread VMs) */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
/* curl_version() rebuilds a static buffer of libcurl's on every call, so a
 * state reading it while another state's luaopen rebuilds it could see it
 * half written: it is called once, here, and every state reads the copy */
static char version_text[512];

static void global_init_once(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (global_rc == CURLE_OK) {
		have_http2 = (curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_HTTP2) != 0;
		(void)snprintf(version_text, sizeof version_text, "%s", curl_version());
	}
}

int luaopen_mde_core(lua_State *L)
{
	if (pthread_once(&global_once, global_init_once) != 0 || global_rc != CURLE_OK)
		return luaL_error(L, "cannot initialise libcurl");

	/* responses: headers on demand */
	luaL_newmetatable(L, MDE_RESPONSE);
	lua_pushcfunction(L, resp_index);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);

	/* the handle metatable, methods as __index */
	luaL_newmetatable(L, MDE_HANDLE);
	luaL_setfuncs(L, handle_metamethods, 0);
	lua_newtable(L);
	luaL_setfuncs(L, handle_methods, 0);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);

	lua_newtable(L);
	luaL_setfuncs(L, core_funcs, 0);
	lua_pushliteral(L, MDE_VERSION);
	lua_setfield(L, -2, "_VERSION");
	lua_pushstring(L, version_text);
	lua_setfield(L, -2, "curl_version");
	mde_decode_open(L);
	mde_jwt_open(L);
	mde_multi_open(L);
	mde_clock_open(L);
	return 1;
}
