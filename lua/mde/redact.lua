--- Redaction of credentials: `mde.redact`.
--
-- syntax: local safe = redact(record)              -- same as redact.record(record)
--         local safe = redact.event(event [, secrets])
--         local s    = redact.string(s, secrets)
--         local yes  = redact.is_secret_key(name)
--         redact.MARKER                            -- "<redacted>"
--
-- `redact.record(v)` returns a deep copy of `v` (a scan definition, a list of them, a whole
-- API response envelope, anything) in which the value of every credential field, at any depth,
-- is `redact.MARKER`. A secret value that is a table is replaced as a whole. Values that hold
-- nothing are kept as they are, so a reader can see that no secret was set: nil, JSON null
-- (mde.null), the empty string and booleans. Strings elsewhere are left alone.
--
-- `redact.event(t [, secrets])` does the same for logger events, and also scrubs every string
-- value (at any depth, header lists included):
--   * "Name: value" lines whose name is a secret key ("Authorization: Bearer x",
--     "Cookie: a=b") keep the name: "Authorization: <redacted>";
--   * "Bearer <token>" anywhere; anything shaped like a JWT ("eyJ....eyJ....sig");
--   * `name=value` pairs with a secret name (form bodies, query strings:
--     "client_secret=..&client_assertion=.."); string fields of JSON text with a secret name
--     ("password": "..."), a truncated last value included; "//user:password@" in URLs;
--   * each literal string of `secrets` (a string or a list), as redact.string does.
--
-- `redact.string(s, secrets)` replaces every occurrence of each literal secret (plain find,
-- not a pattern; empty ones are skipped; where two overlap the earlier, then the longer, wins).
--
-- `redact.is_secret_key(name)`: compared in lower case with everything but letters and digits
-- removed ("client_secret", "Client-Secret" and "clientSecret" are one name). Secret: names
-- containing password, passwd, passphrase, secret (client_secret, KeyVaultSecretName),
-- communitystring, privatekey, assertion (client_assertion), authorization, cookie or apikey;
-- names ending in token (access_token, refresh_token, id_token), key (key, privateKey,
-- apiKey), keypem, bearer or pwd. Not secret, whatever the rules above say: username, domain,
-- type and every name ending in "type" (@odata.type, token_type, client_assertion_type),
-- authProtocol, privProtocol, KeyVaultUrl, isGmsaUser, expires_in, ext_expires_in and
-- skiptoken (OData paging).
--
-- The input is never modified. Cycles and shared tables are copied once (the copy has the
-- same shape); metatables are not copied; functions, userdata (mde.null included) and other
-- non-table values are kept as they are.

local type, next, setmetatable = type, next, setmetatable
local find, gsub, lower, match, sub, byte = string.find, string.gsub, string.lower, string.match,
  string.sub, string.byte
local concat = table.concat


local M = {}


local MARKER = "<redacted>"
M.MARKER = MARKER

local KEY_CACHE_MAX = 2000


-- JSON null, where a JSON library is around (mde.null is cjson.null)
local NULL
do
  local ok, cjson = pcall(require, "cjson")
  if ok and type(cjson) == "table" then
    NULL = cjson.null
  end
end


--------------------------------------------------------------------------------------------
-- key names

local NOT_SECRET = {
  username = true, domain = true, type = true, authprotocol = true, privprotocol = true,
  odatatype = true, keyvaulturl = true, isgmsauser = true, tokentype = true,
  expiresin = true, extexpiresin = true,
  skiptoken = true,               -- OData paging ($skiptoken in nextLink URLs), not a credential
}

local SECRET_PARTS = { "password", "passwd", "passphrase", "secret", "communitystring",
                       "privatekey", "assertion", "authorization", "cookie", "apikey" }

local SECRET_ENDS = { "token", "key", "keypem", "bearer", "pwd" }


local function classify(k)
  if NOT_SECRET[k] or sub(k, -4) == "type" then
    return false
  end
  for i = 1, #SECRET_PARTS do
    if find(k, SECRET_PARTS[i], 1, true) then
      return true
    end
  end
  for i = 1, #SECRET_ENDS do
    local e = SECRET_ENDS[i]
    if sub(k, -#e) == e then
      return true
    end
  end
  return false
end


local key_cache, key_count = {}, 0

function M.is_secret_key(name)
  if type(name) ~= "string" then
    return false
  end
  local v = key_cache[name]
  if v == nil then
    v = classify((gsub(lower(name), "[^%w]", "")))
    if key_count >= KEY_CACHE_MAX then
      key_cache, key_count = {}, 0
    end
    key_cache[name] = v
    key_count = key_count + 1
  end
  return v
end
local is_secret_key = M.is_secret_key


--------------------------------------------------------------------------------------------
-- strings

local function literal_list(secrets)
  if type(secrets) == "string" then
    secrets = { secrets }
  end
  local list = {}
  if type(secrets) == "table" then
    for i = 1, #secrets do
      local x = secrets[i]
      if type(x) == "string" and x ~= "" then
        list[#list + 1] = x
      end
    end
  end
  return list
end


-- one pass over s; at each point the earliest occurrence wins, then the longest
local function replace_literals(s, list)
  local n = #list
  if n == 0 then
    return s
  end
  local at = {}
  for k = 1, n do
    at[k] = find(s, list[k], 1, true) or false
  end
  local out, pos = {}, 1
  while true do
    local best, bk
    for k = 1, n do
      local a = at[k]
      if a and a < pos then
        a = find(s, list[k], pos, true) or false
        at[k] = a
      end
      if a and (not best or a < best or (a == best and #list[k] > #list[bk])) then
        best, bk = a, k
      end
    end
    if not best then
      break
    end
    out[#out + 1] = sub(s, pos, best - 1)
    out[#out + 1] = MARKER
    pos = best + #list[bk]
  end
  if pos == 1 then
    return s
  end
  out[#out + 1] = sub(s, pos)
  return concat(out)
end


function M.string(s, secrets)
  if type(s) ~= "string" then
    return s
  end
  return replace_literals(s, literal_list(secrets))
end


-- "key": "value" (JSON text) with a secret key -> "key": "<redacted>"
local function json_fields(s)
  local out, last, i = nil, 1, 1
  while true do
    local ks, _, key, open = find(s, '"([^"\\]*)"%s*:%s*()"', i)
    if not ks then
      break
    end
    -- the closing quote, stepping over escapes; a truncated text has none
    local j, close = open + 1, nil
    while true do
      local q = find(s, '["\\]', j)
      if not q then
        break
      end
      if byte(s, q) == 92 then
        j = q + 2
      else
        close = q
        break
      end
    end
    if is_secret_key(key) then
      out = out or {}
      out[#out + 1] = sub(s, last, open)
      out[#out + 1] = MARKER
      last = close or #s + 1
    end
    if not close then
      break
    end
    i = close + 1
  end
  if not out then
    return s
  end
  out[#out + 1] = sub(s, last)
  return concat(out)
end


-- one line of text: "Name: value" with a secret name -> "Name: <redacted>"; nil keeps it
local function header_line(line)
  local prefix, name, value = match(line, "^([ \t]*([%w_%-]+)[ \t]*:[ \t]*)(.*)$")
  if prefix and value ~= "" and is_secret_key(name) then
    return prefix .. MARKER
  end
end


local function pair(name, value)
  if value ~= "" and is_secret_key(name) then
    return name .. "=" .. MARKER
  end
end


local function event_string(s, literals)
  s = replace_literals(s, literals)
  if find(s, '"', 1, true) then
    s = json_fields(s)
  end
  if find(s, ":", 1, true) then
    s = gsub(s, "[^\r\n]+", header_line)          -- raw header blocks have several lines
    s = gsub(s, "(//[^/:@%s]+:)[^/@%s]+@", "%1" .. MARKER .. "@")
  end
  if find(s, "[Bb][Ee][Aa][Rr][Ee][Rr]%s") then
    s = gsub(s, "([Bb][Ee][Aa][Rr][Ee][Rr]%s+)[^%s\"',;]+", "%1" .. MARKER)
  end
  if find(s, "eyJ", 1, true) then
    s = gsub(s, "eyJ[%w_%-]+%.[%w_%-]+%.[%w_%-]*", MARKER)
  end
  if find(s, "=", 1, true) then
    s = gsub(s, "([%w_%.%-]+)=([^&%s\"',;]*)", pair)
  end
  return s
end


--------------------------------------------------------------------------------------------
-- tables

local function keeps_nothing(v)
  return v == nil or v == "" or v == NULL or type(v) == "boolean"
end


-- deep copy; `scrub(s)` is applied to string values when given (events)
local function copy(v, seen, scrub)
  local tv = type(v)
  if tv == "string" then
    return scrub and scrub(v) or v
  end
  if tv ~= "table" then
    return v
  end
  local done = seen[v]
  if done then
    return done
  end
  local out = {}
  seen[v] = out
  for k, x in next, v do
    local key = k
    if type(k) == "table" then
      key = copy(k, seen, scrub)
    end
    if type(k) == "string" and is_secret_key(k) and not keeps_nothing(x) then
      out[key] = MARKER
    else
      out[key] = copy(x, seen, scrub)
    end
  end
  return out
end


function M.record(v)
  return copy(v, {}, nil)
end


function M.event(t, secrets)
  local literals = literal_list(secrets)
  return copy(t, {}, function(s) return event_string(s, literals) end)
end


return setmetatable(M, { __call = function(_, v) return M.record(v) end })
