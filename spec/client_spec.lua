-- The client end to end against the local MDE-like server (real nginx, real TLS).
local mde = require "mde"
local server = require "spec.helpers.server"
local helpers = require "spec.helpers.client"

local SEED_SESSION = "01decc497f4b4ec49a5fc4e12597f8c8"
local SEED_DEFINITION = "4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae"

describe("mde client against the local server", function()
  local s

  setup(function() s = server.start{} end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  local function new(extra) return helpers.new(s, extra) end

  describe("scan_history_by_session", function()
    it("returns the seed session with the API's field names and integer counts", function()
      local client = new()
      local sessions, err = client:scan_history_by_session({ SEED_SESSION })
      assert.is_nil(err)
      assert.equal(1, #sessions)
      local r = sessions[1]
      assert.equal(SEED_SESSION, r.SessionIds)
      assert.equal(SEED_DEFINITION, r.ScanDefinitionIds)
      assert.equal("Success", r.ScanStatus)
      assert.equal("2022-12-19T15:14:24.5561791Z", r.LastScanned)
      assert.equal(3, r.NumberOfTargets)
      assert.equal(3, r.NumberOfSuccessfullyScannedTargets)
      if math.type then
        assert.equal("integer", math.type(r.NumberOfTargets))
        assert.equal("integer", math.type(r.NumberOfSuccessfullyScannedTargets))
      end
      assert.equal(3, #r.ListScannedTargets)
      assert.same({ "127.0.0.1", "127.0.0.2", "127.0.0.3" },
                  { r.ListScannedTargets[1].Ip, r.ListScannedTargets[2].Ip, r.ListScannedTargets[3].Ip })
      assert.equal("DESKTOP-Test", r.ListScannedTargets[1].Hostname)
      assert.equal("", r.ListScannedTargets[1].ErrorMessage)
    end)

    -- the C core does it as it decodes (the request's `lists`); for a transport that does
    -- not (applies_lists unset: here one that drops `lists`), the Lua layer does
    local core = require "mde.core"
    for _, how in ipairs{ "mde.core, as it decodes", "the Lua layer, after a transport that does not" } do
      it("always gives ListScannedTargets as a list: one object wrapped, absent or null empty (" .. how .. ")",
        function()
        local body = '{"value":['
          .. '{"SessionIds":"a","ListScannedTargets":{"Ip":"10.0.0.1","Hostname":"h1","ScanStatus":"Success"}},'
          .. '{"SessionIds":"b"},'
          .. '{"SessionIds":"c","ListScannedTargets":null},'
          .. '{"SessionIds":"d","ListScannedTargets":[{"Ip":"10.0.0.2"},{"Ip":"10.0.0.3"}]}]}'
        s:control{ faults = { { route = "history_by_session", status = 200, body = body,
                                content_type = "application/json", count = 1 } } }
        local extra, seen
        if how:find("Lua", 1, true) then
          local h = core.new()
          extra = { transport = { send = function(_, req)
            local copy = {}
            for k, v in pairs(req) do copy[k] = v end
            seen = seen or copy.lists
            copy.lists = nil
            return h:perform(copy)
          end } }
        end
        local sessions = assert(new(extra):scan_history_by_session{ "a", "b", "c", "d" })
        if extra then assert.equal("ListScannedTargets", seen) end
        assert.equal(4, #sessions)
        assert.same({ { Ip = "10.0.0.1", Hostname = "h1", ScanStatus = "Success" } }, sessions[1].ListScannedTargets)
        assert.same({}, sessions[2].ListScannedTargets)
        assert.same({}, sessions[3].ListScannedTargets)
        assert.equal(2, #sessions[4].ListScannedTargets)
      end)
    end

    it("takes one ID as a string and sends the body the API documents", function()
      local client = new()
      local sessions = assert(client:scan_history_by_session(SEED_SESSION))
      assert.equal(1, #sessions)
      local seen = s:stats().requests
      local last = seen[#seen]
      assert.equal("POST", last.method)
      assert.matches("/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId", last.uri, 1, true)
      assert.same({ SessionIds = { SEED_SESSION } }, require("cjson").decode(last.body))
    end)

    it("fetches one token for many calls", function()
      local client = new()
      for _ = 1, 5 do assert(client:scan_history_by_session(SEED_SESSION)) end
      local st = s:stats()
      assert.equal(1, st.token.requests)
    end)

    it("returns an empty list for unknown sessions", function()
      local sessions, err = new():scan_history_by_session({ "ffffffffffffffffffffffffffffffff" })
      assert.is_nil(err)
      assert.same({}, sessions)
    end)

    it("rejects bad IDs before sending anything", function()
      local client = new()
      for _, bad in ipairs{ {}, 42, { 1, 2 }, "", { "a", "" }, { x = "y" } } do
        local r, err = client:scan_history_by_session(bad)
        assert.is_nil(r)
        assert.equal("invalid_argument", err.kind)
      end
      assert.equal(0, s:stats().token.requests)
    end)

    it("splits long lists into batches and keeps the order", function()
      local client = new{ batch_size = 2 }
      local ids = { "s0000000000000000000000000000005", SEED_SESSION, "s0000000000000000000000000000003" }
      local sessions = assert(client:scan_history_by_session(ids))
      assert.equal(3, #sessions)
      for i, id in ipairs(ids) do assert.equal(id, sessions[i].SessionIds) end
    end)
  end)

  describe("errors", function()
    local function fault(f)
      f.route = f.route or "history_by_session"
      s:control{ faults = { f } }
    end

    it("gives an http error with the API's code, message and request id", function()
      fault{ status = 400, count = 1,
             body = '{"error":{"code":"InvalidRequestBody","message":"bad","target":"rid-7"}}' }
      local r, err = new():scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.same({ "http", 400, "InvalidRequestBody", "bad", "rid-7" },
                  { err.kind, err.status, err.code, err.message, err.request_id })
      assert.matches("InvalidRequestBody", tostring(err), 1, true)
    end)

    for _, case in ipairs{ { 404, "http" }, { 403, "auth" }, { 500, "http" }, { 503, "http" } } do
      it("maps status " .. case[1] .. " to kind " .. case[2], function()
        fault{ status = case[1], count = 10 }
        local r, err = new{ retries = 1 }:scan_history_by_session(SEED_SESSION)
        assert.is_nil(r)
        assert.equal(case[2], err.kind)
        assert.equal(case[1], err.status)
      end)
    end

    it("retries a 503 and succeeds", function()
      fault{ status = 503, count = 2 }
      local sessions = assert(new{ retries = 3 }:scan_history_by_session(SEED_SESSION))
      assert.equal(1, #sessions)
    end)

    it("reports the seed's invalid sample JSON as a decode error", function()
      fault{ mode = "seed", count = 1 }
      local r, err = new():scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("decode", err.kind)
      assert.equal(200, err.status)
    end)

    it("reports an empty 200 body as a decode error", function()
      fault{ mode = "empty", count = 1 }
      local r, err = new():scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("decode", err.kind)
    end)

    it("times out on a slow server", function()
      fault{ delay = 3, count = 5 }
      local t0 = os.time()
      local r, err = new{ timeout = 0.5, retries = 0 }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("timeout", err.kind)
      assert.is_true(os.time() - t0 <= 2)
    end)

    it("refuses bodies over max_body", function()
      fault{ mode = "huge", size = 2 * 1024 * 1024, count = 1 }
      local r, err = new{ max_body = 1024 * 1024 }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("too_large", err.kind)
    end)

    it("reports a dropped connection as a network error", function()
      fault{ mode = "reset", count = 10 }
      local r, err = new{ retries = 1 }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("network", err.kind)
    end)

    it("rejects an unknown CA", function()
      local r, err = new{ ca_file = s.other_ca_file }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("tls", err.kind)
    end)

    it("gives auth errors for a wrong secret, with the AADSTS code and without the secret", function()
      local r, err = new{ client_secret = "wrong-secret-value" }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("auth", err.kind)
      assert.equal("AADSTS7000215", err.code)
      assert.is_nil(tostring(err):find("wrong-secret-value", 1, true))
    end)
  end)

  describe("options", function()
    it("rejects unknown and mistyped options", function()
      local c, err = mde.new{ client_secret = "s", tenant_id = "t", client_id = "c", timeout = "5" }
      assert.is_nil(c)
      assert.equal("invalid_argument", err.kind)
      assert.matches("'timeout'", err.message, 1, true)
      c, err = mde.new{ client_secret = "s", tenant_id = "t", client_id = "c", colour = "red" }
      assert.is_nil(c)
      assert.matches("unknown option 'colour'", err.message, 1, true)
    end)

    it("shows a proxy without its password", function()
      local client = new{ proxy = "http://svc:Pr0xyPassw0rd@127.0.0.1:3128" }
      assert.equal("http://svc:<redacted>@127.0.0.1:3128", client.options.proxy)
    end)

    it("takes a transport object without a clock of its own", function()
      local core = require "mde.core"
      local h = core.new()
      local client = new{ transport = { send = function(_, req) return h:perform(req) end } }
      assert.equal(1, #assert(client:scan_history_by_session(SEED_SESSION)))
      h:close()
    end)

    it("never shows a secret in tostring(client)", function()
      local client = new{ client_secret = "super-secret-123" }
      assert.is_nil(tostring(client):find("super-secret-123", 1, true))
      for _, v in pairs(client) do assert.is_nil(tostring(v):find("super-secret-123", 1, true)) end
    end)
  end)

  describe("request", function()
    it("returns status, headers and a decoded body", function()
      local resp = assert(new():request("POST", "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId",
        { body = { SessionIds = { SEED_SESSION } } }))
      assert.equal(200, resp.status)
      assert.matches("json", resp.headers["content-type"])
      assert.equal(SEED_SESSION, resp.body.value[1].SessionIds)
    end)

    -- a client reuses one request table and one call state from call to call: nothing of
    -- one call may reach the next, and a call made in the middle of another (here from the
    -- logger) gets its own
    it("keeps every call's request its own, also when a call runs inside another", function()
      local client, inner
      client = new{ logger = function(e)
        if e.type == "request" and e.url:find("GetScanHistoryBySessionId", 1, true) and not inner then
          inner = assert(client:scan_agents())
        end
      end }
      local resp = assert(client:request("POST", "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId",
        { body = { SessionIds = { SEED_SESSION } } }))
      assert.equal(SEED_SESSION, resp.body.value[1].SessionIds)
      assert.is_true(#inner > 0)
      local agents = assert(client:scan_agents())
      assert.same(inner, agents)
      local recs = assert(client:scan_history_by_session(SEED_SESSION))
      assert.equal(SEED_SESSION, recs[1].SessionIds)
      local seen = s:requests()
      local methods, bodies = {}, {}
      for _, r in ipairs(seen) do
        if r.route ~= "token" then
          methods[#methods + 1], bodies[#bodies + 1] = r.route .. " " .. r.method, r.body_length > 0
        end
      end
      assert.same({ "agents GET", "history_by_session POST", "agents GET", "history_by_session POST" }, methods)
      assert.same({ false, true, false, true }, bodies)
    end)

    it("lets a client that made calls be collected (every Lua: no ephemerons on 5.1 and LuaJIT)", function()
      local weak = setmetatable({}, { __mode = "v" })
      do
        local client = new()
        assert(client:scan_history_by_session(SEED_SESSION))
        assert(client:scan_agents())
        weak[1] = client
      end
      for _ = 1, 4 do collectgarbage() end
      assert.is_nil(weak[1])
    end)

    it("refuses to send the token to another host", function()
      local r, err = new():request("GET", s.alt_base_url .. "/api/DeviceAuthenticatedScanAgents")
      assert.is_nil(r)
      assert.equal("unsafe_redirect", err.kind)
    end)
  end)
end)
