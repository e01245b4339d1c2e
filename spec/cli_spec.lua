-- bin/mde as a user runs it: a real process against the real local server, checking stdout,
-- stderr, files and exit codes.
local server = require "spec.helpers.server"
local mde = require "mde"
local cjson = require "cjson"

local data = server.data
local ROOT = server.root
local DEFS = data.DEFINITION_IDS
local SEED = data.SEED_SESSION_ID
local LONG_SECRET = "S3cr3t-cli-client-secret-0123456789"

local s               -- the server
local tmp             -- a scratch directory


local q = server.certs.sh_quote -- a shell word
local read = server.read_file  -- a file's text, or nil

local function write(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then os.execute("chmod " .. mode .. " " .. q(path)) end
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function lines(text)
  local out = {}
  for l in text:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

local function listdir(dir)
  local p = io.popen("ls -A " .. q(dir))
  local out = lines(p:read("*a"))
  p:close()
  return out
end


-- The environment of a run: only what is given (plus PATH), so the caller's MDE_* never leak in.
local function base_env()
  return {
    MDE_TENANT_ID = "t", MDE_CLIENT_ID = "c", MDE_CLIENT_SECRET = "s",
    MDE_BASE_URL = s.base_url, MDE_AUTHORITY = s.authority, MDE_CA_FILE = s.ca_file,
  }
end

local run_no = 0

--- Run bin/mde; returns exit code, stdout, stderr. opts: env (table; false values unset),
-- stdin (text), interpreter (e.g. "luajit"), cwd.
local function mde_run(args, opts)
  opts = opts or {}
  run_no = run_no + 1
  local out, err, input = tmp .. "/out" .. run_no, tmp .. "/err" .. run_no, tmp .. "/in" .. run_no
  write(input, opts.stdin or "")
  local env = base_env()
  for k, v in pairs(opts.env or {}) do env[k] = v or nil end
  local parts = { "env -i", "PATH=" .. q(os.getenv("PATH")), "HOME=" .. q(tmp), "LANG=C.UTF-8" }
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
  local cmd = table.concat(parts, " ") .. " " .. (opts.interpreter and (opts.interpreter .. " ") or "")
    .. q(ROOT .. "/bin/mde")
  for _, a in ipairs(args) do cmd = cmd .. " " .. q(a) end
  cmd = "cd " .. q(opts.cwd or ROOT) .. " && timeout 60 " .. cmd
    .. " <" .. q(input) .. " >" .. q(out) .. " 2>" .. q(err)
  local r1, r2, r3 = os.execute(cmd)
  local code
  if type(r1) == "number" then code = r1 / 256 else code = r2 == "exit" and r3 or 128 + r3 end
  return code, read(out) or "", read(err) or ""
end


local function client(o)
  local opts = { tenant_id = "t", client_id = "c", client_secret = "s", base_url = s.base_url,
                 authority = s.authority, ca_file = s.ca_file }
  for k, v in pairs(o or {}) do opts[k] = v end
  return assert(mde.new(opts))
end

local function decode_lines(text)
  local out = {}
  for _, l in ipairs(lines(text)) do out[#out + 1] = cjson.decode(l) end
  return out
end


setup(function()
  s = server.start{ workers = 1 }
  s:control{ clients = { c = { secret = { "s", LONG_SECRET }, cert_file = s.cert_file } } }
  local p = io.popen("mktemp -d /tmp/mde-cli-spec.XXXXXX")
  tmp = p:read("*l")
  p:close()
end)

teardown(function()
  if s then s:stop() end
  if tmp and tmp:find("^/tmp/mde%-cli%-spec%.") then os.execute("rm -rf " .. q(tmp)) end
end)

before_each(function()
  s:control{ faults = {} }
end)


describe("mde help", function()
  it("documents the commands, the exit codes and the environment", function()
    local code, out, err = mde_run({ "--help" })
    assert.equal(0, code)
    assert.equal("", err)
    for _, word in ipairs{ "history", "definition-history", "sessions", "definitions", "agents", "report",
                           "Exit codes:", "MDE_CLIENT_SECRET", "MDE_CONFIG", "--rate-limit", "ndjson" } do
      assert.matches(word, out, 1, true)
    end
  end)

  it("gives each command its options and examples", function()
    local code, out = mde_run({ "sessions", "--help" })
    assert.equal(0, code)
    assert.matches("usage: mde sessions", out, 1, true)
    assert.matches("--failed-targets", out, 1, true)
    assert.matches("Examples:", out, 1, true)
    local code2, out2 = mde_run({ "help", "report" })
    assert.equal(0, code2)
    assert.matches("--html FILE", out2, 1, true)
  end)

  it("prints the usage on stderr with code 2 when no command is given", function()
    local code, out, err = mde_run({})
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("usage: mde COMMAND", err, 1, true)
  end)
end)


describe("usage errors exit with 2", function()
  local cases = {
    { { "definitions", "--bogus" }, "unknown option --bogus" },
    { { "frobnicate" }, "unknown command 'frobnicate'" },
    { { "definitions", "--format", "xml" }, "--format must be table, csv, json or ndjson" },
    { { "sessions", DEFS[1], "--since", "yesterday" }, "since" },
    { { "sessions", DEFS[1], "--target", "10.0.0.0/33" }, "target" },
    { { "sessions", "--html", "x.html" }, "does not apply to 'sessions'" },
    { { "definition-history", DEFS[1], "--top", "10", "--all" }, "does not combine" },
    { { "definition-history", DEFS[1], "--top", "0" }, "--top must be a whole number from 1 to 4096" },
    { { "history" }, "history needs at least one SESSION_ID" },
    { { "definitions", "--retries" }, "needs a value" },
    { { "definitions", "--rate-limit", "fast" }, "expected N/SECONDS" },
    { { "sessions", "--ids-file", "/nonexistent/ids.txt" }, "--ids-file: cannot read /nonexistent/ids.txt" },
    { { "definitions", "-o", "/nonexistent/dir/x.csv" }, "cannot write /nonexistent/dir/x.csv" },
    { { "definitions", "--columns", "Target.Ip" }, "target column" },
  }
  for _, c in ipairs(cases) do
    it(table.concat(c[1], " "), function()
      local code, out, err = mde_run(c[1])
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches(c[2], err, 1, true)
      assert.matches("^mde: ", err)
    end)
  end

  it("when there are no credentials (mde.new's invalid_argument)", function()
    local code, _, err = mde_run({ "definitions" }, { env = { MDE_CLIENT_SECRET = false } })
    assert.equal(2, code)
    assert.matches("no credentials", err, 1, true)
    assert.matches("MDE_CLIENT_SECRET", err, 1, true)
  end)
end)


describe("formats", function()
  it("NDJSON by default when stdout is not a terminal: one record per line", function()
    local code, out, err = mde_run({ "definitions" })
    assert.equal(0, code)
    assert.equal("", err)
    local recs = decode_lines(out)
    assert.equal(#DEFS, #recs)
    assert.equal(DEFS[1], recs[1].id)
  end)

  it("JSON: one array", function()
    local code, out = mde_run({ "definitions", "--format", "json" })
    assert.equal(0, code)
    local list = cjson.decode(out)
    assert.equal(#DEFS, #list)
    assert.matches("^%[\n", out)
    assert.matches("\n%]\n$", out)
  end)

  it("CSV: RFC 4180 with a header row and CRLF", function()
    local code, out = mde_run({ "definitions", "-f", "csv" })
    assert.equal(0, code)
    local rows = {}
    for row in out:gmatch("([^\r\n]*)\r\n") do rows[#rows + 1] = row end
    assert.equal(#DEFS + 1, #rows)
    assert.matches("^id,scanName,scanType,isActive", rows[1])
    assert.no.matches("[^\r]\n", out)
    -- a name with a comma is quoted
    assert.matches('"Printers (SNMP community, Key Vault)"', out, 1, true)
  end)

  it("table: aligned columns, a rule and a row count", function()
    local code, out = mde_run({ "definitions", "-f", "table" })
    assert.equal(0, code)
    local l = lines(out)
    assert.matches("^id%s+scanName%s+scanType", l[1])
    assert.matches("^%-+  %-+", l[2])
    local col = l[1]:find("scanName", 1, true)
    for i = 3, 2 + #DEFS do assert.equal(" ", l[i]:sub(col - 1, col - 1)) end
    assert.equal("(" .. #DEFS .. " rows)", l[#l])
  end)

  it("one definition is shown field by field", function()
    local code, out = mde_run({ "definition", DEFS[1], "-f", "table" })
    assert.equal(0, code)
    assert.matches("\nscanName%s+Seed network scan %(SNMPv3%)\n", out)
    assert.matches("scanAuthenticationParams.authPassword%s+<redacted>", out)
  end)

  it("JSON null prints as empty in CSV and null in JSON", function()
    local _, out = mde_run({ "definition", DEFS[4], "-f", "csv", "--columns", "id,latestScan.status" })
    assert.equal("id,latestScan.status\r\n" .. DEFS[4] .. ",\r\n", out)
    local _, out2 = mde_run({ "definition", DEFS[4], "-f", "ndjson", "--columns", "id,latestScan.status" })
    assert.equal('{"id":"' .. DEFS[4] .. '","latestScan":{"status":null}}\n', out2)
  end)

  it("agents", function()
    local code, out = mde_run({ "agents", "-f", "csv", "--columns", "id,computerDnsName", "--no-header" })
    assert.equal(0, code)
    assert.equal(#data.AGENTS, #lines(out))
    assert.matches("scanner%-01%.contoso%.local", out)
    local code2, out2 = mde_run({ "agent", data.AGENTS[1].id, "-f", "json" })
    assert.equal(0, code2)
    assert.equal(data.AGENTS[1].id, cjson.decode(out2)[1].id)
  end)
end)


describe("--output", function()
  it("writes the file atomically and picks the format from the extension", function()
    local dir = tmp .. "/outdir"
    os.execute("mkdir -p " .. q(dir))
    local code, out, err = mde_run({ "sessions", DEFS[1], "-o", dir .. "/s.csv" })
    assert.equal(0, code)
    assert.equal("", out)
    assert.equal("", err)                                -- stderr is not a terminal: no notes
    local text = read(dir .. "/s.csv")
    assert.matches("^SessionIds,ScanDefinitionIds,ScanStatus,LastScanned", text)
    local n = 0
    for _ in text:gmatch("\r\n") do n = n + 1 end
    assert.equal(42, n)
    assert.same({ "s.csv" }, listdir(dir))              -- no temp file left behind
  end)

  it("--quiet keeps stderr empty", function()
    local code, _, err = mde_run({ "definitions", "-o", tmp .. "/d.json", "-q" })
    assert.equal(0, code)
    assert.equal("", err)
    assert.equal(#DEFS, #cjson.decode(read(tmp .. "/d.json")))
  end)
end)


describe("--columns and --targets", function()
  it("chooses columns by their API names", function()
    local code, out = mde_run({ "history", SEED, "-f", "csv", "--columns", "SessionIds,NumberOfTargets,orgId" })
    assert.equal(0, code)
    assert.equal("SessionIds,NumberOfTargets,orgId\r\n" .. SEED .. ",3,asdf781a0c-792d-46d3-bbea-a93dbc0bfcaa\r\n", out)
  end)

  it("gives one row per scanned target", function()
    local code, out = mde_run({ "history", SEED, "--targets", "-f", "csv",
      "--columns", "SessionIds,Target.Ip,Hostname,Target.ScanStatus,ScanDuration" })
    assert.equal(0, code)
    assert.equal("SessionIds,Target.Ip,Target.Hostname,Target.ScanStatus,Target.ScanDuration\r\n"
      .. SEED .. ",127.0.0.1,DESKTOP-Test,Success,00:08:30\r\n"
      .. SEED .. ",127.0.0.2,DESKTOP-Test2,Success,00:08:00\r\n"
      .. SEED .. ",127.0.0.3,DESKTOP-Test3,Success,00:08:50\r\n", out)
  end)

  it("nests the target in NDJSON", function()
    local _, out = mde_run({ "history", SEED, "--targets" })
    local recs = decode_lines(out)
    assert.equal(3, #recs)
    assert.equal("127.0.0.2", recs[2].Target.Ip)
    assert.is_nil(recs[2].ListScannedTargets)
  end)

  it("warns about a column that matched nothing", function()
    local code, _, err = mde_run({ "history", SEED, "-f", "csv", "--columns", "SessionIds,Nope" })
    assert.equal(0, code)
    assert.matches("column 'Nope' matched no field", err, 1, true)
  end)
end)


describe("filters", function()
  local function ids_of(records)
    local out = {}
    for i, r in ipairs(records) do out[i] = r.SessionIds end
    return out
  end

  it("give the sessions the library's filter gives", function()
    local criteria = { status = "Failed", since = "2024-06-25", target = "10.0.0.0/8" }
    local expected = assert(client():sessions({ DEFS[1], DEFS[2] }, criteria))
    assert.is_true(#expected > 0)
    local code, out = mde_run({ "sessions", DEFS[1], DEFS[2], "--status", "failed", "--since", "2024-06-25",
      "--target", "10.0.0.0/8" })
    assert.equal(0, code)
    assert.same(ids_of(expected), ids_of(decode_lines(out)))
  end)

  it("hostname globs, failed targets and before", function()
    local criteria = { hostname = "SRV-*", failed_targets = true, before = "2024-06-28" }
    local expected = assert(client():sessions(DEFS, criteria))
    local code, out = mde_run({ "sessions", "--hostname", "srv-*", "--failed-targets", "--before", "2024-06-28" })
    assert.equal(0, code)
    assert.same(ids_of(expected), ids_of(decode_lines(out)))
  end)

  it("read IDs from a file and from standard input", function()
    write(tmp .. "/ids.txt", "# seed and printers\n" .. DEFS[1] .. "\n\n" .. DEFS[3] .. "  # printers\n")
    local _, out = mde_run({ "sessions", "--ids-file", tmp .. "/ids.txt", "--status", "Partial Success" })
    local expected = assert(client():sessions({ DEFS[1], DEFS[3] }, { status = "Partial Success" }))
    assert.same(ids_of(expected), ids_of(decode_lines(out)))
    local _, out2 = mde_run({ "history", "-" }, { stdin = SEED .. "\n" })
    assert.same({ SEED }, ids_of(decode_lines(out2)))
  end)

  it("definition-history: one page with --top/--skip", function()
    local code, out = mde_run({ "definition-history", DEFS[2], "--top", "5", "--skip", "10" })
    assert.equal(0, code)
    local expected = assert(client():scan_history_by_definition(DEFS[2], { top = 5, skip = 10 }))
    assert.same(ids_of(expected), ids_of(decode_lines(out)))
  end)

  it("warns about session IDs that returned nothing", function()
    local code, out, err = mde_run({ "history", SEED, "ffffffffffffffffffffffffffffffff" })
    assert.equal(0, code)
    assert.equal(1, #lines(out))
    assert.matches("warning: 1 of 2 session IDs returned nothing: ffffffffffffffffffffffffffffffff", err, 1, true)
  end)
end)


describe("exit codes", function()
  it("3 when authentication fails", function()
    local code, out, err = mde_run({ "definitions" }, { env = { MDE_CLIENT_SECRET = "wrong-secret" } })
    assert.equal(3, code)
    assert.equal("", out)
    assert.matches("^mde: auth 401", err)
    assert.matches("AADSTS7000215", err, 1, true)
    assert.no.matches("wrong-secret", err, 1, true)
  end)

  it("4 on an API error before any output", function()
    s:control{ faults = { { route = "history_by_definition", status = 400, code = "InvalidInput",
                            message = "bad things" } } }
    local code, out, err = mde_run({ "sessions", DEFS[1], "-f", "csv" }, { env = { MDE_CLIENT_SECRET = LONG_SECRET } })
    assert.equal(4, code)
    assert.equal("", out)
    assert.matches("^mde: http 400 InvalidInput: bad things", err)
  end)

  it("4 on a transport error (TLS: wrong CA)", function()
    local code, _, err = mde_run({ "definitions" }, { env = { MDE_CA_FILE = s.other_ca_file } })
    assert.equal(4, code)
    assert.matches("tls", err, 1, true)
  end)

  it("5 when a later page fails: the records before it are written", function()
    s:control{ faults = { { route = "history_by_definition", skip = 2, status = 500 } } }
    local code, out, err = mde_run({ "definition-history", DEFS[2], "--page-size", "10", "--retries", "0" })
    assert.equal(5, code)
    assert.equal(20, #decode_lines(out))
    assert.matches("mde: http 500", err, 1, true)
  end)

  it("5 with --output: the file is left as FILE.partial, never as FILE", function()
    s:control{ faults = { { route = "history_by_definition", skip = 1, status = 503 } } }
    local path = tmp .. "/partial.csv"
    local code, out, err = mde_run({ "sessions", DEFS[2], "--page-size", "10", "--retries", "0", "-o", path })
    assert.equal(5, code)
    assert.equal("", out)
    assert.is_false(exists(path))
    local text = read(path .. ".partial")
    assert.equal(11, #lines(text))                        -- header + 10 rows
    assert.matches("they are in " .. path .. ".partial", err, 1, true)
  end)

  it("4 with --output and nothing written: no file at all", function()
    s:control{ faults = { { route = "history_by_definition", status = 500 } } }
    local dir = tmp .. "/nothing"
    os.execute("mkdir -p " .. q(dir))
    local code = mde_run({ "sessions", DEFS[2], "--retries", "0", "-o", dir .. "/x.ndjson" })
    assert.equal(4, code)
    assert.same({}, listdir(dir))
  end)
end)


describe("exit code 1", function()
  it("when the C core cannot be loaded", function()
    local code, out, err = mde_run({ "definitions" }, { env = { MDE_BUILD_DIR = tmp .. "/no-such-build" },
      interpreter = "lua5.4 -e 'package.cpath=\"\"'" })
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("cannot load the C core mde.core (from a checkout, run `make` first)", err, 1, true)
  end)
end)


describe("secrets", function()
  it("a secret on the command line is accepted with a warning, and never printed", function()
    local code, out, err = mde_run({ "definitions", "--client-secret", LONG_SECRET, "-v" },
      { env = { MDE_CLIENT_SECRET = false } })
    assert.equal(0, code)
    assert.matches("warning: --client-secret on the command line is visible in ps/shell history; "
      .. "use MDE_CLIENT_SECRET or a config file", err, 1, true)
    assert.matches("[request]", err, 1, true)             -- --verbose logged the requests
    assert.no.matches(LONG_SECRET, out .. err, 1, true)
  end)

  it("--token and --key-passphrase warn too", function()
    local token = s:issue_token{}
    local code, _, err = mde_run({ "agents", "--token", token }, { env = { MDE_CLIENT_SECRET = false } })
    assert.equal(0, code)
    assert.matches("--token on the command line", err, 1, true)
    local code2, _, err2 = mde_run({ "agents", "--cert-file", s.cert_file, "--key-file", s.key_encrypted_file,
      "--key-passphrase", s.key_passphrase }, { env = { MDE_CLIENT_SECRET = false } })
    assert.equal(0, code2)
    assert.matches("--key-passphrase on the command line", err2, 1, true)
    assert.no.matches(s.key_passphrase, err2, 1, true)
  end)

  it("no scan credential and no client secret appear in any output of any command", function()
    local seen = {}
    local function collect(args)
      local _, out, err = mde_run(args, { env = { MDE_CLIENT_SECRET = LONG_SECRET } })
      seen[#seen + 1] = out .. err
    end
    for _, f in ipairs{ "table", "csv", "json", "ndjson" } do
      collect({ "definitions", "-f", f, "-v" })
      collect({ "definitions", "-f", f, "--columns", "id,scanAuthenticationParams" })
      for _, id in ipairs(DEFS) do collect({ "definition", id, "-f", f }) end
      collect({ "sessions", "-f", f, "--targets", "--status", "Failed" })
    end
    local html = tmp .. "/secrets.html"
    collect({ "report", "--html", html, "-v" })
    seen[#seen + 1] = read(html)
    local all = table.concat(seen, "\n")
    assert.matches("<redacted>", all, 1, true)
    for _, secret in ipairs(data.SECRETS) do assert.no.matches(secret, all, 1, true) end
    assert.no.matches(LONG_SECRET, all, 1, true)
    assert.no.matches("S3cr3t", all, 1, true)
  end)
end)


describe("configuration", function()
  it("reads a config file, warns when it holding a secret is readable by others", function()
    local path = tmp .. "/mde.conf"
    write(path, "# lua-mde\ntenant_id = t\nclient-id = c\nclient_secret = \"" .. LONG_SECRET .. "\"\n", "644")
    local env = { MDE_TENANT_ID = false, MDE_CLIENT_ID = false, MDE_CLIENT_SECRET = false }
    local code, out, err = mde_run({ "agents", "--config", path }, { env = env })
    assert.equal(0, code)
    assert.equal(#data.AGENTS, #lines(out))
    assert.matches("holds a secret and is readable by group or others (mode 644); run: chmod 600", err, 1, true)
    os.execute("chmod 600 " .. q(path))
    env.MDE_CONFIG = path
    local code2, _, err2 = mde_run({ "agents" }, { env = env })
    assert.equal(0, code2)
    assert.equal("", err2)
  end)

  it("flags beat the environment, which beats the file", function()
    local path = tmp .. "/prec.conf"
    write(path, "client_secret = wrong-from-file\n", "600")
    -- the environment's (right) secret wins over the file's
    local code = mde_run({ "agents", "--config", path })
    assert.equal(0, code)
    -- a flag (wrong) wins over the environment
    local code2, _, err2 = mde_run({ "agents", "--config", path, "--client-secret", "wrong-from-flag" })
    assert.equal(3, code2)
    assert.no.matches("wrong-from-flag", err2, 1, true)
    -- the file alone
    local code3 = mde_run({ "agents", "--config", path }, { env = { MDE_CLIENT_SECRET = false } })
    assert.equal(3, code3)
    -- tenant from the environment, overridden by a flag
    local code4, _, err4 = mde_run({ "agents", "--tenant-id", "nope" })
    assert.equal(3, code4)
    assert.matches("AADSTS90002", err4, 1, true)
  end)

  it("rejects unknown keys with the line number", function()
    local path = tmp .. "/bad.conf"
    write(path, "tenant_id = t\ncolour = blue\n", "600")
    local code, _, err = mde_run({ "agents", "--config", path })
    assert.equal(2, code)
    assert.matches(path .. ":2: unknown key 'colour'", err, 1, true)
  end)

  it("--insecure works with a warning", function()
    local code, out, err = mde_run({ "agents", "--insecure" }, { env = { MDE_CA_FILE = s.other_ca_file } })
    assert.equal(0, code)
    assert.equal(#data.AGENTS, #lines(out))
    assert.matches("warning: --insecure", err, 1, true)
  end)

  it("--rate-limit paces the requests", function()
    local t0 = server.now()
    local code, out = mde_run({ "definition-history", "bulk-35", "--page-size", "10", "--rate-limit", "2/1" })
    assert.equal(0, code)
    assert.equal(35, #lines(out))
    assert.is_true(server.now() - t0 >= 1)                  -- 4 calls at 2 per second
  end)
end)


describe("progress", function()
  it("is silent when stderr is not a terminal", function()
    local code, _, err = mde_run({ "sessions", DEFS[1] })
    assert.equal(0, code)
    assert.equal("", err)
  end)

  it("--progress prints machine-readable lines when stderr is not a terminal", function()
    local code, _, err = mde_run({ "definition-history", "bulk-25", "--page-size", "10", "--rate-limit", "2/1",
      "--progress" }, { env = { MDE_CLIENT_SECRET = LONG_SECRET } })
    assert.equal(0, code)
    assert.matches("mde: progress records=%d+ pages=%d+ retries=0 rate_limit_waits=%d+", err)
    assert.matches("pages=3", err, 1, true)
    assert.matches("records=25", err, 1, true)
    local last = lines(err)[#lines(err)]
    assert.is_true(tonumber(last:match("rate_limit_waits=(%d+)")) >= 1, last)
  end)

  it("is redrawn in place on a terminal", function()
    if not os.execute("command -v script >/dev/null") then error("the `script` command (util-linux) is needed") end
    local log = tmp .. "/tty.log"
    local env = {}
    for k, v in pairs(base_env()) do env[#env + 1] = k .. "=" .. q(v) end
    local cmd = ("cd %s && env -i PATH=%s LANG=C.UTF-8 %s MDE_CLIENT_SECRET=%s timeout 60 "
      .. "script -qfc %s /dev/null > %s")
      :format(q(ROOT), q(os.getenv("PATH")), table.concat(env, " "), q(LONG_SECRET),
        q("bin/mde definition-history bulk-25 --page-size 10 --rate-limit 2/1 -o " .. tmp .. "/tty.csv"), q(log))
    os.execute(cmd)
    local text = read(log)
    assert.matches("\rmde: %d+ records, %d pages", text)
    assert.matches("waited %d%.%d s for the rate limit", text)
    assert.matches("wrote 25 records", text, 1, true)
  end)
end)


describe("report", function()
  it("writes the HTML and a readable summary with the library's totals", function()
    local html = tmp .. "/report.html"
    local code, out, err = mde_run({ "report", "--html", html, "--since", "2024-06-20" })
    assert.equal(0, code)
    assert.equal("", err)
    local expected = assert(client():sessions(DEFS, { since = "2024-06-20" }))
    local failed = 0
    for _, r in ipairs(expected) do
      if r.ScanStatus == "Failed" then failed = failed + 1 end
    end
    assert.matches("Sessions%s+" .. #expected .. "  %(%d+ succeeded, %d+ partially succeeded, "
      .. failed .. " failed%)", out)
    assert.matches("HTML report: " .. html, out, 1, true)
    local page = read(html)
    assert.matches('id="total-sessions">' .. #expected .. "<", page, 1, true)
    assert.matches('id="total-failed">' .. failed .. "<", page, 1, true)
  end)

  it("--format json gives the figures", function()
    local code, out = mde_run({ "report", DEFS[1], DEFS[2], "--format", "json", "-q" })
    assert.equal(0, code)
    local sm = cjson.decode(out)
    local expected = assert(client():sessions({ DEFS[1], DEFS[2] }))
    assert.equal(#expected, sm.sessions)
    assert.equal(2, #sm.definitions)
    assert.equal("Seed network scan (SNMPv3)", sm.definitions[1].name)
  end)

  it("partial: FILE.partial with a banner, and code 5", function()
    s:control{ faults = { { route = "history_by_definition", skip = 1, status = 500 } } }
    local html = tmp .. "/partial.html"
    local code, out, err = mde_run({ "report", DEFS[2], "--html", html, "--page-size", "10", "--retries", "0" })
    assert.equal(5, code)
    assert.is_false(exists(html))
    assert.matches("Incomplete report: stopped after 10 sessions", read(html .. ".partial"), 1, true)
    assert.matches("INCOMPLETE", out, 1, true)
    assert.matches("mde: http 500", err, 1, true)
  end)
end)


describe("examples/cron_report.sh", function()
  local function cron(env_extra)
    local days = math.floor((os.time() - os.time{ year = 2024, month = 6, day = 20, hour = 0 }) / 86400)
    local dir = tmp .. "/cron"
    local env = base_env()
    for k, v in pairs(env_extra) do env[k] = v end
    local parts = {}
    for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
    local out, err = tmp .. "/cron.out", tmp .. "/cron.err"
    local r1, r2, r3 = os.execute(("env -i PATH=%s %s MDE=%s timeout 120 bash %s %s %d >%s 2>%s"):format(
      q(os.getenv("PATH")), table.concat(parts, " "), q(ROOT .. "/bin/mde"), q(ROOT .. "/examples/cron_report.sh"),
      q(dir), days, q(out), q(err)))
    local code = type(r1) == "number" and r1 / 256 or (r2 == "exit" and r3 or 128 + r3)
    return code, read(out) or "", read(err) or "", dir
  end

  it("writes the report, the figures and the failed targets, and alerts on a low success rate", function()
    local code, out, err, dir = cron({ MIN_SUCCESS_RATE = "0.9" })
    assert.equal(6, code, err)
    assert.matches("success rate 60.0%, below 90.0%", out, 1, true)
    local today = os.date("!%Y-%m-%d")
    assert.matches("<!DOCTYPE html>", read(dir .. "/report-" .. today .. ".html"), 1, true)
    assert.equal(0.6, cjson.decode(read(dir .. "/summary-" .. today .. ".json")).success_rate)
    local csv = read(dir .. "/failed-targets-" .. today .. ".csv")
    assert.matches("^SessionIds,LastScanned,ScanDefinitionIds,Target.Ip", csv)
    local code2, out2, err2 = cron({ MIN_SUCCESS_RATE = "0.5" })
    assert.equal(0, code2)
    assert.equal("", out2 .. err2)                      -- silent when all is well: cron mails nothing
  end)

  it("says why a run failed", function()
    local code, _, err = cron({ MDE_CLIENT_SECRET = "wrong-secret" })
    assert.equal(3, code)
    assert.matches("mde report: authentication failed", err, 1, true)
  end)
end)


describe("other interpreters", function()
  for _, lua in ipairs{ "lua5.1", "lua5.3", "luajit" } do
    local flavour = lua == "luajit" and "luajit" or lua
    it("give the same output with " .. lua, function()
      if not exists(ROOT .. "/build/" .. flavour .. "/mde/core.so") then
        error("build/" .. flavour .. "/mde/core.so is missing: run make LUA=" .. (lua:match("%d.%d") or "luajit"))
      end
      local _, expected = mde_run({ "sessions", DEFS[1], "--targets", "-f", "csv" })
      local code, out, err = mde_run({ "sessions", DEFS[1], "--targets", "-f", "csv" }, { interpreter = lua })
      assert.equal("", err)
      assert.equal(0, code)
      assert.equal(expected, out)
    end)
  end
end)
