-- Units of mde.report: aggregation, chart buckets, failed targets, HTML escaping, no secrets.
local report = require "mde.report"
local mde = require "mde"

local null = mde.null


local function session(id, def, status, when, targets)
  local list, ok = {}, 0
  for i, t in ipairs(targets or {}) do
    list[i] = { Ip = t[1], Hostname = t[2], ScanStatus = t[3], ErrorMessage = t[4] or "",
                ScanDuration = "00:00:0" .. i, ScannedDeviceDescription = "d" }
    if t[3] == "Success" then ok = ok + 1 end
  end
  return { SessionIds = id, ScanDefinitionIds = def, ScanStatus = status, LastScanned = when,
           NumberOfTargets = #list, NumberOfSuccessfullyScannedTargets = ok, ListScannedTargets = list,
           orgId = "o" }
end


local function count(s, needle)
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end


describe("report aggregation", function()
  local r
  before_each(function()
    r = report.new{ definitions = {
      { id = "def-a", scanName = "Alpha", scanAuthenticationParams = { authPassword = "S3cr3t-a" } },
      "def-b", "def-empty" } }
    r:add(session("s1", "def-a", "Success", "2024-06-01T10:00:00.1234567Z",
      { { "10.0.0.1", "h1", "Success" } }))
    r:add(session("s2", "DEF-A", "Failed", "2024-06-02T10:00:00Z",
      { { "10.0.0.2", "h2", "Failed", "denied" }, { "10.0.0.3", "h3", "Failed", "timeout" } }))
    r:add(session("s3", "def-b", "Partial Success", "2024-06-02T23:59:59.9999999Z",
      { { "10.0.0.4", "h4", "Success" }, { "10.0.0.5", "h5", "Failed", "unreachable" } }))
    r:add(session("s4", "def-b", "PartialSuccess", "2024-06-04T00:00:00Z", {}))
    r:add({ SessionIds = "s5", ScanDefinitionIds = "def-b", ScanStatus = null, LastScanned = null,
            NumberOfTargets = 4, NumberOfSuccessfullyScannedTargets = 1 })
  end)

  it("counts sessions by status, targets and failed targets", function()
    local s = r:summary()
    assert.equal(5, s.sessions)
    assert.equal(1, s.success)
    assert.equal(1, s.failed)
    assert.equal(2, s.partial)
    assert.equal(1, s.other)
    assert.equal(0.2, s.success_rate)
    assert.equal(5 + 4, s.targets)                 -- 5 listed, 4 from the counters of s5
    assert.equal(3 + 3, s.failed_targets)
    assert.equal("2024-06-01T10:00:00.1234567Z", s.first_scanned)
    assert.equal("2024-06-04T00:00:00Z", s.last_scanned)
  end)

  it("groups per definition, ignoring the case of ids, in the requested order", function()
    local d = r:summary().definitions
    assert.equal(3, #d)
    assert.same({ "def-a", "Alpha", 2, 1, 1 }, { d[1].id, d[1].name, d[1].sessions, d[1].success, d[1].failed })
    assert.equal(0.5, d[1].success_rate)
    assert.same({ "def-b", 3, 2, 1 }, { d[2].id, d[2].sessions, d[2].partial, d[2].other })
    assert.same({ "def-empty", 0 }, { d[3].id, d[3].sessions })
    assert.is_nil(d[3].success_rate)
  end)

  it("counts sessions per day (UTC), empty days included", function()
    local s = r:summary()
    assert.equal("day", s.chart_unit)
    assert.same({ "2024-06-01", "2024-06-02", "2024-06-03", "2024-06-04" },
      { s.chart[1].from, s.chart[2].from, s.chart[3].from, s.chart[4].from })
    assert.same({ 0, 1, 1, 0 }, { s.chart[2].success, s.chart[2].failed, s.chart[2].partial, s.chart[3].partial })
    assert.equal(1, s.chart[4].partial)
  end)

  it("lists the failed targets newest first", function()
    local rows = r:failed_rows()
    assert.equal(3, #rows)
    assert.same({ "h5", "h2", "h3" }, { rows[1].hostname, rows[2].hostname, rows[3].hostname })
    assert.equal("unreachable", rows[1].error)
  end)
end)


describe("report buckets", function()
  it("become weekly past 62 days and monthly past 62 weeks", function()
    local r = report.new{ since = "2024-01-01", before = "2024-06-01" }
    r:add(session("x", "d", "Success", "2024-03-04T00:00:00Z"))
    local b = r:buckets()
    assert.equal("week", b.unit)
    assert.equal("2024-01-01", b.list[1].label)              -- a Monday
    local r2 = report.new{ since = "2020-01-01", before = "2024-06-01" }
    r2:add(session("x", "d", "Failed", "2023-03-04T00:00:00Z"))
    b = r2:buckets()
    assert.equal("month", b.unit)
    assert.equal("2020-01", b.list[1].label)
    assert.equal("2024-05", b.list[#b.list].label)
    for _, e in ipairs(b.list) do
      if e.label == "2023-03" then assert.equal(1, e.counts.failed) end
    end
  end)

  it("without since, cover at most the 62 days up to the newest session", function()
    local r = report.new{}
    r:add(session("old", "d", "Success", "2022-12-19T15:14:24.5561791Z"))
    r:add(session("a", "d", "Failed", "2024-06-20T00:00:00Z"))
    r:add(session("b", "d", "Success", "2024-06-30T00:00:00Z"))
    local b = r:buckets()
    assert.equal("day", b.unit)
    assert.equal("2024-06-20", b.list[1].label)
    assert.equal("2024-06-30", b.list[#b.list].label)
    assert.equal(1, r:outside_chart(b))
    assert.matches("1 session outside the chart's range (or without a date) is counted in the totals above; "
      .. "the oldest was scanned on 2022-12-19.", r:html(), 1, true)
  end)

  it("leave sessions outside since/before out of the chart but in the totals", function()
    local r = report.new{ since = "2024-06-10" }
    r:add(session("old", "d", "Success", "2022-12-19T15:14:24.5561791Z"))
    r:add(session("new", "d", "Success", "2024-06-11T00:00:00Z"))
    assert.equal(1, r:outside_chart(r:buckets()))
    assert.equal(2, r:summary().sessions)
  end)
end)


describe("failed targets kept", function()
  it("are bounded by max_failed, keeping the most recent, while all are counted", function()
    local r = report.new{ max_failed = 3 }
    for i = 1, 20 do
      r:add(session("s" .. i, "d", "Failed", ("2024-06-%02dT00:00:00Z"):format(i),
        { { "10.0.0." .. i, "h" .. i, "Failed" } }))
    end
    local rows = r:failed_rows()
    assert.equal(3, #rows)
    assert.same({ "h20", "h19", "h18" }, { rows[1].hostname, rows[2].hostname, rows[3].hostname })
    assert.equal(20, r:summary().failed_targets)
    assert.matches("The 3 most recent of 20 failed targets", r:html(), 1, true)
  end)
end)


describe("report HTML", function()
  local hostile = {
    '<script>alert(1)</script>', '"onload="alert(1)', "' onmouseover='x", "</td></tr></table><img src=x>",
    "a&b", "<svg/onload=alert(1)>",
  }

  local function hostile_report()
    local r = report.new{ title = "Scans <b>&</b>", filters = 'hostname "<x>"',
      definitions = { { id = "d<1>", scanName = '<script>alert("name")</script>',
                        scanAuthenticationParams = { communityString = "S3cr3t-c" } } } }
    for i, h in ipairs(hostile) do
      r:add(session("s" .. i .. '"><script>', "d<1>", "Failed", "2024-06-0" .. i .. "T00:00:00Z",
        { { h, h, "Failed", h }, { "10.0.0.1", "ok", "Success" } }))
    end
    r:add({ SessionIds = "x", ScanDefinitionIds = "d<1>", ScanStatus = "<i>Weird</i>",
            LastScanned = "2024-06-03T00:00:00Z", ListScannedTargets = {} })
    return r:html()
  end

  it("escapes every value from the API in text and attributes", function()
    local html = hostile_report()
    assert.no.matches("<script", html, 1, true)
    assert.no.matches("<img", html, 1, true)
    assert.no.matches("<svg/", html, 1, true)
    assert.no.matches('"onload=', html, 1, true)
    assert.no.matches("' onmouseover", html, 1, true)
    assert.no.matches("<b>", html, 1, true)
    assert.matches("&lt;script&gt;alert(1)&lt;/script&gt;", html, 1, true)
    assert.matches("&quot;onload=&quot;alert(1)", html, 1, true)
    assert.matches("&#39; onmouseover=&#39;x", html, 1, true)
    assert.matches("a&amp;b", html, 1, true)
    -- only the report's own tags: one svg, one style, no script
    assert.equal(1, count(html, "<svg"))
    assert.equal(1, count(html, "<style"))
  end)

  it("escapes quotes for attribute values", function()
    assert.equal("&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;", report.escape([[<a href="x" title='y'>&]]))
    assert.equal("a\239\191\189b", report.escape("a\0b"))
  end)

  it("is self-contained: no script, no external resource, a CSP that forbids both", function()
    local r = report.new{ definitions = { "d1" } }
    r:add(session("s1", "d1", "Failed", "2024-06-01T00:00:00Z", { { "10.0.0.2", "h2", "Failed", "boom" } }))
    local html = r:html()
    assert.no.matches("<script", html, 1, true)
    assert.matches("<!DOCTYPE html>", html, 1, true)
    assert.matches("default-src 'none'", html, 1, true)
    assert.no.matches("src=", html, 1, true)
    assert.no.matches("href=", html, 1, true)
    assert.no.matches("url(", html, 1, true)
    assert.no.matches("@import", html, 1, true)
  end)

  it("shows no secret of the definitions it was given", function()
    local html = hostile_report()
    assert.no.matches("S3cr3t", html, 1, true)
  end)

  it("has the totals, the per-definition table, the chart and the failed targets", function()
    local r = report.new{ definitions = { { id = "d1", scanName = "One" } } }
    r:add(session("s1", "d1", "Success", "2024-06-01T00:00:00Z", { { "10.0.0.1", "h1", "Success" } }))
    r:add(session("s2", "d1", "Failed", "2024-06-02T00:00:00Z", { { "10.0.0.2", "h2", "Failed", "boom" } }))
    local html = r:html()
    assert.matches('id="total-sessions">2<', html, 1, true)
    assert.matches('id="total-success">1<', html, 1, true)
    assert.matches('id="total-failed">1<', html, 1, true)
    assert.matches('id="total-rate">50.0%<', html, 1, true)
    assert.matches('id="total-failed-targets">1<', html, 1, true)
    assert.matches("<title id=\"chart-title\">Sessions per day by status</title>", html, 1, true)
    assert.matches(">06-01<", html, 1, true)                 -- axis label
    assert.matches("Success (1)", html, 1, true)             -- legend
    assert.matches("<td class=\"err\">boom</td>", html, 1, true)
    assert.matches("2024-06-01 to 2024-06-02 (UTC)", html, 1, true)
  end)

  it("says when it is incomplete", function()
    local r = report.new{}
    r:add(session("s1", "d1", "Success", "2024-06-01T00:00:00Z"))
    r.incomplete = "stopped after 1 sessions: <boom>"
    local html = r:html()
    assert.matches('id="incomplete">Incomplete report: stopped after 1 sessions: &lt;boom&gt;', html, 1, true)
    assert.matches("INCOMPLETE: stopped", r:text(), 1, true)
  end)
end)


describe("report text", function()
  it("reads well and cleans terminal escapes", function()
    local r = report.new{ definitions = { { id = "d1", scanName = "One" } }, since = "2024-06-01" }
    r:add(session("s1", "d1", "Success", "2024-06-01T00:00:00Z", { { "10.0.0.1", "h1", "Success" } }))
    r:add(session("s2", "d1", "Failed", "2024-06-02T00:00:00Z",
      { { "10.0.0.2", "\27[2Jevil", "Failed", "Access denied\nsecond line" } }))
    local t = r:text()
    assert.matches("Authenticated scan report: 2024-06-01 to 2024-06-02 (UTC)", t, 1, true)
    assert.matches("Sessions        2  (1 succeeded, 0 partially succeeded, 1 failed)", t, 1, true)
    assert.matches("Success rate    50.0%", t, 1, true)
    assert.matches("Targets         2 scanned, 1 failed", t, 1, true)
    assert.matches("One%s+2%s+1%s+0%s+1%s+50.0%%", t)
    assert.matches("?[2Jevil", t, 1, true)
    assert.no.matches("\27", t, 1, true)
    assert.matches("Access denied second line", t, 1, true)
  end)

  it("handles an empty report", function()
    local r = report.new{}
    assert.matches("no sessions", r:text(), 1, true)
    assert.matches("No failed targets.", r:text(), 1, true)
    assert.matches("No sessions", r:html(), 1, true)
  end)
end)
