-- luacheck: globals ngx
--- The Entra ID (Azure AD) token service: client-credentials grant, v2 and v1 endpoints,
-- client secret or certificate client assertion (RS256, verified with libcrypto).
local cjson = require "cjson.safe"
local base64 = require "ngx.base64"
local data = require "mdesrv.data"
local state = require "mdesrv.state"
local stats = require "mdesrv.stats"
local crypto = require "mdesrv.crypto"
local http = require "mdesrv.http"

local M = {}

local JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
local TOKEN_HEADER = base64.encode_base64url(
  '{"typ":"JWT","alg":"RS256","x5t":"mdesrv-test-key","kid":"mdesrv-test-key"}')


local function in_list(list, v)
  if type(list) ~= "table" then return false end
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end


local function strip_slash(s)
  return (s:gsub("/+$", ""))
end


--- Send an Entra-style error.
local function aad_error(status, err, code, text)
  local ctx = ngx.ctx
  ctx.error_code = "AADSTS" .. code
  stats.incr("token:failed")
  local ts = os.date("!%Y-%m-%d %H:%M:%SZ")
  local desc = ("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s")
    :format(code, text, ctx.req_id, ctx.req_id, ts)
  local body = data.encode({
    error = err, error_description = desc, error_codes = data.array({ code }), timestamp = ts,
    trace_id = ctx.req_id, correlation_id = ctx.req_id,
    error_uri = "https://" .. (ngx.var.http_host or "127.0.0.1") .. "/error?code=" .. code,
  })
  return http.send(status, body, "application/json; charset=utf-8",
    { ["Cache-Control"] = "no-store, no-cache", Pragma = "no-cache",
      ["x-ms-request-id"] = ctx.req_id })
end


------------------------------------------------------------------------------------------
-- registered certificates, parsed once per worker per config version

local cert_cache, cert_cache_ver = {}, nil

local function client_certs(cfg, ver, client_id)
  if ver ~= cert_cache_ver then cert_cache, cert_cache_ver = {}, ver end
  local list = cert_cache[client_id]
  if list then return list end
  list = {}
  local c = cfg.clients and cfg.clients[client_id]
  for _, pem in ipairs(c and type(c.certs) == "table" and c.certs or {}) do
    local cert, err = crypto.load_cert(pem)
    if cert then list[#list + 1] = cert
    else ngx.log(ngx.WARN, "registered certificate of ", client_id, " unusable: ", err) end
  end
  cert_cache[client_id] = list
  return list
end
M.client_certs = client_certs


local function decode_segment(s)
  local raw = base64.decode_base64url(s)
  if not raw then return nil end
  local v = cjson.decode(raw)
  if type(v) ~= "table" then return nil end
  return v
end


--- Check a client assertion. Returns true, or nil and the AADSTS700027 explanation.
local function check_assertion(cfg, ver, client_id, assertion, info)
  local h64, p64, s64 = assertion:match("^([%w_%-]+)%.([%w_%-]+)%.([%w_%-]+)$")
  if not h64 then return nil, "Client assertion is not a valid JWT (expected three base64url parts)." end
  local header, claims = decode_segment(h64), decode_segment(p64)
  if not header or not claims then return nil, "Client assertion header or payload is not valid base64url JSON." end
  info.assertion_header, info.assertion_claims = header, claims
  if header.alg ~= "RS256" then
    return nil, "Client assertion algorithm '" .. tostring(header.alg) .. "' is not supported; use RS256."
  end
  local x5t, x5t256 = header.x5t, header["x5t#S256"]
  if type(x5t) ~= "string" and type(x5t256) ~= "string" then
    return nil, "Client assertion header has no x5t or x5t#S256 certificate thumbprint."
  end
  local cert
  for _, c in ipairs(client_certs(cfg, ver, client_id)) do
    local ok = (x5t == nil or x5t == c.x5t) and (x5t256 == nil or x5t256 == c.x5t256)
    if ok then cert = c break end
  end
  if not cert then
    return nil, "The certificate with identifier used to sign the client assertion is not registered "
      .. "on application. [Reason - The key was not found., Thumbprint of key used by client: '"
      .. tostring(x5t or x5t256) .. "']"
  end
  local sig = base64.decode_base64url(s64)
  if not sig or not crypto.verify_rs256(cert, h64 .. "." .. p64, sig) then
    return nil, "Client assertion failed signature validation."
  end
  -- audience: the token endpoint URL the client used
  local uri = ngx.var.uri
  local accepted = {
    ["https://" .. (ngx.var.http_host or "") .. uri] = true,
    ["https://127.0.0.1:" .. ngx.var.server_port .. uri] = true,
  }
  local aud_ok = false
  if type(claims.aud) == "string" then aud_ok = accepted[claims.aud] == true
  elseif type(claims.aud) == "table" then
    for _, a in ipairs(claims.aud) do if accepted[a] then aud_ok = true end end
  end
  if not aud_ok then
    return nil, "The audience claim '" .. tostring(claims.aud) .. "' of the client assertion is not valid; "
      .. "expected the token endpoint URL 'https://127.0.0.1:" .. ngx.var.server_port .. uri .. "'."
  end
  if claims.iss ~= client_id or claims.sub ~= client_id then
    return nil, "The issuer and subject claims of the client assertion must both be the client id '"
      .. client_id .. "'."
  end
  local now = state.now()
  local skew = tonumber(cfg.clock_skew) or 0
  if type(claims.exp) ~= "number" then return nil, "Client assertion has no exp claim." end
  if claims.exp <= now - skew then
    return nil, "Client assertion is not within its valid time range (expired at " .. claims.exp .. ")."
  end
  if claims.nbf ~= nil and (type(claims.nbf) ~= "number" or claims.nbf > now + skew) then
    return nil, "Client assertion is not within its valid time range (nbf is in the future)."
  end
  if type(claims.jti) ~= "string" or claims.jti == "" then
    return nil, "Client assertion has no jti claim."
  end
  local ttl = math.max(60, claims.exp - now + 60)
  if not state.dict:add("jti:" .. client_id .. ":" .. claims.jti, true, ttl) then
    stats.incr("token:jti_reused")
    info.jti_reused = true
    if cfg.reject_jti_replay then return nil, "The client assertion (jti) has already been used." end
  end
  return true
end


------------------------------------------------------------------------------------------
-- tokens

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = math.random(0, 255) end
  return string.char(unpack(t))
end


--- Issue an access token for (client, tenant, audience). Returns token, expires_in, exp.
function M.issue(cfg, client_id, tenant, aud, ttl)
  ttl = tonumber(ttl or cfg.token_ttl) or 3599
  local now = math.floor(state.now())
  local exp = now + ttl
  local payload = data.encode({
    aud = aud, iss = "https://sts.windows.net/" .. tenant .. "/", iat = now, nbf = now, exp = exp,
    appid = client_id, tid = tenant, roles = data.array({ "Machine.Read.All", "Machine.ReadWrite.All" }),
    uti = state.guid(), ver = "1.0",
  })
  local token = TOKEN_HEADER .. "." .. base64.encode_base64url(payload) .. "."
    .. base64.encode_base64url(random_bytes(48))
  -- keep the record an hour past expiry so that "expired" can be told from "unknown"
  state.tokens:set(token, client_id .. "\t" .. tenant .. "\t" .. aud .. "\t" .. exp,
    math.max(ttl, 0) + 3600)
  stats.incr("token:issued")
  return token, ttl, exp
end


--- Look a presented token up. Returns { client, tenant, aud, exp } or nil, "unknown"|"expired".
function M.lookup(token)
  local rec = state.tokens:get(token)
  if not rec then return nil, "unknown" end
  local client, tenant, aud, exp = rec:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  exp = tonumber(exp)
  if not exp or exp <= state.now() then return nil, "expired" end
  return { client = client, tenant = tenant, aud = aud, exp = exp }
end


local function first(v)
  if type(v) == "table" then return v[1] end
  if v == true then return "" end
  return v
end


--- POST /{tenant}/oauth2/v2.0/token and /{tenant}/oauth2/token
function M.handle(cfg, ver)
  local ctx = ngx.ctx
  local tenant, version = ctx.tenant, ctx.token_version
  stats.incr("token:requests")
  if ngx.req.get_method() ~= "POST" then
    return aad_error(405, "invalid_request", 900561,
      "The endpoint only accepts POST requests. Received a " .. ngx.req.get_method() .. " request.")
  end

  local ctype = (ngx.var.content_type or ""):lower()
  local form = {}
  if ctype:find("application/x-www-form-urlencoded", 1, true) then
    form = ngx.decode_args(ctx.body or "", 0) or {}
  end
  for k, v in pairs(form) do form[k] = first(v) end

  -- what the stats show: every field, credentials replaced by "<present>"
  local info = { version = version, tenant = tenant }
  for k, v in pairs(form) do info[k] = v end
  local has_secret = form.client_secret ~= nil
  local has_assertion = form.client_assertion ~= nil
  if has_secret then info.client_secret = "<present>" end
  if has_assertion then info.client_assertion = "<present>" end
  info.credential = (has_secret and has_assertion) and "both" or has_secret and "secret"
    or has_assertion and "assertion" or "none"
  info.used_secret, info.used_assertion = has_secret, has_assertion
  stats.incr("token:cred:" .. info.credential)
  if form.client_id then stats.incr("token:client:" .. form.client_id) end
  local safe = {}
  for k, v in pairs(form) do
    safe[k] = (k == "client_secret" or k == "client_assertion") and "<present>" or v
  end
  ctx.log_body = ngx.encode_args(safe)

  local function finish(...)
    stats.set_token_last(info)
    return ...
  end

  if not in_list(cfg.tenants, tenant) then
    return finish(aad_error(400, "invalid_request", 90002, "Tenant '" .. tenant .. "' not found. "
      .. "Check to make sure you have the correct tenant ID and are signing into the correct cloud."))
  end
  local grant = form.grant_type
  if not grant or grant == "" then
    return finish(aad_error(400, "invalid_request", 900144,
      "The request body must contain the following parameter: 'grant_type'."))
  end
  if grant ~= "client_credentials" then
    return finish(aad_error(400, "unsupported_grant_type", 70003,
      "The app requested an unsupported grant type '" .. grant .. "'."))
  end
  local client_id = form.client_id
  if not client_id or client_id == "" then
    return finish(aad_error(400, "invalid_request", 900144,
      "The request body must contain the following parameter: 'client_id'."))
  end
  ctx.client = tenant .. "/" .. client_id
  local client = type(cfg.clients) == "table" and cfg.clients[client_id]
  if type(client) ~= "table" or (client.tenant and client.tenant ~= tenant) then
    return finish(aad_error(400, "unauthorized_client", 700016, "Application with identifier '"
      .. client_id .. "' was not found in the directory '" .. tenant .. "'. This can happen if the "
      .. "application has not been installed by the administrator of the tenant."))
  end

  -- credentials
  if has_secret and has_assertion then
    return finish(aad_error(400, "invalid_request", 9002313,
      "Invalid request. Request is malformed or invalid: send client_secret or client_assertion, not both."))
  elseif has_secret then
    if not in_list(client.secrets, form.client_secret) then
      return finish(aad_error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure "
        .. "the secret being sent in the request is the client secret value, not the client secret ID, "
        .. "for a secret added to app '" .. client_id .. "'."))
    end
  elseif has_assertion then
    if form.client_assertion_type ~= JWT_BEARER then
      return finish(aad_error(400, "invalid_request", 9002313, "Invalid request. The "
        .. "client_assertion_type must be '" .. JWT_BEARER .. "'."))
    end
    local ok, why = check_assertion(cfg, ver, client_id, form.client_assertion, info)
    if not ok then
      return finish(aad_error(401, "invalid_client", 700027, why))
    end
  else
    return finish(aad_error(401, "invalid_client", 7000218, "The request body must contain the "
      .. "following parameter: 'client_assertion' or 'client_secret'."))
  end

  -- resource
  local resource
  if version == "v2" then
    local scope = form.scope
    if not scope or scope == "" then
      return finish(aad_error(400, "invalid_request", 900144,
        "The request body must contain the following parameter: 'scope'."))
    end
    if scope:find("%s") or not scope:match("/%.default$") then
      return finish(aad_error(400, "invalid_scope", 70011, "The provided request must include a "
        .. "'scope' input parameter. The provided value for the input parameter 'scope' is not valid. "
        .. "The scope " .. scope .. " is not valid. The client credentials flow needs "
        .. "'<resource>/.default'."))
    end
    resource = strip_slash(scope:sub(1, -10))
  else
    if not form.resource or form.resource == "" then
      return finish(aad_error(400, "invalid_request", 900144,
        "The request body must contain the following parameter: 'resource'."))
    end
    resource = strip_slash(form.resource)
  end
  if not (in_list(cfg.api_resources, resource) or in_list(cfg.other_resources, resource)) then
    return finish(aad_error(400, "invalid_resource", 500011, "The resource principal named "
      .. resource .. " was not found in the tenant named " .. tenant .. ". This can happen if the "
      .. "application has not been installed by the administrator of the tenant."))
  end

  local token, ttl, exp = M.issue(cfg, client_id, tenant, resource)
  info.issued = true
  info.resource = resource
  finish()
  local body
  if version == "v2" then
    body = data.encode({ token_type = "Bearer", expires_in = ttl, ext_expires_in = ttl,
                         access_token = token })
  else
    local now = math.floor(state.now())
    local num = cfg.v1_string_numbers and tostring or function(x) return x end
    body = data.encode({ token_type = "Bearer", expires_in = num(ttl), ext_expires_in = num(ttl),
                         expires_on = tostring(exp), not_before = tostring(now),
                         resource = resource, access_token = token })
  end
  return http.send(200, body, "application/json; charset=utf-8",
    { ["Cache-Control"] = "no-store, no-cache", Pragma = "no-cache",
      ["x-ms-request-id"] = ctx.req_id })
end


return M
