-- Scan history of sessions, printed as a table.
--
--   lua5.4 examples/history_by_session.lua [SESSION_ID ...]
--
-- Configuration comes from the environment: MDE_TENANT_ID, MDE_CLIENT_ID,
-- MDE_CLIENT_SECRET (or MDE_TOKEN), and for a local server MDE_BASE_URL,
-- MDE_AUTHORITY and MDE_CA_FILE. `bash .ci/demo.sh` runs it against the bundled server.
-- run from a checkout: the Lua modules in lua/, the C core built by `make` in build/
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/" .. (rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:sub(5)) .. "/?.so;" .. package.cpath

local mde = require "mde"

local env = os.getenv
local client, err = mde.new{
  tenant_id = env("MDE_TENANT_ID"),
  client_id = env("MDE_CLIENT_ID"),
  client_secret = env("MDE_CLIENT_SECRET"),
  token = env("MDE_TOKEN"),
  base_url = env("MDE_BASE_URL"),
  authority = env("MDE_AUTHORITY"),
  ca_file = env("MDE_CA_FILE"),
}
if not client then
  io.stderr:write(tostring(err), "\n")
  os.exit(2)
end

local ids = { ... }
if #ids == 0 then ids = { "01decc497f4b4ec49a5fc4e12597f8c8" } end

local sessions
sessions, err = client:scan_history_by_session(ids)
if not sessions then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

-- JSON null (mde.null) and missing fields print as "-"
local function str(v)
  if type(v) == "string" or type(v) == "number" then return tostring(v) end
  return "-"
end

local function row(...)
  local cells = { ... }
  for i = 1, 8 do cells[i] = str(cells[i]) end
  print(("%-34s %-16s %-29s %7s  %-15s %-24s %-8s %s"):format((table.unpack or unpack)(cells, 1, 8)))
end

row("session", "status", "last scanned", "ok/all", "target", "hostname", "duration", "error")
for _, s in ipairs(sessions) do
  local ok = ("%d/%d"):format(s.NumberOfSuccessfullyScannedTargets or 0, s.NumberOfTargets or 0)
  local targets = s.ListScannedTargets
  if #targets == 0 then
    row(s.SessionIds, s.ScanStatus, s.LastScanned, ok, "-", "-", "-", "")
  end
  for i, t in ipairs(targets) do
    local first = i == 1
    row(first and s.SessionIds or "", first and s.ScanStatus or "", first and s.LastScanned or "",
        first and ok or "", t.Ip, t.Hostname, t.ScanDuration, t.ErrorMessage ~= "" and t.ErrorMessage or "")
  end
end
print(("%d session(s)"):format(#sessions))
