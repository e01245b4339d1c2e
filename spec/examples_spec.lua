-- The scripts in examples/ run as a user would run them, against the local server.
local server = require "spec.helpers.server"

describe("examples", function()
  local s

  setup(function()
    -- two more tenants, an app each, for tenants.lua
    s = server.start{ control = {
      tenants = { "t", "contoso", "fabrikam" },
      clients = { ["app-contoso"] = { secret = "contoso-secret-1", tenant = "contoso" },
                  ["app-fabrikam"] = { secret = "fabrikam-secret-1", tenant = "fabrikam" } } } }
  end)
  teardown(function() if s then s:stop() end end)

  local function run(script, args, extra_env)
    local env = ((extra_env or "") .. " MDE_TENANT_ID=t MDE_CLIENT_ID=c MDE_CLIENT_SECRET=s "
      .. "MDE_BASE_URL=%s MDE_AUTHORITY=%s MDE_CA_FILE=%s")
      :format(s.base_url, s.authority, s.ca_file)
    local out = os.tmpname()
    local ok, how, code = os.execute(("env -u LD_PRELOAD %s lua5.4 %s %s >%s 2>&1"):format(env, script, args, out))
    local f = assert(io.open(out))
    local text = f:read("*a")
    f:close()
    os.remove(out)
    if type(ok) == "number" then code = ok / 256 elseif how ~= "exit" then code = -1 end
    return text, ok == true and 0 or code
  end

  it("history_by_session.lua prints the seed session, one row per target", function()
    local out, code = run("examples/history_by_session.lua", "01decc497f4b4ec49a5fc4e12597f8c8")
    assert.equal(0, code, out)
    assert.matches("01decc497f4b4ec49a5fc4e12597f8c8", out, 1, true)
    for i = 1, 3 do assert.matches("127.0.0." .. i, out, 1, true) end
    assert.matches("1 session(s)", out, 1, true)
  end)

  it("failed_sessions.lua lists the failed sessions of definitions through a filter", function()
    local def = server.data.DEFINITION_IDS[1]
    local out, code = run("examples/failed_sessions.lua", "2024-06-28 " .. def)
    assert.equal(1, code, out) -- something failed: exit 1 for the scheduler
    local n = 0
    for line in out:gmatch("[^\n]+") do
      if line:match("^2024%-06%-2[89]") then
        n = n + 1
        assert.is_truthy(line:match("  Failed  ") or line:match("  Partial Success  "), line)
      end
    end
    assert.is_true(n > 0)
    assert.matches(n .. " session(s) with failures since 2024-06-28", out, 1, true)
  end)

  it("failed_sessions.lua refuses a bad date before sending anything", function()
    local out, code = run("examples/failed_sessions.lua", "yesterday " .. server.data.DEFINITION_IDS[1])
    assert.equal(2, code, out)
    assert.matches("since", out, 1, true)
  end)

  it("tenants.lua asks every tenant at once and reports each, an unknown secret as that tenant's error", function()
    local file = os.tmpname()
    server.write_file(file, [[
return {
  { name = "contoso", tenant_id = "contoso", client_id = "app-contoso", secret_env = "CONTOSO_SECRET" },
  { name = "fabrikam", tenant_id = "fabrikam", client_id = "app-fabrikam", secret_env = "FABRIKAM_SECRET" },
  { name = "wrong-secret", tenant_id = "contoso", client_id = "app-contoso", secret_env = "NO_SUCH_SECRET_SET" },
}]])
    local out, code = run("examples/tenants.lua", file .. " 2024-06-28",
      "CONTOSO_SECRET=contoso-secret-1 FABRIKAM_SECRET=fabrikam-secret-1 NO_SUCH_SECRET_SET=wrong-one-9")
    os.remove(file)
    assert.equal(1, code, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(3, #lines, out)
    for i, name in ipairs{ "contoso", "fabrikam" } do
      assert.matches("^" .. name .. "%s+(%d+) sessions since 2024%-06%-28, (%d+) not successful$", lines[i])
      local n, bad = lines[i]:match("(%d+) sessions since .-, (%d+) not")
      assert.is_true(tonumber(n) > 0 and tonumber(bad) > 0, lines[i])
    end
    assert.matches("^wrong%-secret%s+error: mde: auth", lines[3])
    for _, secret in ipairs{ "contoso-secret-1", "fabrikam-secret-1", "wrong-one-9" } do
      assert.is_nil(out:find(secret, 1, true))
    end
  end)
end)
