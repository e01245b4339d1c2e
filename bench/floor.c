/*
 * bench/floor.c: the floor of "HTTPS bytes to Lua tables".
 *
 * libcurl used directly (one easy handle, options set once, keep-alive) and,
 * unless --decode none, lua-cjson's decode called from C in an embedded
 * Lua 5.4 state, exactly what any Lua binding has to do at least.
 *
 *   floor --url URL --ca CA [--token T] [--body JSON] [--mode small|pages]
 *         [--n N] [--reps R] [--warmup W] [--decode cjson|none] [--keep]
 *         [--ballast KB]
 *
 * small: N POSTs of --body to --url, each response decoded (and dropped).
 * pages: POST --body to --url, then to each "@odata.nextLink" until there is
 *        none, each page decoded; --keep holds every decoded page until the
 *        repetition ends (a listing collected), otherwise each is dropped.
 * --ballast: KB of live Lua strings the workload starts from (bench/bench.lua
 *        varies it between rounds to sample the collector's phase).
 * Prints, per repetition, "rep SECONDS CALLS BYTES RECORDS CPU_SECONDS", then
 * "rss_kb N" (VmHWM: the process's peak resident set).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

typedef struct buf {
	char *data;
	size_t len, cap;
} buf;

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	buf *b = ud;
	size_t len = size * n;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 65536;
		char *p;
		while (cap < b->len + len)
			cap *= 2;
		p = realloc(b->data, cap);
		if (p == NULL)
			return 0;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return len;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the process, user + system (what os.clock() gives a Lua tool) */
static double cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long peak_rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "VmHWM:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "floor: %s: %s\n", what, msg);
	exit(1);
}

/* the "@odata.nextLink" of a page (looked for in its tail, where OData puts it) */
static int next_link(const buf *b, char *out, size_t size)
{
	static const char key[] = "\"@odata.nextLink\":\"";
	size_t from = b->len > 4096 ? b->len - 4096 : 0, i, k = sizeof key - 1;
	for (i = b->len >= k ? b->len - k : 0; i + 1 > from; i--) {
		if (memcmp(b->data + i, key, k) == 0) {
			const char *s = b->data + i + k;
			const char *e = memchr(s, '"', b->len - (size_t)(s - b->data));
			size_t n;
			if (e == NULL || (size_t)(e - s) >= size)
				return 0;
			n = (size_t)(e - s);
			memcpy(out, s, n);
			out[n] = '\0';
			return 1;
		}
		if (i == 0)
			break;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *url = NULL, *ca = NULL, *token = "bench-token", *body = "{}";
	const char *mode = "small", *decode = "cjson";
	long n = 1000, reps = 5, warmup = 1, ballast = 0, r;
	int keep = 0, i;
	char auth[4096], link[4096];
	struct curl_slist *hdrs = NULL;
	CURL *c;
	buf b = { NULL, 0, 0 };
	lua_State *L;
	int do_decode;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--keep") == 0) { keep = 1; continue; }
		if (v == NULL)
			die(a, "needs a value");
		if (strcmp(a, "--url") == 0) url = v;
		else if (strcmp(a, "--ca") == 0) ca = v;
		else if (strcmp(a, "--token") == 0) token = v;
		else if (strcmp(a, "--body") == 0) body = v;
		else if (strcmp(a, "--mode") == 0) mode = v;
		else if (strcmp(a, "--decode") == 0) decode = v;
		else if (strcmp(a, "--n") == 0) n = atol(v);
		else if (strcmp(a, "--reps") == 0) reps = atol(v);
		else if (strcmp(a, "--warmup") == 0) warmup = atol(v);
		else if (strcmp(a, "--ballast") == 0) ballast = atol(v);
		else die(a, "unknown option");
		i++;
	}
	if (url == NULL || ca == NULL)
		die("usage", "floor --url URL --ca CA [--mode small|pages] [--n N] [--reps R] [--decode cjson|none] [--keep] [--ballast KB]");
	do_decode = strcmp(decode, "none") != 0;

	L = luaL_newstate();
	luaL_openlibs(L);
	/* --ballast KB: live strings the workload starts from, as in bench/tools/common.lua */
	lua_pushinteger(L, (lua_Integer)ballast);
	lua_setglobal(L, "BALLAST_KB");
	if (luaL_dostring(L, "BALLAST = {} for i = 1, math.floor(BALLAST_KB * 1024 / 64) do "
	    "BALLAST[i] = ('%060d'):format(i) end") != LUA_OK)
		die("ballast", lua_tostring(L, -1));
	if (luaL_dostring(L, "local j = require('cjson').new() return j.decode") != LUA_OK)
		die("lua-cjson", lua_tostring(L, -1));
	/* stack: 1 = decode, 2 = the repetition's kept pages */

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die("curl", "global init");
	c = curl_easy_init();
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	hdrs = curl_slist_append(hdrs, auth);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "floor/1");
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, (void *)&b);

	for (r = -warmup; r < reps; r++) {
		long calls = 0, records = 0, k;
		size_t bytes = 0;
		double t0, c0;
		int more = 1;
		lua_settop(L, 1);
		lua_gc(L, LUA_GCCOLLECT, 0);
		lua_newtable(L);
		c0 = cpu();
		t0 = now();
		curl_easy_setopt(c, CURLOPT_URL, url);
		for (k = 0; more && (strcmp(mode, "pages") == 0 || k < n); k++) {
			CURLcode rc;
			long status = 0;
			b.len = 0;
			rc = curl_easy_perform(c);
			if (rc != CURLE_OK)
				die("curl", curl_easy_strerror(rc));
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
			if (status != 200)
				die("http", "status is not 200");
			calls++;
			bytes += b.len;
			if (do_decode) {
				lua_pushvalue(L, 1);
				lua_pushlstring(L, b.data, b.len);
				if (lua_pcall(L, 1, 1, 0) != LUA_OK)
					die("decode", lua_tostring(L, -1));
				if (lua_getfield(L, -1, "value") == LUA_TTABLE)
					records += (long)lua_rawlen(L, -1);
				lua_pop(L, 1);
				if (keep)
					lua_rawseti(L, 2, (lua_Integer)calls);
				else
					lua_pop(L, 1);
			}
			if (strcmp(mode, "pages") == 0) {
				more = next_link(&b, link, sizeof link);
				if (more)
					curl_easy_setopt(c, CURLOPT_URL, link);
			}
		}
		if (r >= 0)
			printf("rep %.6f %ld %zu %ld %.6f\n", now() - t0, calls, bytes, records, cpu() - c0);
		fflush(stdout);
	}
	printf("rss_kb %ld\n", peak_rss_kb());
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	curl_global_cleanup();
	free(b.data);
	lua_close(L);
	return 0;
}
