--- Start/stop the local MDE-like HTTPS server (real nginx + Lua handlers, spec/server/).
--
--   local server = require "spec.helpers.server"
--   local s = server.start{ workers = 1 }
--   ... s.base_url, s.ca_file, s:control{...}, s:stats(), s:reset() ...
--   s:stop()
--
-- Pure Lua 5.1-5.4 / LuaJIT; needs the `nginx` and `openssl` binaries; talks to the control
-- port with LuaSocket when available (else the curl CLI). Never uses mde.core.
-- Every field and control knob is documented in spec/server/README.md.
local certs = require "spec.helpers.certs"

local M = {}

local sh_quote, run = certs.sh_quote, certs.run
local ROOT = certs.repo_root()
local SERVER_DIR = ROOT .. "/spec/server"
M.root = ROOT

M.data = dofile(SERVER_DIR .. "/lua/mdesrv/data.lua")
M.certs = certs

M.TENANT, M.CLIENT_ID, M.CLIENT_SECRET = "t", "c", "s"
M.RESOURCE = "https://api.securitycenter.microsoft.com"
M.SCOPE = M.RESOURCE .. "/.default"

local MARKER = ".mde-test-server"


------------------------------------------------------------------------------------------
-- small utilities

local json do
  local ok, cjson = pcall(require, "cjson.safe")
  if ok then
    json = { decode = cjson.decode, encode = cjson.encode, null = cjson.null }
  else
    local dk = require "dkjson"
    json = { decode = function(s) return dk.decode(s, 1, dk.null) end, encode = dk.encode, null = dk.null }
  end
end
M.json = json


-- Debian's lua-cjson decodes every number as a float on 5.3+: make whole numbers integers.
local fix_ints
if math.type then
  fix_ints = function(v)
    if type(v) == "table" then
      for k, x in pairs(v) do v[k] = fix_ints(x) end
    elseif math.type(v) == "float" and v == math.floor(v) and v > -2^53 and v < 2^53 then
      return math.tointeger(v)
    end
    return v
  end
else
  fix_ints = function(v) return v end
end
M.fix_ints = fix_ints


local socket do
  local ok, s = pcall(require, "socket")
  socket = ok and s or nil
end


local function sleep(sec)
  if socket and socket.sleep then socket.sleep(sec) else os.execute("sleep " .. sec) end
end
M.sleep = sleep


local function now()
  if socket and socket.gettime then return socket.gettime() end
  return os.time()
end
M.now = now


local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.read_file = read_file


local function write_file(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then run("chmod " .. mode .. " " .. sh_quote(path)) end
end


local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end
M.capture, M.write_file = capture, write_file


--- What to add to an nginx command line so that its workers can read the repository. Started
-- as root, nginx runs its workers as nobody, who cannot read a clone under a private directory
-- (/root is 0700): as root, the test servers' workers run as root too (loopback only).
M.NGINX_USER = capture("id -u 2>/dev/null"):match("^0%s*$") and ' -g "user root;"' or ""


--- The pid a daemonized nginx wrote to `path`, waiting for it up to `seconds` (nil if none came).
local function wait_pid(path, seconds)
  for _ = 1, math.ceil((seconds or 2.5) / 0.005) do
    local pid = tonumber((read_file(path) or ""):match("%d+"))
    if pid then return pid end
    sleep(0.005)
  end
  return nil
end
M.wait_pid = wait_pid


--- Is the process alive (zombies count as dead)?
local function alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then
    local st = stat:match("^%d+ %b() (%a)")
    return st ~= "Z" and st ~= "X"
  end
  if read_file("/proc/self/stat") then return false end          -- Linux: no entry = gone
  local ok = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  return ok == true or ok == 0
end
M.alive = alive


local function children(pid)
  local out = {}
  local s = read_file("/proc/" .. pid .. "/task/" .. pid .. "/children")
  if not s then s = capture("ps -o pid= --ppid " .. pid .. " 2>/dev/null") end
  for c in s:gmatch("%d+") do out[#out + 1] = tonumber(c) end
  return out
end


local seeded = false
local function seed_random()
  if seeded then return end
  seeded = true
  local f = io.open("/dev/urandom", "rb")
  local n = os.time()
  if f then
    local b = f:read(4)
    f:close()
    n = 0
    for i = 1, 4 do n = n * 256 + b:byte(i) end
  end
  math.randomseed(n % 2147483647 + math.floor(os.clock() * 1e6))
end


local function nginx_bin(opts)
  if opts.nginx then return opts.nginx end
  local env = os.getenv("MDE_NGINX")
  if env and env ~= "" then return env end
  if read_file("/usr/sbin/nginx") then return "/usr/sbin/nginx" end
  return "nginx"
end


local function ipv6_loopback()
  local s = read_file("/proc/net/if_inet6")
  return s ~= nil and s:find("00000000000000000000000000000001", 1, true) ~= nil
end


------------------------------------------------------------------------------------------
-- control client (plain HTTP on 127.0.0.1:control_port)

local function http_socket(port, method, path, body)
  local c = socket.tcp()
  c:settimeout(30)
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then c:close() return nil, "control connect: " .. tostring(err) end
  body = body or ""
  local req = method .. " " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1:" .. port
    .. "\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
  ok, err = c:send(req)
  if not ok then c:close() return nil, "control send: " .. tostring(err) end
  local resp, rerr, partial = c:receive("*a")
  c:close()
  resp = resp or partial
  if not resp or resp == "" then return nil, "control receive: " .. tostring(rerr) end
  local status = tonumber(resp:match("^HTTP/%d%.%d (%d+)"))
  local rbody = resp:match("\r\n\r\n(.*)$") or ""
  return status, rbody
end


local function http_curl(port, method, path, body, dir)
  local tmp = (dir or "/tmp") .. "/control-body." .. math.random(1, 1e9)
  write_file(tmp, body or "")
  local out = capture(certs.CLEAN_ENV .. "curl -s -m 30 -X " .. method
    .. " -H 'Content-Type: application/json' --data-binary @"
    .. sh_quote(tmp) .. " -w '\\n%{http_code}' " .. sh_quote("http://127.0.0.1:" .. port .. path))
  os.remove(tmp)
  local rbody, status = out:match("^(.*)\n(%d+)$")
  if not status then return nil, "control request failed (curl)" end
  return tonumber(status), rbody
end


local function control_request(self, method, path, value)
  local body = value ~= nil and json.encode(value) or ""
  local status, rbody
  if socket then
    status, rbody = http_socket(self.control_port, method, path, body)
  else
    status, rbody = http_curl(self.control_port, method, path, body, self.dir)
  end
  if not status then error(rbody, 3) end
  local v = json.decode(rbody)
  if status ~= 200 then
    error("test server control " .. path .. " failed (" .. status .. "): "
      .. tostring(type(v) == "table" and v.error or rbody), 3)
  end
  return fix_ints(v)
end


------------------------------------------------------------------------------------------
-- the server object

local Server = {}
Server.__index = Server


--- Change modes/faults/knobs (merged into the current configuration). Returns the new config.
function Server:control(t)
  return control_request(self, "POST", "/_test/control", t)
end


--- What the server saw (see README "Stats").
function Server:stats()
  return control_request(self, "GET", "/_test/stats")
end


--- Clear faults, counters, tokens; restore the initial configuration and data.
function Server:reset()
  control_request(self, "POST", "/_test/reset", {})
  return self
end


--- Mint an access token without the OAuth flow. opts: client, tenant, resource, ttl.
function Server:issue_token(opts)
  local r = control_request(self, "POST", "/_test/issue_token", opts or {})
  return r.access_token, r.expires_in
end


--- The current configuration table.
function Server:config()
  return control_request(self, "GET", "/_test/config")
end


--- base_url .. path
function Server:url(path)
  return self.base_url .. (path or "")
end


--- The session record the server returns for id (a decoded table) or nil.
function Server:session_record(id)
  local j = self.static_sessions[id] or M.data.synthetic_session_json(id, self.data_opts)
  return j and fix_ints(json.decode(j)) or nil
end


--- Requests seen (from stats), optionally filtered: { route=, host=, hostname=, auth=, method= }.
function Server:requests(filter, st)
  st = st or self:stats()
  local out = {}
  for _, r in ipairs(st.requests or {}) do
    local ok = true
    for k, v in pairs(filter or {}) do
      if r[k] ~= v then ok = false end
    end
    if ok then out[#out + 1] = r end
  end
  return out
end


--- The largest number of API requests seen within any `window` seconds (half-open window).
function M.max_in_window(times, window)
  local t = {}
  for i, v in ipairs(times or {}) do t[i] = v end
  table.sort(t)
  local best, i = 0, 1
  for j = 1, #t do
    while t[j] - t[i] >= window do i = i + 1 end
    if j - i + 1 > best then best = j - i + 1 end
  end
  return best
end


function Server:max_calls_in_window(window, st)
  st = st or self:stats()
  return M.max_in_window(st.api_times, window)
end


function Server:error_log()
  return read_file(self.dir .. "/error.log") or ""
end


--- Stop nginx (SIGQUIT, then SIGKILL after `timeout` seconds) and remove the temp dir.
function Server:stop(timeout)
  if self.stopped then return true end
  self.stopped = true
  M.stop_pid(self.pid, self.dir, timeout)
  return true
end


--- Keep the server running when this Lua state ends (used by spec/server/run.lua).
function Server:detach()
  self.detached = true
  return self
end


--- The command line of a process as one string (NULs as spaces), or nil.
local function cmdline(pid)
  local c = read_file("/proc/" .. pid .. "/cmdline")
  if not c then return nil end
  return (c:gsub("%z", " "))
end


--- Parent pid of a process, or nil.
local function ppid_of(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  return stat and tonumber(stat:match("^%d+ %b() %a (%d+)")) or nil
end


--- Is pid the nginx master of the test server in dir? (nginx rewrites its argv into a title
-- such as "nginx: master process /usr/sbin/nginx -p DIR -e ... -c DIR/nginx.conf")
local function is_our_master(pid, dir)
  local c = cmdline(pid)
  if not c or not c:find("nginx: master process", 1, true) then return false end
  local d = c:match("%-p (%S+)")
  return d ~= nil and (dir == nil or d == dir), d
end


--- Worker processes of our master (children whose title is "nginx: worker process").
local function our_workers(pid)
  local out = {}
  for _, w in ipairs(children(pid)) do
    local c = cmdline(w)
    if c and c:find("^nginx: ") and ppid_of(w) == pid then out[#out + 1] = w end
  end
  return out
end


--- Stop an nginx master started by this helper (by pid) and remove its directory.
-- Only ever signals a process whose title is "nginx: master process ... -p <dir>", where
-- <dir> is a /tmp/mde-server.* directory holding this helper's marker file, and that
-- master's own nginx workers. dir: optional, found from the process title when absent.
function M.stop_pid(pid, dir, timeout)
  pid = tonumber(pid)
  if not pid or pid <= 1 or pid ~= math.floor(pid) then return nil, "not a valid pid" end
  local ours, pdir = is_our_master(pid, dir)
  dir = dir or pdir
  local function ours_dir(d)
    return d ~= nil and d:match("^/tmp/mde%-server%.[%w]+$") ~= nil and read_file(d .. "/" .. MARKER) ~= nil
  end
  if not ours_dir(dir) then
    return nil, "refusing: pid " .. pid .. " is not a test server started by spec/helpers/server.lua"
  end
  if ours and alive(pid) then
    local workers = our_workers(pid)
    os.execute("kill -QUIT " .. pid .. " 2>/dev/null")
    local deadline = now() + (timeout or 3)
    while alive(pid) and now() < deadline do sleep(0.01) end
    if alive(pid) and is_our_master(pid, dir) then
      for _, w in ipairs(our_workers(pid)) do os.execute("kill -KILL " .. w .. " 2>/dev/null") end
      os.execute("kill -KILL " .. pid .. " 2>/dev/null")
      for _ = 1, 100 do
        if not alive(pid) then break end
        sleep(0.01)
      end
    end
    -- workers left behind by a killed master (re-checked: still an nginx process)
    for _, w in ipairs(workers) do
      local c = cmdline(w)
      if alive(w) and c and c:find("^nginx: ") then os.execute("kill -KILL " .. w .. " 2>/dev/null") end
    end
  end
  run("rm -rf " .. sh_quote(dir))
  return true
end


------------------------------------------------------------------------------------------
-- start

local function lua_literal(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return ("%q"):format(v) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  if t ~= "table" then error("cannot serialize " .. t) end
  local parts = {}
  for k, x in pairs(v) do
    local key = type(k) == "string" and ("[%q]"):format(k) or ("[" .. tostring(k) .. "]")
    parts[#parts + 1] = indent .. "  " .. key .. " = " .. lua_literal(x, indent .. "  ")
  end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end


local function fill(template, vars)
  return (template:gsub("%${([%w_]+)}", function(k)
    local v = vars[k]
    if v == nil then error("template variable " .. k .. " missing") end
    return tostring(v)
  end))
end


local launch

--- Start a server. opts (all optional):
--   workers (1), data = { data knobs }, control = { initial control knobs },
--   http2 (false), ipv6 (auto), log_level ("warn"), access_log (false), nginx (path),
--   port (a fixed port instead of a random one)
function M.start(opts)
  opts = opts or {}
  local t0 = now()
  seed_random()
  local files = certs.ensure()
  local dir = capture("mktemp -d /tmp/mde-server.XXXXXX"):gsub("%s+$", "")
  assert(dir:match("^/tmp/mde%-server%."), "mktemp failed")
  assert(run("chmod 0755 " .. sh_quote(dir) .. " && mkdir -p " .. sh_quote(dir .. "/tmp")))
  write_file(dir .. "/" .. MARKER, "lua-mde local test server\n", "0644")
  local ok, s = pcall(launch, opts, files, dir)
  if not ok then
    run("rm -rf " .. sh_quote(dir))
    error(s, 2)
  end
  s.start_time = now() - t0
  return s
end


launch = function(opts, files, dir)
  local data_opts = {}
  for k, v in pairs(M.data.DEFAULTS) do data_opts[k] = v end
  for k, v in pairs(opts.data or {}) do data_opts[k] = v end
  write_file(dir .. "/server_conf.lua", "return " .. lua_literal({
    app_cert = files.app_cert, data = data_opts, control = opts.control,
  }) .. "\n", "0644")

  local template = assert(read_file(SERVER_DIR .. "/nginx.conf.tmpl"), "missing nginx.conf.tmpl")
  local bin = nginx_bin(opts)
  local ipv6 = opts.ipv6
  if ipv6 == nil then ipv6 = ipv6_loopback() end
  local port, badname_port, control_port
  local last_err
  for _ = 1, 40 do
    port = opts.port or math.random(20000, 32000)
    badname_port = math.random(20000, 32000)
    control_port = math.random(20000, 32000)
    if port ~= badname_port and port ~= control_port and badname_port ~= control_port then
      local conf = fill(template, {
        DIR = dir, WORKERS = opts.workers or 1, LOG_LEVEL = opts.log_level or "warn",
        ACCESS_LOG = opts.access_log and (dir .. "/access.log") or "off",
        LUA_DIR = SERVER_DIR .. "/lua", PORT = port, BADNAME_PORT = badname_port,
        CONTROL_PORT = control_port, HTTP2 = opts.http2 and " http2" or "",
        LISTEN6 = ipv6 and ("listen [::1]:" .. port .. " ssl" .. (opts.http2 and " http2" or "") .. ";") or "",
        SERVER_CERT = files.server_cert, SERVER_KEY = files.server_key,
        WRONGNAME_CERT = files.wrongname_cert, WRONGNAME_KEY = files.wrongname_key,
      })
      write_file(dir .. "/nginx.conf", conf, "0644")
      local ok = run(certs.CLEAN_ENV .. sh_quote(bin) .. " -p " .. sh_quote(dir)
        .. " -e " .. sh_quote(dir .. "/error.log")
        .. " -c " .. sh_quote(dir .. "/nginx.conf") .. M.NGINX_USER .. " >" .. sh_quote(dir .. "/start.out") .. " 2>&1")
      if ok then last_err = nil break end
      last_err = (read_file(dir .. "/start.out") or "") .. (read_file(dir .. "/error.log") or "")
      if last_err == "" then last_err = bin .. " exited with an error and no output" end
      if last_err:find("[::1]", 1, true) and last_err:find("Cannot assign", 1, true) then
        ipv6 = false
      elseif not last_err:find("in use", 1, true) or opts.port then
        break
      end
    end
  end
  if last_err then
    run("rm -rf " .. sh_quote(dir))
    error("test server failed to start: " .. last_err, 2)
  end

  -- the pid file is written by the daemonized master
  local pid = wait_pid(dir .. "/nginx.pid")
  if not pid then
    local log = read_file(dir .. "/error.log") or ""
    run("rm -rf " .. sh_quote(dir))
    error("test server did not write its pid file: " .. log, 2)
  end

  local base = "https://127.0.0.1:" .. port
  local s = setmetatable({
    port = port, base_url = base, authority = base, ca_file = files.ca, dir = dir, pid = pid,
    alt_base_url = "https://localhost:" .. port,
    ipv6_base_url = ipv6 and ("https://[::1]:" .. port) or nil, ipv6 = ipv6,
    badname_port = badname_port, badname_url = "https://127.0.0.1:" .. badname_port,
    other_ca_file = files.other_ca,
    control_port = control_port, control_url = "http://127.0.0.1:" .. control_port,
    cert_file = files.app_cert, key_file = files.app_key, key_pkcs1_file = files.app_pkcs1_key,
    key_encrypted_file = files.app_encrypted_key, key_passphrase = files.passphrase,
    wrong_key_file = files.wrong_key, wrong_cert_file = files.wrong_cert,
    tenant = M.TENANT, client_id = M.CLIENT_ID, client_secret = M.CLIENT_SECRET,
    resource = M.RESOURCE, scope = M.SCOPE,
    token_url = base .. "/" .. M.TENANT .. "/oauth2/v2.0/token",
    token_url_v1 = base .. "/" .. M.TENANT .. "/oauth2/token",
    workers = opts.workers or 1, http2 = opts.http2 and true or false,
    data_opts = data_opts,
  }, Server)
  s.static_sessions = M.data.build(data_opts).sessions

  -- wait until a worker answers (bounded)
  local ready, err = false, nil
  for _ = 1, 400 do
    local ok, st = pcall(function()
      if socket then return http_socket(control_port, "GET", "/_test/health") end
      return http_curl(control_port, "GET", "/_test/health", nil, dir)
    end)
    if ok and st == 200 then ready = true break end
    err = st
    sleep(0.005)
  end
  if not ready then
    local log = s:error_log()
    s:stop()
    error("test server is not answering: " .. tostring(err) .. "\n" .. log, 2)
  end

  -- stop nginx if the server object is collected (or the Lua state closes) without stop()
  local function finalizer()
    if not s.stopped and not s.detached then pcall(Server.stop, s, 1) end
  end
  if newproxy then
    s._guard = newproxy(true)
    getmetatable(s._guard).__gc = finalizer
  else
    s._guard = setmetatable({}, { __gc = finalizer })
  end
  return s
end


return M
