-- Specs of the local MDE-like test server itself (spec/server/, spec/helpers/server.lua),
-- exercised with the curl CLI only (no mde.core). Run: lua5.4 /usr/bin/busted spec/server_spec.lua
local server = require "spec.helpers.server"
local json = server.json
local data = server.data

local sh = server.certs.sh_quote
local ENV = server.certs.CLEAN_ENV


-- curl CLI wrapper: returns { status, headers = {lower-name = value}, body, exit, json }
local function curl(s, method, url, o)
  o = o or {}
  local n = math.random(1, 1e9)
  local hfile, bfile, dfile = s.dir .. "/h." .. n, s.dir .. "/b." .. n, s.dir .. "/d." .. n
  local cmd = { ENV .. "curl -s -m " .. (o.timeout or 10) .. " -X " .. method, "-D " .. sh(hfile),
                "-o " .. sh(bfile), "-w '%{http_code}'" }
  if o.cacert ~= false then cmd[#cmd + 1] = "--cacert " .. sh(o.cacert or s.ca_file) end
  for _, h in ipairs(o.headers or {}) do cmd[#cmd + 1] = "-H " .. sh(h) end
  if o.token then cmd[#cmd + 1] = "-H " .. sh("Authorization: Bearer " .. o.token) end
  if o.json then
    cmd[#cmd + 1] = "-H 'Content-Type: application/json'"
    o.body = json.encode(o.json)
  end
  if o.form then
    for k, v in pairs(o.form) do cmd[#cmd + 1] = "--data-urlencode " .. sh(k .. "=" .. v) end
  elseif o.body then
    local f = assert(io.open(dfile, "wb"))
    f:write(o.body)
    f:close()
    cmd[#cmd + 1] = "--data-binary @" .. sh(dfile)
  end
  for _, extra in ipairs(o.args or {}) do cmd[#cmd + 1] = extra end
  cmd[#cmd + 1] = sh(url)
  local p = assert(io.popen(table.concat(cmd, " ") .. "; echo \" $?\""))
  local out = p:read("*a")
  p:close()
  local code, exit = out:match("^(%d*)%s+(%d+)%s*$")
  local r = { status = tonumber(code), exit = tonumber(exit), headers = {} }
  r.raw_headers = server.read_file(hfile) or ""
  for line in r.raw_headers:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then r.headers[k:lower()] = v end
  end
  r.body = server.read_file(bfile) or ""
  os.remove(hfile) os.remove(bfile) os.remove(dfile)
  if (r.headers["content-type"] or ""):find("json", 1, true) then
    r.json = server.fix_ints(json.decode(r.body))
  end
  return r
end


local function b64url(s)
  local p = io.popen("printf '%s' " .. sh(s) .. " | " .. ENV .. "openssl base64 -A")
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s", ""):gsub("+", "-"):gsub("/", "_"):gsub("=", ""))
end


local function file_b64url_digest(cert_file, alg)
  local p = io.popen(ENV .. "openssl x509 -in " .. sh(cert_file) .. " -outform DER | " .. ENV
    .. "openssl dgst -" .. alg .. " -binary | " .. ENV .. "openssl base64 -A")
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s", ""):gsub("+", "-"):gsub("/", "_"):gsub("=", ""))
end


--- A client assertion signed with the openssl CLI. o: key, cert, aud, exp_in, iss, sub, jti,
--- passphrase, x5t (false to omit), x5t256 (true to add)
local function assertion(s, o)
  local now = os.time()
  local header = { alg = "RS256", typ = "JWT" }
  if o.x5t ~= false then header.x5t = file_b64url_digest(o.cert or s.cert_file, "sha1") end
  if o.x5t256 then header["x5t#S256"] = file_b64url_digest(o.cert or s.cert_file, "sha256") end
  local claims = { aud = o.aud or s.token_url, iss = o.iss or "c", sub = o.sub or o.iss or "c",
                   jti = o.jti, nbf = now, iat = now, exp = now + (o.exp_in or 300) }
  if o.jti == nil then claims.jti = "jti-" .. math.random(1, 1e9) end
  if o.jti == false then claims.jti = nil end
  local signing = b64url(json.encode(header)) .. "." .. b64url(json.encode(claims))
  local f = s.dir .. "/sign." .. math.random(1, 1e9)
  local h = assert(io.open(f, "wb"))
  h:write(signing)
  h:close()
  local pass = o.passphrase and (" -passin pass:" .. o.passphrase) or ""
  local p = io.popen(ENV .. "openssl dgst -sha256 -sign " .. sh(o.key or s.key_file) .. pass
    .. " -binary " .. sh(f) .. " | " .. ENV .. "openssl base64 -A")
  local sig = p:read("*a")
  p:close()
  os.remove(f)
  return signing .. "." .. sig:gsub("%s", ""):gsub("+", "-"):gsub("/", "_"):gsub("=", "")
end


local function token_request(s, form, url)
  local f = { grant_type = "client_credentials", client_id = "c", scope = s.scope }
  for k, v in pairs(form or {}) do
    if v == false then f[k] = nil else f[k] = v end
  end
  return curl(s, "POST", url or s.token_url, { form = f })
end


local function get_token(s, form)
  local r = token_request(s, form or { client_secret = "s" })
  assert(r.status == 200, r.body)
  return r.json.access_token
end


local HIST_SESSION = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId"
local HIST_DEF = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId"
local DEFS = "/api/DeviceAuthenticatedScanDefinitions"
local AGENTS = "/api/DeviceAuthenticatedScanAgents"


describe("test server", function()
  local s, tok

  setup(function()
    s = server.start{ workers = 1 }
    tok = get_token(s)
  end)

  teardown(function()
    if s then s:stop() end
  end)

  before_each(function()
    s:control{ faults = {}, paging = "nextlink", page_cap = 4096, rate_limit = false, max_batch = 50 }
  end)


  describe("lifecycle", function()
    it("exposes the documented fields", function()
      assert.matches("^https://127%.0%.0%.1:%d+$", s.base_url)
      assert.equals(s.base_url, s.authority)
      assert.equals("https://localhost:" .. s.port, s.alt_base_url)
      assert.is_number(s.pid)
      assert.is_number(s.badname_port)
      for _, k in ipairs({ "ca_file", "other_ca_file", "cert_file", "key_file", "key_encrypted_file",
                           "wrong_key_file", "wrong_cert_file", "key_pkcs1_file" }) do
        assert.truthy(server.read_file(s[k]), k)
      end
      assert.is_string(s.key_passphrase)
      assert.truthy(server.alive(s.pid))
    end)

    it("starts fast once certificates exist, and stop removes everything", function()
      local t0 = server.now()
      local s2 = server.start{ workers = 1 }
      local took = server.now() - t0
      assert.is_true(took < 0.5, "start took " .. took)
      local pid, dir = s2.pid, s2.dir
      local r = curl(s2, "GET", s2.base_url .. AGENTS)
      assert.equals(401, r.status)
      t0 = server.now()
      s2:stop()
      assert.is_true(server.now() - t0 < 1.5)
      assert.falsy(server.alive(pid))
      assert.falsy(server.read_file(dir .. "/nginx.conf"))
      assert.is_true(s2:stop())                     -- idempotent
    end)

    it("serves the same data through every worker (workers = 4)", function()
      local s4 = server.start{ workers = 4 }
      finally(function() s4:stop() end)
      local t4 = get_token(s4)
      local workers = {}
      for _ = 1, 16 do                                -- a new connection each time
        local r = curl(s4, "POST", s4.base_url .. HIST_SESSION,
          { token = t4, json = { SessionIds = { data.SEED_SESSION_ID } } })
        assert.equals(200, r.status)
        assert.equals(1, #r.json.value)
      end
      s4:control{ max_batch = 2 }
      for _ = 1, 8 do
        local r = curl(s4, "POST", s4.base_url .. HIST_SESSION,
          { token = t4, json = { SessionIds = { "a", "b", "c" } } })
        assert.equals(400, r.status)
      end
      local st = s4:stats()
      assert.equals(24, st.routes.history_by_session)
      assert.equals(16, st.statuses.history_by_session["200"])
      for _, req in ipairs(st.requests) do workers[req.worker] = true end
      local n = 0
      for _ in pairs(workers) do n = n + 1 end
      assert.is_true(n >= 1)
    end)
  end)


  describe("token service", function()
    it("issues a v2 token for the client secret", function()
      local r = token_request(s, { client_secret = "s" })
      assert.equals(200, r.status)
      assert.equals("Bearer", r.json.token_type)
      assert.equals(3599, r.json.expires_in)
      assert.is_string(r.json.access_token)
      local st = s:stats()
      assert.equals("<present>", st.token.last.client_secret)
      assert.equals("secret", st.token.last.credential)
      assert.equals("c", st.token.last.client_id)
      assert.falsy(json.encode(st):find('"s"', 1, true) and json.encode(st.token.last):find("=s&", 1, true))
    end)

    it("issues a v1 token with string numbers and the resource", function()
      local r = curl(s, "POST", s.token_url_v1, { form = { grant_type = "client_credentials",
        client_id = "c", client_secret = "s", resource = s.resource } })
      assert.equals(200, r.status)
      assert.equals("3599", r.json.expires_in)
      assert.is_string(r.json.expires_on)
      assert.is_string(r.json.not_before)
      assert.equals(s.resource, r.json.resource)
    end)

    it("rejects what Entra ID rejects", function()
      local cases = {
        { { client_secret = "bad" }, 401, "invalid_client", 7000215 },
        { { client_id = "nobody", client_secret = "s" }, 400, "unauthorized_client", 700016 },
        { { client_secret = "s", scope = "https://api.securitycenter.microsoft.com/Machine.Read.All" },
          400, "invalid_scope", 70011 },
        { { client_secret = "s", grant_type = "password" }, 400, "unsupported_grant_type", 70003 },
        { { client_secret = "s", scope = "https://nothing.example/.default" }, 400, "invalid_resource", 500011 },
        { {}, 401, "invalid_client", 7000218 },
      }
      for _, c in ipairs(cases) do
        local r = token_request(s, c[1])
        assert.equals(c[2], r.status, r.body)
        assert.equals(c[3], r.json.error)
        assert.equals(c[4], r.json.error_codes[1])
        assert.matches("^AADSTS" .. c[4] .. ":", r.json.error_description)
        assert.is_string(r.json.trace_id)
        assert.is_string(r.json.correlation_id)
        assert.is_string(r.json.timestamp)
      end
      local r = curl(s, "POST", s.base_url .. "/other/oauth2/v2.0/token",
        { form = { grant_type = "client_credentials", client_id = "c", client_secret = "s", scope = s.scope } })
      assert.equals(400, r.status)
      assert.equals(90002, r.json.error_codes[1])
    end)

    it("verifies certificate client assertions for real", function()
      local base = { client_assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" }
      local function try(o)
        local f = { client_assertion = assertion(s, o) }
        for k, v in pairs(base) do f[k] = v end
        return token_request(s, f)
      end
      assert.equals(200, try({}).status)
      assert.equals(200, try({ x5t = false, x5t256 = true }).status)
      assert.equals(200, try({ key = s.key_encrypted_file, passphrase = s.key_passphrase }).status)
      local bad = {
        { key = s.wrong_key_file },                                  -- signature
        { key = s.wrong_key_file, cert = s.wrong_cert_file },       -- unknown thumbprint
        { aud = s.token_url_v1 },                                    -- wrong audience
        { aud = "https://login.microsoftonline.com/t/oauth2/v2.0/token" },
        { exp_in = -30 },                                            -- expired
        { iss = "someone" },                                         -- iss/sub
        { jti = false },                                             -- no jti
      }
      for i, o in ipairs(bad) do
        local r = try(o)
        assert.equals(401, r.status, "case " .. i .. ": " .. r.body)
        assert.equals(700027, r.json.error_codes[1], "case " .. i)
      end
      local st = s:stats()
      assert.equals("assertion", st.token.last.credential)
      assert.equals("<present>", st.token.last.client_assertion)
      assert.is_table(st.token.last.assertion_claims)
    end)

    it("counts a reused jti, and rejects it when asked", function()
      local a = assertion(s, { jti = "fixed-" .. math.random(1, 1e9) })
      local f = { client_assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                  client_assertion = a }
      assert.equals(200, token_request(s, f).status)
      assert.equals(200, token_request(s, f).status)
      assert.is_true(s:stats().token.jti_reused >= 1)
      s:control{ reject_jti_replay = true }
      finally(function() s:control{ reject_jti_replay = false } end)
      assert.equals(401, token_request(s, f).status)
    end)

    it("registers extra clients and revokes tokens", function()
      s:control{ clients = { c2 = { secret = "s2" } } }
      local t2 = get_token(s, { client_id = "c2", client_secret = "s2" })
      local r = curl(s, "GET", s.base_url .. AGENTS, { token = t2 })
      assert.equals(200, r.status)
      s:control{ revoke_tokens = true, clients = { c2 = false } }
      r = curl(s, "GET", s.base_url .. AGENTS, { token = t2 })
      assert.equals(401, r.status)
      assert.equals("Unauthorized", r.json.error.code)
      assert.equals(400, token_request(s, { client_id = "c2", client_secret = "s2" }).status)
      tok = get_token(s)
    end)

    it("lets tokens expire after token_ttl", function()
      s:control{ token_ttl = 1 }
      finally(function() s:control{ token_ttl = 3599 } end)
      local r = token_request(s, { client_secret = "s" })
      assert.equals(1, r.json.expires_in)
      server.sleep(1.2)
      local a = curl(s, "GET", s.base_url .. AGENTS, { token = r.json.access_token })
      assert.equals(401, a.status)
      assert.matches("expired", a.json.error.message)
    end)
  end)


  describe("API", function()
    it("requires a bearer token, and answers a wrong audience with 403", function()
      local r = curl(s, "GET", s.base_url .. AGENTS)
      assert.equals(401, r.status)
      assert.equals("Unauthorized", r.json.error.code)
      assert.equals(r.headers["request-id"], r.json.error.target)
      r = curl(s, "GET", s.base_url .. AGENTS, { token = "garbage" })
      assert.equals(401, r.status)
      local graph = get_token(s, { client_secret = "s", scope = "https://graph.microsoft.com/.default" })
      r = curl(s, "GET", s.base_url .. AGENTS, { token = graph })
      assert.equals(403, r.status)
      assert.equals("Forbidden", r.json.error.code)
      assert.matches("graph.microsoft.com", r.json.error.message, 1, true)
      local alias = get_token(s, { client_secret = "s",
        scope = "https://securitycenter.onmicrosoft.com/windowsatpservice/.default" })
      assert.equals(200, curl(s, "GET", s.base_url .. AGENTS, { token = alias }).status)
    end)

    it("returns session records by id, in request order, unknown ids absent", function()
      local ids = { data.session_id(2, 3), "unknown", data.SEED_SESSION_ID, data.synthetic_session_id(7),
                    data.bulk_session_id(100, 5) }
      local r = curl(s, "POST", s.base_url .. HIST_SESSION, { token = tok, json = { SessionIds = ids } })
      assert.equals(200, r.status)
      assert.matches("application/json", r.headers["content-type"], 1, true)
      assert.is_string(r.json["@odata.context"])
      assert.equals(4, #r.json.value)
      assert.equals(ids[1], r.json.value[1].SessionIds)
      assert.equals(ids[3], r.json.value[2].SessionIds)
      assert.equals("bulk-100", r.json.value[4].ScanDefinitionIds)
      local seed = r.json.value[2]
      assert.equals(data.SEED_DEFINITION_ID, seed.ScanDefinitionIds)
      assert.equals(3, #seed.ListScannedTargets)
      assert.equals(3, seed.NumberOfTargets)
      assert.equals("2022-12-19T15:14:24.5561791Z", seed.LastScanned)
      assert.same(s:session_record(ids[1]), r.json.value[1])
      -- a single string is accepted too
      r = curl(s, "POST", s.base_url .. HIST_SESSION, { token = tok, json = { SessionIds = data.SEED_SESSION_ID } })
      assert.equals(1, #r.json.value)
    end)

    it("validates history bodies", function()
      local function post(body, headers)
        return curl(s, "POST", s.base_url .. HIST_SESSION, { token = tok, body = body,
          headers = headers or { "Content-Type: application/json" } })
      end
      assert.equals("InvalidRequestBody", post('{"sessionIds":["x"]}').json.error.code)
      assert.equals("MissingRequiredParameter", post('{"Other":1}').json.error.code)
      assert.equals("InvalidRequestBody", post('not json').json.error.code)
      assert.equals(415, post('{"SessionIds":["x"]}', { "Content-Type: text/plain" }).status)
      s:control{ max_batch = 3 }
      local r = post('{"SessionIds":["a","b","c","d"]}')
      assert.equals(400, r.status)
      assert.equals("MaximumBatchSizeExceeded", r.json.error.code)
      assert.matches("Received: 4, allowed: 3", r.json.error.message, 1, true)
    end)

    it("serves the older GET revision", function()
      local old = "/api/DeviceAuthenticatedScanDefinitions/ScanHistoryBySessionId"
      local r = curl(s, "GET", s.base_url .. old, { token = tok })
      assert.equals(200, r.status)
      assert.equals("Network", r.json.scanType)
      r = curl(s, "GET", s.base_url .. old .. "?sessionId=" .. data.SEED_SESSION_ID, { token = tok })
      assert.equals(data.SEED_SESSION_ID, r.json.value[1].SessionIds)
    end)

    it("lists, gets, creates, updates and deletes definitions", function()
      finally(function() s:reset(); tok = get_token(s) end)
      local r = curl(s, "GET", s.base_url .. DEFS, { token = tok })
      assert.equals(5, #r.json.value)
      assert.equals(data.SEED_DEFINITION_ID, r.json.value[1].id)
      r = curl(s, "GET", s.base_url .. DEFS .. "/" .. data.DEFINITION_IDS[5], { token = tok })
      assert.equals(json.null, r.json.scanAuthenticationParams)
      r = curl(s, "GET", s.base_url .. DEFS .. "/nope", { token = tok })
      assert.equals(404, r.status)
      assert.equals("NotFound", r.json.error.code)
      local def = { scanType = "Network", scanName = "new", isActive = true, target = "10.0.0.1",
        intervalInHours = 4, targetType = "Ip", scannerAgent = { machineId = data.AGENTS[1].machineId },
        scanAuthenticationParams = { ["@odata.type"] = "#microsoft.windowsDefenderATP.api.SnmpAuthParams",
          type = "CommunityString", communityString = "xyz" } }
      r = curl(s, "POST", s.base_url .. DEFS, { token = tok, json = def })
      assert.equals(200, r.status)
      local id = r.json.id
      assert.is_string(id)
      assert.equals("c", r.json.createdBy)
      assert.equals(data.AGENTS[1].id, r.json.scannerAgent.id)
      local missing = {}
      for k, v in pairs(def) do if k ~= "targetType" then missing[k] = v end end
      r = curl(s, "POST", s.base_url .. DEFS, { token = tok, json = missing })
      assert.equals("MissingRequiredParameter", r.json.error.code)
      assert.matches("targetType", r.json.error.message)
      r = curl(s, "PATCH", s.base_url .. DEFS .. "/" .. id, { token = tok, json = { isActive = false } })
      assert.equals(200, r.status)
      assert.equals(false, r.json.isActive)
      assert.equals("new", r.json.scanName)
      r = curl(s, "GET", s.base_url .. DEFS, { token = tok })
      assert.equals(6, #r.json.value)
      r = curl(s, "POST", s.base_url .. DEFS .. "/BatchDelete", { token = tok,
        json = { ScanDefinitionIds = { id, data.DEFINITION_IDS[1] } } })
      assert.equals(204, r.status)
      r = curl(s, "GET", s.base_url .. DEFS, { token = tok })
      assert.equals(4, #r.json.value)
      s:reset()
      tok = get_token(s)
      r = curl(s, "GET", s.base_url .. DEFS, { token = tok })
      assert.equals(5, #r.json.value)
    end)

    it("lists and gets agents", function()
      local r = curl(s, "GET", s.base_url .. AGENTS .. "?$top=2", { token = tok })
      assert.equals(2, #r.json.value)
      assert.is_string(r.json["@odata.nextLink"])
      r = curl(s, "GET", s.base_url .. AGENTS .. "/" .. data.AGENTS[2].id, { token = tok })
      assert.equals(data.AGENTS[2].machineId, r.json.machineId)
      assert.equals(404, curl(s, "GET", s.base_url .. AGENTS .. "/x", { token = tok }).status)
    end)
  end)


  describe("paging", function()
    local function page(url, body)
      return curl(s, "POST", url, { token = tok, json = body or { ScanDefinitionIds = { "bulk-10000" } } })
    end

    it("follows @odata.nextLink through a synthetic history", function()
      local url, total, pages = s.base_url .. HIST_DEF, 0, 0
      local seen_last
      for _ = 1, 10 do
        local r = page(url)
        assert.equals(200, r.status)
        pages = pages + 1
        total = total + #r.json.value
        seen_last = r.json.value[#r.json.value].SessionIds
        url = r.json["@odata.nextLink"]
        if not url then break end
        assert.matches("^https://127%.0%.0%.1:" .. s.port .. "/", url)
      end
      assert.equals(3, pages)
      assert.equals(10000, total)
      assert.equals(data.bulk_session_id(10000, 9999), seen_last)
    end)

    it("honors $top/$skip and caps $top at 4096", function()
      local r = page(s.base_url .. HIST_DEF .. "?$top=3&$skip=5")
      assert.equals(3, #r.json.value)
      assert.equals(data.bulk_session_id(10000, 5), r.json.value[1].SessionIds)
      assert.matches("%$skip=8", r.json["@odata.nextLink"])
      r = page(s.base_url .. HIST_DEF .. "?$top=4097")
      assert.equals(400, r.status)
      assert.equals("InvalidInput", r.json.error.code)
    end)

    it("returns static definitions newest first", function()
      local r = page(s.base_url .. HIST_DEF,
        { ScanDefinitionIds = { data.SEED_DEFINITION_ID, data.DEFINITION_IDS[2] } })
      assert.equals(81, #r.json.value)
      for i = 2, #r.json.value do
        assert.is_true(r.json.value[i - 1].LastScanned >= r.json.value[i].LastScanned)
      end
      assert.equals(data.SEED_SESSION_ID, r.json.value[81].SessionIds)
    end)

    it("implements the paging modes", function()
      s:control{ page_cap = 100 }
      s:control{ paging = "topskip" }
      local r = page(s.base_url .. HIST_DEF)
      assert.equals(100, #r.json.value)
      assert.is_nil(r.json["@odata.nextLink"])
      s:control{ paging = "topcut" }
      assert.is_nil(page(s.base_url .. HIST_DEF .. "?$top=10").json["@odata.nextLink"])
      assert.is_string(page(s.base_url .. HIST_DEF).json["@odata.nextLink"])
      s:control{ paging = "loop" }
      r = page(s.base_url .. HIST_DEF .. "?$skip=200")
      assert.matches("%$skip=200$", r.json["@odata.nextLink"])
      s:control{ paging = "foreign" }
      r = page(s.base_url .. HIST_DEF)
      assert.matches("^https://localhost:" .. s.port .. "/", r.json["@odata.nextLink"])
      s:control{ paging = "nextlink" }
      r = page(s.alt_base_url .. HIST_DEF)
      assert.matches("^https://localhost:" .. s.port .. "/", r.json["@odata.nextLink"])
    end)

    it("records the host and Authorization of every request", function()
      s:reset()
      tok = get_token(s)
      curl(s, "GET", s.alt_base_url .. AGENTS)
      curl(s, "GET", s.base_url .. AGENTS, { token = tok })
      local st = s:stats()
      assert.equals(1, st.hosts.localhost.total)
      assert.equals(0, st.hosts.localhost.auth)
      assert.equals(1, st.hosts["127.0.0.1"].auth)
      assert.equals(0, #s:requests({ hostname = "localhost", auth = true }, st))
    end)
  end)


  describe("faults", function()
    it("fails count times, then recovers", function()
      s:control{ faults = { { route = "agents", status = 503, count = 2, retry_after = "2" } } }
      local r = curl(s, "GET", s.base_url .. AGENTS, { token = tok })
      assert.equals(503, r.status)
      assert.equals("2", r.headers["retry-after"])
      assert.equals("ServiceUnavailable", r.json.error.code)
      assert.equals(503, curl(s, "GET", s.base_url .. AGENTS, { token = tok }).status)
      assert.equals(200, curl(s, "GET", s.base_url .. AGENTS, { token = tok }).status)
      assert.equals(2, s:stats().faults_fired)
    end)

    it("fires every k-th request", function()
      s:control{ faults = { { route = "*", status = 500, every = 2 } } }
      local got = {}
      for i = 1, 4 do got[i] = curl(s, "GET", s.base_url .. AGENTS, { token = tok }).status end
      assert.same({ 200, 500, 200, 500 }, got)
    end)

    it("breaks the transport and the body in the documented ways", function()
      local function with(f)
        s:control{ faults = { f } }
        return curl(s, "GET", s.base_url .. AGENTS, { token = tok })
      end
      assert.equals(52, with({ mode = "reset" }).exit)               -- empty reply
      assert.equals(18, with({ mode = "truncated" }).exit)           -- partial file
      local r = with({ mode = "empty" })
      assert.equals(200, r.status) assert.equals("", r.body)
      r = with({ mode = "html" })
      assert.equals(502, r.status) assert.matches("text/html", r.headers["content-type"])
      r = with({ mode = "seed" })
      assert.equals(200, r.status) assert.is_nil(r.json)
      assert.matches('"ListScannedTargets": {', r.body, 1, true)
      r = with({ mode = "malformed" })
      assert.is_nil(r.json)
      r = with({ mode = "huge", size = 300000 })
      assert.equals(300000, #r.body)
      r = with({ mode = "wrong_ctype" })
      assert.matches("text/plain", r.headers["content-type"])
      assert.truthy(json.decode(r.body))
      r = with({ mode = "redirect" })
      assert.equals(302, r.status)
      assert.equals("https://localhost:" .. s.port .. AGENTS, r.headers.location)
      local t0 = server.now()
      r = with({ delay = 0.3 })
      assert.equals(200, r.status)
      assert.is_true(server.now() - t0 >= 0.3)
    end)

    it("can fail the token service", function()
      s:control{ faults = { { route = "token", status = 500, count = 1 } } }
      local r = token_request(s, { client_secret = "s" })
      assert.equals(500, r.status)
      assert.equals("temporarily_unavailable", r.json.error)
      assert.equals(200, token_request(s, { client_secret = "s" }).status)
    end)
  end)


  describe("throttling", function()
    it("answers 429 with Retry-After over the budget and records request times", function()
      s:reset()
      tok = get_token(s)
      s:control{ rate_limit = { { limit = 3, window = 2 } } }
      local got = {}
      for i = 1, 4 do got[i] = curl(s, "GET", s.base_url .. AGENTS, { token = tok }) end
      assert.equals(200, got[3].status)
      assert.equals(429, got[4].status)
      assert.equals("TooManyRequests", got[4].json.error.code)
      local wait = tonumber(got[4].headers["retry-after"])
      assert.is_true(wait >= 1 and wait <= 2)
      local st = s:stats()
      assert.equals(1, st.throttled)
      assert.equals(4, #st.api_times)
      assert.equals(4, s:max_calls_in_window(2, st))
      assert.equals(1, server.max_in_window({ 0, 1, 2 }, 1))
      assert.equals(2, server.max_in_window({ 0, 0.5, 2 }, 1))
    end)
  end)


  describe("TLS", function()
    it("presents a certificate for the wrong name on badname_port", function()
      local r = curl(s, "GET", s.badname_url .. AGENTS)
      assert.is_true(r.exit == 60 or r.exit == 51, "curl exit " .. tostring(r.exit))
      local resolve = "--resolve wrong.example:" .. s.badname_port .. ":127.0.0.1"
      r = curl(s, "GET", s.badname_url .. AGENTS, { args = { resolve } })
      assert.is_true(r.exit == 60 or r.exit == 51)
      r = curl(s, "GET", "https://wrong.example:" .. s.badname_port .. AGENTS,
        { args = { resolve } })
      assert.equals(401, r.status)
    end)

    it("is not trusted through the other CA", function()
      local r = curl(s, "GET", s.base_url .. AGENTS, { cacert = s.other_ca_file })
      assert.equals(60, r.exit)
    end)
  end)
end)
