local redact = require "mde.redact"
local cjson = require "cjson"
local null = cjson.null

local M = redact.MARKER


-- every string in v, keys included, in one text (a stand-in for any serializer)
local function dump(v, seen, out)
  seen, out = seen or {}, out or {}
  if type(v) == "table" then
    if seen[v] then return out end
    seen[v] = true
    for k, x in pairs(v) do
      dump(k, seen, out)
      dump(x, seen, out)
    end
  else
    out[#out + 1] = tostring(v)
  end
  return out
end

local function text(v)
  return table.concat(dump(v), "\n")
end


-- deep equality that also follows cycles
local function deep_copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do out[deep_copy(k, seen)] = deep_copy(x, seen) end
  return out
end


-- scan definitions shaped as in the reference: a Windows one (camelCase, as the examples
-- write them) and an SNMP one (PascalCase, as the property table writes them)
local function windows_definition()
  return {
    id = "4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae",
    scanType = "Windows",
    scanName = "Windows scan",
    isActive = true,
    target = "127.0.0.1,127.0.0.2",
    orgId = "org-1",
    intervalInHours = 1,
    createdBy = "admin@contoso.com",
    targetType = "Ip",
    scanAuthenticationParams = {
      ["@odata.type"] = "#microsoft.windowsDefenderATP.api.WindowsAuthParams",
      type = "Kerberos",
      username = "scanuser",
      domain = "CONTOSO",
      password = "WinPassw0rd!seed",
      isGmsaUser = false,
      keyVaultUrl = "https://vault.example/",
      keyVaultSecretName = "kv-secret-name-seed",
    },
    scannerAgent = { id = "agent-1", machineId = "m1", machineName = "scanner" },
    latestScan = { status = null, failureReason = null, executionDateTime = null },
  }
end

local function snmp_definition()
  return {
    id = "5bd8d463-6b3a-4894-b42a-a2de9ea0a8af",
    scanType = "Network",
    scanName = "SNMP scan",
    ScanAuthenticationParams = {
      ["@odata.type"] = "#microsoft.windowsDefenderATP.api.SnmpAuthParams",
      Type = "AuthPriv",
      Username = "snmpuser",
      CommunityString = "community-seed",
      AuthProtocol = "SHA1",
      AuthPassword = "auth-pass-seed",
      PrivProtocol = "AES",
      PrivPassword = "priv-pass-seed",
      KeyVaultUrl = "https://vault.example/",
      KeyVaultSecretName = "kv-name-2-seed",
    },
  }
end

local SEEDED = { "WinPassw0rd!seed", "kv-secret-name-seed", "community-seed", "auth-pass-seed", "priv-pass-seed",
                 "kv-name-2-seed" }


describe("mde.redact", function()
  describe("is_secret_key", function()
    it("knows the credential fields, in any case and with _ or -", function()
      for _, k in ipairs{ "communityString", "CommunityString", "community_string", "authPassword", "AuthPassword",
                          "privPassword", "password", "Password", "user_password", "passwd", "db-passwd",
                          "passphrase", "client_secret", "clientSecret", "secret", "KeyVaultSecretName",
                          "keyVaultSecretName", "privateKey", "private_key", "key", "key_pem", "keyPem", "apiKey",
                          "x-api-key", "token", "access_token", "accessToken", "refresh_token", "id_token",
                          "client_assertion", "assertion", "authorization", "Authorization", "Proxy-Authorization",
                          "cookie", "Set-Cookie", "bearer", "pwd" } do
        assert.is_true(redact.is_secret_key(k), k)
      end
    end)

    it("keeps what is not a secret", function()
      for _, k in ipairs{ "username", "Username", "domain", "type", "Type", "authProtocol", "AuthProtocol",
                          "privProtocol", "@odata.type", "KeyVaultUrl", "keyVaultUrl", "isGmsaUser", "tokenType",
                          "token_type", "expires_in", "ext_expires_in", "client_assertion_type", "scanType",
                          "scanAuthenticationParams", "target", "id", "client_id", "tenant_id", "Hostname",
                          "ScanStatus", "key_file", "cert", "url", "orgId", "ScanDefinitionIds", "SessionIds",
                          "LastScanned", "ListScannedTargets", "Ip", "ErrorMessage", "ScannerId", "scannerAgent",
                          "machineId", "assignedApplicationId", "latestScan", "failureReason", "@odata.context",
                          "@odata.nextLink", "skiptoken", "$skiptoken", "request_id", "credential" } do
        assert.is_false(redact.is_secret_key(k), k)
      end
    end)

    it("is false for names that are not strings", function()
      assert.is_false(redact.is_secret_key(1))
      assert.is_false(redact.is_secret_key(nil))
      assert.is_false(redact.is_secret_key({}))
    end)
  end)

  describe("record", function()
    it("redacts a Windows scan definition (camelCase) and keeps the rest", function()
      local out = redact(windows_definition())
      local p = out.scanAuthenticationParams
      assert.equal(M, p.password)
      assert.equal(M, p.keyVaultSecretName)
      assert.same({ "#microsoft.windowsDefenderATP.api.WindowsAuthParams", "Kerberos", "scanuser", "CONTOSO", false,
                    "https://vault.example/" },
                  { p["@odata.type"], p.type, p.username, p.domain, p.isGmsaUser, p.keyVaultUrl })
      local expected = windows_definition()
      expected.scanAuthenticationParams.password = M
      expected.scanAuthenticationParams.keyVaultSecretName = M
      assert.same(expected, out)
    end)

    it("redacts an SNMP scan definition (PascalCase)", function()
      local p = redact.record(snmp_definition()).ScanAuthenticationParams
      assert.same({
        ["@odata.type"] = "#microsoft.windowsDefenderATP.api.SnmpAuthParams",
        Type = "AuthPriv", Username = "snmpuser", CommunityString = M, AuthProtocol = "SHA1", AuthPassword = M,
        PrivProtocol = "AES", PrivPassword = M, KeyVaultUrl = "https://vault.example/", KeyVaultSecretName = M,
      }, p)
    end)

    it("redacts lists of definitions and whole API envelopes", function()
      local envelope = { ["@odata.context"] = "https://api.securitycenter.microsoft.com/api/$metadata#x",
                         value = { windows_definition(), snmp_definition() } }
      local out = redact(envelope)
      assert.equal(envelope["@odata.context"], out["@odata.context"])
      assert.equal(M, out.value[1].scanAuthenticationParams.password)
      assert.equal(M, out.value[2].ScanAuthenticationParams.CommunityString)
      local list = redact{ windows_definition(), snmp_definition() }
      assert.equal(M, list[2].ScanAuthenticationParams.PrivPassword)
      local t = text(out) .. text(list)
      for _, s in ipairs(SEEDED) do
        assert.is_nil(t:find(s, 1, true), s)
      end
    end)

    it("leaves nothing of the seeded secrets in any serialization", function()
      local envelope = { value = { windows_definition(), snmp_definition(),
                                   { scanAuthenticationParams = { privateKey = { pem = "-----BEGIN seed-key" } } } } }
      local out = redact(envelope)
      local json = cjson.encode(out)
      local t = text(out)
      for _, s in ipairs(SEEDED) do
        assert.is_nil(json:find(s, 1, true), s)
        assert.is_nil(t:find(s, 1, true), s)
      end
      assert.is_nil(json:find("seed-key", 1, true))
      assert.truthy(cjson.encode(envelope):find("community-seed", 1, true))   -- the test can see them
    end)

    it("replaces a secret table as a whole", function()
      local out = redact{ credentials = { username = "u" }, auth = { password = { "a", "b" }, key = { n = 1 } } }
      assert.same({ credentials = { username = "u" }, auth = { password = M, key = M } }, out)
    end)

    it("keeps null, empty strings and booleans, and redacts numbers", function()
      local out = redact{ scanAuthenticationParams = { password = null, communityString = "", authPassword = false,
                                                       privPassword = 1234, keyVaultSecretName = {} } }
      local p = out.scanAuthenticationParams
      assert.equal(null, p.password)
      assert.equal("", p.communityString)
      assert.equal(false, p.authPassword)
      assert.equal(M, p.privPassword)
      assert.equal(M, p.keyVaultSecretName)
      assert.same({ scanAuthenticationParams = null }, redact{ scanAuthenticationParams = null })
    end)

    it("never modifies the input", function()
      local def = windows_definition()
      local before = deep_copy(def)
      local out = redact(def)
      assert.same(before, def)
      assert.equal("WinPassw0rd!seed", def.scanAuthenticationParams.password)
      assert.are_not.equal(def, out)
      assert.are_not.equal(def.scanAuthenticationParams, out.scanAuthenticationParams)
    end)

    it("copies cycles and shared tables once, without metatables", function()
      local params = { password = "cycle-seed", username = "u" }
      local a = { params = params, again = params }
      a.self = a
      local mt = { __index = function() return "x" end }
      setmetatable(a, mt)
      local out = redact(a)
      assert.equal(out, out.self)
      assert.equal(out.params, out.again)
      assert.equal(M, out.params.password)
      assert.is_nil(getmetatable(out))
      assert.is_nil(out.missing)
      assert.equal("cycle-seed", params.password)
      assert.equal(mt, getmetatable(a))
      assert.is_nil(text(out):find("cycle-seed", 1, true))
    end)

    it("keeps non-table values, functions and userdata as they are", function()
      local f = function() end
      assert.equal("plain", redact("plain"))
      assert.equal(3, redact(3))
      assert.is_nil(redact(nil))
      assert.equal(null, redact(null))
      local out = redact{ f = f, n = null, list = { null, 1, "Bearer x" } }
      assert.equal(f, out.f)
      assert.equal(null, out.n)
      assert.same({ null, 1, "Bearer x" }, out.list)            -- records: strings are data
    end)

    it("copies table keys too", function()
      local k = { password = "key-seed" }
      local out = redact{ [k] = "v" }
      local key = next(out)
      assert.are_not.equal(k, key)
      assert.equal(M, key.password)
    end)
  end)

  describe("event", function()
    it("redacts secret keys of logger events", function()
      local ev = { event = "token", access_token = "at-seed", refresh_token = "rt-seed", id_token = "it-seed",
                   token_type = "Bearer", expires_in = 3599, client_id = "c", client_secret = "cs-seed",
                   client_assertion = "ca-seed", client_assertion_type = "urn:ietf:params:oauth:client-assertion-type",
                   password = "pw-seed", passphrase = "pp-seed", token = "t-seed", key = "k-seed" }
      local out = redact.event(ev)
      assert.same({ event = "token", access_token = M, refresh_token = M, id_token = M, token_type = "Bearer",
                    expires_in = 3599, client_id = "c", client_secret = M, client_assertion = M,
                    client_assertion_type = "urn:ietf:params:oauth:client-assertion-type", password = M,
                    passphrase = M, token = M, key = M }, out)
    end)

    it("redacts header maps and header lines", function()
      local out = redact.event{ headers = { Authorization = "Bearer hdr-seed", ["content-type"] = "application/json" },
                                request_headers = { "Authorization: Bearer line-seed", "Content-Type: application/json",
                                                    "Cookie: session=cookie-seed", "X-Api-Key:apikey-seed" } }
      assert.same({ Authorization = M, ["content-type"] = "application/json" }, out.headers)
      assert.same({ "Authorization: " .. M, "Content-Type: application/json", "Cookie: " .. M, "X-Api-Key:" .. M },
                  out.request_headers)
    end)

    it("redacts lines of a raw header block", function()
      local out = redact.event{ raw = "POST /x HTTP/1.1\r\nHost: h\r\nauthorization: Basic YTpi\r\nAccept: */*\r\n" }
      assert.equal("POST /x HTTP/1.1\r\nHost: h\r\nauthorization: " .. M .. "\r\nAccept: */*\r\n", out.raw)
    end)

    it("redacts Bearer tokens and JWTs inside any string", function()
      local jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl-_x"
      local out = redact.event{ message = "request with bearer abc.DEF-ghi_jkl~/+= failed",
                                nested = { { note = "token " .. jwt .. " expired" } } }
      assert.equal("request with bearer " .. M .. " failed", out.message)
      assert.equal("token " .. M .. " expired", out.nested[1].note)
    end)

    it("redacts form bodies and query strings", function()
      local out = redact.event{
        body = "grant_type=client_credentials&client_id=c&client_secret=form-seed&scope=https%3A%2F%2Fx%2F.default",
        body2 = "client_assertion_type=urn%3Aietf&client_assertion=assert-seed",
        url = "https://login.example/t/oauth2/v2.0/token?api_key=q-seed&x=1",
      }
      assert.equal("grant_type=client_credentials&client_id=c&client_secret=" .. M
                   .. "&scope=https%3A%2F%2Fx%2F.default", out.body)
      assert.equal("client_assertion_type=urn%3Aietf&client_assertion=" .. M, out.body2)
      assert.equal("https://login.example/t/oauth2/v2.0/token?api_key=" .. M .. "&x=1", out.url)
    end)

    it("redacts JSON text bodies, escapes and truncation included", function()
      local body = cjson.encode(windows_definition())
      local out = redact.event{ body = body }
      assert.is_nil(out.body:find("WinPassw0rd!seed", 1, true))
      assert.is_nil(out.body:find("kv-secret-name-seed", 1, true))
      local back = cjson.decode(out.body)
      assert.equal(M, back.scanAuthenticationParams.password)
      assert.equal("scanuser", back.scanAuthenticationParams.username)
      local esc = redact.event{ b = '{"password" : "a\\"b\\\\", "x": "y", "secret":"tail-seed' }
      assert.equal('{"password" : "' .. M .. '", "x": "y", "secret":"' .. M, esc.b)
    end)

    it("keeps OData paging links", function()
      local link = "https://api.example/api/x?$top=100&$skiptoken=abc"
      assert.equal(link, redact.event{ url = link }.url)
    end)

    it("redacts user:password@ in URLs", function()
      local out = redact.event{ proxy = "http://user:proxy-seed@proxy.example:3128" }
      assert.equal("http://user:" .. M .. "@proxy.example:3128", out.proxy)
    end)

    it("scrubs given literal secrets from every string", function()
      local out = redact.event({ message = "login failed for s3cr3t (s3cr3t)", list = { "x s3cr3t" } }, { "s3cr3t" })
      assert.equal("login failed for " .. M .. " (" .. M .. ")", out.message)
      assert.same({ "x " .. M }, out.list)
      assert.equal("a " .. M, redact.event("a lit-seed", "lit-seed"))
    end)

    it("keeps harmless strings and never modifies the event", function()
      local ev = { method = "GET", url = "https://api.securitycenter.microsoft.com/api/x?$top=10", status = 200,
                   headers = { "Authorization: Bearer keep-seed" }, message = "mde: http 404: not found" }
      local before = deep_copy(ev)
      local out = redact.event(ev)
      assert.same(before, ev)
      assert.equal(ev.url, out.url)
      assert.equal(ev.message, out.message)
      assert.is_nil(text(out):find("keep-seed", 1, true))
    end)
  end)

  describe("string", function()
    it("replaces literal secrets, not patterns", function()
      assert.equal("a " .. M .. " b " .. M, redact.string("a x.y%z b x.y%z", { "x.y%z" }))
      assert.equal("axyz", redact.string("axyz", { "x.y" }))
      assert.equal("none here", redact.string("none here", { "secret" }))
      assert.equal("one " .. M, redact.string("one sec", "sec"))
    end)

    it("prefers the earlier, then the longer match, and skips empty secrets", function()
      assert.equal("abcabc " .. M .. " " .. M .. M, redact.string("abcabc topsecret secretsecret",
                                                                  { "secret", "topsecret", "" }))
      assert.equal(M, redact.string("abcd", { "bc", "abcd", "abc" }))
    end)

    it("returns non-strings as they are", function()
      assert.equal(5, redact.string(5, { "5" }))
      assert.is_nil(redact.string(nil, { "x" }))
      assert.equal("x", redact.string("x", nil))
    end)
  end)
end)
