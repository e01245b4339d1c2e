/*
 * jwt.c: what a certificate client credential needs from libcrypto: an
 * RS256 signature (RSA PKCS#1 v1.5 over SHA-256) of the JWT's signing
 * input, and the certificate's thumbprints for the x5t / x5t#S256 header.
 * The JWT itself (header, claims) is built in Lua (lua/mde/jwt.lua).
 *
 * Errors are fixed strings: never the key, the passphrase or what OpenSSL
 * queued (which can quote input), and the queue is cleared on every path.
 * Everything OpenSSL allocates is freed before anything is pushed, so a
 * raise (out of memory) cannot leak it.
 */
#include <limits.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "mde.h"

/* RSA signatures are as long as the modulus: 16384-bit keys fit */
#define MAX_SIGNATURE 2048

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* -> base64url of p[0..n), without padding (RFC 7515) */
static void push_base64url(lua_State *L, const unsigned char *p, size_t n)
{
	luaL_Buffer b;
	char out[4];
	size_t i;
	luaL_buffinit(L, &b);
	for (i = 0; i + 3 <= n; i += 3) {
		unsigned long v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8 | p[i + 2];
		out[0] = alphabet[v >> 18 & 63];
		out[1] = alphabet[v >> 12 & 63];
		out[2] = alphabet[v >> 6 & 63];
		out[3] = alphabet[v & 63];
		luaL_addlstring(&b, out, 4);
	}
	if (i < n) {                     /* 1 or 2 bytes left: 2 or 3 characters */
		unsigned long v = (unsigned long)p[i] << 16;
		if (i + 1 < n)
			v |= (unsigned long)p[i + 1] << 8;
		out[0] = alphabet[v >> 18 & 63];
		out[1] = alphabet[v >> 12 & 63];
		out[2] = alphabet[v >> 6 & 63];
		luaL_addlstring(&b, out, i + 1 < n ? 3 : 2);
	}
	luaL_pushresult(&b);
}

static int fail(lua_State *L, const char *msg)
{
	ERR_clear_error();
	luaL_pushfail(L);
	lua_pushstring(L, msg);
	return 2;
}

typedef struct secret {
	const char *s;  /* NULL: none given */
	size_t len;
} secret;

/* OpenSSL's passphrase callback: hands over the given passphrase (OpenSSL
 * wipes its buffer after use) and never prompts on a terminal. */
static int passphrase(char *buf, int size, int rwflag, void *u)
{
	const secret *p = (const secret *)u;
	(void)rwflag;
	if (p == NULL || p->s == NULL || size < 0 || p->len > (size_t)size)
		return -1;
	memcpy(buf, p->s, p->len);
	return (int)p->len;
}

/* PEM text -> memory BIO (read-only, no copy) */
static BIO *pem_bio(lua_State *L, int arg)
{
	size_t len;
	const char *pem = luaL_checklstring(L, arg, &len);
	luaL_argcheck(L, len <= INT_MAX, arg, "PEM text too long");
	return BIO_new_mem_buf(pem, (int)len);
}

static int is_rsa(const EVP_PKEY *key)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	return EVP_PKEY_is_a(key, "RSA");
#else
	return EVP_PKEY_base_id(key) == EVP_PKEY_RSA;
#endif
}

/* -> NULL and sig[0..*len) set, or why not; sig has MAX_SIGNATURE bytes */
static const char *sign(EVP_PKEY *key, const char *data, size_t n,
	unsigned char *sig, size_t *len)
{
	EVP_MD_CTX *ctx;
	EVP_PKEY_CTX *pctx = NULL;
	const char *err = NULL;
	if (EVP_PKEY_size(key) > MAX_SIGNATURE)
		return "RSA key too large";
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return "not enough memory";
	*len = MAX_SIGNATURE;
	if (EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, key) != 1
	    || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0
	    || EVP_DigestSign(ctx, sig, len, (const unsigned char *)data, n) != 1)
		err = "cannot sign with this key";
	EVP_MD_CTX_free(ctx); /* frees pctx too */
	return err;
}

/* core.sign_rs256(key_pem, passphrase|nil, data) -> signature | nil, msg */
static int jwt_sign_rs256(lua_State *L)
{
	secret pass = { NULL, 0 };
	unsigned char sig[MAX_SIGNATURE];
	size_t sig_len = 0, data_len;
	const char *data, *err = NULL;
	EVP_PKEY *key = NULL;
	BIO *bio;

	luaL_checktype(L, 1, LUA_TSTRING);
	if (!lua_isnoneornil(L, 2))
		pass.s = luaL_checklstring(L, 2, &pass.len);
	data = luaL_checklstring(L, 3, &data_len);
	bio = pem_bio(L, 1);
	if (bio == NULL)
		return fail(L, "not enough memory");
	key = PEM_read_bio_PrivateKey(bio, NULL, passphrase, &pass);
	BIO_free(bio);
	if (key == NULL)
		err = "cannot read private key (wrong passphrase or not a PEM key)";
	else if (!is_rsa(key))
		err = "private key is not an RSA key (RS256 needs one)";
	else
		err = sign(key, data, data_len, sig, &sig_len);
	EVP_PKEY_free(key);
	if (err != NULL) {
		OPENSSL_cleanse(sig, sizeof sig);
		return fail(L, err);
	}
	ERR_clear_error();
	push_base64url(L, sig, sig_len);
	return 1;
}

/* core.cert_thumbprints(cert_pem) -> x5t, x5t#S256 | nil, msg */
static int jwt_cert_thumbprints(lua_State *L)
{
	unsigned char sha1[EVP_MAX_MD_SIZE], sha256[EVP_MAX_MD_SIZE];
	unsigned int sha1_len = 0, sha256_len = 0;
	int ok;
	BIO *bio = pem_bio(L, 1);
	X509 *cert;
	if (bio == NULL)
		return fail(L, "not enough memory");
	cert = PEM_read_bio_X509(bio, NULL, passphrase, NULL);
	BIO_free(bio);
	if (cert == NULL)
		return fail(L, "cannot read certificate (not a PEM certificate)");
	/* digests of the DER encoding, as x5t and x5t#S256 are defined */
	ok = X509_digest(cert, EVP_sha1(), sha1, &sha1_len) == 1
		&& X509_digest(cert, EVP_sha256(), sha256, &sha256_len) == 1;
	X509_free(cert);
	if (!ok)
		return fail(L, "cannot hash certificate");
	ERR_clear_error();
	push_base64url(L, sha1, sha1_len);
	push_base64url(L, sha256, sha256_len);
	return 2;
}

/* core.base64url(str) -> base64url of str, without padding */
static int jwt_base64url(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	push_base64url(L, (const unsigned char *)s, len);
	return 1;
}

/* core.sha256(str) -> base64url of the SHA-256 of str (names a credential
 * in a cache key without keeping the credential there) */
static int jwt_sha256(lua_State *L)
{
	size_t len;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	const char *s = luaL_checklstring(L, 1, &len);
	if (EVP_Digest(s, len, md, &md_len, EVP_sha256(), NULL) != 1) {
		ERR_clear_error();
		return luaL_error(L, "sha256: digest failed");
	}
	push_base64url(L, md, md_len);
	return 1;
}

/* core.random_bytes(n) -> n bytes from OpenSSL's CSPRNG (thread-safe, seeded
 * by the system: backoff jitter differs in every process, JWT ids are unique) */
static int jwt_random_bytes(lua_State *L)
{
	unsigned char buf[256];
	lua_Integer n = luaL_checkinteger(L, 1);
	luaL_argcheck(L, n >= 1 && n <= (lua_Integer)sizeof buf, 1, "between 1 and 256 bytes");
	if (RAND_bytes(buf, (int)n) != 1) {
		ERR_clear_error();
		return luaL_error(L, "random_bytes: no randomness available");
	}
	lua_pushlstring(L, (const char *)buf, (size_t)n);
	return 1;
}

static const luaL_Reg jwt_funcs[] = {
	{ "sign_rs256", jwt_sign_rs256 },
	{ "cert_thumbprints", jwt_cert_thumbprints },
	{ "base64url", jwt_base64url },
	{ "sha256", jwt_sha256 },
	{ "random_bytes", jwt_random_bytes },
	{ NULL, NULL }
};

/* core -> core, with the functions above */
void mde_jwt_open(lua_State *L)
{
	luaL_setfuncs(L, jwt_funcs, 0);
}
