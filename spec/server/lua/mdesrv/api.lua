--- The MDE authenticated-scan API handlers (under /api), after auth, throttling and faults.
local cjson = require "cjson.safe"
local data = require "mdesrv.data"
local seeds = require "mdesrv.seeds"
local state = require "mdesrv.state"
local http = require "mdesrv.http"

local M = {}

local concat, format, floor = table.concat, string.format, math.floor
local quote = data.quote
local null = cjson.null

local BATCH_MSG = "Maximum batch size exceeded. Received: %d, allowed: %d."

local STATIC                       -- data.build() result, made in init (master) and inherited

--- Build the static data (called once from init_by_lua with the data knobs).
function M.init(data_opts)
  data.set_null(cjson.null)
  STATIC = data.build(data_opts)
  M.static = STATIC
end


function M.initial_definitions()
  return STATIC.definitions
end


------------------------------------------------------------------------------------------
-- request helpers

local function host()
  return ngx.var.http_host or ("127.0.0.1:" .. ngx.var.server_port)
end


local function context_url(what)
  return "https://" .. host() .. "/api/$metadata#" .. what
end


--- The JSON body of a POST/PATCH as a table, or nil after an error response was sent.
local function json_body(cfg)
  local ctype = (ngx.var.content_type or ""):lower()
  local is_json = ctype:match("^application/json") or ctype:match("^application/[%w.+-]*%+json")
  if cfg.require_content_type and not is_json then
    http.error(415, "UnsupportedMediaType", "Content-Type must be application/json (got '"
      .. (ngx.var.content_type or "none") .. "').")
    return nil
  end
  local body = ngx.ctx.body
  if not body or body == "" then
    http.error(400, "InvalidRequestBody", "The request body is empty; a JSON object is required.")
    return nil
  end
  local v = cjson.decode(body)
  if type(v) ~= "table" or v[1] ~= nil then
    http.error(400, "InvalidRequestBody", "The request body is not a valid JSON object.")
    return nil
  end
  return v
end


--- body[name] as a list of id strings, or nil after an error response was sent.
local function body_ids(cfg, body, name)
  local v = body[name]
  if v == nil then
    for k in pairs(body) do
      if type(k) == "string" and k:lower() == name:lower() then
        http.error(400, "InvalidRequestBody", "Unknown parameter '" .. k .. "': parameter names are "
          .. "case-sensitive; expected '" .. name .. "'.")
        return nil
      end
    end
    http.error(400, "MissingRequiredParameter", "Missing required parameter: " .. name .. ".")
    return nil
  end
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then
    http.error(400, "InvalidInput", name .. " must be a list of strings.")
    return nil
  end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if n ~= #v then
    http.error(400, "InvalidInput", name .. " must be a list of strings.")
    return nil
  end
  if #v == 0 then
    http.error(400, "InvalidInput", name .. " must contain at least one id.")
    return nil
  end
  for _, id in ipairs(v) do
    if type(id) ~= "string" or id == "" then
      http.error(400, "InvalidInput", name .. " must contain non-empty strings only.")
      return nil
    end
  end
  local max = tonumber(cfg.max_batch) or 50
  if #v > max then
    http.error(400, "MaximumBatchSizeExceeded", format(BATCH_MSG, #v, max))
    return nil
  end
  return v
end


local function query_int(args, name)
  local v = args[name]
  if type(v) == "table" then v = v[#v] end
  if v == nil then return nil end
  if type(v) ~= "string" or not v:match("^%s*%d+%s*$") then
    return false, "Invalid value '" .. tostring(v) .. "' for the query option " .. name .. "."
  end
  return tonumber(v)
end


------------------------------------------------------------------------------------------
-- paging: one envelope builder for every list

--- Send a paged OData envelope.
-- total: number of items; emit(buf, n, from, count) appends JSON items (comma separated) and
-- returns the new n; what: @odata.context suffix; max_top: largest $top allowed.
local function send_paged(cfg, total, emit, what, max_top)
  local args = ngx.req.get_uri_args(0)
  local top, err = query_int(args, "$top")
  if top == false then return http.error(400, "InvalidInput", err) end
  local skip
  skip, err = query_int(args, "$skip")
  if skip == false then return http.error(400, "InvalidInput", err) end
  skip = skip or 0
  if top and top > max_top then
    return http.error(400, "InvalidInput", format("The $top value %d exceeds the maximum allowed (%d).", top, max_top))
  end
  local size = tonumber(cfg.page_cap) or 4096
  if top and top < size then size = top end
  local count = total - skip
  if count > size then count = size end
  if count < 0 then count = 0 end

  local buf = { '{"@odata.context":', quote(context_url(what)), ',"value":[' }
  -- @odata.count: the total, when $count=true asks for it (OData) or the knob says always
  local want = cfg.odata_count
  local asked = args["$count"]
  if type(asked) == "table" then asked = asked[#asked] end
  if want == "always" or (want == "asked" and type(asked) == "string" and asked:lower() == "true") then
    buf[3] = ',"@odata.count":' .. total .. ',"value":['
  end
  local n = emit(buf, 3, skip, count)
  n = n + 1
  buf[n] = "]"

  local more = skip + count < total
  local mode = cfg.paging
  local next_skip
  if more and count > 0 then
    if mode == "nextlink" or mode == "foreign" or (mode == "topcut" and not top) then
      next_skip = skip + count
    elseif mode == "loop" then
      next_skip = skip
    end
  end
  if next_skip then
    local h = host()
    if mode == "foreign" then
      local hn = (h:match("^([^:]*)") or h):lower()
      h = (hn == "localhost" and "127.0.0.1:" or "localhost:") .. ngx.var.server_port
    end
    local q = {}
    if top then q[#q + 1] = "$top=" .. top end
    q[#q + 1] = "$skip=" .. next_skip
    local rest = {}
    for k, v in pairs(args) do
      if k ~= "$top" and k ~= "$skip" then rest[k] = v end
    end
    local extra = ngx.encode_args(rest)
    if extra ~= "" then q[#q + 1] = extra end
    n = n + 1
    buf[n] = ',"@odata.nextLink":' .. quote("https://" .. h .. ngx.var.uri .. "?" .. concat(q, "&"))
  end
  n = n + 1
  buf[n] = "}"
  return http.send(200, concat(buf, "", 1, n), http.JSON)
end


local function emit_list(list)
  return function(buf, n, from, count)
    for i = from + 1, from + count do
      if i > from + 1 then n = n + 1; buf[n] = "," end
      n = n + 1
      buf[n] = list[i]
    end
    return n
  end
end


------------------------------------------------------------------------------------------
-- history

local function session_json(sid)
  local j = STATIC.sessions[sid] or STATIC.sessions[sid:lower()]
  if j then return j end
  return data.synthetic_session_json(sid, STATIC.opts)
end


local function send_sessions(ids, ctx_url)
  local buf = { '{"@odata.context":', quote(ctx_url), ',"value":[' }
  local n, first, seen = 3, true, {}
  for _, sid in ipairs(ids) do
    if not seen[sid] then
      seen[sid] = true
      local j = session_json(sid)
      if j then
        if not first then n = n + 1; buf[n] = "," end
        first = false
        n = n + 1
        buf[n] = j
      end
    end
  end
  n = n + 1
  buf[n] = "]}"
  return http.send(200, concat(buf, "", 1, n), http.JSON)
end


-- POST /api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId
function M.history_by_session(cfg)
  local body = json_body(cfg)
  if not body then return end
  local ids = body_ids(cfg, body, "SessionIds")
  if not ids then return end
  return send_sessions(ids, "https://" .. host() .. "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId")
end


-- GET /api/DeviceAuthenticatedScanDefinitions/ScanHistoryBySessionId (older revision)
function M.history_by_session_get(cfg)
  local args = ngx.req.get_uri_args(0)
  local ids = {}
  for _, name in ipairs({ "sessionId", "sessionIds", "SessionId", "SessionIds" }) do
    local v = args[name]
    if type(v) == "string" then v = { v } end
    if type(v) == "table" then
      for _, s in ipairs(v) do
        for id in tostring(s):gmatch("[^,%s]+") do ids[#ids + 1] = id end
      end
    end
  end
  if #ids == 0 then
    -- the documented sample of that revision: a scan-definition-shaped object (U+202F cleaned)
    return http.send(200, seeds.SEED_000_CLEAN, http.JSON)
  end
  local max = tonumber(cfg.max_batch) or 50
  if #ids > max then
    return http.error(400, "MaximumBatchSizeExceeded", format(BATCH_MSG, #ids, max))
  end
  return send_sessions(ids, "https://" .. host() .. "/api/DeviceAuthenticatedScanDefinitions/ScanHistoryBySessionId")
end


local merged_cache = {}
local merged_cache_n = 0

--- Static sessions of several definitions, merged newest first (cached per worker).
local function merged_static(def_ids)
  local key = concat(def_ids, "\n")
  local hit = merged_cache[key]
  if hit then return hit end
  local sids, seen = {}, {}
  for _, id in ipairs(def_ids) do
    for _, sid in ipairs(STATIC.ids_by_def[id] or {}) do
      if not seen[sid] then seen[sid] = true; sids[#sids + 1] = sid end
    end
  end
  local ls = STATIC.last_scanned
  table.sort(sids, function(a, b)
    if ls[a] ~= ls[b] then return ls[a] > ls[b] end
    return a < b
  end)
  local list = {}
  for i, sid in ipairs(sids) do list[i] = STATIC.sessions[sid] end
  if merged_cache_n > 100 then merged_cache, merged_cache_n = {}, 0 end
  merged_cache[key] = list
  merged_cache_n = merged_cache_n + 1
  return list
end


-- POST /api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId
function M.history_by_definition(cfg)
  local body = json_body(cfg)
  if not body then return end
  local ids = body_ids(cfg, body, "ScanDefinitionIds")
  if not ids then return end
  local static_ids, bulks, seen = {}, {}, {}
  for _, id in ipairs(ids) do
    local lid = id:lower()
    if not seen[lid] then
      seen[lid] = true
      local size = data.bulk_size(id)
      if size then
        bulks[#bulks + 1] = size
      else
        -- static definition ids are lower-case GUIDs; match case-insensitively
        if STATIC.ids_by_def[lid] then static_ids[#static_ids + 1] = lid end
      end
    end
  end
  local list = (#static_ids == 1) and STATIC.by_def[static_ids[1]] or merged_static(static_ids)
  local total = #list
  for _, size in ipairs(bulks) do total = total + size end
  local opts = STATIC.opts
  local function emit(buf, n, from, count)
    local wrote = false
    -- static part
    local nstatic = #list
    if from < nstatic and count > 0 then
      local take = math.min(count, nstatic - from)
      n = emit_list(list)(buf, n, from, take)
      wrote = true
      from, count = 0, count - take
    else
      from = from - nstatic
    end
    -- bulk parts
    for _, size in ipairs(bulks) do
      if count <= 0 then break end
      if from < size then
        local take = math.min(count, size - from)
        if wrote then n = n + 1; buf[n] = "," end
        n = data.emit_bulk(buf, n, size, from, take, opts)
        wrote = true
        from, count = 0, count - take
      else
        from = from - size
      end
    end
    return n
  end
  return send_paged(cfg, total, emit, "DeviceAuthenticatedScanSessions",
    tonumber(cfg.max_top) or 4096)
end


------------------------------------------------------------------------------------------
-- definitions

local function find_definition(defs, id)
  local lid = id:lower()
  for i, d in ipairs(defs) do
    if type(d.id) == "string" and d.id:lower() == lid then return d, i end
  end
  return nil
end


local function definition_json(defs, jcache, i)
  local j = jcache[i]
  if not j then
    j = data.encode(defs[i])
    jcache[i] = j
  end
  return j
end


--- A tiny $filter: `field eq 'text'|true|false|number` joined by `and`.
local function parse_filter(s)
  local terms = {}
  local rest = s
  for _ = 1, 20 do
    local field, value, tail = rest:match("^%s*([%w_.]+)%s+eq%s+('[^']*')%s*(.*)$")
    if not field then
      field, value, tail = rest:match("^%s*([%w_.]+)%s+eq%s+([%w.%-]+)%s*(.*)$")
    end
    if not field then return nil end
    local v
    if value:sub(1, 1) == "'" then v = value:sub(2, -2)
    elseif value == "true" then v = true
    elseif value == "false" then v = false
    elseif value == "null" then v = null
    elseif tonumber(value) then v = tonumber(value)
    else return nil end
    terms[#terms + 1] = { field = field, value = v }
    if tail == "" then return terms end
    local after = tail:match("^[Aa][Nn][Dd]%s+(.*)$")
    if not after then return nil end
    rest = after
  end
  return nil
end


local function filter_value(d, field)
  local cur = d
  for part in field:gmatch("[^.]+") do
    if type(cur) ~= "table" then return nil end
    local found
    for k, v in pairs(cur) do
      if type(k) == "string" and k:lower() == part:lower() then found = v break end
    end
    cur = found
  end
  return cur
end


-- GET /api/DeviceAuthenticatedScanDefinitions
function M.definitions(cfg)
  local defs, jcache = state.definitions()
  local idx = {}
  local args = ngx.req.get_uri_args(0)
  local filter = args["$filter"]
  if type(filter) == "table" then filter = filter[1] end
  if type(filter) == "string" and filter ~= "" then
    local terms = parse_filter(filter)
    if not terms then
      return http.error(400, "ODataError",
        "The query specified in the URI is not valid: unsupported $filter '" .. filter .. "'.")
    end
    for i, d in ipairs(defs) do
      local ok = true
      for _, t in ipairs(terms) do
        local v = filter_value(d, t.field)
        if type(v) == "string" and type(t.value) == "string" then
          if v:lower() ~= t.value:lower() then ok = false end
        elseif v ~= t.value then ok = false end
      end
      if ok then idx[#idx + 1] = i end
    end
  else
    for i = 1, #defs do idx[i] = i end
  end
  local function emit(buf, n, from, count)
    for k = from + 1, from + count do
      if k > from + 1 then n = n + 1; buf[n] = "," end
      n = n + 1
      buf[n] = definition_json(defs, jcache, idx[k])
    end
    return n
  end
  return send_paged(cfg, #idx, emit, "DeviceAuthenticatedScanDefinitions",
    tonumber(cfg.list_max_top) or 10000)
end


-- GET /api/DeviceAuthenticatedScanDefinitions/{id}
function M.definition(_, id)
  local defs, jcache = state.definitions()
  local _, i = find_definition(defs, id)
  if not i then
    return http.error(404, "NotFound", "Scan definition '" .. id .. "' was not found.")
  end
  return http.send(200, definition_json(defs, jcache, i), http.JSON)
end


local REQUIRED = { "scanType", "scanName", "isActive", "target", "intervalInHours", "targetType",
                   "scannerAgent", "scanAuthenticationParams" }
local TYPES = {
  scanType = function(v) return v == "Windows" or v == "Network", "'Windows' or 'Network'" end,
  scanName = function(v) return type(v) == "string" and v ~= "", "a non-empty string" end,
  isActive = function(v) return type(v) == "boolean", "a boolean" end,
  target = function(v) return type(v) == "string" and v ~= "", "a non-empty string" end,
  intervalInHours = function(v) return type(v) == "number" and v >= 1 and v == floor(v), "a positive integer" end,
  targetType = function(v) return type(v) == "string" and v ~= "", "a string" end,
  scannerAgent = function(v)
    return type(v) == "table" and type(v.machineId) == "string", "an object with machineId"
  end,
  scanAuthenticationParams = function(v) return type(v) == "table" or v == null, "an object" end,
}


--- Validate fields present in body (create: all required). Returns true or nil after an error.
local function validate(body, create)
  if create then
    for _, f in ipairs(REQUIRED) do
      if body[f] == nil then
        for k in pairs(body) do
          if type(k) == "string" and k:lower() == f:lower() then
            http.error(400, "InvalidRequestBody", "Unknown parameter '" .. k .. "': parameter names "
              .. "are case-sensitive; expected '" .. f .. "'.")
            return nil
          end
        end
        http.error(400, "MissingRequiredParameter", "Missing required parameter: " .. f .. ".")
        return nil
      end
    end
    if type(body.scannerAgent) == "table" and body.scannerAgent.machineId == nil then
      http.error(400, "MissingRequiredParameter", "Missing required parameter: scannerAgent.machineId.")
      return nil
    end
    if body.scanAuthenticationParams == null then
      http.error(400, "MissingRequiredParameter", "Missing required parameter: scanAuthenticationParams.")
      return nil
    end
  end
  for f, check in pairs(TYPES) do
    if body[f] ~= nil then
      local ok, what = check(body[f])
      if not ok then
        http.error(400, "InvalidInput", "Invalid value for " .. f .. ": expected " .. what .. ".")
        return nil
      end
    end
  end
  return true
end


-- POST /api/DeviceAuthenticatedScanDefinitions
function M.create_definition(cfg)
  local body = json_body(cfg)
  if not body then return end
  if not validate(body, true) then return end
  local def = {
    id = state.guid(), scanType = body.scanType, scanName = body.scanName,
    isActive = body.isActive, orgId = data.ORG_ID, intervalInHours = body.intervalInHours,
    createdBy = (ngx.ctx.client or "unknown"):match("([^/]*)$"), targetType = body.targetType,
    target = body.target, scanAuthenticationParams = body.scanAuthenticationParams,
    scannerAgent = data.scanner_agent(body.scannerAgent.machineId),
    latestScan = { status = null, failureReason = null, executionDateTime = null },
  }
  state.with_lock("defs", function()
    local defs = cjson.decode(state.dict:get("defs") or "[]") or {}
    defs[#defs + 1] = def
    state.store_definitions(defs)
  end)
  return http.send(200, data.encode(def), http.JSON)
end


-- PATCH /api/DeviceAuthenticatedScanDefinitions/{id}
function M.update_definition(cfg, id)
  local body = json_body(cfg)
  if not body then return end
  if not validate(body, false) then return end
  local updated = state.with_lock("defs", function()
    local defs = cjson.decode(state.dict:get("defs") or "[]") or {}
    local d = find_definition(defs, id)
    if not d then return nil end
    for k, v in pairs(body) do
      if k ~= "id" and k ~= "orgId" and k ~= "createdBy" then
        if k == "scannerAgent" then v = data.scanner_agent(v.machineId) end
        d[k] = v
      end
    end
    state.store_definitions(defs)
    return d
  end)
  if not updated then
    return http.error(404, "NotFound", "Scan definition '" .. id .. "' was not found.")
  end
  return http.send(200, data.encode(updated), http.JSON)
end


-- POST /api/DeviceAuthenticatedScanDefinitions/BatchDelete
function M.batch_delete(cfg)
  local body = json_body(cfg)
  if not body then return end
  local ids = body_ids(cfg, body, "ScanDefinitionIds")
  if not ids then return end
  local gone = {}
  for _, id in ipairs(ids) do gone[id:lower()] = true end
  state.with_lock("defs", function()
    local defs = cjson.decode(state.dict:get("defs") or "[]") or {}
    local keep = {}
    for _, d in ipairs(defs) do
      if not (type(d.id) == "string" and gone[d.id:lower()]) then keep[#keep + 1] = d end
    end
    state.store_definitions(keep)
  end)
  if tonumber(cfg.batch_delete_status) == 200 then
    return http.send(200, "{}", http.JSON)
  end
  return http.send(204, nil)
end


------------------------------------------------------------------------------------------
-- agents

local agent_json

local function agents_json()
  if not agent_json then
    agent_json = {}
    for i, a in ipairs(data.AGENTS) do agent_json[i] = data.encode(a) end
  end
  return agent_json
end


-- GET /api/DeviceAuthenticatedScanAgents
function M.agents(cfg)
  local list = agents_json()
  return send_paged(cfg, #list, emit_list(list), "DeviceAuthenticatedScanAgents",
    tonumber(cfg.list_max_top) or 10000)
end


-- GET /api/DeviceAuthenticatedScanAgents/{id}
function M.agent(_, id)
  local list = agents_json()
  for i, a in ipairs(data.AGENTS) do
    if a.id:lower() == id:lower() then return http.send(200, list[i], http.JSON) end
  end
  return http.error(404, "NotFound", "Scan agent '" .. id .. "' was not found.")
end


return M
