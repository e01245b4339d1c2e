--- Shared state behind a small interface: the token cache and the pacing
-- windows live here. The default store is an in-process table shared by every
-- client of the process; `mde.store.ngx` (OpenResty) keeps the same interface
-- over a `lua_shared_dict`, so every worker shares one token and one budget.
--
-- Interface of a store `s` (all values are strings, numbers or booleans):
--   s:get(key)                 -> value | nil
--   s:set(key, value, ttl)     -- ttl in seconds; nil or 0 keeps it until replaced
--   s:delete(key)
--   s:incr(key, n, init, ttl)  -> new value (atomic add; init when the key is absent)
--   s:lock(key, timeout)       -> unlock function | nil, err   (exclusive section)
-- and, only in a store that lives in this Lua state (pacing then reads and writes that
-- table directly instead of going through get/set: see mde.pacing):
--   s:budget(key)              -> a table of its own for the pacing budget `key`

local setmetatable = setmetatable

local M = {}

local Store = {}
Store.__index = Store


--- A new in-process store. `now` returns the current time in seconds.
function M.new(now)
  return setmetatable({ data = {}, expires = {}, budgets = {}, now = now or os.time }, Store)
end


function Store:budget(key)
  local b = self.budgets[key]
  if not b then
    b = {}
    self.budgets[key] = b
  end
  return b
end


function Store:get(key)
  local exp = self.expires[key]
  if exp and exp <= self.now() then
    self.data[key], self.expires[key] = nil, nil
    return nil
  end
  return self.data[key]
end


function Store:set(key, value, ttl)
  self.data[key] = value
  self.expires[key] = (ttl and ttl > 0) and (self.now() + ttl) or nil
end


function Store:delete(key)
  self.data[key], self.expires[key] = nil, nil
end


function Store:incr(key, n, init, ttl)
  local v = self:get(key)
  if v == nil then
    v = init or 0
    self.expires[key] = (ttl and ttl > 0) and (self.now() + ttl) or nil
  end
  v = v + n
  self.data[key] = v
  return v
end


local function nothing() end

-- One Lua state runs one thing at a time, and nothing in a section yields.
function Store.lock()
  return nothing
end


local default

--- The process-wide store (created on first use).
function M.default(now)
  if not default then default = M.new(now) end
  return default
end


return M
