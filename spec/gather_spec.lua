-- mde.gather: calls of several clients (tenants) in flight at once, against the local server.
local mde = require "mde"
local core = require "mde.core"
local server = require "spec.helpers.server"
local helpers = require "spec.helpers.client"

local SEED_SESSION = "01decc497f4b4ec49a5fc4e12597f8c8"
-- plain Lua 5.1 cannot yield across pcall: there gather runs the functions one after the other
local CONCURRENT = not (_VERSION == "Lua 5.1" and not rawget(_G, "jit"))

describe("mde.gather", function()
  local s

  setup(function()
    -- three tenants, an app registered in each
    local clients = {}
    for _, t in ipairs{ "contoso", "fabrikam", "northwind" } do clients["app-" .. t] = { secret = "s", tenant = t } end
    s = server.start{ workers = 2,
                      control = { tenants = { "t", "contoso", "fabrikam", "northwind" }, clients = clients } }
  end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  local function tenant(name) return helpers.new(s, { tenant_id = name, client_id = "app-" .. name }) end

  -- API calls of a tenant's app to a route, from the server's request log: by route, because
  -- the server counts a request when it logs it, after the answer, and the last call of the
  -- test before may be logged after this test's reset
  local function calls(name, route)
    return #s:requests{ client = name .. "/app-" .. name, route = route }
  end

  it("runs the calls of several tenants at once, each with its own token, results in order", function()
    s:control{ delay = 0.3 }
    local a, b, c = tenant("contoso"), tenant("fabrikam"), tenant("northwind")
    local t0 = core.now()
    local results = assert(mde.gather({
      function() return a:scan_history_by_session(SEED_SESSION) end,
      function() return b:scan_agents() end,
      function() return c:scan_definitions() end,
      function() return a:scan_agents() end,
    }, { concurrency = 8 }))
    local elapsed = core.now() - t0
    assert.equal(4, #results)
    assert.equal(SEED_SESSION, results[1][1][1].SessionIds)
    assert.is_true(#results[2][1] > 0)
    assert.is_true(#results[3][1] > 0)
    assert.same(results[2][1], results[4][1])
    for i = 1, 4 do assert.equal(1, results[i].n) end
    assert.equal(1, calls("contoso", "history_by_session"))
    assert.equal(1, calls("contoso", "agents"))
    assert.equal(1, calls("fabrikam", "agents"))
    assert.equal(1, calls("northwind", "definitions"))
    assert.equal(3, s:stats().token.issued)
    if CONCURRENT then
      -- the three token requests at once, then the four calls at once: about 2 x 0.3 s (one by
      -- one the calls alone would take 1.2 s)
      assert.is_true(elapsed < 0.9, ("took %.2f s"):format(elapsed))
    end
  end)

  it("gives each function's nil, err, and the others their results", function()
    local good, bad = tenant("contoso"), helpers.new(s, { tenant_id = "contoso", client_id = "unknown-app" })
    local results = assert(mde.gather{
      function() return bad:scan_agents() end,
      function() return good:scan_agents() end,
      function() return good:scan_history_by_session{} end,
    })
    assert.is_nil(results[1][1])
    assert.equal("auth", results[1][2].kind)
    assert.is_true(#results[2][1] > 0)
    assert.is_nil(results[3][1])
    assert.equal("invalid_argument", results[3][2].kind)
  end)

  it("runs batched calls of one function with the calls of the others", function()
    s:control{ delay = 0.2 }
    local a, b = tenant("contoso"), tenant("fabrikam")
    local ids = {}
    for i = 1, 6 do ids[i] = ("s%031d"):format(i) end
    local results = assert(mde.gather({
      function() return a:scan_history_by_session(ids, { batch_size = 2 }) end,
      function() return b:scan_history_by_session(SEED_SESSION) end,
    }, { concurrency = 8 }))
    local got = {}
    for i, r in ipairs(results[1][1]) do got[i] = r.SessionIds end
    assert.same(ids, got)
    assert.equal(SEED_SESSION, results[2][1][1].SessionIds)
    assert.equal(3, calls("contoso", "history_by_session"))
  end)

  it("pages the batches of one call together (all = true), records in the order of the IDs", function()
    s:control{ delay = 0.1 }
    local c = helpers.new(s, { batch_size = 1, page_size = 10, concurrency = 4 })
    local defs = { "bulk-30", "bulk-31", "bulk-32", "bulk-33" }
    local t0 = core.now()
    local records = assert(c:scan_history_by_definition(defs, { all = true }))
    local elapsed = core.now() - t0
    assert.equal(30 + 31 + 32 + 33, #records)
    local k = 0
    for _, def in ipairs(defs) do
      local n = tonumber(def:match("%d+"))
      for _ = 1, n do
        k = k + 1
        assert.equal(def, records[k].ScanDefinitionIds)
      end
    end
    local pages = 0
    for _, r in ipairs(s:requests{ route = "history_by_definition" }) do
      if r.status == 200 then pages = pages + 1 end
    end
    assert.equal(15, pages) -- 3 + 4 + 4 + 4
    if CONCURRENT then
      -- 15 pages in 4 waves: ~0.4 s (the first pages at once and the rest one by one: 1.2 s)
      assert.is_true(elapsed < 0.9, ("took %.2f s"):format(elapsed))
    end
  end)

  it("raises what a function raises", function()
    local a = tenant("contoso")
    local ok, err = pcall(mde.gather, {
      function() return a:scan_agents() end,
      function() error("boom", 0) end,
    })
    assert.is_false(ok)
    assert.equal("boom", err)
  end)

  it("refuses a function that yields on its own", function()
    local ok, err = pcall(mde.gather, { function() coroutine.yield("mine") end })
    assert.is_false(ok)
    -- (one after the other, on plain 5.1, the yield itself fails)
    assert.matches(CONCURRENT and "only the calls of mde clients may yield" or "yield", err, 1, true)
  end)

  it("checks its arguments", function()
    local cases = { { "x" }, { { 1 } }, { {}, 5 }, { {}, { concurrency = 0 } }, { {}, { concurrency = 1.5 } } }
    for _, case in ipairs(cases) do
      local r, err = mde.gather(case[1], case[2])
      assert.is_nil(r)
      assert.equal("invalid_argument", err.kind)
    end
    assert.same({}, mde.gather{})
  end)

  it("leaves calls outside a gathering as they were, also in a coroutine of one's own", function()
    local a = tenant("contoso")
    local co = coroutine.wrap(function() return a:scan_agents() end)
    assert.is_true(#co() > 0)
  end)
end)
