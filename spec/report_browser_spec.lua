-- The HTML report rendered by a real browser (headless Chromium): it loads without console
-- errors (no CSP violation, no blocked resource), shows the totals the library computes, and
-- renders to a screenshot. Chromium is required: without it this spec fails, it does not skip.
local server = require "spec.helpers.server"
local report = require "mde.report"
local mde = require "mde"

local data = server.data
local ROOT = server.root
local DEFS = data.DEFINITION_IDS
local SINCE = "2024-06-20"

local s, tmp, chromium


local q = server.certs.sh_quote -- a shell word
local read = server.read_file  -- a file's text, or nil

local function sh(cmd)
  local r1, r2, r3 = os.execute(cmd)
  if type(r1) == "number" then return r1 == 0, r1 / 256 end
  return r1 == true, r2 == "exit" and r3 or 128 + r3
end

local function find_chromium()
  for _, name in ipairs{ "chromium", "chromium-browser", "google-chrome" } do
    local p = io.popen("command -v " .. name .. " 2>/dev/null")
    local path = p:read("*l")
    p:close()
    if path and path ~= "" then return path end
  end
  return nil
end


--- Run headless Chromium on a file with extra flags; returns ok, stdout, stderr (bounded: 90 s).
local run_no = 0
local function browse(file, flags)
  run_no = run_no + 1
  local profile = tmp .. "/profile" .. run_no            -- a fresh user data dir each time
  local out, err = tmp .. "/chromium" .. run_no .. ".out", tmp .. "/chromium" .. run_no .. ".err"
  local cmd = table.concat({
    "timeout 90", q(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
    "--disable-extensions", "--user-data-dir=" .. q(profile), "--enable-logging=stderr", "--v=0",
    flags, q("file://" .. file), ">" .. q(out), "2>" .. q(err),
  }, " ")
  local ok, code = sh(cmd)
  return ok, read(out) or "", read(err) or "", code
end

-- the text of the element with this id in a DOM dump
local function by_id(dom, id)
  return dom:match('id="' .. id:gsub("%-", "%%-") .. '"[^>]*>([^<]*)<')
end

-- console messages Chromium logged (CSP violations, blocked loads, script errors)
local function console_lines(err)
  local out = {}
  for line in err:gmatch("[^\n]+") do
    if line:find(":CONSOLE", 1, true) then out[#out + 1] = line end
  end
  return out
end


setup(function()
  chromium = find_chromium()
  assert(chromium, "headless Chromium is needed by this spec and was not found: install Debian's `chromium` "
    .. "package (apt-get install chromium, or .ci/deps.sh test)")
  s = server.start{ workers = 1 }
  local p = io.popen("mktemp -d /tmp/mde-browser-spec.XXXXXX")
  tmp = p:read("*l")
  p:close()
end)

teardown(function()
  if s then s:stop() end
  if tmp and tmp:find("^/tmp/mde%-browser%-spec%.") and not os.getenv("MDE_KEEP_SCREENSHOT") then
    os.execute("rm -rf " .. q(tmp))
  end
end)


describe("the HTML report in headless Chromium", function()
  local html, expected

  setup(function()
    html = tmp .. "/report.html"
    local cmd = table.concat({
      "cd", q(ROOT), "&&", "env -i", "PATH=" .. q(os.getenv("PATH")), "MDE_TENANT_ID=t", "MDE_CLIENT_ID=c",
      "MDE_CLIENT_SECRET=s", "MDE_BASE_URL=" .. q(s.base_url), "MDE_AUTHORITY=" .. q(s.authority),
      "MDE_CA_FILE=" .. q(s.ca_file), "timeout 60 bin/mde report --since", SINCE, "--html", q(html),
      "-q", ">/dev/null 2>" .. q(tmp .. "/mde.err"),
    }, " ")
    local ok = sh(cmd)
    assert(ok, "bin/mde report failed: " .. tostring(read(tmp .. "/mde.err")))

    -- the totals, computed from the data through the library
    local client = assert(mde.new{ tenant_id = "t", client_id = "c", client_secret = "s",
      base_url = s.base_url, authority = s.authority, ca_file = s.ca_file })
    local sessions = assert(client:sessions(DEFS, { since = SINCE }))
    expected = { sessions = #sessions, success = 0, failed = 0, partial = 0, targets = 0, failed_targets = 0 }
    for _, r in ipairs(sessions) do
      local st = mde.filter.normalize_status(r.ScanStatus)
      if st == "success" then expected.success = expected.success + 1
      elseif st == "failed" then expected.failed = expected.failed + 1
      elseif st == "partialsuccess" then expected.partial = expected.partial + 1 end
      for _, t in ipairs(r.ListScannedTargets) do
        expected.targets = expected.targets + 1
        if t.ScanStatus ~= "Success" then expected.failed_targets = expected.failed_targets + 1 end
      end
    end
    assert(expected.sessions > 100 and expected.failed > 0 and expected.partial > 0)
  end)

  it("loads without console errors and shows the expected totals", function()
    local ok, dom, err = browse(html, "--dump-dom")
    assert.is_true(ok, err)
    assert.same({}, console_lines(err))
    assert.matches("<svg", dom, 1, true)
    assert.equal(tostring(expected.sessions), by_id(dom, "total-sessions"))
    assert.equal(tostring(expected.success), by_id(dom, "total-success"))
    assert.equal(tostring(expected.failed), by_id(dom, "total-failed"))
    assert.equal(tostring(expected.partial), by_id(dom, "total-partial"))
    assert.equal(tostring(expected.targets), by_id(dom, "total-targets"))
    assert.equal(tostring(expected.failed_targets), by_id(dom, "total-failed-targets"))
    assert.equal(("%.1f%%"):format(expected.success / expected.sessions * 100), by_id(dom, "total-rate"))
    -- one row per failed target (fewer than the 1000 kept)
    local rows = 0
    local failed_table = dom:match('<table id="failed">(.-)</table>')
    for _ in failed_table:gmatch("<tr>") do rows = rows + 1 end
    assert.equal(expected.failed_targets + 1, rows)          -- + the header row
    assert.is_nil(dom:find('id="incomplete"', 1, true))
  end)

  it("renders to a screenshot", function()
    local png = tmp .. "/report.png"
    local ok, _, err = browse(html, "--screenshot=" .. q(png) .. " --window-size=1280,2000 --hide-scrollbars")
    assert.is_true(ok, err)
    local img = read(png)
    assert.is_truthy(img, "no screenshot written: " .. err)
    assert.equal("\137PNG\r\n\26\n", img:sub(1, 8))
    local function u32(at)
      local a, b, c, d = img:byte(at, at + 3)
      return ((a * 256 + b) * 256 + c) * 256 + d
    end
    assert.equal(1280, u32(17))
    assert.equal(2000, u32(21))
    assert.is_true(#img > 50000, "the screenshot looks empty (" .. #img .. " bytes)")
    if os.getenv("MDE_KEEP_SCREENSHOT") then print("screenshot: " .. png) end
  end)

  it("keeps hostile host names as text: no element is injected", function()
    local r = report.new{ definitions = { { id = "d1", scanName = '<img src=x onerror="alert(1)">' } } }
    r:add{ SessionIds = "s1", ScanDefinitionIds = "d1", ScanStatus = "Failed", LastScanned = "2024-06-01T00:00:00Z",
      ListScannedTargets = {
        { Ip = "10.0.0.1", Hostname = "<script>document.title='pwned'</script>", ScanStatus = "Failed",
          ErrorMessage = '"onload="alert(1)', ScanDuration = "00:00:01" },
        { Ip = "10.0.0.2", Hostname = "</td></tr></table><iframe src=x>", ScanStatus = "Failed",
          ErrorMessage = "<svg onload=alert(1)>", ScanDuration = "00:00:01" },
      } }
    local path = tmp .. "/hostile.html"
    local f = assert(io.open(path, "wb"))
    f:write(r:html())
    f:close()
    local ok, dom, err = browse(path, "--dump-dom")
    assert.is_true(ok, err)
    assert.same({}, console_lines(err))
    assert.is_nil(dom:find("<script", 1, true))
    assert.is_nil(dom:find("<iframe", 1, true))
    assert.is_nil(dom:find("<img", 1, true))
    assert.equal(1, select(2, dom:gsub("<svg", "")))        -- only the chart
    assert.is_nil(dom:find("pwned</title>", 1, true))
    assert.matches("&lt;script&gt;document.title='pwned'&lt;/script&gt;", dom, 1, true)
    assert.equal("2", by_id(dom, "total-failed-targets"))
  end)
end)
