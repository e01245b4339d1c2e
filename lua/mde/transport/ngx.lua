--- The nginx transport: the same C core as mde.transport.curl, run in nginx's thread pool so
-- the event loop never waits for the network.
--
-- `require("mde")` inside nginx picks this transport (mde.client's default_transport). A
-- request goes to `ngx.run_worker_thread(pool, "mde.transport.ngx_thread", "send", req)`:
-- libcurl's blocking transfer runs on a thread of the pool, in one of nginx's worker-thread
-- Lua VMs, which keeps one mde.core handle (keep-alive, TLS sessions) between calls; the
-- request's coroutine yields meanwhile and every other request of the worker goes on. The
-- body comes back as a string and is decoded here by core.decode (the one decoder, the same
-- rule as mde.core's: JSON content types only): cheaper for the event loop than copying
-- decoded tables out of the thread's VM.
-- Why this path and not a subrequest or cosockets: README.md, "OpenResty", and
-- bench/nginx_paths.lua (the measurements).
--
-- Needs in nginx.conf (main context):  thread_pool default threads=32;
-- (another pool: `transport = require("mde.transport.ngx").new{ thread_pool = "mde" }`).
--
-- Phases: rewrite, access, content and timers use the thread pool. In init and init_worker
-- (nothing is served by that VM yet, and nginx cannot yield there) a request runs blocking on
-- a fresh handle that is closed at once, so no connection is inherited by forked workers.
-- Elsewhere (log, header/body filters, set_by_lua, balancer, ssl_*) nothing can wait: send
-- answers with an invalid_argument failure. Like every transport it only moves bytes: auth,
-- pacing and retries are mde.pipeline's.
--
-- send_all (the batches of one call at once, mde.pipeline's call_all) runs one light thread per
-- request. Nothing of a request is kept in this module or in the transport object: the
-- object holds the pool name only, and may be shared by every request of a worker.

local setmetatable, type, tostring, error = setmetatable, type, tostring, error
local min = math.min
local find = string.find

local ngx = ngx
local get_phase = ngx.get_phase
local ngx_now, update_time, ngx_sleep = ngx.now, ngx.update_time, ngx.sleep
local run_worker_thread = ngx.run_worker_thread
local spawn, wait_thread = ngx.thread.spawn, ngx.thread.wait

local core = require "mde.core"
local decode = core.decode

local M = {}
M.name = "ngx"

--- The module the worker-thread VMs run.
M.THREAD_MODULE = "mde.transport.ngx_thread"

--- The thread pool used unless new{ thread_pool = } says otherwise.
M.DEFAULT_POOL = "default"

--- The name of the lua_shared_dict picked up automatically (see default_store).
M.DICT = "mde"

-- where a request can yield (ngx.run_worker_thread, ngx.sleep)
local YIELDING = { rewrite = true, server_rewrite = true, access = true, content = true, timer = true }
-- before a worker serves anything: blocking is allowed
local STARTUP = { init = true, init_worker = true }

-- waiting for a free worker-thread VM (lua_worker_thread_vm_pool_size, 100 by default)
local VM_WAIT_FIRST, VM_WAIT_MAX = 0.002, 0.05


--- Current time in seconds (wall clock, shared by every worker: pacing compares it across them).
function M.now()
  update_time()
  return ngx_now()
end


--- Wait without blocking the worker. Where nginx cannot yield, startup phases block (nothing
-- is served yet) and the other phases do not wait at all (send refuses to run there).
function M.sleep(s)
  if s ~= s or s <= 0 then return end -- (NaN too)
  local phase = get_phase()
  if YIELDING[phase] then
    return ngx_sleep(s)
  end
  if STARTUP[phase] then
    return core.sleep(s)
  end
end


-- mde.core's own rule: application/json or type/subtype+json, any case, parameters allowed
local is_json = core.is_json
M.is_json = is_json


-- resp.body (a string) -> decoded in place when the content type is JSON, as mde.core does
local function decode_body(resp, lists)
  local ct = resp.headers and resp.headers["content-type"]
  if type(ct) ~= "string" or not is_json(ct) then return resp end
  local body = resp.body
  if body == nil or body == "" then
    resp.decode_error = "empty body"
    return resp
  end
  local v, err = decode(body, lists)
  if err ~= nil then
    resp.decode_error = err
  else
    resp.body = v
  end
  return resp
end


local function config_failure(msg)
  return nil, { kind = "invalid_argument", message = msg }
end


-- What ngx.run_worker_thread's own failure message means (ok == false: nginx could not run
-- the task, or could not copy its result).
local function thread_failure(pool, msg)
  msg = tostring(msg)
  if find(msg, "thread pool", 1, true) and find(msg, "not found", 1, true) then
    return config_failure(("nginx has no thread pool '%s': add `thread_pool %s threads=32;` to the main "
      .. "context of nginx.conf"):format(pool, pool))
  end
  if find(msg, "module", 1, true) and find(msg, "not found", 1, true) then
    -- lua_package_path / lua_package_cpath do not reach lua/ or mde/core.so
    return config_failure("nginx's worker-thread Lua VM cannot load " .. M.THREAD_MODULE
      .. " (check lua_package_path and lua_package_cpath): " .. msg)
  end
  return nil, { kind = "network", message = "nginx worker thread: " .. msg }
end


local function thread_send(pool, req)
  local deadline = M.now() + (req.timeout or 30)
  local wait = VM_WAIT_FIRST
  -- bounded: each round waits at least VM_WAIT_FIRST, the whole loop at most req.timeout
  for _ = 1, 100000 do
    local ok, resp, facts = run_worker_thread(pool, M.THREAD_MODULE, "send", req)
    if ok then
      if resp == nil and type(facts) == "table" and facts.raised then
        -- mde.core raised in the thread (a malformed request: a bug, as with mde.transport.curl)
        error(facts.raised, 0)
      end
      if resp and req.decode ~= false then decode_body(resp, req.lists) end
      return resp, facts
    end
    if resp ~= "no available Lua vm" then
      return thread_failure(pool, resp)
    end
    -- every VM of the pool is busy: wait a little for one
    local left = deadline - M.now()
    if left <= 0 then
      return nil, { kind = "timeout",
        message = "no free nginx worker-thread Lua VM within the timeout (raise lua_worker_thread_vm_pool_size)" }
    end
    ngx_sleep(min(wait, left))
    wait = min(wait * 2, VM_WAIT_MAX)
  end
  return nil, { kind = "timeout", message = "no free nginx worker-thread Lua VM" }
end


-- init / init_worker: a blocking transfer on a handle of its own, closed at once.
local function startup_send(req)
  local h = core.new()
  local ok, resp, facts = pcall(h.perform, h, req)
  h:close()
  if not ok then error(resp, 0) end
  return resp, facts
end


local Transport = {}
Transport.__index = Transport
Transport.applies_lists = true -- (req.lists: see mde.core)
Transport.now = M.now
Transport.sleep = M.sleep


--- A transport. opts (optional): thread_pool = name of an nginx `thread_pool` ("default").
function M.new(opts)
  local pool = M.DEFAULT_POOL
  if opts ~= nil then
    if type(opts) ~= "table" then error("mde.transport.ngx.new: opts must be a table", 2) end
    for k in pairs(opts) do
      if k ~= "thread_pool" then error("mde.transport.ngx.new: unknown option '" .. tostring(k) .. "'", 2) end
    end
    if opts.thread_pool ~= nil then
      if type(opts.thread_pool) ~= "string" or opts.thread_pool == "" then
        error("mde.transport.ngx.new: thread_pool must be a non-empty string", 2)
      end
      pool = opts.thread_pool
    end
  end
  return setmetatable({ pool = pool }, Transport)
end


--- req -> resp | nil, facts (see mde.core); never blocks a serving worker.
function Transport:send(req)
  local phase = get_phase()
  if YIELDING[phase] then
    return thread_send(self.pool, req)
  end
  if STARTUP[phase] then
    return startup_send(req)
  end
  return config_failure(("cannot call the API in nginx's %s phase (nothing can wait there): "
    .. "call it from rewrite, access or content, or from a timer (ngx.timer.at)"):format(tostring(phase)))
end


--- Several requests in flight at once (the batches of one call, mde.pipeline's call_all): one
-- light thread per request, each waiting for its own worker thread. Returns a list of
-- { resp = ..., facts = ... } in request order. Where nginx cannot yield, one after the other.
function Transport:send_all(reqs)
  local out = {}
  if #reqs < 2 or not YIELDING[get_phase()] then
    for i = 1, #reqs do
      local resp, facts = self:send(reqs[i])
      out[i] = { resp = resp, facts = facts }
    end
    return out
  end
  local threads = {}
  for i = 1, #reqs do
    threads[i] = spawn(thread_send, self.pool, reqs[i])
  end
  local raised
  for i = 1, #reqs do
    -- every thread is waited for, even after one raised (a malformed request: a bug)
    local ok, resp, facts = wait_thread(threads[i])
    if ok then
      out[i] = { resp = resp, facts = facts }
    elseif raised == nil then
      raised = resp
    end
  end
  if raised ~= nil then error(raised, 0) end
  return out
end


--- Nothing to release here: the connections belong to the worker-thread VMs' handles.
function Transport.close()
end


--- The store mde.new uses in nginx when none is given: the lua_shared_dict named `mde` when
-- there is one (token cache and rate limit shared by every worker), else a store of this
-- worker alone (with a warning in the error log when there are several workers).
function M.default_store()
  return require("mde.store.ngx").default(M.DICT)
end
Transport.default_store = M.default_store


return M
