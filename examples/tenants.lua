-- Several tenants at once (an MSSP, a group of subsidiaries): how every tenant's scans went
-- since a date, one line per tenant, all tenants asked together with mde.gather (one thread,
-- the calls of every tenant in flight at once, each with its own token and rate limit).
-- Exits 1 when a tenant could not be asked or has failed sessions.
--
--   lua5.4 examples/tenants.lua TENANTS_FILE SINCE
--   lua5.4 examples/tenants.lua tenants.lua 2024-06-24
--
-- TENANTS_FILE is a Lua file returning a list of tenants; secrets stay in the environment:
--   return {
--     { name = "contoso", tenant_id = "<guid>", client_id = "<guid>", secret_env = "CONTOSO_SECRET" },
--     { name = "fabrikam", tenant_id = "<guid>", client_id = "<guid>", secret_env = "FABRIKAM_SECRET",
--       cloud = "gcc" },
--   }
-- MDE_BASE_URL, MDE_AUTHORITY and MDE_CA_FILE point every client at a local server.
-- run from a checkout: the Lua modules in lua/, the C core built by `make` in build/
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/" .. (rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:sub(5)) .. "/?.so;" .. package.cpath

local mde = require "mde"

local file, since = arg[1], arg[2]
if not file or not since then
  io.stderr:write("usage: tenants.lua TENANTS_FILE SINCE\n")
  os.exit(2)
end
local load_ok, tenants = pcall(dofile, file)
if not load_ok or type(tenants) ~= "table" or #tenants == 0 then
  io.stderr:write("tenants.lua: ", file, " must return a non-empty list of tenants",
    load_ok and "" or (": " .. tostring(tenants)), "\n")
  os.exit(2)
end

local env = os.getenv
local clients, tasks = {}, {}
for i, t in ipairs(tenants) do
  local client, err = mde.new{
    tenant_id = t.tenant_id, client_id = t.client_id,
    client_secret = t.secret_env and env(t.secret_env), cloud = t.cloud, region = t.region,
    base_url = env("MDE_BASE_URL"), authority = env("MDE_AUTHORITY"), ca_file = env("MDE_CA_FILE"),
  }
  if not client then
    io.stderr:write(("%s: %s\n"):format(tostring(t.name or i), tostring(err)))
    os.exit(2)
  end
  clients[i] = client
  -- each tenant: its scan definitions, then the sessions of all of them since the date
  tasks[i] = function()
    local defs, derr = client:scan_definitions{ all = true }
    if not defs then return nil, derr end
    if #defs == 0 then return {} end
    local ids = {}
    for k, d in ipairs(defs) do ids[k] = d.id end
    return client:sessions(ids, { since = since })
  end
end

local results = assert(mde.gather(tasks, { concurrency = 8 }))

local status = 0
for i, t in ipairs(tenants) do
  local sessions, err = results[i][1], results[i][2]
  if not sessions then
    status = 1
    print(("%-20s error: %s"):format(t.name or i, (tostring(err):gsub("%s*\n%s*", " "))))
  else
    local failed = 0
    for _, s in ipairs(sessions) do
      if s.ScanStatus ~= "Success" then failed = failed + 1 end
    end
    if failed > 0 then status = 1 end
    print(("%-20s %5d sessions since %s, %d not successful"):format(t.name or i, #sessions, since, failed))
  end
  clients[i]:close()
end
os.exit(status)
