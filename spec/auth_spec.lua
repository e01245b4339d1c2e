-- Sign-in against the local token service: every credential type, the token cache,
-- expiry and refresh, and the clouds.
local mde = require "mde"
local server = require "spec.helpers.server"
local helpers = require "spec.helpers.client"

local SEED_SESSION = "01decc497f4b4ec49a5fc4e12597f8c8"

describe("sign-in", function()
  local s

  setup(function() s = server.start{} end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  -- no credential by default: each test gives its own
  local function opts(extra)
    local o = helpers.options(s, extra)
    if not (extra and extra.client_secret) then o.client_secret = nil end
    return o
  end

  local function new(extra)
    return assert(mde.new(opts(extra)))
  end

  local function read(path)
    local f = assert(io.open(path, "rb"))
    local data = f:read("*a")
    f:close()
    return data
  end

  describe("client secret", function()
    it("asks for the commercial scope with the client-credentials grant", function()
      assert(new{ client_secret = "s" }:scan_history_by_session(SEED_SESSION))
      local last = s:stats().token.last
      assert.equal("client_credentials", last.grant_type)
      assert.equal("c", last.client_id)
      assert.equal("https://api.securitycenter.microsoft.com/.default", last.scope)
      assert.equal("secret", last.credential)
    end)

    it("fetches one token for N calls and shares it between clients of the same app", function()
      local store = require("mde.store").new(require("mde.core").now)
      local a, b = new{ client_secret = "s", store = store }, new{ client_secret = "s", store = store }
      for _ = 1, 4 do
        assert(a:scan_history_by_session(SEED_SESSION))
        assert(b:scan_history_by_session(SEED_SESSION))
      end
      assert.equal(1, s:stats().token.requests)
    end)

    it("keeps calls succeeding across token expiry, with no 401 reaching the caller", function()
      s:control{ token_ttl = 2 }
      local client = new{ client_secret = "s" }
      local deadline = os.time() + 6
      local calls = 0
      while os.time() < deadline and calls < 200 do
        assert(client:scan_history_by_session(SEED_SESSION))
        calls = calls + 1
        require("mde.core").sleep(0.1)
      end
      local st = s:stats()
      assert.is_true(st.token.requests >= 3, "expected refreshes, got " .. st.token.requests)
      assert.equal(0, (st.statuses.history_by_session or {})["401"] or 0)
    end)

    it("refreshes once and retries once when a cached token is revoked", function()
      local client = new{ client_secret = "s" }
      assert(client:scan_history_by_session(SEED_SESSION))
      s:control{ revoke_tokens = true }
      assert(client:scan_history_by_session(SEED_SESSION))
      assert.equal(2, s:stats().token.requests)
    end)

    it("gives an auth error when even a fresh token is refused", function()
      s:control{ faults = { { route = "history_by_session", status = 401, count = 5 } } }
      local r, err = new{ client_secret = "s" }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("auth", err.kind)
      assert.equal(401, err.status)
      assert.equal(2, s:stats().token.requests)
    end)

    it("never hands a cached token to a client whose own secret is wrong", function()
      local store = require("mde.store").new(require("mde.core").now)
      assert(new{ client_secret = "s", store = store }:scan_history_by_session(SEED_SESSION))
      local r, err = new{ client_secret = "not-the-secret", store = store }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("auth", err.kind)
      assert.equal("AADSTS7000215", err.code)
    end)

    it("reports a wrong secret as an auth error with the AADSTS code, never the secret", function()
      local r, err = new{ client_secret = "not-the-secret-42" }:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("auth", err.kind)
      assert.equal("AADSTS7000215", err.code)
      assert.matches("AADSTS7000215", tostring(err), 1, true)
      assert.is_nil(tostring(err):find("not-the-secret-42", 1, true))
    end)

    it("reports an unknown tenant and an unknown client", function()
      local _, err = new{ tenant_id = "nope", client_secret = "s" }:scan_history_by_session(SEED_SESSION)
      assert.equal("auth", err.kind)
      assert.equal("AADSTS90002", err.code)
      _, err = new{ client_id = "ghost", client_secret = "s" }:scan_history_by_session(SEED_SESSION)
      assert.equal("auth", err.kind)
      assert.equal("AADSTS700016", err.code)
    end)

    it("explains a 403 from a token of the wrong audience with the scope used", function()
      local r, err = new{ client_secret = "s", scope = "https://graph.microsoft.com/.default" }
        :scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("auth", err.kind)
      assert.equal(403, err.status)
      assert.matches("https://graph.microsoft.com/.default", err.message, 1, true)
    end)
  end)

  describe("certificate", function()
    it("signs a client assertion the token service verifies (key and cert files)", function()
      local client = new{ certificate = { key_file = s.key_file, cert_file = s.cert_file } }
      assert(client:scan_history_by_session(SEED_SESSION))
      local last = s:stats().token.last
      assert.equal("assertion", last.credential)
      assert.equal(s.token_url, last.assertion_claims.aud)
      assert.equal("c", last.assertion_claims.iss)
      assert.equal("c", last.assertion_claims.sub)
    end)

    it("takes PEM strings and an encrypted key with its passphrase", function()
      assert(new{ certificate = { key = read(s.key_file), cert = read(s.cert_file) } }
        :scan_history_by_session(SEED_SESSION))
      assert(new{ certificate = { key_file = s.key_encrypted_file, cert_file = s.cert_file,
                                  passphrase = s.key_passphrase } }:scan_history_by_session(SEED_SESSION))
    end)

    it("rejects a wrong passphrase when the client is made, without echoing it", function()
      local c, err = mde.new(opts{ certificate = { key_file = s.key_encrypted_file, cert_file = s.cert_file,
                                                   passphrase = "wrong-pass-77" } })
      assert.is_nil(c)
      assert.equal("invalid_argument", err.kind)
      assert.is_nil(tostring(err):find("wrong-pass-77", 1, true))
    end)

    it("reports a key that does not match the registered certificate as an auth error", function()
      local r, err = new{ certificate = { key_file = s.wrong_key_file, cert_file = s.cert_file } }
        :scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("auth", err.kind)
      assert.equal("AADSTS700027", err.code)
    end)
  end)

  describe("ready tokens", function()
    it("uses a given token as is", function()
      local token = s:issue_token{}
      local client = new{ token = token, tenant_id = nil, client_id = nil }
      assert(client:scan_history_by_session(SEED_SESSION))
      assert.equal(0, s:stats().token.requests)
    end)

    it("calls a token provider once while its token lives, and again after a 401", function()
      local calls = 0
      local client = new{ tenant_id = nil, client_id = nil, token_provider = function()
        calls = calls + 1
        return s:issue_token{}, 3600
      end }
      for _ = 1, 3 do assert(client:scan_history_by_session(SEED_SESSION)) end
      assert.equal(1, calls)
      s:control{ revoke_tokens = true }
      assert(client:scan_history_by_session(SEED_SESSION))
      assert.equal(2, calls)
    end)

    it("turns a failing provider into an auth error", function()
      local client = new{ tenant_id = nil, client_id = nil, token_provider = function()
        return nil, "managed identity endpoint unreachable"
      end }
      local r, err = client:scan_history_by_session(SEED_SESSION)
      assert.is_nil(r)
      assert.equal("auth", err.kind)
      assert.matches("managed identity endpoint unreachable", err.message, 1, true)
    end)
  end)

  describe("clouds", function()
    it("resolves each cloud to its documented hosts and scope", function()
      local expect = {
        commercial = { "https://api.security.microsoft.com", "https://login.microsoftonline.com",
                       "https://api.securitycenter.microsoft.com/.default" },
        gcc = { "https://api-gcc.securitycenter.microsoft.us", "https://login.microsoftonline.com",
                "https://api-gcc.securitycenter.microsoft.us/.default" },
        ["gcc-high"] = { "https://api-gov.securitycenter.microsoft.us", "https://login.microsoftonline.us",
                         "https://api-gov.securitycenter.microsoft.us/.default" },
        dod = { "https://api-gov.securitycenter.microsoft.us", "https://login.microsoftonline.us",
                "https://api-gov.securitycenter.microsoft.us/.default" },
      }
      for cloud, e in pairs(expect) do
        local c = assert(mde.new{ cloud = cloud, tenant_id = "t", client_id = "c", client_secret = "s" })
        assert.same(e, { c.base_url, c.authority, c.scope })
      end
      local eu = assert(mde.new{ region = "eu", tenant_id = "t", client_id = "c", client_secret = "s" })
      assert.same({ "https://eu.api.security.microsoft.com", "https://api.securitycenter.microsoft.com/.default" },
                  { eu.base_url, eu.scope })
    end)

    it("signs in to a gov cloud's resource end to end (local server playing GCC High)", function()
      local gov = "https://api-gov.securitycenter.microsoft.us"
      s:control{ api_resources = { gov } }
      local client = new{ cloud = "gcc-high", client_secret = "s" }
      assert(client:scan_history_by_session(SEED_SESSION))
      assert.equal(gov .. "/.default", s:stats().token.last.scope)
    end)
  end)
end)
