--- A store (see mde.store) over an nginx `lua_shared_dict`: every worker of nginx sees the same
-- token cache and the same rate-limit windows, so they share one token and one budget.
--
--   lua_shared_dict mde 1m;                                  # nginx.conf, http context
--   local client = mde.new{ ..., store = assert(require("mde.store.ngx").new("mde")) }
--
-- A dict named `mde` is picked up without the store option (mde.transport.ngx's
-- default_store). 1 MB holds the token and both default windows (100/min and 1,500/h: about
-- 1,600 small entries) of a few applications.
--
-- incr is the dict's atomic incr. lock(key, timeout) is `add` of a key private to the holder
-- (with an expiry, so a worker that dies holding it cannot block the others for longer),
-- retried after short ngx.sleep steps (1 ms doubling up to 20 ms) for at most `timeout`
-- seconds; unlock deletes the key if it is still the holder's.
--
-- Without any shared dict, `default()` gives a store of the worker alone (a Lua table with the
-- same interface and a lock that waits with ngx.sleep): correct with one worker, but with
-- several each has its own token and budget, hence a warning in the error log.

local setmetatable, type, tostring, pairs = setmetatable, type, tostring, pairs
local min, ceil = math.min, math.ceil

local ngx = ngx
local ngx_now, update_time, ngx_sleep, get_phase = ngx.now, ngx.update_time, ngx.sleep, ngx.get_phase

local M = {}

--- Default expiry of a lock key (seconds): the longest a lock can outlive a dead holder.
M.LOCK_TTL = 60

local LOCK_STEP_FIRST, LOCK_STEP_MAX = 0.001, 0.02

-- phases where ngx.sleep may run
local YIELDING = { rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
                   ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true }

local function now()
  update_time()
  return ngx_now()
end


-- lock owner ids: unique per worker (pid) and per lock taken
local lock_seq = 0
local function owner_id()
  lock_seq = lock_seq + 1
  return tostring(ngx.worker.pid()) .. ":" .. lock_seq
end


local Store = {}
Store.__index = Store


function Store:get(key)
  return (self.dict:get(key))
end


--- ttl in seconds (fractions allowed); nil or 0 keeps the value until it is replaced.
function Store:set(key, value, ttl)
  local ok, err = self.dict:set(key, value, (ttl and ttl > 0) and ttl or 0)
  if not ok then
    ngx.log(ngx.ERR, "mde.store.ngx: cannot set a key of lua_shared_dict '", self.name, "': ", err)
  end
end


function Store:delete(key)
  self.dict:delete(key)
end


--- Atomic add: init (default 0) + n when the key is absent (and then ttl applies).
function Store:incr(key, n, init, ttl)
  local v, err = self.dict:incr(key, n, init or 0, (ttl and ttl > 0) and ttl or nil)
  if v == nil then
    ngx.log(ngx.ERR, "mde.store.ngx: cannot incr a key of lua_shared_dict '", self.name, "': ", err)
  end
  return v
end


--- An exclusive section across workers. Returns an unlock function, or nil and
-- "timeout" (held by another for longer than `timeout` seconds) or the dict's error.
-- Where nginx cannot yield (init_worker, log, ...) it does not wait: nil, "busy".
function Store:lock(key, timeout)
  local dict, id, ttl = self.dict, owner_id(), self.lock_ttl
  local ok, err = dict:add(key, id, ttl)
  if not ok then
    if err ~= "exists" then return nil, err end
    if not YIELDING[get_phase()] then return nil, "busy" end
    timeout = timeout or 0
    local deadline = now() + timeout
    local step = LOCK_STEP_FIRST
    -- bounded: every round sleeps at least LOCK_STEP_FIRST, the whole loop at most `timeout`
    for _ = 1, ceil(timeout / LOCK_STEP_FIRST) + 1 do
      local left = deadline - now()
      if left <= 0 then break end
      ngx_sleep(min(step, left))
      step = min(step * 2, LOCK_STEP_MAX)
      ok, err = dict:add(key, id, ttl)
      if ok then break end
      if err ~= "exists" then return nil, err end
    end
    if not ok then return nil, "timeout" end
  end
  return function()
    -- nothing yields between the get and the delete
    if dict:get(key) == id then dict:delete(key) end
  end
end


--- A store over the lua_shared_dict `name`. opts (optional): lock_ttl (seconds, default 60).
-- Returns the store, or nil and a message when nginx has no such dict.
function M.new(name, opts)
  if type(name) ~= "string" or name == "" then
    return nil, "mde.store.ngx.new: the name of a lua_shared_dict is needed"
  end
  local dict = ngx.shared[name]
  if not dict then
    return nil, ("mde.store.ngx.new: nginx has no lua_shared_dict '%s' (add `lua_shared_dict %s 1m;` "
      .. "to the http context of nginx.conf)"):format(name, name)
  end
  local lock_ttl = M.LOCK_TTL
  if opts ~= nil then
    if type(opts) ~= "table" then return nil, "mde.store.ngx.new: opts must be a table" end
    for k in pairs(opts) do
      if k ~= "lock_ttl" then return nil, "mde.store.ngx.new: unknown option '" .. tostring(k) .. "'" end
    end
    if opts.lock_ttl ~= nil then
      if type(opts.lock_ttl) ~= "number" or opts.lock_ttl ~= opts.lock_ttl or opts.lock_ttl <= 0 then
        return nil, "mde.store.ngx.new: lock_ttl must be a positive number of seconds"
      end
      lock_ttl = opts.lock_ttl
    end
  end
  return setmetatable({ dict = dict, name = name, lock_ttl = lock_ttl }, Store)
end


-- A table with the part of the shared-dict API the store uses, for one worker.
local LocalDict = {}
LocalDict.__index = LocalDict

function LocalDict:get(key)
  local exp = self.expires[key]
  if exp and exp <= now() then
    self.data[key], self.expires[key] = nil, nil
    return nil
  end
  return self.data[key]
end

function LocalDict:set(key, value, ttl)
  self.data[key] = value
  self.expires[key] = (ttl and ttl > 0) and (now() + ttl) or nil
  return true
end

function LocalDict:add(key, value, ttl)
  if self:get(key) ~= nil then return false, "exists" end
  return self:set(key, value, ttl)
end

function LocalDict:delete(key)
  self.data[key], self.expires[key] = nil, nil
end

function LocalDict:incr(key, n, init, ttl)
  local v = self:get(key)
  if v == nil then
    self:set(key, (init or 0) + n, ttl)
    return (init or 0) + n
  end
  v = v + n
  self.data[key] = v
  return v
end


--- A store of this worker alone (no shared dict): same interface, and a lock that waits.
function M.worker()
  return setmetatable({ dict = setmetatable({ data = {}, expires = {} }, LocalDict), name = "(worker)",
                        lock_ttl = M.LOCK_TTL }, Store)
end


-- one store per dict name (or the worker's) per worker: every client of the worker shares it
local defaults = {}
local warned = false

--- The store mde.new uses in nginx without a `store` option: over the dict `name` when nginx
-- has it, else the worker's own store (logged once per worker when there are several).
function M.default(name)
  local key = (name and ngx.shared[name]) and name or false
  local s = defaults[key]
  if s then return s end
  if key then
    s = M.new(name)
  else
    s = M.worker()
    if not warned and ngx.worker.count() > 1 then
      warned = true
      ngx.log(ngx.WARN, "mde: no lua_shared_dict '", tostring(name), "' (and no `store` option): each of the ",
        ngx.worker.count(), " workers keeps its own token and rate-limit budget; add `lua_shared_dict ",
        tostring(name), " 1m;` to share them")
    end
  end
  defaults[key] = s
  return s
end


M.Store = Store

return M
