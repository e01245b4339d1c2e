--- Bearer tokens: where they come from and how long they are kept.
--
-- Sources, in the order mde.new checks them: `token` (a ready token, used as
-- is), `token_provider` (a function returning token, expires_in), and the
-- client-credentials grant with `client_secret` or `certificate` (a signed
-- client assertion). Tokens of the grant are cached in the client's store
-- under (authority, tenant, client, scope), so every client of the same app in
-- the process (or, in OpenResty, every worker) shares one token. A cached
-- token is dropped a margin before it lapses, so no call leaves with a token
-- about to expire; only one fetch runs at a time per key.

local type, tostring, tonumber = type, tostring, tonumber
local min, max = math.min, math.max

local errors = require "mde.errors"
local url = require "mde.url"

local M = {}

-- refresh this long before expiry: a tenth of the lifetime, at most 5 minutes, plus
-- one second because the service counts expiry in whole seconds
local MARGIN_SHARE, MARGIN_MAX, GRANULARITY = 0.1, 300, 1
local DEFAULT_LIFETIME = 3599

M.ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


--- The token endpoint (v2) of a client.
function M.endpoint(c)
  return c.authority .. "/" .. url.escape(c.tenant_id) .. "/oauth2/v2.0/token"
end


-- The key of a client's token in the store, made once per client. It names the credential
-- too (a digest, never the credential): a client with a wrong or revoked secret must not be
-- handed the token that another client of the same app fetched.
local function cache_key(c, p)
  local key = p.token_key
  if not key then
    local credential = p.certificate and ("cert:" .. p.certificate.x5t_s256)
      or ("secret:" .. require("mde.core").sha256(p.client_secret))
    key = "mde:token:" .. c.authority .. "|" .. c.tenant_id .. "|" .. c.client_id .. "|" .. c.scope
      .. "|" .. credential
    p.token_key = key
  end
  return key
end


local function keep_for(expires_in)
  return expires_in - min(MARGIN_MAX, expires_in * MARGIN_SHARE) - GRANULARITY
end


-- Ask the login service for a token. Returns token, expires_in or nil, err.
local function fetch(c, p, pipeline, deadline)
  local endpoint = M.endpoint(c)
  local form = {
    grant_type = "client_credentials",
    client_id = c.client_id,
    scope = c.scope,
  }
  if p.certificate then
    local assertion, err = require("mde.jwt").assertion(p.certificate, c.client_id, endpoint, p.now())
    if not assertion then
      return nil, errors.new{ kind = "auth", message = "cannot sign the client assertion: " .. err }
    end
    form.client_assertion_type = M.ASSERTION_TYPE
    form.client_assertion = assertion
  else
    form.client_secret = p.client_secret
  end
  local started = p.now()
  local resp, err = pipeline.call(c, {
    method = "POST", url = endpoint, body = url.encode(form),
    headers = { "Content-Type: application/x-www-form-urlencoded" },
    auth = false, pace = false, safe = true, raw = true, what = "token request",
    deadline_at = deadline,
  })
  form = nil -- luacheck: ignore (drop the secret early)
  if not resp then
    return nil, errors.wrap(err, "token request failed")
  end
  local body = resp.body
  if resp.status ~= 200 then
    local e = pipeline.scrub(p, errors.from_response(resp, p.now()))
    e.kind = "auth"
    e.message = "token request failed: " .. (e.message or "")
    return nil, e
  end
  if type(body) ~= "table" or type(body.access_token) ~= "string" or body.access_token == "" then
    return nil, errors.new{ kind = "auth", status = resp.status,
      message = "token request failed: the login service's answer has no access_token" }
  end
  local expires_in = tonumber(body.expires_in) or DEFAULT_LIFETIME
  if p.log then
    p.log{ type = "token", action = "fetch", authority = c.authority, tenant_id = c.tenant_id,
           client_id = c.client_id, scope = c.scope, expires_in = expires_in,
           credential = p.certificate and "certificate" or "secret", elapsed = p.now() - started }
  end
  return body.access_token, expires_in
end


--- The token for the next request.
-- @param c the client, @param p its private state, @param force drop the cached token first,
-- @param deadline the absolute time the caller's call must end by (bounds a token request)
-- @return token, or nil and an error object
function M.token(c, p, force, deadline)
  if p.static_token then
    return p.static_token
  end

  if p.token_provider then
    local cached = p.provided
    if not force and cached and (not cached.until_time or cached.until_time > p.now()) then
      return cached.token
    end
    local ok, token, expires_in = pcall(p.token_provider)
    if not ok or type(token) ~= "string" or token == "" then
      local why = not ok and "it raised an error"
        or (expires_in ~= nil and ("it returned an error: " .. tostring(expires_in)))
        or "it returned no token"
      p.provided = nil
      return nil, errors.new{ kind = "auth", message = "token_provider failed: " .. why }
    end
    expires_in = tonumber(expires_in)
    p.provided = { token = token, until_time = expires_in and (p.now() + keep_for(expires_in)) }
    if p.log then p.log{ type = "token", action = "provider", expires_in = expires_in } end
    return token
  end

  local store, key = p.store, cache_key(c, p)
  if force then store:delete(key) end
  local token = store:get(key)
  if token then return token end

  -- one fetch at a time per key: the others find the token in the cache
  local unlock = store:lock(key .. ":lock", c.options.timeout)
  if unlock then
    token = store:get(key)
    if token then
      unlock()
      return token
    end
  end
  local expires_in, err
  token, err = fetch(c, p, require "mde.pipeline", deadline)
  if token then
    expires_in = err
    store:set(key, token, max(keep_for(expires_in), 0.5))
    err = nil
  end
  if unlock then unlock() end
  return token, err
end


--- Forget a token the API refused, unless another caller already replaced it.
function M.invalidate(c, p, token)
  if p.static_token then return false end
  if p.token_provider then
    if p.provided and p.provided.token == token then p.provided = nil end
    return true
  end
  local key = cache_key(c, p)
  if p.store:get(key) == token then p.store:delete(key) end
  if p.log then
    p.log{ type = "token", action = "invalidate", authority = c.authority, client_id = c.client_id }
  end
  return true
end


return M
