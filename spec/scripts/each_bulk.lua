-- Iterate N records of the bulk definition with client:each and print "count seconds peak_kb".
-- usage: lua5.4 spec/scripts/each_bulk.lua BASE_URL CA_FILE N [PAGE_SIZE]
local flavour = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
package.path = "lua/?.lua;" .. package.path
package.cpath = (os.getenv("MDE_BUILD_DIR") or ("build/" .. flavour)) .. "/?.so;" .. package.cpath

local mde = require "mde"
local core = require "mde.core"

local base_url, ca_file, n, page_size = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4] or 4096)
local client = assert(mde.new{ base_url = base_url, authority = base_url, tenant_id = "t", client_id = "c",
  client_secret = "s", ca_file = ca_file, rate_limit = false, page_size = page_size })
local count, t0 = 0, core.now()
for item in client:each("POST", "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId",
                        { body = { ScanDefinitionIds = { "bulk-" .. n } } }) do
  if item.SessionIds then count = count + 1 end
end
local f = assert(io.open("/proc/self/status"))
local status = f:read("*a")
f:close()
print(count, core.now() - t0, status:match("VmHWM:%s*(%d+)"))
