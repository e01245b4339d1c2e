--- Client-side pacing: at most `limit` requests in any `window` seconds, for
-- every window given, enforced before a request leaves (a sliding log).
--
-- Each window keeps a ring of the last `limit` departure times in the store;
-- request number k may leave no sooner than the departure of request k - limit
-- plus the window. Departure times never decrease, so no window of `window`
-- seconds ever holds more than `limit` departures. A 429 from the service
-- blocks every request of the same budget until its Retry-After has passed.
--
-- Two ways to keep that state: a store that lives in this Lua state (the default
-- mde.store) hands out a plain table per budget (`store:budget(key)`), so pacing costs a
-- few table reads per request; any other store (mde.store.ngx: every nginx worker shares
-- the budget) goes through its get/set interface under its lock.

local tostring, type, setmetatable = tostring, type, setmetatable
local max = math.max

local M = {}

M.DEFAULT = { { limit = 100, window = 60 }, { limit = 1500, window = 3600 } }

-- A departure leaves this much later than the strict bound, so that clock
-- jitter between us and the service never lets one request too many in.
local MARGIN = 0.05


-- The store keys of a budget, made once: key -> { lock, blocked, [window] = { seq, slot = {} } }
-- (a request would otherwise build a dozen strings just to name them)
local KEYS = {}

local function keys_of(key)
  local k = KEYS[key]
  if not k then
    k = { lock = key .. ":lock", blocked = key .. ":blocked" }
    KEYS[key] = k
  end
  return k
end

-- a ring per (limit, window): two windows of one length but different limits never share one
local function window_keys(k, key, w)
  local id = tostring(w.limit) .. "/" .. tostring(w.window)
  local wk = k[id]
  if not wk then
    local prefix = key .. ":" .. id .. ":"
    wk = { seq = prefix .. "seq", prefix = prefix, slot = {} }
    k[id] = wk
  end
  return wk
end

local function slot_key(wk, i)
  local s = wk.slot[i]
  if not s then
    s = wk.prefix .. i
    wk.slot[i] = s
  end
  return s
end


-- In-process budgets --------------------------------------------------------------------
-- budget = { blocked = time | nil, [limit] = { [window] = ring }, rings = { [windows list] = its rings } },
-- ring = { seq = requests so far, [0 .. limit - 1] = departure (or end) times }

local function ring_of(b, w)
  local by_limit = b[w.limit]
  if not by_limit then
    by_limit = {}
    b[w.limit] = by_limit
  end
  local ring = by_limit[w.window]
  if not ring then
    ring = { seq = 0 }
    by_limit[w.window] = ring
  end
  return ring
end

-- the rings of a windows list, looked up once per list (weak: a client's list goes with it)
local function rings_of(b, windows)
  local memo = b.rings
  if not memo then
    memo = setmetatable({}, { __mode = "k" })
    b.rings = memo
  end
  local rings = memo[windows]
  if not rings then
    rings = {}
    for i = 1, #windows do rings[i] = ring_of(b, windows[i]) end
    memo[windows] = rings
  end
  return rings
end

local function reserve_local(b, windows, now, max_wait)
  local t = now
  local blocked = b.blocked
  if blocked and blocked > t then t = blocked end
  local rings = rings_of(b, windows)
  for i = 1, #windows do
    local w, ring = windows[i], rings[i]
    local prev = ring[ring.seq % w.limit]
    if prev then
      prev = prev + w.window + MARGIN
      if prev > t then t = prev end
    end
  end
  local wait = t - now
  if wait > max_wait then return nil, wait end
  -- ticket: ring, slot, ring, slot, ... (for settle)
  local ticket = {}
  for i = 1, #windows do
    local w, ring = windows[i], rings[i]
    local seq = ring.seq
    local slot = seq % w.limit
    ring[slot], ring.seq = t, seq + 1
    ticket[2 * i - 1], ticket[2 * i] = ring, slot
  end
  return wait, ticket
end


-- Shared stores ---------------------------------------------------------------------------

--- Reserve a departure time for one request.
-- @param store  a store (mde.store)
-- @param key    the budget (application and tenant: the service counts per app)
-- @param windows list of { limit, window }
-- @param now    current time in seconds
-- @param max_wait the longest wait the caller accepts
-- @return wait (seconds, >= 0) and a ticket for `settle`, or nil and the wait that would be needed
-- (or nil, 0 and a message when the store could not be locked)
function M.reserve(store, key, windows, now, max_wait)
  if store.budget then return reserve_local(store:budget(key), windows, now, max_wait) end
  local k = keys_of(key)
  local unlock, err = store:lock(k.lock, max_wait)
  if not unlock then return nil, 0, err or "lock failed" end
  local t = now
  local blocked = store:get(k.blocked)
  if blocked and blocked > t then t = blocked end
  local seqs = {}
  for i = 1, #windows do
    local w = windows[i]
    local wk = window_keys(k, key, w)
    local seq = store:get(wk.seq) or 0
    seqs[i] = seq
    local prev = store:get(slot_key(wk, seq % w.limit))
    if prev then t = max(t, prev + w.window + MARGIN) end
  end
  local wait = t - now
  if wait > max_wait then
    unlock()
    return nil, wait
  end
  local ticket = {}
  for i = 1, #windows do
    local w = windows[i]
    local wk = window_keys(k, key, w)
    local slot = slot_key(wk, seqs[i] % w.limit)
    store:set(slot, t, w.window + 1 + wait)
    store:set(wk.seq, seqs[i] + 1, w.window + 1 + wait)
    ticket[i] = slot
    ticket[-i] = w.window + 1
  end
  unlock()
  return wait, ticket
end


--- The request of `ticket` is over at `t`: the service saw it no later than that, so its
-- slots count from then (a slow network or a slow process must not let the next request
-- of the window arrive early).
function M.settle(store, ticket, t)
  if type(ticket[1]) == "table" then -- an in-process budget's
    for i = 1, #ticket, 2 do
      local ring, slot = ticket[i], ticket[i + 1]
      local cur = ring[slot]
      if cur and cur < t then ring[slot] = t end
    end
    return
  end
  for i = 1, #ticket do
    local slot = ticket[i]
    local cur = store:get(slot)
    if cur and cur < t then store:set(slot, t, ticket[-i]) end
  end
end


--- The service said 429: hold every request of this budget until `until_time`.
function M.block(store, key, until_time, now)
  if store.budget then
    local b = store:budget(key)
    if not b.blocked or b.blocked < until_time then b.blocked = until_time end
    return
  end
  local bkey = keys_of(key).blocked
  local cur = store:get(bkey)
  if not cur or cur < until_time then
    store:set(bkey, until_time, until_time - now + 1)
  end
end


--- Check a `rate_limit` option. Returns the windows list, or nil and a message.
function M.check(opt)
  if opt == nil then return M.DEFAULT end
  if opt == false then return false end
  if type(opt) ~= "table" then return nil, "must be a list of { limit = N, window = seconds } or false" end
  if #opt == 0 then return nil, "is an empty list (use false to turn pacing off)" end
  local out = {}
  for i = 1, #opt do
    local w = opt[i]
    if type(w) ~= "table" then return nil, ("[%d] must be a table { limit = N, window = seconds }"):format(i) end
    for k in pairs(w) do
      if k ~= "limit" and k ~= "window" then return nil, ("[%d] has an unknown key '%s'"):format(i, tostring(k)) end
    end
    local limit, window = w.limit, w.window
    if type(limit) ~= "number" or limit < 1 or limit % 1 ~= 0 then
      return nil, ("[%d].limit must be a positive whole number"):format(i)
    end
    if type(window) ~= "number" or window <= 0 then
      return nil, ("[%d].window must be a positive number of seconds"):format(i)
    end
    out[i] = { limit = limit, window = window }
  end
  return out
end


return M
