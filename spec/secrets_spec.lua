-- Seed every kind of secret, drive the library through successes and failures,
-- and grep everything it produced: log events, errors, tostring of every object.
local mde = require "mde"
local core = require "mde.core"
local server = require "spec.helpers.server"

local SEED_SESSION = "01decc497f4b4ec49a5fc4e12597f8c8"
local SECRET = "CliEnt-S3cr3t-value-0042"

-- Everything reachable from v, as text (tables walked, keys and values, bounded depth).
local function dump(v, out, seen, depth)
  out, seen, depth = out or {}, seen or {}, depth or 0
  if type(v) == "table" then
    if seen[v] or depth > 20 then return out end
    seen[v] = true
    out[#out + 1] = tostring(v)
    for k, x in pairs(v) do
      dump(k, out, seen, depth + 1)
      dump(x, out, seen, depth + 1)
    end
  else
    out[#out + 1] = tostring(v)
  end
  return out
end

describe("secrets", function()
  local s

  setup(function() s = server.start{} end)
  teardown(function() if s then s:stop() end end)

  it("are scrubbed as literals only when long enough not to garble ordinary text", function()
    s:reset()
    local events = {}
    local client = assert(mde.new{ base_url = s.base_url, authority = s.authority, tenant_id = "t",
      client_id = "c", client_secret = "s", ca_file = s.ca_file, rate_limit = false,
      store = require("mde.store").new(core.now), logger = function(e) events[#events + 1] = e end })
    assert(client:scan_history_by_session(SEED_SESSION))
    local types = {}
    for _, e in ipairs(events) do types[#types + 1] = e.type end
    assert.same({ "request", "response", "token", "request", "response" }, types)
  end)

  it("never appear in log events, errors or tostring", function()
    s:reset()
    s:control{ clients = { c2 = { secret = SECRET } } }
    local produced = {}
    local function logger(e) produced[#produced + 1] = e end
    local function keep(...) for i = 1, select("#", ...) do produced[#produced + 1] = (select(i, ...)) end end
    -- data holds scan credentials by design (the user asked for it): it is kept as a user
    -- would print it, through mde.redact; errors are kept as they are
    local function result(r, err) keep(mde.redact(r), err, err and tostring(err)) end

    local f = assert(io.open(s.key_encrypted_file))
    local key_pem = f:read("*a")
    f:close()
    local key_line = key_pem:match("\n([A-Za-z0-9+/=]+)\n") -- a line of the key's body
    local issued = s:issue_token{ client = "c2" }

    local base = { base_url = s.base_url, authority = s.authority, tenant_id = "t", ca_file = s.ca_file,
                   rate_limit = false, backoff = { base = 0.01, cap = 0.02 }, logger = logger }
    local function new(extra)
      local o = { store = require("mde.store").new(core.now) }
      for k, v in pairs(base) do o[k] = v end
      for k, v in pairs(extra) do o[k] = v end
      local c = assert(mde.new(o))
      keep(c, tostring(c))
      return c
    end

    local secret_client = new{ client_id = "c2", client_secret = SECRET }
    local cert_client = new{ client_id = "c", certificate = { key_file = s.key_encrypted_file,
      cert_file = s.cert_file, passphrase = s.key_passphrase } }
    local token_client = new{ tenant_id = nil, token = issued }

    -- each client knows its own credentials, and the service echoes them back in an error
    for _, case in ipairs{ { secret_client, SECRET }, { cert_client, s.key_passphrase }, { token_client, issued } } do
      local c, echo = case[1], case[2]
      -- successes, paging, scan definitions holding scan credentials
      result(c:scan_history_by_session(SEED_SESSION))
      result(c:scan_definitions{ all = true })
      for page in c:pages("GET", "/api/DeviceAuthenticatedScanDefinitions", {}) do keep(mde.redact(page)) end
      -- failures of every kind, some of them echoing the credentials back
      s:control{ faults = {
        { route = "history_by_session", status = 400, count = 1,
          message = "bad request from " .. echo .. " with Bearer " .. issued .. " " .. echo },
        { route = "history_by_session", status = 401, count = 2 },
        { route = "history_by_session", status = 503, count = 4 },
        { route = "history_by_session", mode = "seed", count = 1 },
        { route = "history_by_session", status = 429, retry_after = "0", count = 1 },
      } }
      for _ = 1, 6 do
        result(c:scan_history_by_session(SEED_SESSION))
      end
      s:control{ faults = {} }
      result(c:request("GET", s.alt_base_url .. "/api/DeviceAuthenticatedScanAgents"))
      result(c:create_scan_definition{ scanType = "Network", scanName = "x", isActive = true, target = "10.0.0.1",
        intervalInHours = 1, targetType = "Ip", scannerAgent = { machineId = "m" },
        scanAuthenticationParams = { type = "CommunityString", communityString = "S3cr3t-community-new" } })
    end
    -- a wrong secret and a wrong passphrase
    result(new{ client_id = "c2", client_secret = SECRET .. "x" }:scan_history_by_session(SEED_SESSION))
    keep(mde.new{ tenant_id = "t", client_id = "c", certificate = { key_file = s.key_encrypted_file,
      cert_file = s.cert_file, passphrase = s.key_passphrase .. "x" } })

    local text = table.concat(dump(produced), "\n")
    assert.is_true(#produced > 50)
    local needles = { SECRET, s.key_passphrase, issued, key_line, "eyJ", "S3cr3t-community-new" }
    for _, v in ipairs(server.data.SECRETS) do needles[#needles + 1] = v end
    for _, needle in ipairs(needles) do
      assert.is_nil(text:find(needle, 1, true), "leaked: " .. needle:sub(1, 12) .. "...")
    end
    -- and the log did see the events it should
    assert.matches('"?retry"?', text)
    assert.matches("refresh", text)
  end)
end)
