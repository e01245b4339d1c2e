-- Automation: every failed or partly failed session of the given scan definitions since a
-- date, with the targets that failed, as one line each (for a ticketing system, a chat
-- hook, a SIEM...). Exits 1 when something failed, so a scheduler can alert on it.
--
--   lua5.4 examples/failed_sessions.lua SINCE DEFINITION_ID [DEFINITION_ID ...]
--   lua5.4 examples/failed_sessions.lua 2024-06-24 4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae
--
-- Configuration from the environment: MDE_TENANT_ID, MDE_CLIENT_ID, MDE_CLIENT_SECRET (or
-- MDE_TOKEN); MDE_BASE_URL, MDE_AUTHORITY and MDE_CA_FILE for a local server; optionally
-- MDE_TARGET (a CIDR block) and MDE_HOSTNAME (a glob) to narrow the search.
-- run from a checkout: the Lua modules in lua/, the C core built by `make` in build/
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/" .. (rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:sub(5)) .. "/?.so;" .. package.cpath

local mde = require "mde"

local since = arg[1]
local definitions = { select(2, ...) }
if not since or #definitions == 0 then
  io.stderr:write("usage: failed_sessions.lua SINCE DEFINITION_ID [DEFINITION_ID ...]\n")
  os.exit(2)
end

local env = os.getenv
local client, err = mde.new{
  tenant_id = env("MDE_TENANT_ID"), client_id = env("MDE_CLIENT_ID"),
  client_secret = env("MDE_CLIENT_SECRET"), token = env("MDE_TOKEN"),
  base_url = env("MDE_BASE_URL"), authority = env("MDE_AUTHORITY"), ca_file = env("MDE_CA_FILE"),
}
if not client then
  io.stderr:write(tostring(err), "\n")
  os.exit(2)
end

-- the filter: built once, checked before anything is sent
local criteria = { status = { "Failed", "Partial Success" }, since = since }
criteria.target = env("MDE_TARGET")
criteria.hostname = env("MDE_HOSTNAME")
local wanted, ferr = mde.filter(criteria)
if not wanted then
  io.stderr:write(tostring(ferr), "\n")
  os.exit(2)
end

local failed = 0
local ok, perr = pcall(function()
  for s in client:each_session(definitions, wanted) do
    failed = failed + 1
    local bad = {}
    for _, t in ipairs(s.ListScannedTargets) do
      if t.ScanStatus ~= "Success" then
        bad[#bad + 1] = ("%s (%s): %s"):format(tostring(t.Hostname), tostring(t.Ip), tostring(t.ErrorMessage))
      end
    end
    print(("%s  %s  %s  %d/%d targets ok  %s"):format(s.LastScanned, s.SessionIds, s.ScanStatus,
      s.NumberOfSuccessfullyScannedTargets, s.NumberOfTargets, table.concat(bad, "; ")))
  end
end)
if not ok then
  io.stderr:write(tostring(perr), "\n")
  os.exit(3)
end
io.stderr:write(("%d session(s) with failures since %s\n"):format(failed, since))
os.exit(failed > 0 and 1 or 0)
