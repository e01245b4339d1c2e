--- Server state shared by all workers (lua_shared_dict), with per-worker decoded caches.
--
-- mde_state : "cfg" (JSON) + "cfg_ver"; "cfg_initial"; "defs" (JSON list) + "defs_ver";
--             fault counters, rate-limit windows, locks, jti replay marks
-- mde_tokens: access token -> "client\ttenant\taud\texp"
-- mde_stats : counters and bounded request lists (see stats.lua)
local cjson = require "cjson.safe"
local data = require "mdesrv.data"

local M = {}

local state = ngx.shared.mde_state
local tokens = ngx.shared.mde_tokens
M.dict, M.tokens = state, tokens


M.DEFAULTS = {
  paging = "nextlink",          -- nextlink | topcut | topskip | loop | foreign
  page_cap = 4096,              -- service page size when $top is absent or larger
  odata_count = "asked",        -- @odata.count: "asked" ($count=true), "always" or "never"
  max_top = 4096,               -- largest $top of history by definition (more -> 400 InvalidInput)
  list_max_top = 10000,         -- largest $top of the definition and agent lists
  max_batch = 50,               -- most ids in SessionIds / ScanDefinitionIds (BatchDelete too)
  token_ttl = 3599,             -- expires_in of issued tokens and their real lifetime
  rate_limit = false,           -- false or { {limit=, window=}, ... } per client (tenant/app)
  delay = 0,                    -- seconds before every API response (ngx.sleep)
  token_delay = 0,              -- seconds before every token response
  faults = {},                  -- see faults.lua / README
  api_resources = { "https://api.securitycenter.microsoft.com",
                    "https://securitycenter.onmicrosoft.com/windowsatpservice" },
  other_resources = { "https://graph.microsoft.com", "https://management.azure.com",
                      "https://vault.azure.net", "https://api.security.microsoft.com",
                      "https://api-gcc.securitycenter.microsoft.us",
                      "https://api-gov.securitycenter.microsoft.us" },
  tenants = { "t" },
  clients = {},                 -- filled in init: c = { secret = "s", certs = { <app.pem> } }
  batch_delete_status = 204,    -- 204 (no body) or 200 (body {})
  clock_skew = 0,               -- seconds of tolerance for assertion exp/nbf
  reject_jti_replay = false,    -- true: a reused assertion jti -> AADSTS700027
  v1_string_numbers = true,     -- v1 token responses carry expires_in etc. as strings (as Entra does)
  require_content_type = true,  -- POST/PATCH bodies must be sent as application/json (else 415)
}

local LIST_KEYS = { faults = true, api_resources = true, other_resources = true,
                    tenants = true, rate_limit = true }


local function now()
  ngx.update_time()
  return ngx.now()
end
M.now = now


------------------------------------------------------------------------------------------
-- configuration

local cfg_cache, cfg_ver_cache

--- The current configuration (decoded once per worker per version).
function M.config()
  local ver = state:get("cfg_ver")
  if ver ~= cfg_ver_cache or not cfg_cache then
    cfg_cache = cjson.decode(state:get("cfg") or "{}") or {}
    cfg_ver_cache = ver
  end
  return cfg_cache, ver
end


local function store_config(cfg)
  state:set("cfg", data.encode(cfg))
  state:incr("cfg_ver", 1, 0)
end
M.store_config = store_config


local function is_list(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  return n == #v
end


--- Merge a control request into the configuration. Returns the new config or nil, message.
function M.apply_control(changes)
  local cfg = cjson.decode(state:get("cfg") or "{}") or {}
  local actions = {}
  for k, v in pairs(changes) do
    if k == "revoke_tokens" then
      if v then actions.revoke = true end
    elseif k == "clients" then
      if type(v) ~= "table" then return nil, "clients must be a table" end
      cfg.clients = type(cfg.clients) == "table" and cfg.clients or {}
      for id, spec in pairs(v) do
        if spec == false or spec == cjson.null then
          cfg.clients[id] = nil
        elseif type(spec) ~= "table" then
          return nil, "clients." .. tostring(id) .. " must be a table or false"
        else
          local entry = {}
          if spec.secret ~= nil then
            entry.secrets = type(spec.secret) == "table" and spec.secret or { spec.secret }
          elseif spec.secrets ~= nil then
            entry.secrets = spec.secrets
          end
          local certs = {}
          for _, pem in ipairs(type(spec.certs) == "table" and spec.certs or {}) do
            certs[#certs + 1] = pem
          end
          if spec.cert then certs[#certs + 1] = spec.cert end
          local files = spec.cert_files or (spec.cert_file and { spec.cert_file }) or {}
          for _, path in ipairs(files) do
            local f, err = io.open(path, "rb")
            if not f then return nil, "cannot read " .. tostring(path) .. ": " .. tostring(err) end
            certs[#certs + 1] = f:read("*a")
            f:close()
          end
          entry.certs = data.array(certs)
          entry.secrets = data.array(entry.secrets or {})
          if spec.tenant ~= nil then entry.tenant = spec.tenant end
          cfg.clients[id] = entry
        end
      end
    elseif M.DEFAULTS[k] == nil then
      return nil, "unknown control key: " .. tostring(k)
    else
      if v == cjson.null then v = M.DEFAULTS[k] end
      if LIST_KEYS[k] and v ~= false and not is_list(v) then
        return nil, k .. " must be a list"
      end
      if k == "paging" and not ({ nextlink = 1, topcut = 1, topskip = 1, loop = 1, foreign = 1 })[v] then
        return nil, "paging must be one of nextlink, topcut, topskip, loop, foreign"
      end
      if k == "odata_count" and not ({ asked = 1, always = 1, never = 1 })[v] then
        return nil, "odata_count must be one of asked, always, never"
      end
      if LIST_KEYS[k] and type(v) == "table" then v = data.array(v) end
      cfg[k] = v
      if k == "faults" then state:incr("faults_ver", 1, 0) end
      if k == "rate_limit" then state:incr("rl_ver", 1, 0) end
    end
  end
  store_config(cfg)
  if actions.revoke then tokens:flush_all() end
  return (M.config())
end


------------------------------------------------------------------------------------------
-- definitions (mutable, persisted in the shared dict until reset)

local defs_cache, defs_ver_cache, defs_json_cache

function M.definitions()
  local ver = state:get("defs_ver")
  if ver ~= defs_ver_cache or not defs_cache then
    defs_cache = cjson.decode(state:get("defs") or "[]") or {}
    defs_json_cache = {}
    defs_ver_cache = ver
  end
  return defs_cache, defs_json_cache
end


function M.store_definitions(list)
  state:set("defs", data.encode(data.array(list)))
  state:incr("defs_ver", 1, 0)
end


--- Run fn while holding a cross-worker lock (bounded spin; runs anyway if never acquired).
function M.with_lock(name, fn, ...)
  local key = "lock:" .. name
  local got = false
  for _ = 1, 500 do
    if state:add(key, true, 1) then got = true break end
    ngx.sleep(0.001)
  end
  local ok, a, b, c = pcall(fn, ...)
  if got then state:delete(key) end
  if not ok then error(a, 0) end
  return a, b, c
end


------------------------------------------------------------------------------------------
-- ids

local random = math.random

--- A GUID-like random id (request ids, trace ids, new definition ids).
function M.guid()
  return string.format("%08x-%04x-4%03x-%x%03x-%04x%08x", random(0, 0x7fffffff),
    random(0, 0xffff), random(0, 0xfff), random(8, 11), random(0, 0xfff),
    random(0, 0xffff), random(0, 0x7fffffff))
end


return M
