#!/usr/bin/env lua5.4
--- Standalone launcher of the local MDE-like test server (run from the repository root).
--
--   lua5.4 spec/server/run.lua [--workers N] [--http2] [--port P] [--control JSON] [--lua]
--       starts the server, prints one shell-readable line (or a Lua table with --lua) and exits,
--       leaving nginx running:
--       MDE_BASE_URL=https://127.0.0.1:PORT MDE_AUTHORITY=... MDE_CA_FILE=... MDE_PID=... ...
--   eval "$(lua5.4 spec/server/run.lua)"      # then use $MDE_BASE_URL, $MDE_CA_FILE, ...
--   lua5.4 spec/server/run.lua --stop PID     # stop it (SIGQUIT, then SIGKILL) and remove its dir
package.path = "./?.lua;" .. package.path
local server = require "spec.helpers.server"

local function usage(msg)
  io.stderr:write((msg and (msg .. "\n") or "") ..
    "usage: lua5.4 spec/server/run.lua [--workers N] [--http2] [--port P] [--control JSON] [--lua]\n" ..
    "       lua5.4 spec/server/run.lua --stop PID\n")
  os.exit(2)
end

local opts, as_lua = { workers = 1 }, false
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--workers" then opts.workers = tonumber(arg[i + 1]) or usage("bad --workers"); i = i + 1
  elseif a == "--port" then opts.port = tonumber(arg[i + 1]) or usage("bad --port"); i = i + 1
  elseif a == "--http2" then opts.http2 = true
  elseif a == "--lua" then as_lua = true
  elseif a == "--control" then
    local v = server.json.decode(arg[i + 1] or "")
    if type(v) ~= "table" then usage("bad --control JSON") end
    opts.control = v
    i = i + 1
  elseif a == "--stop" then
    local ok, err = server.stop_pid(arg[i + 1])
    if not ok then io.stderr:write("stop failed: ", tostring(err), "\n") os.exit(1) end
    os.exit(0)
  elseif a == "-h" or a == "--help" then usage()
  else usage("unknown argument " .. a) end
  i = i + 1
end

local s = server.start(opts)
s:detach()
local fields = {
  { "MDE_BASE_URL", s.base_url }, { "MDE_AUTHORITY", s.authority }, { "MDE_CA_FILE", s.ca_file },
  { "MDE_PID", s.pid }, { "MDE_DIR", s.dir }, { "MDE_CONTROL_URL", s.control_url },
  { "MDE_ALT_BASE_URL", s.alt_base_url }, { "MDE_TENANT_ID", s.tenant }, { "MDE_TENANT", s.tenant },
  { "MDE_CLIENT_ID", s.client_id }, { "MDE_CLIENT_SECRET", s.client_secret },
  -- the app certificate under names the mde tool does not read (one kind of credential at a time)
  { "MDE_TEST_CERT_FILE", s.cert_file }, { "MDE_TEST_KEY_FILE", s.key_file },
}
if as_lua then
  local parts = {}
  for _, f in ipairs(fields) do
    parts[#parts + 1] = ("%s = %q"):format(f[1]:sub(5):lower(), tostring(f[2]))
  end
  print("return { " .. table.concat(parts, ", ") .. " }")
else
  local parts = {}
  for _, f in ipairs(fields) do parts[#parts + 1] = f[1] .. "=" .. server.certs.sh_quote(f[2]) end
  print("export " .. table.concat(parts, " "))
end
