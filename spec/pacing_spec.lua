local pacing = require "mde.pacing"
local storemod = require "mde.store"

-- A simulated clock: pacing is checked against time it computes, not time that passes.
local function clock()
  local t = 1000
  return function() return t end, function(dt) t = t + dt end
end

-- The default store keeps budgets as plain tables (store:budget); any other store goes
-- through get/set under its lock (mde.store.ngx). Every case runs on both.
local function shared_store(now)
  local s = storemod.new(now)
  return setmetatable({}, { __index = function(_, k)
    if k == "budget" then return nil end
    local v = s[k]
    if type(v) == "function" then return function(_, ...) return v(s, ...) end end
    return v
  end })
end

for _, kind in ipairs{ "in-process", "shared" } do
local store = kind == "in-process" and storemod or { new = shared_store }
describe("mde.pacing (" .. kind .. " budgets)", function()
  it("lets `limit` requests through at once, then spaces them by the window", function()
    local now, advance = clock()
    local s = store.new(now)
    local windows = { { limit = 3, window = 10 } }
    for _ = 1, 3 do assert.equal(0, pacing.reserve(s, "k", windows, now(), 100)) end
    local wait = pacing.reserve(s, "k", windows, now(), 100)
    assert.near(10.05, wait, 1e-9)
    advance(wait)
    assert.near(0, pacing.reserve(s, "k", windows, now(), 100), 1e-9)
  end)

  it("never puts more than `limit` departures in any window (two windows)", function()
    local now, advance = clock()
    local s = store.new(now)
    local windows = { { limit = 5, window = 1 }, { limit = 12, window = 10 } }
    local departures = {}
    for i = 1, 60 do
      local wait = assert(pacing.reserve(s, "k", windows, now(), 1e6))
      departures[i] = now() + wait
      if i % 3 == 0 then advance(0.01) end
    end
    for _, w in ipairs(windows) do
      for i = 1, #departures do
        local n = 0
        for j = i, #departures do
          if departures[j] < departures[i] + w.window then n = n + 1 end
        end
        assert.is_true(n <= w.limit, ("window %g holds %d > %d"):format(w.window, n, w.limit))
      end
    end
  end)

  it("refuses a wait past the caller's bound without using up the budget", function()
    local now = clock()
    local s = store.new(now)
    local windows = { { limit = 1, window = 60 } }
    assert.equal(0, pacing.reserve(s, "k", windows, now(), 5))
    local ok, needed = pacing.reserve(s, "k", windows, now(), 5)
    assert.is_nil(ok)
    assert.near(60.05, needed, 1e-9)
    -- the refused call took no slot: a patient caller still waits only one window
    assert.near(60.05, pacing.reserve(s, "k", windows, now(), 100), 1e-9)
  end)

  it("counts a slot from the end of its request once settled", function()
    local now, advance = clock()
    local s = store.new(now)
    local windows = { { limit = 1, window = 10 } }
    local wait, ticket = pacing.reserve(s, "k", windows, now(), 100)
    assert.equal(0, wait)
    advance(3) -- a slow request: the service may have seen it only now
    pacing.settle(s, ticket, now())
    assert.near(10.05, pacing.reserve(s, "k", windows, now(), 100), 1e-9)
  end)

  it("keeps windows of one length but different limits apart", function()
    local now = clock()
    local s = store.new(now)
    for _ = 1, 3 do assert.equal(0, pacing.reserve(s, "k", { { limit = 3, window = 10 } }, now(), 100)) end
    -- another client of the same app with a stricter list: its own ring, its own verdict
    local windows = { { limit = 1, window = 10 } }
    assert.equal(0, pacing.reserve(s, "k", windows, now(), 100))
    assert.near(10.05, pacing.reserve(s, "k", windows, now(), 100), 1e-9)
  end)

  it("draws backoff jitter from the system, different in every process", function()
    local cmd = [[lua5.4 -e 'package.path="lua/?.lua;"..package.path; ]]
      .. [[package.cpath="build/lua5.4/?.so;"..package.cpath; print(require("mde.pipeline").random())' 2>&1]]
    local function draw() local p = io.popen(cmd); local v = p:read("*a"); p:close(); return v end
    local a, b = draw(), draw()
    assert.truthy(tonumber(a), a)
    assert.not_equal(a, b)
  end)

  it("holds every request of a budget after a 429", function()
    local now = clock()
    local s = store.new(now)
    pacing.block(s, "k", now() + 30, now())
    assert.near(30, pacing.reserve(s, "k", pacing.DEFAULT, now(), 100), 1e-9)
    assert.near(0, pacing.reserve(s, "other", pacing.DEFAULT, now(), 100), 1e-9)
  end)

  it("checks the rate_limit option", function()
    assert.same(pacing.DEFAULT, pacing.check(nil))
    assert.is_false(pacing.check(false))
    assert.same({ { limit = 2, window = 1 } }, pacing.check{ { limit = 2, window = 1 } })
    local cases = {
      { "x", "must be a list" }, { {}, "empty list" }, { { 5 }, "[1] must be a table" },
      { { { limit = 0, window = 1 } }, "[1].limit" }, { { { limit = 1, window = -1 } }, "[1].window" },
      { { { limit = 1.5, window = 1 } }, "[1].limit" },
      { { { limit = 1, window = 1, burst = 2 } }, "unknown key 'burst'" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pacing.check(c[1])
      assert.is_nil(ok)
      assert.matches(c[2], err, 1, true)
    end
  end)
end)
end
