--- Which non-blocking path should lua-mde take inside nginx? Measures, on loopback against the
-- bundled MDE-like server, the candidates of bench/nginx_paths_handler.lua:
-- latency and throughput per path, event-loop CPU per request, and whether an unrelated
-- location of the same worker keeps answering while the API takes 1 s.
--
--   make LUA=luajit && lua5.4 bench/nginx_paths.lua [--quick]
--
-- Prints a Markdown report (bench/nginx_paths.md holds the one quoted in README.md).
package.path = "./?.lua;" .. package.path

local server = require "spec.helpers.server"
local certs = require "spec.helpers.certs"
local json = server.json

local quick = arg[1] == "--quick"
local ROOT = server.root
local CLEAN = certs.CLEAN_ENV
local sh = certs.sh_quote

local capture, write = server.capture, server.write_file

local CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
daemon on;
master_process on;
worker_processes 1;
pid ${DIR}/nginx.pid;
error_log ${DIR}/error.log warn;
thread_pool default threads=32;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${DIR}/tmp; proxy_temp_path ${DIR}/tmp; fastcgi_temp_path ${DIR}/tmp;
  uwsgi_temp_path ${DIR}/tmp; scgi_temp_path ${DIR}/tmp;
  lua_package_path "${ROOT}/lua/?.lua;${ROOT}/bench/?.lua;;";
  lua_package_cpath "${ROOT}/build/luajit/?.so;;";
  lua_ssl_trusted_certificate ${CA};
  lua_ssl_verify_depth 2;
  lua_socket_log_errors off;

  upstream mde_api {
    server 127.0.0.1:${API_PORT};
    keepalive 64;
  }

  server {
    listen 127.0.0.1:${PORT};
    location = /ping { content_by_lua_block { ngx.say("pong") } }
    location = /setup { content_by_lua_block { require("nginx_paths_handler").setup() } }
    location = /run {
      # the subrequest's variables must be defined in the location that captures
      set $mde_path "";
      set $mde_auth "";
      set $mde_ctype "";
      content_by_lua_block { require("nginx_paths_handler").run() } }
    location = /decode_cost { content_by_lua_block { require("nginx_paths_handler").decode_cost() } }

    # path (b): nginx's own upstream machinery
    location = /_mde_proxy {
      internal;
      proxy_pass https://mde_api$mde_path;
      proxy_http_version 1.1;
      proxy_pass_request_headers off;
      proxy_set_header Host 127.0.0.1:${API_PORT};
      proxy_set_header Connection "";
      proxy_set_header Accept application/json;
      proxy_set_header Authorization $mde_auth;
      proxy_set_header Content-Type $mde_ctype;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${CA};
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_connect_timeout 10s;
      proxy_read_timeout 30s;
      proxy_buffers 64 64k;
    }
  }
}
]]

local function fill(t, vars)
  return (t:gsub("%${([%w_]+)}", function(k) return tostring(assert(vars[k], k)) end))
end


local api = server.start{ workers = 2 }
local dir = capture("mktemp -d /tmp/mde-bench.XXXXXX"):gsub("%s+$", "")
assert(dir:match("^/tmp/mde%-bench%."))
os.execute("chmod 0755 " .. sh(dir) .. " && mkdir -p " .. sh(dir .. "/tmp"))

local port, pid
for _ = 1, 20 do
  port = math.random(32001, 40000)
  write(dir .. "/nginx.conf", fill(CONF, { DIR = dir, ROOT = ROOT, CA = api.ca_file, API_PORT = api.port,
    PORT = port }))
  if os.execute(CLEAN .. "nginx -p " .. sh(dir) .. " -e " .. sh(dir .. "/error.log") .. " -c "
      .. sh(dir .. "/nginx.conf") .. server.NGINX_USER .. " 2>" .. sh(dir .. "/start.err")) then
    break
  end
  port = nil
end
assert(port, "bench nginx did not start: " .. (server.read_file(dir .. "/start.err") or ""))
pid = assert(server.wait_pid(dir .. "/nginx.pid", 2), "no pid file")

local function cleanup()
  os.execute("kill -QUIT " .. pid .. " 2>/dev/null")
  for _ = 1, 300 do
    if not server.alive(pid) then break end
    server.sleep(0.01)
  end
  os.execute("rm -rf " .. sh(dir))
  api:stop()
end

local base = "http://127.0.0.1:" .. port

local function get(path)
  return capture(CLEAN .. "curl -s -m 120 " .. sh(base .. path))
end

local ok, err = pcall(function()
  server.sleep(0.2)
  local token = api:issue_token{}
  local setup = get("/setup?base_url=" .. api.base_url .. "&host=127.0.0.1&port=" .. api.port
    .. "&ca_file=" .. api.ca_file .. "&token=" .. token)
  assert(setup:find("ok"), "setup failed: " .. setup)

  local out = {}
  local function say(s) out[#out + 1] = s print(s) end

  local function run(variant, kind, n, c)
    local body = get(("/run?variant=%s&kind=%s&n=%d&c=%d"):format(variant, kind, n, c))
    local r = json.decode(body)
    assert(type(r) == "table", "bad answer: " .. body)
    return r
  end

  local cpu = capture("grep -m1 'model name' /proc/cpuinfo"):match(":%s*(.-)%s*$") or "?"
  say(("# bench/nginx_paths.lua, %s: %s CPUs (%s), %s, ngx_lua 0.10.23 (LuaJIT %s), %s; the test server "
    .. "(2 nginx workers) on the same machine, loopback, TLS 1.3"):format(os.date("!%Y-%m-%d"),
    capture("nproc"):gsub("%s+", ""), cpu,
    capture(CLEAN .. "nginx -v 2>&1"):gsub("%s+$", ""):gsub("^nginx version: ", ""),
    capture("luajit -v"):match("LuaJIT (%S+)") or "?", capture(CLEAN .. "curl --version"):match("libcurl/%S+") or "?"))
  say("")

  local variants = { "thread", "thread_tables", "subreq", "cosocket", "blocking", "client" }
  local scale = quick and 0.2 or 1

  say("## Latency and throughput (API answering at once; 1 nginx worker, thread_pool 32 threads)")
  say("")
  say("| path | kind | n | concurrency | req/s | p50 ms | p99 ms | event-loop CPU us/req | errors |")
  say("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
  local plan = {
    { "small", math.floor(2000 * scale), 1 }, { "small", math.floor(4000 * scale), 32 },
    { "history", math.floor(4000 * scale), 32 }, { "big", math.floor(60 * scale), 4 },
  }
  for _, p in ipairs(plan) do
    for _, v in ipairs(variants) do
      run(v, p[1], 20, p[3]) -- warm up (connections, VMs)
      -- the median of three runs (by throughput): the machine may be busy with other work
      local rs = {}
      for i = 1, 3 do rs[i] = run(v, p[1], p[2], p[3]) end
      table.sort(rs, function(a, b) return a.rps < b.rps end)
      local r = rs[2]
      local errs = {}
      for e, cnt in pairs(r.errors) do errs[#errs + 1] = cnt .. "x " .. e end
      say(("| %s | %s | %d | %d | %.0f | %.2f | %.2f | %.0f | %s |"):format(v, p[1], r.n, r.c, r.rps, r.p50, r.p99,
        r.loop_cpu_us, #errs > 0 and table.concat(errs, "; ") or "-"))
    end
  end

  local dc = json.decode(get("/decode_cost?n=" .. (quick and 5 or 20)))
  say("")
  say(("core.decode of one big page (%d bytes) in the worker's VM: %.1f ms of event-loop CPU"):format(dc.bytes,
    dc.decode_ms))

  -- blocking behaviour: the API answers after 1 s; 20 requests at once; /ping meanwhile
  api:control{ delay = 1 }
  say("")
  say("## With the API answering after 1 s: 20 concurrent requests, /ping (content_by_lua) meanwhile")
  say("")
  say("| path | 20 requests took (s) | /ping p50 ms | /ping p99 ms | /ping max ms | pings |")
  say("| --- | ---: | ---: | ---: | ---: | ---: |")
  for _, v in ipairs{ "thread", "subreq", "client", "blocking" } do
    local loadf, pingf = dir .. "/load.json", dir .. "/ping.txt"
    local urls = {}
    for _ = 1, 60 do urls[#urls + 1] = sh(base .. "/ping") end
    local n = v == "blocking" and 4 or 20 -- 20 blocking requests would stall 20 s
    os.execute(CLEAN .. "curl -s -m 120 " .. sh(("%s/run?variant=%s&kind=history&n=%d&c=%d"):format(base, v, n, n))
      .. " >" .. sh(loadf) .. " & sleep 0.1; " .. CLEAN
      .. "curl -s -m 60 --rate 30/s -o /dev/null -w '%{time_total}\\n' "
      .. table.concat(urls, " ") .. " >" .. sh(pingf) .. "; wait")
    local r = json.decode(server.read_file(loadf))
    local pings = {}
    for t in (server.read_file(pingf) or ""):gmatch("[%d.]+") do pings[#pings + 1] = tonumber(t) * 1000 end
    table.sort(pings)
    local function pct(p) return pings[math.max(1, math.ceil(#pings * p))] or 0 end
    say(("| %s | %.2f (%d requests) | %.1f | %.1f | %.1f | %d |"):format(v, r.wall, n, pct(0.5), pct(0.99),
      pings[#pings] or 0, #pings))
  end
  api:control{ delay = 0 }
  write(dir .. "/report.md", table.concat(out, "\n") .. "\n")
end)
cleanup()
if not ok then error(err, 0) end
