/*
 * core.c: luaopen_mde_core and the "mde.Handle" userdata: one CURL easy
 * handle, reused for every request so its connections and TLS sessions
 * carry over (curl_easy_reset keeps both; curl_easy_init per request would
 * not).
 *
 * h:perform(req) -> resp | nil, facts. Transport failures come back as
 * facts, never raised; misuse (a bad req table) raises. No Lua runs inside
 * the libcurl callbacks: they only fill C buffers owned by the handle.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "handle.h"

#if LIBCURL_VERSION_NUM < 0x073e00
#error "mde.core needs libcurl 7.62 or later"
#endif

/* response headers past this are refused (below libcurl's own limit, so
 * the failure reads "too_large", not a generic write error) */
#define MAX_HEAD ((size_t)256 * 1024)
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
		/* the first bytes: room for the whole announced body at once, so a
		 * large page is not copied again and again while the buffer doubles */
		curl_off_t announced = -1;
		if (curl_easy_getinfo(h->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK
		    && announced > 0 && (uint64_t)announced <= (uint64_t)h->max_body)
			(void)buf_reserve(&h->body, (size_t)announced);
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
static void drop_headers(mde_handle *h)
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
 * its own (which drop_headers wipes in turn). */
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
		size_t i, n;
		lua_pushliteral(L, "headers");
		lua_rawget(L, r->table);                    /* ... list (checked) */
		n = lua_rawlen(L, -1);
		for (i = 1; ok && i <= n; i++) {
			lua_rawgeti(L, -1, (int)i);
			ok = add_header(h, lua_tostring(L, -1));
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	return ok;
}

/* Requests */

#define SET(opt, val) do { \
		if (rc == CURLE_OK) \
			rc = curl_easy_setopt(c, (opt), (val)); \
	} while (0)

/* Sets h up for the checked request r; CURLE_OK or why not. */
CURLcode mde_prepare(lua_State *L, mde_handle *h, const mde_request *r)
{
	CURL *c = h->curl;
	CURLcode rc = CURLE_OK;

	curl_easy_reset(c); /* options only: connections, TLS sessions stay */
	drop_headers(h);
	h->body.len = h->head.len = 0;
	h->max_body = r->max_body;
	h->decode = r->decode;
	h->too_large = h->oom = 0;
	h->result = CURLE_OK;
	h->errbuf[0] = '\0';

	SET(CURLOPT_ERRORBUFFER, h->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_URL, r->url);
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
	if (r->timeout_ms > 0)
		SET(CURLOPT_TIMEOUT_MS, r->timeout_ms);
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

	if (r->method != MDE_GET && r->method != MDE_POST)
		SET(CURLOPT_CUSTOMREQUEST, mde_methods[r->method]);
	/* POST, PUT, PATCH always send a body (Content-Length: 0 at least);
	 * the string is the request table's, alive until perform returns */
	if (r->body != NULL || (r->method != MDE_GET && r->method != MDE_DELETE)) {
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
		SET(CURLOPT_POSTFIELDS, r->body != NULL ? r->body : "");
	}
	if (rc == CURLE_OK && !build_headers(L, h, r))
		rc = CURLE_OUT_OF_MEMORY;
	SET(CURLOPT_HTTPHEADER, h->headers);
	return rc;
}

#undef SET

/* Results */

static const char *kind_of(CURLcode rc, int too_large)
{
	if (too_large || rc == CURLE_FILESIZE_EXCEEDED)
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
	const char *msg;
	if (h->too_large == TOO_LARGE_BODY || rc == CURLE_FILESIZE_EXCEEDED)
		msg = "response body larger than max_body";
	else if (h->too_large == TOO_LARGE_HEAD)
		msg = "response headers too large";
	else
		msg = h->errbuf[0] != '\0' ? h->errbuf : curl_easy_strerror(rc);
	lua_createtable(L, 0, 3);
	lua_pushstring(L, kind_of(rc, h->too_large));
	lua_setfield(L, -2, "kind");
	lua_pushinteger(L, (lua_Integer)rc);
	lua_setfield(L, -2, "curl_code");
	lua_pushstring(L, msg);
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

/* the transfer that just ended -> resp */
static void push_response(lua_State *L, mde_handle *h)
{
	static char empty[1];
	long status = 0, version = 0;
	char *url = NULL, *type = NULL;
	double total = 0;

	(void)curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
	(void)curl_easy_getinfo(h->curl, CURLINFO_HTTP_VERSION, &version);
	(void)curl_easy_getinfo(h->curl, CURLINFO_EFFECTIVE_URL, &url);
	(void)curl_easy_getinfo(h->curl, CURLINFO_CONTENT_TYPE, &type);
	(void)curl_easy_getinfo(h->curl, CURLINFO_TOTAL_TIME, &total);

	lua_createtable(L, 0, 7);
	lua_pushinteger(L, (lua_Integer)status);
	lua_setfield(L, -2, "status");
	mde_headers_push(L, h->head.data != NULL ? h->head.data : empty, h->head.len);
	lua_setfield(L, -2, "headers");
	lua_pushlstring(L, h->body.data != NULL ? h->body.data : empty, h->body.len);
	if (h->decode && type != NULL && mde_is_json(type, strlen(type))) {
		if (h->body.len == 0) {
			lua_pushliteral(L, "empty body");
			lua_setfield(L, -3, "decode_error");
		} else if (mde_decode(L, -1)) {
			lua_replace(L, -2);             /* resp value */
		} else {
			lua_setfield(L, -3, "decode_error"); /* resp raw */
		}
	}
	lua_setfield(L, -2, "body");
	lua_pushstring(L, url != NULL ? url : "");
	lua_setfield(L, -2, "url");
	lua_pushstring(L, version_name(version));
	lua_setfield(L, -2, "http_version");
	lua_pushnumber(L, (lua_Number)total);
	lua_setfield(L, -2, "time");
}

/* After a transfer that ended with rc: -> resp (1) or nil, facts (2).
 * Raises only when memory ran out. */
int mde_finish(lua_State *L, mde_handle *h, CURLcode rc)
{
	int n = 1;
	drop_headers(h);
	if (h->oom || rc == CURLE_OUT_OF_MEMORY) {
		buf_trim(&h->body, KEEP_BODY);
		buf_trim(&h->head, KEEP_HEAD);
		return luaL_error(L, "not enough memory");
	}
	if (rc == CURLE_OK) {
		push_response(L, h);
	} else {
		luaL_pushfail(L);
		push_facts(L, h, rc);
		n = 2;
	}
	buf_trim(&h->body, KEEP_BODY);
	buf_trim(&h->head, KEEP_HEAD);
	return n;
}

/* The handle */

/* idempotent: NULLs what it frees, so close, __close and __gc can all run */
static void release(mde_handle *h)
{
	if (h->curl != NULL) {
		curl_easy_cleanup(h->curl); /* detaches it from the share too */
		h->curl = NULL;
	}
	drop_headers(h);
	buf_free(&h->body);
	buf_free(&h->head);
	if (h->share != NULL) {
		mde_share_release(h->share);
		h->share = NULL;
	}
}

static mde_handle *check_handle(lua_State *L, int idx)
{
	return (mde_handle *)luaL_checkudata(L, idx, MDE_HANDLE);
}

mde_handle *mde_check_open(lua_State *L, int idx)
{
	mde_handle *h = check_handle(L, idx);
	if (h->curl == NULL)
		luaL_error(L, "attempt to use a closed mde.Handle");
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

/* h:perform(req) -> resp | nil, facts */
static int h_perform(lua_State *L)
{
	mde_handle *h = mde_check_open(L, 1);
	mde_request r;
	CURLcode rc;
	lua_settop(L, 2);
	mde_request_check(L, 2, 2, 0, &r);
	rc = mde_prepare(L, h, &r);
	if (rc == CURLE_OK)
		rc = curl_easy_perform(h->curl);
	return mde_finish(L, h, rc);
}

static int h_close(lua_State *L)
{
	release(check_handle(L, 1));
	return 0;
}

static int h_tostring(lua_State *L)
{
	const mde_handle *h = check_handle(L, 1);
	lua_pushstring(L, h->curl != NULL ? "mde.Handle (open)" : "mde.Handle (closed)");
	return 1;
}

static const luaL_Reg handle_methods[] = {
	{ "perform", h_perform },
	{ "close", h_close },
	{ NULL, NULL }
};

static const luaL_Reg handle_metamethods[] = {
	{ "__gc", h_close },
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

static void global_init_once(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (global_rc == CURLE_OK)
		have_http2 = (curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_HTTP2) != 0;
}

int luaopen_mde_core(lua_State *L)
{
	if (pthread_once(&global_once, global_init_once) != 0 || global_rc != CURLE_OK)
		return luaL_error(L, "cannot initialise libcurl");

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
	lua_pushstring(L, curl_version());
	lua_setfield(L, -2, "curl_version");
	mde_decode_open(L);
	mde_jwt_open(L);
	mde_multi_open(L);
	mde_clock_open(L);
	return 1;
}
