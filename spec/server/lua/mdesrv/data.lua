--- The deterministic data set of the local MDE-like server (see spec/server/README.md).
--
-- Pure Lua 5.1-5.4 / LuaJIT: loaded by the nginx handlers and by spec/helpers/server.lua
-- (as `server.data`), so tests can compute expected ids and records.
-- Session records are produced as JSON text directly (string.format into a buffer, one
-- table.concat): a 4096-record page of the synthetic "bulk-N" history takes a few ms.
local M = {}

local format, concat, floor = string.format, table.concat, math.floor
local os_date, sort, type, pairs = os.date, table.sort, type, pairs
local tonumber, tostring, setmetatable, getmetatable = tonumber, tostring, setmetatable, getmetatable

M.BASE_TIME = 1719705600                       -- 2024-06-30T00:00:00Z
M.BASE_DATE = "2024-06-30T00:00:00Z"
M.ORG_ID = "f3c1a2b4-5d6e-4f70-8a9b-0c1d2e3f4a5b"
M.SEED_ORG_ID = "asdf781a0c-792d-46d3-bbea-a93dbc0bfcaa"
M.SEED_SESSION_ID = "01decc497f4b4ec49a5fc4e12597f8c8"
M.SEED_DEFINITION_ID = "4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae"
M.SYNTHETIC_DEFINITION_ID = "synthetic"

--- Data knobs (server.start{ data = {...} }); fixed for the life of a server.
M.DEFAULTS = {
  sessions_per_definition = 40,   -- sessions of each static definition that has history
  interval_hours = 6,             -- spacing of those sessions, back from BASE_TIME
  bulk_max_targets = 2,           -- targets per "bulk-N" record: 1 + i % bulk_max_targets
}


------------------------------------------------------------------------------------------
-- JSON values: null and arrays

--- JSON null of this module; the nginx side replaces it with cjson.null (M.set_null).
M.null = setmetatable({}, { __tostring = function() return "null" end })
local SENTINEL = M.null
M.array_mt = { __jsontype = "array" }

function M.array(t) return setmetatable(t or {}, M.array_mt) end

function M.set_null(v) M.null = v end


local KEY_ORDER = {
  -- definitions
  "id", "scanType", "scanName", "isActive", "orgId", "intervalInHours", "createdBy",
  "targetType", "target", "scanAuthenticationParams", "scannerAgent", "latestScan",
  -- auth params
  "@odata.type", "type", "username", "domain", "isGmsaUser", "communityString", "authProtocol",
  "authPassword", "privProtocol", "privPassword", "KeyVaultUrl", "KeyVaultSecretName",
  "keyVaultUrl", "keyVaultSecretName",
  -- agents
  "machineId", "machineName", "computerDnsName", "lastSeen", "assignedApplicationId",
  "AssignedApplicationId", "scannerSoftwareVersion", "ScannerSoftwareVersion",
  "lastCommandExecutionTimestamp", "LastCommandExecutionTimestamp", "mdeClientVersion",
  -- latest scan
  "status", "failureReason", "executionDateTime",
  -- envelopes / errors
  "@odata.context", "value", "@odata.nextLink", "error", "code", "message", "target",
  -- token service
  "token_type", "expires_in", "ext_expires_in", "expires_on", "not_before", "resource",
  "access_token", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id",
  "error_uri",
}
local RANK = {}
for i, k in ipairs(KEY_ORDER) do RANK[k] = RANK[k] or i end

local ESC = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
              ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function esc_char(c) return ESC[c] or format("\\u%04x", c:byte()) end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', esc_char) .. '"'
end
M.quote = quote


local function key_less(a, b)
  local ra, rb = RANK[a], RANK[b]
  if ra and rb then return ra < rb end
  if ra then return true end
  if rb then return false end
  return tostring(a) < tostring(b)
end


local function is_array(t)
  if getmetatable(t) == M.array_mt then return true end
  if t[1] == nil then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end


local encode_into

local function encode_value(v, buf)
  local tv = type(v)
  if tv == "string" then
    buf[#buf + 1] = quote(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      buf[#buf + 1] = "null"
    elseif v == floor(v) and v > -1e15 and v < 1e15 then
      buf[#buf + 1] = format("%d", v)
    else
      buf[#buf + 1] = format("%.17g", v)
    end
  elseif tv == "boolean" then
    buf[#buf + 1] = v and "true" or "false"
  elseif v == nil or v == M.null or v == SENTINEL or tv == "userdata" then
    buf[#buf + 1] = "null"                        -- cjson.null is a lightuserdata
  elseif tv == "table" then
    encode_into(v, buf)
  else
    error("cannot encode a " .. tv .. " as JSON")
  end
end


encode_into = function(t, buf)
  if is_array(t) then
    buf[#buf + 1] = "["
    for i = 1, #t do
      if i > 1 then buf[#buf + 1] = "," end
      encode_value(t[i], buf)
    end
    buf[#buf + 1] = "]"
    return
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys, key_less)
  buf[#buf + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then buf[#buf + 1] = "," end
    buf[#buf + 1] = quote(tostring(k))
    buf[#buf + 1] = ":"
    encode_value(t[k], buf)
  end
  buf[#buf + 1] = "}"
end


--- Encode a Lua value as JSON, object keys in a stable, documentation-like order.
function M.encode(v)
  local buf = {}
  encode_value(v, buf)
  return concat(buf)
end


------------------------------------------------------------------------------------------
-- Session records (generated)

local STATUS = { "Success", "Success", "Success", "Success", "Success", "Success",
                 "Failed", "Failed", "Partial Success", "Partial Success" }
local ERRORS = {
  "Access denied: the credentials were rejected",
  "Host unreachable",
  "SNMP request timed out",
  "WMI connection failed: RPC server unavailable",
}

local REC_FMT = '{"orgId":"%s","ScanDefinitionIds":"%s","SessionIds":"%s",'
  .. '"NumberOfSuccessfullyScannedTargets":%d,"NumberOfTargets":%d,"ScanStatus":"%s",'
  .. '"LastScanned":"%s%02d:%02d:%02d.%07dZ","ListScannedTargets":['
local TGT_FMT = '{"Ip":"%s","Hostname":"%s","ScannedDeviceDescription":"%s","ErrorMessage":"%s",'
  .. '"ScanStatus":"%s","ScanDuration":"00:%02d:%02d"}'

local day_cache_d, day_cache_s = nil, nil

--- "YYYY-MM-DDT" of the UTC day holding epoch second t (os.date once per day).
local function iso_day(t)
  local d = floor(t / 86400)
  if d ~= day_cache_d then
    day_cache_d = d
    day_cache_s = os_date("!%Y-%m-%dT", d * 86400)
  end
  return day_cache_s
end


--- Session status chosen by the seed h and the number of targets n.
local function session_status(h, n)
  local st = STATUS[(h * 7 + 3) % 10 + 1]
  if st == "Partial Success" and n < 2 then st = "Failed" end
  return st
end


--- Append one session record (JSON text) to buf; returns the new buffer length.
-- kind: "Windows" | "Network"; t: epoch seconds; frac: 0..9999999; h: non-negative integer seed.
local function emit_session(buf, n, org, def_id, sid, kind, t, frac, h, maxt)
  local nt = 1 + h % maxt
  local st = session_status(h, nt)
  local ok = 0
  if st == "Success" then ok = nt elseif st == "Partial Success" then ok = nt - floor(nt / 2) end
  n = n + 1
  local sod = t % 86400
  buf[n] = format(REC_FMT, org, def_id, sid, ok, nt, st, iso_day(t), floor(sod / 3600),
    floor(sod / 60) % 60, sod % 60, frac)
  for k = 0, nt - 1 do
    local tst
    if st == "Success" then tst = "Success"
    elseif st == "Failed" then tst = "Failed"
    else tst = (k % 2 == 0) and "Success" or "Failed" end
    local ip
    if (h + k) % 4 == 3 then
      ip = format("fd00:%x:%x::%x", 10 + h % 7, h % 65536, k + 1)
    elseif kind == "Windows" then
      ip = format("10.%d.%d.%d", 1 + h % 7, floor(h / 7) % 256, 10 + k)
    else
      ip = format("192.168.%d.%d", h % 256, 20 + k)
    end
    local host, desc
    if kind == "Windows" then
      if k % 2 == 0 then
        host = format("DESKTOP-%04X", (h * 31 + k * 7) % 65536)
        desc = "Windows 11 Enterprise"
      else
        host = format("SRV-%04d", (h * 13 + k) % 10000)
        desc = "Windows Server 2022 Datacenter"
      end
    else
      if k % 2 == 0 then
        host = format("printer-%02d", (h + k) % 100)
        desc = "Network printer"
      else
        host = format("switch-%02d", (h * 3 + k) % 100)
        desc = "Network switch"
      end
    end
    local emsg = (tst == "Failed") and ERRORS[(h + k) % 4 + 1] or ""
    if k > 0 then n = n + 1; buf[n] = "," end
    n = n + 1
    buf[n] = format(TGT_FMT, ip, host, desc, emsg, tst, (h + k * 3) % 20, (h * 7 + k * 11) % 60)
  end
  n = n + 1
  buf[n] = "]}"
  return n
end
M.emit_session = emit_session


-- The seed 001 session (the documented sample, made valid: ListScannedTargets as a list).
M.SEED_SESSION_JSON = '{"orgId":"asdf781a0c-792d-46d3-bbea-a93dbc0bfcaa",'
  .. '"ScanDefinitionIds":"4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae",'
  .. '"SessionIds":"01decc497f4b4ec49a5fc4e12597f8c8",'
  .. '"NumberOfSuccessfullyScannedTargets":3,"NumberOfTargets":3,"ScanStatus":"Success",'
  .. '"LastScanned":"2022-12-19T15:14:24.5561791Z","ListScannedTargets":['
  .. '{"Ip":"127.0.0.1","Hostname":"DESKTOP-Test","ScannedDeviceDescription":"Network device",'
  .. '"ErrorMessage":"","ScanStatus":"Success","ScanDuration":"00:08:30"},'
  .. '{"Ip":"127.0.0.2","Hostname":"DESKTOP-Test2","ScannedDeviceDescription":"Network device 2",'
  .. '"ErrorMessage":"","ScanStatus":"Success","ScanDuration":"00:08:00"},'
  .. '{"Ip":"127.0.0.3","Hostname":"DESKTOP-Test3","ScannedDeviceDescription":"Network device 3",'
  .. '"ErrorMessage":"","ScanStatus":"Success","ScanDuration":"00:08:50"}]}'


------------------------------------------------------------------------------------------
-- Agents and static definitions

M.AGENTS = {
  { id = "0d9f5a2e-8c41-4b7a-9e36-5f2a1c7d8e01", machineId = "896226a67c5e2917e44fb5c0368dc6c83129c5bf",
    computerDnsName = "scanner-01.contoso.local", lastSeen = "2024-06-29T23:55:01.1234567Z",
    AssignedApplicationId = "6a1f3c5e-7b9d-4e2f-8a0c-1b3d5f7a9c01", ScannerSoftwareVersion = "1.0.24050.1",
    LastCommandExecutionTimestamp = "2024-06-29T23:50:00.0000000Z", mdeClientVersion = "10.8760.19041.4522" },
  { id = "0d9f5a2e-8c41-4b7a-9e36-5f2a1c7d8e02", machineId = "3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09",
    computerDnsName = "scanner-02.contoso.local", lastSeen = "2024-06-29T22:41:17.7654321Z",
    AssignedApplicationId = "6a1f3c5e-7b9d-4e2f-8a0c-1b3d5f7a9c02", ScannerSoftwareVersion = "1.0.24050.1",
    LastCommandExecutionTimestamp = "2024-06-29T22:40:00.0000000Z", mdeClientVersion = "10.8760.20348.2527" },
  { id = "0d9f5a2e-8c41-4b7a-9e36-5f2a1c7d8e03", machineId = "a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8",
    computerDnsName = "scanner-03.fabrikam.local", lastSeen = "2024-05-02T08:00:00.0000000Z",
    AssignedApplicationId = M.null, ScannerSoftwareVersion = "0.9.23110.2",
    LastCommandExecutionTimestamp = M.null, mdeClientVersion = "10.8760.17763.5458" },
}


--- The scannerAgent object embedded in a definition, for an agent (or an unknown machine id).
function M.scanner_agent(machine_id)
  for _, a in ipairs(M.AGENTS) do
    if a.machineId == machine_id then
      return { id = a.id, machineId = a.machineId, machineName = a.computerDnsName,
               lastSeen = a.lastSeen, assignedApplicationId = a.AssignedApplicationId,
               scannerSoftwareVersion = a.ScannerSoftwareVersion,
               lastCommandExecutionTimestamp = a.LastCommandExecutionTimestamp,
               mdeClientVersion = a.mdeClientVersion }
    end
  end
  return { id = M.null, machineId = machine_id, machineName = M.null, lastSeen = M.null,
           assignedApplicationId = M.null, scannerSoftwareVersion = M.null,
           lastCommandExecutionTimestamp = M.null, mdeClientVersion = M.null }
end


-- index (1..5) -> static definition facts; `sessions = false`: a definition with no history.
local DEFS = {
  { id = M.SEED_DEFINITION_ID, scanType = "Network", scanName = "Seed network scan (SNMPv3)",
    isActive = true, intervalInHours = 6, createdBy = "secops@contoso.com", targetType = "Ip",
    target = "192.168.1.10,192.168.1.11,192.168.1.12", agent = 1,
    auth = function() return {
      ["@odata.type"] = "#microsoft.windowsDefenderATP.api.SnmpAuthParams", type = "AuthPriv",
      username = "snmp-scan", authProtocol = "SHA1", authPassword = "S3cr3t-authPassword-1",
      privProtocol = "AES", privPassword = "S3cr3t-privPassword-1",
      communityString = "S3cr3t-community-1" } end },
  { id = "7f3c2a10-5b6e-4d8f-9a1b-2c3d4e5f6a70", scanType = "Windows",
    scanName = "Windows servers (Kerberos)", isActive = true, intervalInHours = 12,
    createdBy = "secops@contoso.com", targetType = "Hostname",
    target = "SRV-0001.contoso.local,SRV-0002.contoso.local", agent = 2,
    auth = function() return {
      ["@odata.type"] = "#microsoft.windowsDefenderATP.api.WindowsAuthParams", type = "Kerberos",
      username = "svc-mdescan", domain = "CONTOSO", isGmsaUser = true } end },
  { id = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", scanType = "Network",
    scanName = "Printers (SNMP community, Key Vault)", isActive = true, intervalInHours = 24,
    createdBy = "netops@contoso.com", targetType = "Ip", target = "192.168.20.0/24", agent = 1,
    auth = function() return {
      ["@odata.type"] = "#microsoft.windowsDefenderATP.api.SnmpAuthParams",
      type = "CommunityString", communityString = "S3cr3t-community-printers",
      KeyVaultUrl = "https://contoso-kv.vault.azure.net/",
      KeyVaultSecretName = "S3cr3t-kv-name-printers" } end },
  { id = "1b2c3d4e-5f60-4718-a9b0-c1d2e3f4a5b6", scanType = "Windows",
    scanName = "Desktops (Negotiate, inactive)", isActive = false, intervalInHours = 4,
    createdBy = "helpdesk@contoso.com", targetType = "Ip", target = "10.1.0.0/24", agent = 3,
    sessions = false,
    auth = function() return {
      ["@odata.type"] = "#microsoft.windowsDefenderATP.api.WindowsAuthParams", type = "Negotiate",
      username = "scanuser", domain = "CONTOSO", isGmsaUser = false,
      keyVaultUrl = "https://contoso-kv.vault.azure.net/",
      keyVaultSecretName = "S3cr3t-kv-name-desktops" } end },
  { id = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", scanType = "Network",
    scanName = "Switches (no credentials)", isActive = true, intervalInHours = 8,
    createdBy = "netops@contoso.com", targetType = "Ip",
    target = "192.168.30.1,192.168.30.2", agent = 2,
    auth = function() return M.null end },
}
M.DEFINITION_IDS = {}
for i, d in ipairs(DEFS) do M.DEFINITION_IDS[i] = d.id end

--- The secrets present in the static data set (tests assert they never leak).
M.SECRETS = { "S3cr3t-authPassword-1", "S3cr3t-privPassword-1", "S3cr3t-community-1",
              "S3cr3t-community-printers", "S3cr3t-kv-name-printers", "S3cr3t-kv-name-desktops" }


--- Session id of static definition index d (1..5), session j (0 = newest).
function M.session_id(d, j)
  return format("5e5%d%028d", d, j)
end


--- Session id of record i (0-based, newest first) of the synthetic definition "bulk-N".
function M.bulk_session_id(n, i)
  return format("b%015d%016d", n, i)
end


--- Synthetic session id number k ("s" .. 31 digits): every such id exists.
function M.synthetic_session_id(k)
  return format("s%031d", k)
end


local function opts_with_defaults(opts)
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return o
end


--- Build the static data set: sessions and definitions.
-- Returns { sessions = { [sid] = json }, by_def = { [def_id] = { json, ... newest first } },
--           ids_by_def = { [def_id] = { sid, ... } }, last_scanned = { [sid] = iso },
--           definitions = { def tables in list order }, opts = effective data knobs }.
function M.build(opts)
  opts = opts_with_defaults(opts)
  local spd, step = opts.sessions_per_definition, opts.interval_hours * 3600
  local out = { sessions = {}, by_def = {}, ids_by_def = {}, last_scanned = {}, definitions = {},
                opts = opts }
  for d, def in ipairs(DEFS) do
    local list, ids = {}, {}
    if def.sessions ~= false then
      for j = 0, spd - 1 do
        local sid = M.session_id(d, j)
        local t = M.BASE_TIME - j * step - (d - 1) * 1020
        local frac = (d * 1000003 + j * 7919) % 10000000
        local h = d * 131 + j * 17
        local buf = {}
        local n = emit_session(buf, 0, M.ORG_ID, def.id, sid, def.scanType, t, frac, h, 5)
        local json = concat(buf, "", 1, n)
        list[#list + 1] = json
        ids[#ids + 1] = sid
        out.sessions[sid] = json
        out.last_scanned[sid] = format("%s.%07dZ", os_date("!%Y-%m-%dT%H:%M:%S", t), frac)
      end
    end
    if def.id == M.SEED_DEFINITION_ID then
      list[#list + 1] = M.SEED_SESSION_JSON
      ids[#ids + 1] = M.SEED_SESSION_ID
      out.sessions[M.SEED_SESSION_ID] = M.SEED_SESSION_JSON
      out.last_scanned[M.SEED_SESSION_ID] = "2022-12-19T15:14:24.5561791Z"
    end
    out.by_def[def.id] = list
    out.ids_by_def[def.id] = ids

    local latest
    if def.sessions == false or #ids == 0 then
      latest = { status = M.null, failureReason = M.null, executionDateTime = M.null }
    else
      local h = d * 131
      local st = session_status(h, 1 + h % 5)
      latest = { status = st,
                 failureReason = (st == "Success") and M.null
                   or (st == "Failed" and "All targets failed" or "Some targets failed"),
                 executionDateTime = out.last_scanned[ids[1]] }
    end
    out.definitions[d] = {
      id = def.id, scanType = def.scanType, scanName = def.scanName, isActive = def.isActive,
      orgId = M.ORG_ID, intervalInHours = def.intervalInHours, createdBy = def.createdBy,
      targetType = def.targetType, target = def.target,
      scanAuthenticationParams = def.auth(),
      scannerAgent = M.scanner_agent(M.AGENTS[def.agent].machineId),
      latestScan = latest,
    }
  end
  return out
end


--- Parse a "bulk-N" definition id: N or nil.
function M.bulk_size(def_id)
  local n = def_id:match("^[Bb][Uu][Ll][Kk]%-(%d+)$")
  if n and #n <= 15 then return tonumber(n) end
  return nil
end


--- Append records [from, from+count) of "bulk-N" (0-based, newest first) to buf.
-- Record i: SessionIds = bulk_session_id(N, i), LastScanned = BASE_TIME - 60*i (+ fraction).
function M.emit_bulk(buf, n, size, from, count, opts)
  local maxt = (opts and opts.bulk_max_targets) or M.DEFAULTS.bulk_max_targets
  local def_id = "bulk-" .. format("%d", size)
  local last = from + count - 1
  if last > size - 1 then last = size - 1 end
  for i = from, last do
    if i > from then n = n + 1; buf[n] = "," end
    local kind = (i % 3 == 0) and "Network" or "Windows"
    n = emit_session(buf, n, M.ORG_ID, def_id, format("b%015d%016d", size, i), kind,
      M.BASE_TIME - i * 60, (i * 7919) % 10000000, i, maxt)
  end
  return n
end


--- JSON of any session id that exists synthetically ("bNNN..." bulk ids, "sNNN..." ids), or nil.
function M.synthetic_session_json(sid, opts)
  if #sid ~= 32 then return nil end
  local size, i = sid:match("^b(%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d)(%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d)$")
  if size then
    size, i = tonumber(size), tonumber(i)
    if i >= size then return nil end
    local buf = {}
    local n = M.emit_bulk(buf, 0, size, i, 1, opts)
    return concat(buf, "", 1, n)
  end
  if sid:match("^s%d+$") then
    local k = tonumber(sid:sub(-9))
    local buf = {}
    local kind = (k % 2 == 0) and "Windows" or "Network"
    local n = emit_session(buf, 0, M.ORG_ID, M.SYNTHETIC_DEFINITION_ID, sid, kind,
      M.BASE_TIME - (k % 1000000) * 60 - 30, (k * 7919) % 10000000, k, 5)
    return concat(buf, "", 1, n)
  end
  return nil
end


return M
