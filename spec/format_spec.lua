-- Units of mde.format: CSV quoting, table alignment and width, JSON/NDJSON, columns, targets,
-- JSON null, redaction in every format.
local format = require "mde.format"
local mde = require "mde"

local null = mde.null


-- a sink collecting what is written
local function buffer()
  local parts = {}
  return {
    write = function(self, ...)
      for i = 1, select("#", ...) do parts[#parts + 1] = select(i, ...) end
      return self
    end,
    text = function() return table.concat(parts) end,
  }
end

local function render(fmt, records, opts)
  local b = buffer()
  local w = format.writer(fmt, b, opts)
  for _, r in ipairs(records) do w:add(r) end
  w:finish()
  return b.text(), w
end

local function lines(s)
  local out = {}
  for l in s:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end


local SESSION = {
  orgId = "org", ScanDefinitionIds = "def-1", SessionIds = "sess-1",
  NumberOfSuccessfullyScannedTargets = 1, NumberOfTargets = 2, ScanStatus = "Partial Success",
  LastScanned = "2024-06-30T00:00:00.1000003Z",
  ListScannedTargets = {
    { Ip = "10.0.0.1", Hostname = "SRV-1", ScannedDeviceDescription = "server", ErrorMessage = "",
      ScanStatus = "Success", ScanDuration = "00:01:00" },
    { Ip = "10.0.0.2", Hostname = "SRV-2", ScannedDeviceDescription = null,
      ErrorMessage = 'Access "denied", see\r\nlog', ScanStatus = "Failed", ScanDuration = "00:02:00" },
  },
}

local DEFINITION = {
  id = "def-1", scanName = "Network, SNMP", scanType = "Network", isActive = true, intervalInHours = 6,
  target = "10.0.0.0/24", latestScan = { status = null, failureReason = null, executionDateTime = null },
  scannerAgent = { machineName = "scanner-01" },
  scanAuthenticationParams = {
    ["@odata.type"] = "#microsoft.windowsDefenderATP.api.SnmpAuthParams", type = "AuthPriv",
    username = "snmp", authPassword = "S3cr3t-auth", privPassword = "S3cr3t-priv",
    communityString = "S3cr3t-community", KeyVaultSecretName = "S3cr3t-kv",
  },
}


describe("format.csv_row", function()
  it("ends records with CRLF and leaves plain fields alone", function()
    assert.equal("a,b,1\r\n", format.csv_row({ "a", "b", 1 }))
  end)

  it("quotes fields holding commas, quotes, CR or LF and doubles the quotes", function()
    assert.equal('"a,b","say ""hi""","x\r\ny","z\ny","w\rv"\r\n',
      format.csv_row({ "a,b", 'say "hi"', "x\r\ny", "z\ny", "w\rv" }))
  end)

  it("prints JSON null as an empty field, booleans and whole numbers plainly", function()
    assert.equal(",,true,false,42,2.5\r\n", format.csv_row({ null, "", true, false, 42.0, 2.5 }))
    assert.equal("", format.cell(nil))
  end)

  it("guards text cells that a spreadsheet would run as a formula", function()
    assert.equal("'=1+1,'-5,-5,'@SUM(A1),'+1\r\n", format.csv_row({ "=1+1", "-5", -5, "@SUM(A1)", "+1" }, true))
    assert.equal("=1+1\r\n", format.csv_row({ "=1+1" }, false))
    assert.equal('"\'=HYPERLINK(""http://x"",""y"")"\r\n', format.csv_row({ '=HYPERLINK("http://x","y")' }, true))
  end)
end)


describe("format.json", function()
  it("is deterministic: known fields first, then the others sorted", function()
    local a = format.json{ zeta = 1, SessionIds = "s", alpha = 2, ScanStatus = "Failed" }
    assert.equal('{"SessionIds":"s","ScanStatus":"Failed","alpha":2,"zeta":1}', a)
  end)

  it("writes JSON null, empty target lists as [] and escapes control characters", function()
    assert.equal('{"ListScannedTargets":[],"x":null}', format.json{ ListScannedTargets = {}, x = null })
    assert.equal('"a\\"b\\\\c\\n\\r\\t\\u0001\\u001b/"', format.json('a"b\\c\n\r\t\1\27/'))
  end)

  it("writes whole numbers without a fraction and others exactly", function()
    assert.equal("[1,2,0.1,-3,1e+300,null]", format.json{ 1, 2.0, 0.1, -3, 1e300, 0 / 0 })
  end)
end)


describe("format.width and format.truncate", function()
  it("counts display columns, not bytes", function()
    assert.equal(5, format.width("hello"))
    assert.equal(4, format.width("caf\195\169"))
    assert.equal(4, format.width("日本"))           -- wide characters take two columns
    assert.equal(1, format.width("e\204\129"))      -- e + combining acute
  end)

  it("cuts with an ellipsis at a character boundary", function()
    assert.equal("abc...", format.truncate("abcdefghij", 6, "..."))
    assert.equal("abcd\226\128\166", format.truncate("abcdefghij", 5, "\226\128\166"))
    assert.equal("日\226\128\166", format.truncate("日本語", 4, "\226\128\166"))
    assert.equal("short", format.truncate("short", 10, "..."))
  end)

  it("cleans what a terminal must not receive", function()
    assert.equal("a b c", format.clean("a\nb\tc"))
    assert.equal("?[31mred", format.clean("\27[31mred"))
    assert.equal("x?y", format.clean("x\194\155y"))           -- C1 CSI
    assert.equal("abc?def", format.clean("abc\226\128\174def"))  -- right-to-left override
    assert.equal("bad?byte", format.clean("bad\255byte"))
  end)
end)


describe("table writer", function()
  it("aligns columns, right-aligns numbers and prints null as empty", function()
    local out = render("table", {
      { SessionIds = "s1", ScanStatus = "Success", LastScanned = "2024-06-30T00:00:00Z",
        NumberOfSuccessfullyScannedTargets = 3, NumberOfTargets = 3, ScanDefinitionIds = "d" },
      { SessionIds = "session-22", ScanStatus = null, LastScanned = "2024-06-29T00:00:00Z",
        NumberOfSuccessfullyScannedTargets = 10, NumberOfTargets = 12, ScanDefinitionIds = "d" },
    }, { footer = true })
    local l = lines(out)
    assert.equal("SessionIds  ScanStatus  LastScanned           Succeeded  Targets  ScanDefinitionIds", l[1])
    assert.equal("----------  ----------  --------------------  ---------  -------  -----------------", l[2])
    assert.equal("s1          Success     2024-06-30T00:00:00Z          3        3  d", l[3])
    assert.equal("session-22              2024-06-29T00:00:00Z         10       12  d", l[4])
    assert.equal("(2 rows)", l[5])
  end)

  it("measures display width for alignment and truncates long cells", function()
    local out = render("table", { { a = "日本", b = "x" }, { a = "ab", b = "y" } }, { columns = { "a", "b" } })
    local l = lines(out)
    assert.equal("a     b", l[1])
    assert.equal("日本  x", l[3])
    assert.equal("ab    y", l[4])
    out = render("table", { { a = string.rep("x", 100), b = "y" } },
      { columns = { "a", "b" }, max_width = 10, ellipsis = "..." })
    assert.equal("xxxxxxx...  y", lines(out)[3])
  end)

  it("shows a single record vertically when asked", function()
    local out = render("table", { DEFINITION }, { kind = "definition", vertical = true })
    assert.matches("\nscanName%s+Network, SNMP\n", out)
    assert.matches("scanAuthenticationParams.authPassword%s+<redacted>", out)
    assert.no.matches("S3cr3t", out)
  end)

  it("keeps header-less output when asked", function()
    local out = render("table", { { id = "x" } }, { kind = "definition", columns = { "id" }, header = false })
    assert.equal("x\n", out)
  end)
end)


describe("NDJSON and JSON writers", function()
  it("NDJSON writes one record per line", function()
    local out = render("ndjson", { { SessionIds = "a" }, { SessionIds = "b", x = null } })
    assert.equal('{"SessionIds":"a"}\n{"SessionIds":"b","x":null}\n', out)
  end)

  it("NDJSON streams: each record is written when added", function()
    local b = buffer()
    local w = format.writer("ndjson", b)
    w:add{ SessionIds = "a" }
    assert.equal('{"SessionIds":"a"}\n', b.text())
    w:add{ SessionIds = "b" }
    assert.equal(2, #lines(b.text()))
  end)

  it("JSON writes one array, and [] when empty", function()
    assert.equal('[\n{"SessionIds":"a"},\n{"SessionIds":"b"}\n]\n',
      render("json", { { SessionIds = "a" }, { SessionIds = "b" } }))
    assert.equal("[]\n", render("json", {}))
  end)

  it("keeps only the chosen columns, rebuilding nested objects", function()
    local out = render("ndjson", { DEFINITION }, { kind = "definition",
      columns = { "id", "scannerAgent.machineName", "missing" } })
    assert.equal('{"id":"def-1","scannerAgent":{"machineName":"scanner-01"},"missing":null}\n', out)
  end)
end)


describe("columns", function()
  it("resolve names ignoring case, labels and bare target fields", function()
    assert.same({ "SessionIds", "NumberOfTargets" }, format.columns("sessionids, targets", "session"))
    assert.same({ "SessionIds", "Target.Ip", "Target.ErrorMessage", "ScanStatus", "Target.ScanStatus" },
      format.columns("SessionIds,ip,errormessage,ScanStatus,Target.ScanStatus", "session", true))
  end)

  it("refuse target columns without --targets, and empty names", function()
    local c, err = format.columns("Target.Ip", "session", false)
    assert.is_nil(c)
    assert.matches("add %-%-targets", err)
    assert.is_nil((format.columns("a,,b")))
  end)

  it("select fields in CSV in the given order", function()
    local out = render("csv", { SESSION }, { columns = { "ScanStatus", "SessionIds" } })
    assert.equal("ScanStatus,SessionIds\r\nPartial Success,sess-1\r\n", out)
  end)

  it("report columns that matched nothing", function()
    local _, w = render("csv", { SESSION }, { columns = { "SessionIds", "Nope" } })
    assert.same({ "Nope" }, w:unmatched())
  end)
end)


describe("targets flattening", function()
  it("gives one row per target with the session's columns repeated", function()
    local out = render("csv", { SESSION }, { targets = true,
      columns = { "SessionIds", "ScanStatus", "Target.Ip", "Target.ScanStatus", "Target.ErrorMessage",
                  "Target.ScannedDeviceDescription" } })
    assert.equal("SessionIds,ScanStatus,Target.Ip,Target.ScanStatus,Target.ErrorMessage,"
      .. "Target.ScannedDeviceDescription\r\n"
      .. "sess-1,Partial Success,10.0.0.1,Success,,server\r\n"
      .. 'sess-1,Partial Success,10.0.0.2,Failed,"Access ""denied"", see\r\nlog",\r\n', out)
  end)

  it("gives one row with empty target fields for a session without targets", function()
    local out = render("csv", { { SessionIds = "x", ListScannedTargets = {} } },
      { targets = true, columns = { "SessionIds", "Target.Ip" } })
    assert.equal("SessionIds,Target.Ip\r\nx,\r\n", out)
  end)

  it("nests the target under Target in NDJSON", function()
    local out = render("ndjson", { SESSION }, { targets = true })
    local l = lines(out)
    assert.equal(2, #l)
    assert.matches('"Target":{', l[1], 1, true)
    assert.matches('"Ip":"10.0.0.1"', l[1], 1, true)
    assert.matches('"Ip":"10.0.0.2"', l[2], 1, true)
    assert.no.matches("ListScannedTargets", out, 1, true)
  end)

  it("accepts a single target object instead of a list", function()
    local rows = format.targets{ SessionIds = "x", ListScannedTargets = { Ip = "1.2.3.4" } }
    assert.equal(1, #rows)
    assert.equal("1.2.3.4", rows[1].Target.Ip)
  end)
end)


describe("redaction", function()
  for _, fmt in ipairs(format.FORMATS) do
    it("hides scan credentials in " .. fmt, function()
      local out = render(fmt, { DEFINITION }, { kind = "definition",
        columns = fmt ~= "json" and fmt ~= "ndjson" and { "id", "scanAuthenticationParams" } or nil,
        max_last = 1000 })
      assert.no.matches("S3cr3t", out, 1, true)
      assert.matches("<redacted>", out, 1, true)
      assert.matches("snmp", out, 1, true)       -- the user name is not a secret
    end)
  end

  it("does not modify the caller's record", function()
    render("json", { DEFINITION }, { kind = "definition" })
    assert.equal("S3cr3t-auth", DEFINITION.scanAuthenticationParams.authPassword)
  end)
end)
