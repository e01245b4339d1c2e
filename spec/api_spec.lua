-- Every endpoint of the authenticated-scan family, paging and batching, against the local server.
local mde = require "mde"
local core = require "mde.core"
local server = require "spec.helpers.server"
local helpers = require "spec.helpers.client"
local cjson = require "cjson"

local data = server.data
local SEED_SESSION = "01decc497f4b4ec49a5fc4e12597f8c8"
local SEED_DEF = "4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae"
local DEF2 = "7f3c2a10-5b6e-4d8f-9a1b-2c3d4e5f6a70"
local AGENT1 = "0d9f5a2e-8c41-4b7a-9e36-5f2a1c7d8e01"

describe("authenticated-scan API", function()
  local s

  setup(function() s = server.start{} end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  local function new(extra) return helpers.new(s, extra) end

  local function api_requests(route)
    local out = {}
    for _, r in ipairs(s:stats().requests) do
      if r.route == route then out[#out + 1] = r end
    end
    return out
  end

  describe("scan history by definition", function()
    it("returns one page with top/skip, as the API gives it", function()
      local client = new()
      local page = assert(client:scan_history_by_definition(SEED_DEF, { top = 5, skip = 2 }))
      assert.equal(5, #page)
      local reqs = api_requests("history_by_definition")
      assert.equal(1, #reqs)
      assert.matches("%$top=5", reqs[1].uri)
      assert.matches("%$skip=2", reqs[1].uri)
      assert.same({ ScanDefinitionIds = { SEED_DEF } }, cjson.decode(reqs[1].body))
      -- newest first, the third newest is j = 2
      assert.equal(data.session_id(1, 2), page[1].SessionIds)
    end)

    it("returns every page with all = true (nextLink paging)", function()
      s:control{ page_cap = 7 }
      local all = assert(new():scan_history_by_definition(SEED_DEF, { all = true }))
      assert.equal(41, #all)
      local seen = {}
      for _, r in ipairs(all) do
        assert.is_nil(seen[r.SessionIds], "duplicate " .. r.SessionIds)
        seen[r.SessionIds] = true
        assert.is_table(r.ListScannedTargets)
      end
    end)

    it("pages with $top/$skip until a short page when the API gives no nextLink", function()
      s:control{ paging = "topskip" }
      local all = assert(new{ page_size = 10 }:scan_history_by_definition({ SEED_DEF, DEF2 }, { all = true }))
      assert.equal(81, #all)
      assert.equal(9, #api_requests("history_by_definition")) -- 8 full pages and a short one
    end)

    it("sends whole numbers as integers, whatever their Lua subtype", function()
      assert(new():scan_history_by_definition(SEED_DEF, { top = 10.0, skip = 20.0 }))
      local uri = api_requests("history_by_definition")[1].uri
      assert.matches("%$top=10&", uri .. "&")
      assert.matches("%$skip=20&", uri .. "&")
    end)

    it("rejects a top over 4096 before sending", function()
      local r, err = new():scan_history_by_definition(SEED_DEF, { top = 5000 })
      assert.is_nil(r)
      assert.equal("invalid_argument", err.kind)
      r, err = new():scan_history_by_definition(SEED_DEF, { all = true, top = 5 })
      assert.is_nil(r)
      assert.equal("invalid_argument", err.kind)
      r, err = new():scan_history_by_definition(SEED_DEF, { colour = 1 })
      assert.is_nil(r)
      assert.matches("unknown option 'colour'", err.message, 1, true)
    end)
  end)

  describe("batching", function()
    it("costs ceil(N / batch_size) calls and keeps the order", function()
      local ids = {}
      for k = 1, 23 do ids[k] = data.synthetic_session_id(100 + k) end
      local sessions = assert(new{ batch_size = 5 }:scan_history_by_session(ids))
      assert.equal(23, #sessions)
      for k = 1, 23 do assert.equal(ids[k], sessions[k].SessionIds) end
      assert.equal(5, #api_requests("history_by_session"))
    end)

    it("keeps several batches in flight at once, results in order", function()
      s:control{ delay = 0.4 }
      local ids = {}
      for k = 1, 40 do ids[k] = data.synthetic_session_id(500 + k) end
      local client = new{ batch_size = 5, concurrency = 4 }
      assert(client:scan_history_by_session(ids[1])) -- the token, outside the timing
      local t0 = require("mde.core").now()
      local sessions = assert(client:scan_history_by_session(ids))
      local elapsed = require("mde.core").now() - t0
      assert.equal(40, #sessions)
      for k = 1, 40 do assert.equal(ids[k], sessions[k].SessionIds) end
      assert.equal(9, #api_requests("history_by_session"))
      -- 8 batches, 4 at a time: two rounds of 0.4 s, not eight
      assert.is_true(elapsed < 1.6, ("took %.2f s"):format(elapsed))
    end)

    it("takes a last wave narrower than the first (6 batches, 4 at a time)", function()
      local ids = {}
      for k = 1, 30 do ids[k] = data.synthetic_session_id(700 + k) end
      local client = new{ batch_size = 5, concurrency = 4 }
      for _ = 1, 2 do -- the second call reuses the handles of the first
        local sessions = assert(client:scan_history_by_session(ids))
        assert.equal(30, #sessions)
        for k = 1, 30 do assert.equal(ids[k], sessions[k].SessionIds) end
      end
    end)

    it("retries a failed batch of a concurrent call on its own", function()
      s:control{ faults = { { route = "history_by_session", status = 503, skip = 2, count = 1 } } }
      local ids = {}
      for k = 1, 12 do ids[k] = data.synthetic_session_id(900 + k) end
      local sessions = assert(new{ batch_size = 3, concurrency = 4 }:scan_history_by_session(ids))
      for k = 1, 12 do assert.equal(ids[k], sessions[k].SessionIds) end
      assert.equal(5, #api_requests("history_by_session"))
    end)

    it("returns one record per ID, however the IDs are batched", function()
      local id = data.synthetic_session_id(42)
      local sessions = assert(new{ batch_size = 1 }:scan_history_by_session{ id, SEED_SESSION, id })
      assert.equal(2, #sessions)
      assert.equal(id, sessions[1].SessionIds)
      assert.equal(SEED_SESSION, sessions[2].SessionIds)
    end)

    it("surfaces MaximumBatchSizeExceeded clearly", function()
      s:control{ max_batch = 3 }
      local ids = {}
      for k = 1, 4 do ids[k] = data.synthetic_session_id(k) end
      local r, err = new{ batch_size = 4 }:scan_history_by_session(ids)
      assert.is_nil(r)
      assert.equal("http", err.kind)
      assert.equal(400, err.status)
      assert.equal("MaximumBatchSizeExceeded", err.code)
      assert.matches("allowed", tostring(err))
    end)
  end)

  describe("definitions and agents", function()
    it("lists scan definitions with camelCase fields, secrets present in the data", function()
      local defs = assert(new():scan_definitions())
      assert.equal(5, #defs)
      local seed
      for _, d in ipairs(defs) do if d.id == SEED_DEF then seed = d end end
      assert.equal("Network", seed.scanType)
      assert.is_boolean(seed.isActive)
      assert.is_number(seed.intervalInHours)
      if math.type then assert.equal("integer", math.type(seed.intervalInHours)) end
      assert.is_string(seed.scanAuthenticationParams.authPassword)
      local safe = mde.redact(seed)
      assert.equal("<redacted>", safe.scanAuthenticationParams.authPassword)
      assert.equal(seed.scanAuthenticationParams.username, safe.scanAuthenticationParams.username)
    end)

    it("keeps JSON null as mde.null", function()
      local def = assert(new():scan_definition("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"))
      assert.equal(mde.null, def.scanAuthenticationParams)
    end)

    it("gets one definition and reports a missing one as 404", function()
      local client = new()
      local def = assert(client:scan_definition(DEF2))
      assert.equal(DEF2, def.id)
      local r, err = client:scan_definition("00000000-0000-0000-0000-000000000000")
      assert.is_nil(r)
      assert.equal(404, err.status)
      assert.equal("http", err.kind)
    end)

    it("escapes IDs in paths", function()
      local r, err = new():scan_definition("no such/id %20?")
      assert.is_nil(r)
      assert.equal(404, err.status)
      local last = s:stats().requests
      assert.matches("/api/DeviceAuthenticatedScanDefinitions/no%20such%2Fid%20%2520%3F", last[#last].uri, 1, true)
    end)

    it("lists and gets scan agents", function()
      local client = new()
      local agents = assert(client:scan_agents())
      assert.equal(3, #agents)
      local a = assert(client:scan_agent(AGENT1))
      assert.equal("896226a67c5e2917e44fb5c0368dc6c83129c5bf", a.machineId)
      local all = assert(client:scan_agents{ all = true })
      assert.equal(3, #all)
    end)

    it("creates, updates and deletes scan definitions", function()
      local client = new()
      local def = {
        scanType = "Network", scanName = "lua-mde test", isActive = true, target = "10.1.1.1",
        intervalInHours = 8, targetType = "Ip",
        scannerAgent = { machineId = "896226a67c5e2917e44fb5c0368dc6c83129c5bf" },
        scanAuthenticationParams = { ["@odata.type"] = "#microsoft.windowsDefenderATP.api.SnmpAuthParams",
          type = "CommunityString", communityString = "S3cr3t-test-community" },
      }
      local created = assert(client:create_scan_definition(def))
      assert.is_string(created.id)
      assert.equal("lua-mde test", created.scanName)
      local updated = assert(client:update_scan_definition(created.id, { scanName = "renamed", intervalInHours = 12 }))
      assert.equal("renamed", updated.scanName)
      assert.equal(12, updated.intervalInHours)
      local req = api_requests("update_definition")[1]
      assert.equal("PATCH", req.method)
      assert(client:delete_scan_definitions{ created.id })
      local del = api_requests("batch_delete")[1]
      assert.same({ ScanDefinitionIds = { created.id } }, cjson.decode(del.body))
      local r, err = client:scan_definition(created.id)
      assert.is_nil(r)
      assert.equal(404, err.status)
    end)

    it("checks definitions before sending", function()
      local client = new()
      local r, err = client:create_scan_definition{ scanName = "x" }
      assert.is_nil(r)
      assert.equal("invalid_argument", err.kind)
      assert.matches("missing required field", err.message)
      r, err = client:update_scan_definition("id", {})
      assert.is_nil(r)
      assert.equal("invalid_argument", err.kind)
      r, err = client:delete_scan_definitions({})
      assert.is_nil(r)
      assert.equal("invalid_argument", err.kind)
      assert.equal(0, s:stats().api.total)
    end)

    it("never retries create, update or delete", function()
      s:control{ faults = { { route = "create_definition", status = 503, count = 5 },
                            { route = "batch_delete", status = 503, count = 5 } } }
      local client = new{ retries = 3 }
      local r, err = client:create_scan_definition{ scanType = "Network", scanName = "x", isActive = true,
        target = "10.0.0.1", intervalInHours = 1, targetType = "Ip", scannerAgent = { machineId = "m" },
        scanAuthenticationParams = { type = "CommunityString" } }
      assert.is_nil(r)
      assert.equal(503, err.status)
      r = client:delete_scan_definitions{ "a" }
      assert.is_nil(r)
      assert.equal(1, #api_requests("create_definition"))
      assert.equal(1, #api_requests("batch_delete"))
    end)
  end)

  describe("the older GET form", function()
    it("stays reachable through client:request", function()
      local resp = assert(new():request("GET", "/api/DeviceAuthenticatedScanDefinitions/ScanHistoryBySessionId",
        { query = { sessionId = SEED_SESSION } }))
      assert.equal(200, resp.status)
      assert.is_table(resp.body)
    end)
  end)

  describe("pages and each", function()
    local PATH = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId"

    it("streams pages, sending the body again for every page", function()
      s:control{ page_cap = 10 }
      local client = new{ page_size = 10 }
      local sizes = {}
      for page in client:pages("POST", PATH, { body = { ScanDefinitionIds = { SEED_DEF } } }) do
        sizes[#sizes + 1] = #page
        assert.is_true(#sizes <= 10)
      end
      assert.same({ 10, 10, 10, 10, 1 }, sizes)
      for _, r in ipairs(api_requests("history_by_definition")) do
        assert.same({ ScanDefinitionIds = { SEED_DEF } }, cjson.decode(r.body))
      end
    end)

    it("yields items one at a time, with ListScannedTargets always a list", function()
      local n = 0
      for item in new{ page_size = 16 }:each("POST", PATH, { body = { ScanDefinitionIds = { DEF2 } } }) do
        n = n + 1
        assert.is_table(item.ListScannedTargets)
        assert.is_true(n <= 40)
      end
      assert.equal(40, n)
    end)

    it("ends with the nextLink chain even when the last page is full", function()
      s:control{ page_cap = 10 }
      local seen, n = {}, 0
      for item in new{ page_size = 10 }:each("POST", PATH, { body = { ScanDefinitionIds = { "bulk-20" } } }) do
        n = n + 1
        assert.is_nil(seen[item.SessionIds])
        seen[item.SessionIds] = true
        assert.is_true(n <= 40)
      end
      assert.equal(20, n)
    end)

    it("stops with an error when the service ignores $skip", function()
      local page = '{"value":[{"id":"a"},{"id":"b"}]}'
      s:control{ faults = { { route = "agents", status = 200, body = page, content_type = "application/json" } } }
      local n = 0
      local ok, err = pcall(function()
        for _ in new{ page_size = 2 }:each("GET", "/api/DeviceAuthenticatedScanAgents") do
          n = n + 1
          assert.is_true(n <= 20)
        end
      end)
      assert.is_false(ok)
      assert.equal("PagingLoop", err.code)
      assert.equal(2, n)
    end)

    it("follows a nextLink relative to the request URL", function()
      local page = '{"value":[{"id":"first"}],"@odata.nextLink":"DeviceAuthenticatedScanAgents?$skip=1"}'
      s:control{ faults = { { route = "agents", status = 200, body = page, content_type = "application/json",
                              count = 1 } } }
      local ids = {}
      for item in new():each("GET", "/api/DeviceAuthenticatedScanAgents") do
        ids[#ids + 1] = item.id
        assert.is_true(#ids <= 10)
      end
      assert.equal("first", ids[1])
      assert.equal(3, #ids) -- then agents 2 and 3 of the server, from $skip=1
    end)

    it("stops with an error when nextLink loops", function()
      s:control{ paging = "loop", page_cap = 5 }
      local n = 0
      local ok, err = pcall(function()
        for _ in new():each("POST", PATH, { body = { ScanDefinitionIds = { SEED_DEF } } }) do
          n = n + 1
          assert.is_true(n <= 100)
        end
      end)
      assert.is_false(ok)
      assert.equal("http", err.kind)
      assert.equal("PagingLoop", err.code)
      assert.is_true(n <= 10)
    end)

    it("refuses a nextLink to another host and never sends it the token", function()
      s:control{ paging = "foreign", page_cap = 5 }
      local ok, err = pcall(function()
        for _ in new():pages("POST", PATH, { body = { ScanDefinitionIds = { SEED_DEF } } }) do end
      end)
      assert.is_false(ok)
      assert.equal("unsafe_redirect", err.kind)
      local st = s:stats()
      assert.equal(0, (st.hosts.localhost or { auth = 0 }).auth)
    end)

    it("follows $top/$skip when $top suppresses nextLink", function()
      s:control{ paging = "topcut", page_cap = 6 }
      local n = 0
      for _ in new{ page_size = 6 }:each("POST", PATH, { body = { ScanDefinitionIds = { SEED_DEF } } }) do
        n = n + 1
        assert.is_true(n <= 100)
      end
      assert.equal(41, n)
    end)

    it("raises the error object of a failed page", function()
      s:control{ page_cap = 5, faults = { { route = "history_by_definition", skip = 2, status = 500, count = 10 } } }
      local n = 0
      local ok, err = pcall(function()
        for _ in new{ retries = 0 }:each("POST", PATH, { body = { ScanDefinitionIds = { SEED_DEF } } }) do
          n = n + 1
        end
      end)
      assert.is_false(ok)
      assert.equal(500, err.status)
      assert.equal(10, n)
    end)

    it("refuses bad arguments by raising invalid_argument", function()
      local ok, err = pcall(function() return new():pages("FETCH", PATH) end)
      assert.is_false(ok)
      assert.equal("invalid_argument", err.kind)
    end)
  end)

  describe("pages known ahead (@odata.count)", function()
    -- the agents route answering with a JSON `body`, once
    local function agents_fault(body)
      return { route = "agents", status = 200, body = body, content_type = "application/json", count = 1 }
    end

    local function skips(route)
      local out = {}
      for _, r in ipairs(api_requests(route)) do out[#out + 1] = tonumber(r.uri:match("%$skip=(%d+)")) or 0 end
      table.sort(out)
      return out
    end

    it("fetches the other pages `concurrency` at a time when the total is asked for ($count=true)", function()
      s:control{ delay = 0.1 }
      local c = new{ page_size = 10, concurrency = 4 }
      local t0 = core.now()
      local all = assert(c:scan_history_by_definition("bulk-95", { all = true, query = { ["$count"] = "true" } }))
      local elapsed = core.now() - t0
      assert.equal(95, #all)
      for i = 1, 95 do assert.equal(data.bulk_session_id(95, i - 1), all[i].SessionIds) end
      assert.same({ 0, 10, 20, 30, 40, 50, 60, 70, 80, 90 }, skips("history_by_definition"))
      for _, r in ipairs(api_requests("history_by_definition")) do assert.matches("%$count=true", r.uri) end
      -- the first page, then 9 in waves of 4: 4 x 0.1 s (one after the other: 1 s)
      assert.is_true(elapsed < 0.75, ("took %.2f s"):format(elapsed))
    end)

    it("uses a total the service gives unasked, with or without nextLinks, and not with concurrency 1", function()
      for _, paging in ipairs{ "nextlink", "topskip" } do
        s:reset()
        s:control{ odata_count = "always", paging = paging }
        local all = assert(new{ page_size = 10 }:scan_history_by_definition("bulk-40", { all = true }))
        assert.equal(40, #all)
        assert.equal(data.bulk_session_id(40, 39), all[40].SessionIds)
        -- exactly the 4 pages: no request past the total to find the end
        assert.same({ 0, 10, 20, 30 }, skips("history_by_definition"))
      end
      s:reset()
      s:control{ odata_count = "always", delay = 0.05 }
      local t0 = core.now()
      assert.equal(40, #assert(new{ page_size = 10, concurrency = 1 }:scan_history_by_definition("bulk-40",
        { all = true })))
      assert.is_true(core.now() - t0 >= 0.2) -- one page after the other
    end)

    it("stops at the first short page when the total overstates", function()
      local first = '{"@odata.count":40,"value":[{"id":"x1"},{"id":"x2"}]}'
      -- (past the short page, a page the list must not take)
      local late = agents_fault('{"value":[{"id":"late"}]}')
      late.uri, late.count = "$skip=4", nil
      s:control{ faults = { agents_fault(first), late } }
      local all = assert(new{ page_size = 2 }:scan_agents{ all = true })
      assert.same({ "x1", "x2", AGENT1:sub(1, -2) .. "3" }, { all[1].id, all[2].id, all[3].id })
      assert.equal(3, #all)
      assert.is_true(#api_requests("agents") <= 5) -- the first page and one wave of 4
    end)

    it("computes nothing when the first page does not keep to $top", function()
      s:control{ faults = { agents_fault('{"@odata.count":6,"value":[{"id":"a"},{"id":"b"},{"id":"c"}]}') } }
      local all = assert(new{ page_size = 2 }:scan_agents{ all = true })
      assert.same({ "a", "b", "c" }, { all[1].id, all[2].id, all[3].id })
      assert.equal(3, #all) -- then $skip=3: past the server's 3 agents
      for _, r in ipairs(api_requests("agents")) do assert.is_nil(r.uri:match("%$skip=2")) end
    end)

    it("goes on page by page when the last counted page is full and brings a nextLink", function()
      local first = '{"@odata.count":2,"value":[{"id":"x"}],"@odata.nextLink":"'
        .. s.base_url .. '/api/DeviceAuthenticatedScanAgents?$top=1&$skip=1"}'
      s:control{ faults = { agents_fault(first) } }
      local all = assert(new{ page_size = 1 }:scan_agents{ all = true })
      assert.same({ "x", AGENT1:sub(1, -2) .. "2", AGENT1:sub(1, -2) .. "3" }, { all[1].id, all[2].id, all[3].id })
      assert.equal(3, #all)
    end)

    it("follows a nextLink of another form instead of computing pages", function()
      local first = '{"@odata.count":3,"value":[{"id":"x"}],"@odata.nextLink":"'
        .. s.base_url .. '/api/DeviceAuthenticatedScanAgents?$top=1&$skiptoken=abc"}'
      s:control{ faults = { agents_fault(first) } }
      local all = assert(new{ page_size = 1 }:scan_agents{ all = true })
      assert.equal("x", all[1].id)
      local reqs = api_requests("agents")
      assert.matches("%$skiptoken=abc", reqs[2].uri)
      for i = 3, #reqs do assert.is_nil(reqs[i].uri:match("%$skiptoken")) end
    end)

    it("stops with the paging-loop error when the service ignores $skip", function()
      local always = agents_fault('{"@odata.count":10,"value":[{"id":"a"},{"id":"b"}]}')
      always.count = nil
      s:control{ faults = { always } }
      local all, err = new{ page_size = 2 }:scan_agents{ all = true }
      assert.is_nil(all)
      assert.equal("PagingLoop", err.code)
      assert.is_true(#api_requests("agents") <= 5)
    end)

    it("hands back the error of a page that fails, and no partial list", function()
      s:control{ odata_count = "always",
                 faults = { { route = "history_by_definition", status = 404, skip = 2, count = 1 } } }
      local all, err = new{ page_size = 10 }:scan_history_by_definition("bulk-40", { all = true })
      assert.is_nil(all)
      assert.equal(404, err.status)
    end)
  end)

  describe("sessions through filters", function()
    it("walks the sessions of definitions and keeps those that match", function()
      local client = new{ page_size = 7 }
      local failed = assert(client:sessions({ SEED_DEF, DEF2 }, { status = "Failed", since = "2024-06-01" }))
      assert.is_true(#failed > 0)
      for _, r in ipairs(failed) do
        assert.equal("Failed", r.ScanStatus)
        assert.is_true(r.LastScanned >= "2024-06-01")
      end
      -- the same, by hand
      local all = assert(client:scan_history_by_definition({ SEED_DEF, DEF2 }, { all = true }))
      local want = mde.filter.apply(all, mde.filter{ status = "Failed", since = "2024-06-01" })
      assert.equal(#want, #failed)
    end)

    it("selects by every filter key, as checked record by record", function()
      local defs = { SEED_DEF, DEF2, "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b" }
      local client = new{ page_size = 50 }
      local all = assert(client:scan_history_by_definition(defs, { all = true }))
      local function any_target(r, pred)
        for _, t in ipairs(r.ListScannedTargets) do if pred(t) then return true end end
        return false
      end
      local cases = {
        { { status = "partial success" }, function(r) return r.ScanStatus == "Partial Success" end },
        { { status = { "Failed", "PartialSuccess" } }, function(r) return r.ScanStatus ~= "Success" end },
        { { session = { data.session_id(1, 3), data.session_id(2, 7) } },
          function(r) return r.SessionIds == data.session_id(1, 3) or r.SessionIds == data.session_id(2, 7) end },
        { { definition = DEF2 }, function(r) return r.ScanDefinitionIds == DEF2 end },
        { { since = "2024-06-25T00:00:00Z", before = 1719446400 }, -- 2024-06-27T00:00:00Z
          function(r) -- whole seconds compare as text; a fraction only makes a time later
            local t = r.LastScanned:sub(1, 19)
            return t >= "2024-06-25T00:00:00" and t < "2024-06-27T00:00:00"
          end },
        { { target = "fd00::/8" }, function(r) return any_target(r, function(t) return t.Ip:find(":") end) end },
        { { target = "10.0.0.0/8" }, function(r) return any_target(r, function(t) return t.Ip:match("^10%.") end) end },
        { { hostname = "printer-*" },
          function(r) return any_target(r, function(t) return t.Hostname:match("^printer%-") end) end },
        { { failed_targets = true },
          function(r) return any_target(r, function(t) return t.ScanStatus ~= "Success" end) end },
      }
      for _, case in ipairs(cases) do
        local criteria, expect = case[1], case[2]
        local got = assert(client:sessions(defs, criteria))
        local want = {}
        for _, r in ipairs(all) do if expect(r) then want[#want + 1] = r.SessionIds end end
        local ids = {}
        for _, r in ipairs(got) do ids[#ids + 1] = r.SessionIds end
        assert.is_true(#want > 0 and #want < #all, "case not selective: " .. next(criteria))
        assert.same(want, ids, "criteria: " .. next(criteria))
      end
    end)

    it("rejects bad criteria before sending", function()
      local r, err = new():sessions(SEED_DEF, { stauts = "Failed" })
      assert.is_nil(r)
      assert.equal("invalid_argument", err.kind)
      assert.matches("stauts", err.message)
    end)
  end)
end)
