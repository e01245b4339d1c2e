/*
 * mde.h: what the C files of mde.core share, without libcurl, so that the
 * request checker, the header parser and the decoder build alone (fuzzing).
 *
 * Only luaopen_mde_core leaves the module; the mde_* symbols are hidden.
 */
#ifndef MDE_H
#define MDE_H

#include <stddef.h>

#include "compat.h"

#if defined(__GNUC__)
#define MDE_API extern __attribute__((visibility("hidden")))
#define MDE_EXPORT __attribute__((visibility("default")))
#else
#define MDE_API extern
#define MDE_EXPORT
#endif

#define MDE_VERSION "0.1.0"

/* request.c: a request table, checked and read into C before anything is
 * allocated. The pointers are the table's own strings: they live as long as
 * the table does, so the table stays on the stack while they are used. */
enum mde_method { MDE_GET, MDE_POST, MDE_PATCH, MDE_DELETE, MDE_PUT };

typedef struct mde_request {
	enum mde_method method;
	const char *url;
	const char *body;         /* NULL: no body */
	size_t body_len;
	const char *bearer;       /* NULL: no Authorization header */
	size_t bearer_len;
	const char *ca_file, *proxy, *user_agent; /* NULL: libcurl's default */
	long timeout_ms, connect_timeout_ms;      /* 0: none */
	size_t max_body;          /* SIZE_MAX: no limit */
	int table;                /* stack index of the request table */
	int arg, item;            /* whom errors blame: argument, list item */
	int list_slot;            /* (while checking: where the header list goes) */
	int headers;              /* stack index of the (checked) header list; 0: none */
	int insecure;             /* skip TLS verification */
	int decode;               /* decode JSON bodies */
	const char *lists;        /* NULL, or a field of listing records made a list */
} mde_request;

MDE_API const char *const mde_methods[];
/* pushes one value (the header list, or nil), to stay on the stack as long as r is used */
MDE_API void mde_request_check(lua_State *L, int idx, int arg, int item, mde_request *r);

/* headers.c: header block (status line, "Name: value" lines) -> table of
 * lower-cased names; lower-cases the names inside buf. */
MDE_API void mde_headers_push(lua_State *L, char *buf, size_t len);

/* decode.c */
MDE_API int mde_is_json(const char *content_type, size_t len);
MDE_API int mde_decode(lua_State *L, int idx, const char *lists);
MDE_API void mde_decode_open(lua_State *L);

/* jwt.c */
MDE_API void mde_jwt_open(lua_State *L);

/* clock.c: core.now, core.sleep */
MDE_API void mde_clock_open(lua_State *L);

/* core.c */
MDE_EXPORT int luaopen_mde_core(lua_State *L);

#endif
