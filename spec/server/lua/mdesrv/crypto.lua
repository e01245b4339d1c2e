--- RS256 verification and certificate thumbprints, through LuaJIT FFI into libcrypto.
-- Used by the token service to check client assertions for real.
local ffi = require "ffi"
local base64 = require "ngx.base64"

local M = {}

-- Opaque OpenSSL types are spelled void* so these declarations cannot clash with others.
pcall(ffi.cdef, [[
void *BIO_new_mem_buf(const void *buf, int len);
int BIO_free(void *a);
void *PEM_read_bio_X509(void *bp, void **x, void *cb, void *u);
void X509_free(void *a);
void *X509_get_pubkey(void *x);
int i2d_X509(void *a, unsigned char **out);
void EVP_PKEY_free(void *pkey);
int EVP_PKEY_get_base_id(const void *pkey);
void *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(void *ctx);
const void *EVP_sha256(void);
const void *EVP_sha1(void);
int EVP_DigestVerifyInit(void *ctx, void **pctx, const void *type, void *e, void *pkey);
int EVP_DigestVerify(void *ctx, const unsigned char *sig, size_t siglen,
                     const unsigned char *tbs, size_t tbslen);
int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
               const void *type, void *impl);
void ERR_clear_error(void);
void CRYPTO_free(void *ptr, const char *file, int line);
]])

local ok, C = pcall(ffi.load, "libcrypto.so.3")
if not ok then C = ffi.load("crypto") end

local EVP_PKEY_RSA = 6


local function digest(data, md)
  local out = ffi.new("unsigned char[64]")
  local len = ffi.new("unsigned int[1]")
  if C.EVP_Digest(data, #data, out, len, md, nil) ~= 1 then return nil end
  return ffi.string(out, len[0])
end


--- Parse a PEM certificate. Returns { x5t = b64url(sha1(der)), x5t256 = b64url(sha256(der)),
-- pkey = EVP_PKEY* (gc-managed), rsa = bool } or nil, message.
function M.load_cert(pem)
  local bio = C.BIO_new_mem_buf(pem, #pem)
  if bio == nil then return nil, "BIO_new_mem_buf failed" end
  local x509 = C.PEM_read_bio_X509(bio, nil, nil, nil)
  C.BIO_free(bio)
  if x509 == nil then
    C.ERR_clear_error()
    return nil, "not a PEM certificate"
  end
  local pp = ffi.new("unsigned char *[1]")
  local len = C.i2d_X509(x509, pp)
  if len <= 0 then
    C.X509_free(x509)
    return nil, "i2d_X509 failed"
  end
  local der = ffi.string(pp[0], len)
  C.CRYPTO_free(pp[0], "mdesrv", 0)
  local pkey = C.X509_get_pubkey(x509)
  C.X509_free(x509)
  if pkey == nil then
    C.ERR_clear_error()
    return nil, "certificate has no usable public key"
  end
  pkey = ffi.gc(pkey, C.EVP_PKEY_free)
  return {
    x5t = base64.encode_base64url(digest(der, C.EVP_sha1())),
    x5t256 = base64.encode_base64url(digest(der, C.EVP_sha256())),
    pkey = pkey,
    rsa = C.EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA,
  }
end


--- Verify an RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature. Returns true or false.
function M.verify_rs256(cert, signed, sig)
  local ctx = C.EVP_MD_CTX_new()
  if ctx == nil then return false end
  local good = C.EVP_DigestVerifyInit(ctx, nil, C.EVP_sha256(), nil, cert.pkey) == 1
    and C.EVP_DigestVerify(ctx, sig, #sig, signed, #signed) == 1
  C.EVP_MD_CTX_free(ctx)
  C.ERR_clear_error()
  return good
end


return M
