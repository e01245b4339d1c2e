--- The client assertion of the certificate flow: a JWT signed RS256 with the
-- app's private key (signing and thumbprints are done by libcrypto, in the C core).

local floor = math.floor
local tostring = tostring

local cjson = require "cjson.safe"
local core = require "mde.core"

local M = {}

M.LIFETIME = 600 -- seconds: a short-lived assertion


local function random_id()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(16)
  if f then f:close() end
  if not bytes or #bytes ~= 16 then
    bytes = tostring({}) .. tostring(os.clock()) .. tostring(math.random())
  end
  return (bytes:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end)):sub(1, 32)
end


--- Load and check a certificate option. Returns { key, cert, passphrase, x5t, x5t_s256 } or nil, message.
-- The message never contains the key or the passphrase.
function M.load(opt)
  local function read(path, what)
    if type(path) ~= "string" then return nil, what .. " must be a file path" end
    local f = io.open(path, "rb")
    if not f then return nil, "cannot read " .. what .. " '" .. path .. "'" end
    local s = f:read("*a")
    f:close()
    return s
  end
  local key, cert, err = opt.key, opt.cert, nil
  if opt.key_file ~= nil then key, err = read(opt.key_file, "certificate.key_file") end
  if not key then return nil, err or "certificate needs key_file or key (PEM)" end
  if opt.cert_file ~= nil then cert, err = read(opt.cert_file, "certificate.cert_file") end
  if not cert then return nil, err or "certificate needs cert_file or cert (PEM)" end
  if type(key) ~= "string" or not key:find("-----BEGIN", 1, true) then
    return nil, "certificate.key is not a PEM private key"
  end
  if type(cert) ~= "string" or not cert:find("-----BEGIN CERTIFICATE-----", 1, true) then
    return nil, "certificate.cert is not a PEM certificate"
  end
  if opt.passphrase ~= nil and type(opt.passphrase) ~= "string" then
    return nil, "certificate.passphrase must be a string"
  end
  local x5t, x5t_s256 = core.cert_thumbprints(cert)
  if not x5t then return nil, "certificate: " .. tostring(x5t_s256) end
  -- sign once now, so a wrong key or passphrase is an error of mde.new, not of the first call
  local sig, serr = core.sign_rs256(key, opt.passphrase, "probe")
  if not sig then return nil, "certificate: " .. tostring(serr) end
  return { key = key, cert = cert, passphrase = opt.passphrase, x5t = x5t, x5t_s256 = x5t_s256 }
end


--- A signed assertion for `client_id` at the token endpoint `aud`.
function M.assertion(cert, client_id, aud, now)
  now = floor(now)
  local header = cjson.encode{ alg = "RS256", typ = "JWT", x5t = cert.x5t, ["x5t#S256"] = cert.x5t_s256 }
  local claims = cjson.encode{
    aud = aud, iss = client_id, sub = client_id, jti = random_id(),
    nbf = now - 60, iat = now, exp = now + M.LIFETIME,
  }
  local input = core.base64url(header) .. "." .. core.base64url(claims)
  local sig, err = core.sign_rs256(cert.key, cert.passphrase, input)
  if not sig then return nil, err end
  return input .. "." .. sig
end


return M
