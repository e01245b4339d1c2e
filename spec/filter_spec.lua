local filter = require "mde.filter"
local null = require("cjson").null


-- the session record of the documented sample (seed 001), with its targets as a list
local function seed()
  return {
    orgId = "asdf781a0c-792d-46d3-bbea-a93dbc0bfcaa",
    ScanDefinitionIds = "4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae",
    SessionIds = "01decc497f4b4ec49a5fc4e12597f8c8",
    NumberOfSuccessfullyScannedTargets = 3,
    NumberOfTargets = 3,
    ScanStatus = "Success",
    LastScanned = "2022-12-19T15:14:24.5561791Z",
    ListScannedTargets = {
      { Ip = "127.0.0.1", Hostname = "DESKTOP-Test", ScannedDeviceDescription = "Network device",
        ErrorMessage = "", ScanStatus = "Success", ScanDuration = "00:08:30" },
      { Ip = "127.0.0.2", Hostname = "DESKTOP-Test2", ScannedDeviceDescription = "Network device 2",
        ErrorMessage = "", ScanStatus = "Success", ScanDuration = "00:08:00" },
      { Ip = "127.0.0.3", Hostname = "DESKTOP-Test3", ScannedDeviceDescription = "Network device 3",
        ErrorMessage = "", ScanStatus = "Success", ScanDuration = "00:08:50" },
    },
  }
end

local SEED_TIME = 1671462864        -- 2022-12-19T15:14:24Z (date -u -d ... +%s)


-- f(record) for a criteria table that must build
local function matches(criteria, record)
  local f, err = filter(criteria)
  assert.is_nil(err)
  return f(record)
end


-- the message of the error for criteria that must not build
local function build_error(criteria)
  local f, err = filter(criteria)
  assert.is_nil(f)
  assert.equal("invalid_argument", err.kind)
  assert.equal(err.message, tostring(err):match("filter: .*$"))
  return err.message
end


describe("mde.filter", function()
  describe("building", function()
    it("is callable and the same as filter.build", function()
      assert.equal("function", type(filter{}))
      assert.equal("function", type(filter.build{}))
      assert.is_true(filter{}(seed()))
      assert.is_true(filter.build{ status = "Success" }(seed()))
    end)

    it("lists its keys", function()
      assert.same({ "status", "session", "definition", "since", "before", "target", "hostname",
                    "failed_targets" }, filter.KEYS)
    end)

    it("refuses criteria that are not a table", function()
      assert.equal("filter: criteria must be a table, got \"Failed\"", build_error("Failed"))
      assert.equal("filter: criteria must be a table, got nil", build_error(nil))
    end)

    it("refuses unknown keys, suggesting the closest", function()
      assert.equal("filter: unknown key 'stauts' (did you mean 'status'?)", build_error{ stauts = "Failed" })
      assert.equal("filter: unknown key 'Status' (did you mean 'status'?)", build_error{ Status = "Failed" })
      assert.equal("filter: unknown key 'failedTargets' (did you mean 'failed_targets'?)",
                   build_error{ failedTargets = true })
      assert.equal("filter: unknown key 'host' (did you mean 'hostname'?)", build_error{ host = "x" })
      assert.equal("filter: unknown key 'zzzzzzzzzzzz' (known: status, session, definition, since, before, "
                   .. "target, hostname, failed_targets)", build_error{ zzzzzzzzzzzz = 1 })
    end)

    it("refuses list-shaped criteria", function()
      assert.equal("filter: unexpected key [1] (criteria are named: status, session, definition, since, "
                   .. "before, target, hostname, failed_targets)", build_error{ "Failed" })
    end)

    it("names the same unknown key whatever the table order", function()
      for _ = 1, 5 do
        assert.equal("filter: unknown key 'aaaaaaaaaaaa' (known: status, session, definition, since, before, "
                     .. "target, hostname, failed_targets)",
                     build_error{ zzzzzzzzzzzz = 1, aaaaaaaaaaaa = 2, mmmmmmmmmmmm = 3 })
      end
    end)

    it("refuses empty lists and empty strings, naming the key", function()
      for _, key in ipairs{ "status", "session", "definition", "target", "hostname" } do
        assert.equal("filter: '" .. key .. "' is an empty list", build_error{ [key] = {} })
        assert.equal("filter: '" .. key .. "' is an empty string", build_error{ [key] = "" })
      end
    end)

    it("refuses values of the wrong type, naming the key and the index", function()
      assert.equal("filter: 'status' must be a non-empty status string or a list of them, got number",
                   build_error{ status = 1 })
      assert.equal("filter: 'status'[2] must be a non-empty status string, got boolean",
                   build_error{ status = { "Failed", true } })
      assert.equal("filter: 'session'[1] must be a non-empty id string, got \"\"", build_error{ session = { "" } })
      assert.equal("filter: 'definition' must be a non-empty id string or a list of them, got userdata (JSON null?)",
                   build_error{ definition = null })
      assert.equal("filter: 'target' must be an IP address or CIDR block or a list of them, got a table that "
                   .. "is not a list", build_error{ target = { ip = "10.0.0.1" } })
      assert.equal("filter: 'hostname' must be a non-empty host name glob or a list of them, got a table that "
                   .. "is not a list", build_error{ hostname = { "a", x = "b" } })
      assert.equal("filter: 'failed_targets' must be true or false, got \"yes\"", build_error{ failed_targets = "yes" })
      assert.equal("filter: 'failed_targets' must be true or false, got number", build_error{ failed_targets = 1 })
    end)

    it("refuses a blank status", function()
      assert.equal("filter: 'status' has a blank value \" _-\"", build_error{ status = " _-" })
    end)

    it("returns the lead's error objects when mde.errors is there", function()
      local _, err = filter{ status = 1 }
      local ok, errors = pcall(require, "mde.errors")
      if ok then
        assert.is_true(errors.is(err))
      end
      assert.truthy(tostring(err):find("'status'", 1, true))
    end)
  end)

  describe("status", function()
    it("matches ignoring case, spaces, underscores and hyphens", function()
      local r = seed()
      assert.is_true(matches({ status = "Success" }, r))
      assert.is_true(matches({ status = "success" }, r))
      assert.is_true(matches({ status = " SUC-CESS_" }, r))
      assert.is_false(matches({ status = "Failed" }, r))
      r.ScanStatus = "Partial Success"
      for _, s in ipairs{ "PartialSuccess", "partial_success", "partial-success", "PARTIAL SUCCESS" } do
        assert.is_true(matches({ status = s }, r), s)
      end
    end)

    it("takes a list as any of", function()
      local r = seed()
      assert.is_true(matches({ status = { "Failed", "Success" } }, r))
      assert.is_false(matches({ status = { "Failed", "PartialSuccess" } }, r))
    end)

    it("does not match a missing, null or non-string status", function()
      for _, v in ipairs{ null, 3, true, {} } do
        local r = seed()
        r.ScanStatus = v
        assert.is_false(matches({ status = "Success" }, r))
      end
      local r = seed()
      r.ScanStatus = nil
      assert.is_false(matches({ status = "Success" }, r))
    end)

    it("normalize_status", function()
      assert.equal("partialsuccess", filter.normalize_status("Partial Success"))
      assert.equal("partialsuccess", filter.normalize_status("partial_success"))
      assert.equal("failed", filter.normalize_status("FAILED"))
    end)
  end)

  describe("session and definition", function()
    it("match the id strings, ignoring case", function()
      local r = seed()
      assert.is_true(matches({ session = "01decc497f4b4ec49a5fc4e12597f8c8" }, r))
      assert.is_true(matches({ session = "01DECC497F4B4EC49A5FC4E12597F8C8" }, r))
      assert.is_false(matches({ session = "01decc497f4b4ec49a5fc4e12597f8c9" }, r))
      assert.is_true(matches({ definition = "4AD8D463-6B3A-4894-B42A-A2DE9EA0A8AE" }, r))
      assert.is_false(matches({ definition = "01decc497f4b4ec49a5fc4e12597f8c8" }, r))
      r.SessionIds = "01DECC497F4B4EC49A5FC4E12597F8C8"
      assert.is_true(matches({ session = "01decc497f4b4ec49a5fc4e12597f8c8" }, r))
    end)

    it("take a list as any of", function()
      local r = seed()
      assert.is_true(matches({ session = { "x", "01decc497f4b4ec49a5fc4e12597f8c8" } }, r))
      assert.is_false(matches({ session = { "x", "y" } }, r))
      assert.is_true(matches({ definition = { "4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae", "y" } }, r))
    end)

    it("accept records holding a list of ids", function()
      local r = seed()
      r.SessionIds = { "a", "01decc497f4b4ec49a5fc4e12597f8c8" }
      r.ScanDefinitionIds = { null, "D1" }
      assert.is_true(matches({ session = "01decc497f4b4ec49a5fc4e12597f8c8" }, r))
      assert.is_true(matches({ definition = "d1" }, r))
      assert.is_false(matches({ definition = "d2" }, r))
    end)

    it("do not match missing, null or odd ids", function()
      for _, v in ipairs{ null, 7, false, { 1, 2 } } do
        local r = seed()
        r.SessionIds, r.ScanDefinitionIds = v, v
        assert.is_false(matches({ session = "01decc497f4b4ec49a5fc4e12597f8c8" }, r))
        assert.is_false(matches({ definition = "4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae" }, r))
      end
    end)
  end)

  describe("since and before", function()
    it("since is inclusive and before exclusive, to the 7th fraction digit", function()
      local r = seed()
      assert.is_true(matches({ since = "2022-12-19T15:14:24.5561791Z" }, r))
      assert.is_false(matches({ since = "2022-12-19T15:14:24.5561792Z" }, r))
      assert.is_true(matches({ since = "2022-12-19T15:14:24.556179Z" }, r))
      assert.is_false(matches({ before = "2022-12-19T15:14:24.5561791Z" }, r))
      assert.is_true(matches({ before = "2022-12-19T15:14:24.5561792Z" }, r))
      assert.is_false(matches({ before = "2022-12-19T15:14:24.55617910Z" }, r))
      assert.is_true(matches({ since = "2022-12-19T15:14:24Z", before = "2022-12-19T15:14:25Z" }, r))
      assert.is_false(matches({ since = "2022-12-19T15:14:25Z" }, r))
      assert.is_false(matches({ before = "2022-12-19T15:14:24Z" }, r))
    end)

    it("take epoch seconds", function()
      local r = seed()
      assert.is_true(matches({ since = SEED_TIME }, r))
      assert.is_true(matches({ since = SEED_TIME + 0.5 }, r))
      assert.is_false(matches({ since = SEED_TIME + 0.6 }, r))
      assert.is_true(matches({ before = SEED_TIME + 1 }, r))
      assert.is_false(matches({ before = SEED_TIME }, r))
      assert.is_true(matches({ since = 0, before = 2 ^ 40 }, r))
    end)

    it("read offsets, dates alone, lower-case t/z, spaces and zone-less times (UTC)", function()
      local r = seed()
      assert.is_true(matches({ since = "2022-12-19T16:14:24+01:00" }, r))
      assert.is_false(matches({ since = "2022-12-19T16:14:25+01:00" }, r))
      assert.is_true(matches({ since = "2022-12-19T10:14:24-05:00" }, r))
      assert.is_true(matches({ since = "2022-12-19T10:14:24-0500" }, r))
      assert.is_true(matches({ since = "2022-12-19T20:14:24+05" }, r))
      assert.is_true(matches({ since = "2022-12-19", before = "2022-12-20" }, r))
      assert.is_false(matches({ since = "2022-12-20" }, r))
      assert.is_true(matches({ since = "2022-12-19t15:14:24z" }, r))
      assert.is_true(matches({ since = "2022-12-19 15:14" }, r))
      assert.is_true(matches({ since = "2022-12-19T15:14:24,5Z" }, r))
      r.LastScanned = "2022-12-19T16:14:24.5561791+01:00"
      assert.is_true(matches({ since = SEED_TIME + 0.5, before = SEED_TIME + 0.6 }, r))
      r.LastScanned = "2022-12-19T15:14:24.5561791"
      assert.is_true(matches({ since = SEED_TIME + 0.5, before = SEED_TIME + 0.6 }, r))
    end)

    it("do not match a missing, null or unparseable LastScanned", function()
      for _, v in ipairs{ null, 1671462864, "yesterday", "2022-13-01T00:00:00Z", "", {} } do
        local r = seed()
        r.LastScanned = v
        assert.is_false(matches({ since = 0 }, r))
        assert.is_false(matches({ before = "2100-01-01" }, r))
      end
    end)

    it("refuse bad times, naming the key", function()
      assert.equal("filter: 'since' is not an ISO 8601 time or epoch seconds: \"yesterday\" (expected "
                   .. "YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm])", build_error{ since = "yesterday" })
      assert.equal("filter: 'before' is not an ISO 8601 time or epoch seconds: \"2024-02-30\" (day out of range)",
                   build_error{ before = "2024-02-30" })
      assert.equal("filter: 'since' is not an ISO 8601 time or epoch seconds: \"2024-13-01\" (month out of range)",
                   build_error{ since = "2024-13-01" })
      assert.equal("filter: 'since' is not an ISO 8601 time or epoch seconds: \"2024-01-01T24:00:00Z\" (hour, "
                   .. "minute or second out of range)", build_error{ since = "2024-01-01T24:00:00Z" })
      assert.equal("filter: 'since' is not an ISO 8601 time or epoch seconds: \"2024-01-01T00:00:00+24:00\" "
                   .. "(zone offset out of range)", build_error{ since = "2024-01-01T00:00:00+24:00" })
      assert.equal("filter: 'since' is not an ISO 8601 time or epoch seconds: table (expected an ISO 8601 "
                   .. "string or epoch seconds, got table)", build_error{ since = {} })
      assert.equal("filter: 'before' is not an ISO 8601 time or epoch seconds: number (not a finite number)",
                   build_error{ before = 0 / 0 })
      assert.equal("filter: 'before' is not an ISO 8601 time or epoch seconds: number (not a finite number)",
                   build_error{ before = math.huge })
      for _, bad in ipairs{ "2024-01-01T", "2024-01-01T00", "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00ZZ",
                            "2024-01-01T00:00:00+1", "2024-01-01T00:00:00+01:", "2024-1-01", "2024/01/01",
                            "2024-01-01Z", "2024-01-01T00:00:00 Z", " 2024-01-01" } do
        assert.truthy(build_error{ since = bad }:find("'since' is not an ISO 8601 time", 1, true), bad)
      end
    end)

    it("refuse since not before before", function()
      assert.equal("filter: 'since' (2024-01-02) must be earlier than 'before' (2024-01-01): no time is in both",
                   build_error{ since = "2024-01-02", before = "2024-01-01" })
      assert.equal("filter: 'since' (2024-01-01T00:00:00Z) must be earlier than 'before' (1704067200): no time "
                   .. "is in both", build_error{ since = "2024-01-01T00:00:00Z", before = 1704067200 })
      assert.truthy(filter{ since = "2024-01-01T00:00:00Z", before = "2024-01-01T00:00:00.0000001Z" })
    end)
  end)

  describe("parse_time", function()
    it("gives epoch seconds, without the local time zone", function()
      assert.equal(0, filter.parse_time("1970-01-01"))
      assert.equal(0, filter.parse_time("1970-01-01T00:00:00Z"))
      assert.equal(SEED_TIME, filter.parse_time("2022-12-19T15:14:24Z"))
      assert.near(SEED_TIME + 0.5561791, filter.parse_time("2022-12-19T15:14:24.5561791Z"), 1e-6)
      assert.equal(951782400, filter.parse_time("2000-02-29"))           -- leap day of a /400 year
      assert.equal(1709161200, filter.parse_time("2024-02-29T00:00:00+01:00"))
      assert.equal(-86400, filter.parse_time("1969-12-31"))
      assert.equal(4107542400, filter.parse_time("2100-03-01"))          -- 2100 is not a leap year
      assert.equal(42.5, filter.parse_time(42.5))
    end)

    it("accepts a leap second and refuses impossible dates", function()
      assert.equal(1483228800, filter.parse_time("2016-12-31T23:59:60Z"))
      assert.is_nil(filter.parse_time("2100-02-29"))
      assert.is_nil(filter.parse_time("2023-02-29"))
      assert.is_nil(filter.parse_time("2024-04-31"))
      local t, msg = filter.parse_time(true)
      assert.is_nil(t)
      assert.equal("expected an ISO 8601 string or epoch seconds, got boolean", msg)
    end)

    it("agrees with a reference over many dates", function()
      -- days counted one by one from 1970-01-01
      local days = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
      local n = 0
      for y = 1970, 2040 do
        for m = 1, 12 do
          local dim = days[m]
          if m == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then dim = 29 end
          for d = 1, dim, 9 do
            assert.equal((n + d - 1) * 86400, filter.parse_time(string.format("%04d-%02d-%02d", y, m, d)))
          end
          n = n + dim
        end
      end
    end)
  end)

  describe("target", function()
    it("matches an IP or an IPv4 CIDR against any target", function()
      local r = seed()
      assert.is_true(matches({ target = "127.0.0.2" }, r))
      assert.is_false(matches({ target = "127.0.0.4" }, r))
      assert.is_true(matches({ target = "127.0.0.0/8" }, r))
      assert.is_true(matches({ target = "127.0.0.3/32" }, r))
      assert.is_true(matches({ target = "127.0.0.2/31" }, r))        -- .2 and .3
      assert.is_false(matches({ target = "127.0.0.4/30" }, r))       -- .4 to .7
      assert.is_false(matches({ target = "10.0.0.0/8" }, r))
      assert.is_true(matches({ target = "0.0.0.0/0" }, r))
      assert.is_true(matches({ target = "127.255.255.255/8" }, r))   -- host bits ignored
    end)

    it("takes a list as any of", function()
      local r = seed()
      assert.is_true(matches({ target = { "10.0.0.0/8", "127.0.0.1" } }, r))
      assert.is_false(matches({ target = { "10.0.0.0/8", "192.168.0.0/16" } }, r))
    end)

    it("matches IPv6 blocks", function()
      local r = seed()
      r.ListScannedTargets[2].Ip = "fe80::1ff:fe23:4567:890a"
      r.ListScannedTargets[3].Ip = "2001:DB8:0:0:8:800:200C:417A"
      assert.is_true(matches({ target = "fe80::/10" }, r))
      assert.is_true(matches({ target = "2001:db8::/32" }, r))
      assert.is_true(matches({ target = "2001:db8::8:800:200c:417a" }, r))
      assert.is_true(matches({ target = "2001:db8::8:800:200c:4170/124" }, r))
      assert.is_false(matches({ target = "2001:db8::8:800:200c:4100/122" }, r))
      assert.is_false(matches({ target = "fec0::/10" }, r))
      assert.is_false(matches({ target = "::1" }, r))
      assert.is_true(matches({ target = "::/0" }, r))
    end)

    it("keeps the families apart, except IPv4-mapped addresses", function()
      local r = seed()
      r.ListScannedTargets = { { Ip = "10.1.2.3" } }
      assert.is_false(matches({ target = "::/0" }, r))
      assert.is_true(matches({ target = "::ffff:10.0.0.0/104" }, r))
      assert.is_true(matches({ target = "::ffff:a01:203" }, r))
      r.ListScannedTargets = { { Ip = "::ffff:10.1.2.3" } }
      assert.is_true(matches({ target = "10.0.0.0/8" }, r))
      assert.is_true(matches({ target = "10.1.2.3" }, r))
      assert.is_false(matches({ target = "11.0.0.0/8" }, r))
    end)

    it("tolerates a single target object, absent, null and odd targets", function()
      local r = seed()
      r.ListScannedTargets = { Ip = "127.0.0.1", Hostname = "DESKTOP-Test" }
      assert.is_true(matches({ target = "127.0.0.1" }, r))
      for _, v in ipairs{ null, "127.0.0.1", 5, {} } do
        r.ListScannedTargets = v
        assert.is_false(matches({ target = "0.0.0.0/0" }, r))
      end
      r.ListScannedTargets = nil
      assert.is_false(matches({ target = "0.0.0.0/0" }, r))
      r.ListScannedTargets = { null, "x", { Ip = null }, { Ip = 127 }, { Ip = "not an ip" }, { Ip = "127.0.0.1" } }
      assert.is_true(matches({ target = "127.0.0.1" }, r))
      r.ListScannedTargets = { null, { Ip = "999.0.0.1" }, { Ip = "::g" }, { Ip = "" } }
      assert.is_false(matches({ target = { "0.0.0.0/0", "::/0" } }, r))
    end)

    it("refuses invalid addresses and prefixes, naming the key and the value", function()
      assert.equal("filter: 'target' has an invalid IP address or CIDR block \"10.0.0.300/8\": invalid IPv4 address",
                   build_error{ target = "10.0.0.300/8" })
      assert.equal("filter: 'target' has an invalid IP address or CIDR block \"10.0.0.0/33\": invalid prefix length "
                   .. "(0 to 32 for IPv4)", build_error{ target = "10.0.0.0/33" })
      assert.equal("filter: 'target' has an invalid IP address or CIDR block \"fe80::/129\": invalid prefix length "
                   .. "(0 to 128 for IPv6)", build_error{ target = { "10.0.0.1", "fe80::/129" } })
      assert.equal("filter: 'target' has an invalid IP address or CIDR block \"host.example\": invalid IPv4 address",
                   build_error{ target = "host.example" })
      assert.equal("filter: 'target' has an invalid IP address or CIDR block \"1::2::3\": invalid IPv6 address",
                   build_error{ target = "1::2::3" })
      for _, bad in ipairs{ "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8/8", "/8", "10.0.0", "010.0.0.1",
                            "1.2.3.4.5", " 10.0.0.1", ":::", "1:2:3:4:5:6:7:8:9", "12345::", "::1.2.3", "fe80::1%",
                            "1.2.3.4::", ":1::", "1::2:" } do
        assert.truthy(build_error{ target = bad }:find("'target' has an invalid IP address or CIDR block", 1, true),
                      bad)
      end
    end)
  end)

  describe("parse_ip, parse_cidr and in_cidr", function()
    local function words(s)
      local a = assert(filter.parse_ip(s))
      return { a.family, a[1], a[2], a[3], a[4] }
    end

    it("parse every IPv6 text form into four words", function()
      assert.same({ 6, 0, 0, 0, 0 }, words("::"))
      assert.same({ 6, 0, 0, 0, 1 }, words("::1"))
      assert.same({ 6, 0x20010db8, 0, 0x00080800, 0x200c417a }, words("2001:db8::8:800:200c:417a"))
      assert.same({ 6, 0x20010db8, 0, 0x00080800, 0x200c417a }, words("2001:0DB8:0000:0000:0008:0800:200C:417A"))
      assert.same({ 6, 0x00010002, 0x00030004, 0x00050006, 0x00070000 }, words("1:2:3:4:5:6:7::"))
      assert.same({ 6, 0, 0x00020003, 0x00040005, 0x00060007 }, words("::2:3:4:5:6:7"))
      assert.same({ 6, 0, 0, 0xffff, 0x01020304 }, words("::ffff:1.2.3.4"))
      assert.same({ 6, 0x00010002, 0x00030004, 0x00050006, 0x01020304 }, words("1:2:3:4:5:6:1.2.3.4"))
      assert.same({ 6, 0xfe800000, 0, 0, 1 }, words("fe80::1%eth0"))
      assert.same({ 4, 0, 0, 0xffff, 0x7f000001 }, words("127.0.0.1"))
      assert.same({ 4, 0, 0, 0xffff, 0xffffffff }, words("255.255.255.255"))
    end)

    it("refuse what is not an address", function()
      for _, bad in ipairs{ "", "1.2.3", "256.0.0.1", "1.2.3.04", "::ffff:1.2.3.256", "1:2:3:4:5:6:7", "g::",
                            "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1::2::3" } do
        assert.is_nil(filter.parse_ip(bad), bad)
      end
      local a, msg = filter.parse_ip(7)
      assert.is_nil(a)
      assert.equal("not a string", msg)
    end)

    it("in_cidr takes strings or parsed values", function()
      assert.is_true(filter.in_cidr("192.168.1.77", "192.168.1.64/26"))
      assert.is_false(filter.in_cidr("192.168.1.128", "192.168.1.64/26"))
      assert.is_true(filter.in_cidr(filter.parse_ip("10.9.8.7"), filter.parse_cidr("10.8.0.0/15")))
      assert.is_false(filter.in_cidr("10.10.0.0", "10.8.0.0/15"))
      assert.is_true(filter.in_cidr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::/32"))
      assert.is_false(filter.in_cidr("2001:db9::", "2001:db8::/32"))
      assert.is_true(filter.in_cidr("2001:db8::1", "2001:db8::1"))
      assert.is_true(filter.in_cidr("ffff:ffff::", "ffff:fffe::/31"))
      assert.is_false(filter.in_cidr("ffff:ffff::", "ffff:fffe::/32"))
      local ok, msg = filter.in_cidr("10.0.0.1", "10.0.0.0/40")
      assert.is_nil(ok)
      assert.equal("invalid prefix length (0 to 32 for IPv4)", msg)
      assert.same({ 4, 8 }, { filter.parse_cidr("10.1.2.3/8").family, filter.parse_cidr("10.1.2.3/8").prefix })
    end)

    it("agrees with a bit-by-bit reference on every IPv4 prefix length", function()
      local base = 0xC0A87B2D                              -- 192.168.123.45
      local function text(v)
        local o = {}
        for i = 4, 1, -1 do
          o[i] = v % 256
          v = (v - o[i]) / 256
        end
        return string.format("%d.%d.%d.%d", o[1], o[2], o[3], o[4])
      end
      for p = 0, 32 do
        local size = 2 ^ (32 - p)
        local net = math.floor(base / size) * size
        local block = filter.parse_cidr(text(base) .. "/" .. p)
        assert.is_true(filter.in_cidr(text(net), block), p)
        assert.is_true(filter.in_cidr(text(net + size - 1), block), p)
        if net > 0 then assert.is_false(filter.in_cidr(text(net - 1), block), p) end
        if net + size < 2 ^ 32 then assert.is_false(filter.in_cidr(text(net + size), block), p) end
      end
    end)
  end)

  describe("hostname", function()
    it("matches whole names with globs, ignoring case", function()
      local r = seed()
      assert.is_true(matches({ hostname = "DESKTOP-*" }, r))
      assert.is_true(matches({ hostname = "desktop-test" }, r))
      assert.is_true(matches({ hostname = "DESKTOP-Test?" }, r))
      assert.is_true(matches({ hostname = "*test3" }, r))
      assert.is_true(matches({ hostname = "desktop-test[23]" }, r))
      assert.is_true(matches({ hostname = "DESKTOP-TEST[0-9]" }, r))
      assert.is_true(matches({ hostname = "[c-e]esktop-*" }, r))
      assert.is_true(matches({ hostname = "[C-E]ESKTOP-*" }, r))
      assert.is_true(matches({ hostname = "*" }, r))
      assert.is_true(matches({ hostname = "**-**" }, r))
      assert.is_false(matches({ hostname = "DESKTOP" }, r))            -- whole name only
      assert.is_false(matches({ hostname = "ESKTOP-Test" }, r))
      assert.is_false(matches({ hostname = "DESKTOP-Test[4-9]" }, r))
      assert.is_false(matches({ hostname = "SERVER-*" }, r))
      assert.is_false(matches({ hostname = "DESKTOP-Test??" }, r))
    end)

    it("negates classes with ! or ^", function()
      local r = seed()
      r.ListScannedTargets = { { Hostname = "host-a" } }
      assert.is_true(matches({ hostname = "host-[!0-9]" }, r))
      assert.is_true(matches({ hostname = "host-[^b-z]" }, r))
      assert.is_false(matches({ hostname = "host-[!A]" }, r))          -- case-insensitive, negated
      assert.is_false(matches({ hostname = "host-[!a-z]" }, r))
    end)

    it("treats pattern characters literally", function()
      local r = seed()
      r.ListScannedTargets = { { Hostname = "a.b%c(d)+e-f$g^h" }, { Hostname = "x]y" }, { Hostname = "star*" } }
      assert.is_true(matches({ hostname = "a.b%c(d)+e-f$g^h" }, r))
      assert.is_false(matches({ hostname = "a?b%c(d)+e-f$g^hh" }, r))
      assert.is_false(matches({ hostname = "aXb%c(d)+e-f$g^h" }, r))     -- "." is not any character
      assert.is_true(matches({ hostname = "x[]]y" }, r))                -- leading ] in a class
      assert.is_false(matches({ hostname = "[%.]*" }, r))
      assert.is_true(matches({ hostname = "star\\*" }, r))              -- escaped *
      assert.is_false(matches({ hostname = "sta\\*" }, r))
      assert.is_true(matches({ hostname = "[a-]*" }, r))                -- trailing - is literal
    end)

    it("takes a list as any of", function()
      local r = seed()
      assert.is_true(matches({ hostname = { "SERVER-*", "*-test2" } }, r))
      assert.is_false(matches({ hostname = { "SERVER-*", "LAPTOP-*" } }, r))
    end)

    it("tolerates a single target object, absent, null and odd host names", function()
      local r = seed()
      r.ListScannedTargets = { Ip = "127.0.0.1", Hostname = "DESKTOP-Test" }
      assert.is_true(matches({ hostname = "desktop-*" }, r))
      r.ListScannedTargets = { { Hostname = null }, { Hostname = 5 }, { Ip = "1.2.3.4" }, null }
      assert.is_false(matches({ hostname = "*" }, r))
      r.ListScannedTargets = null
      assert.is_false(matches({ hostname = "*" }, r))
    end)

    it("refuses broken globs, naming the key", function()
      assert.equal("filter: 'hostname' glob \"DESKTOP-[ab\" has an unclosed '['",
                   build_error{ hostname = "DESKTOP-[ab" })
      assert.equal("filter: 'hostname' glob \"[z-a]\" has a reversed range \"z-a\"", build_error{ hostname = "[z-a]" })
      assert.equal("filter: 'hostname' glob \"a\\0b\" contains a NUL byte", build_error{ hostname = "a\0b" })
    end)

    it("compiles globs to anchored Lua patterns", function()
      assert.equal("^[dD][eE][sS][kK][tT][oO][pP]%-.*$", filter.glob_pattern("DESKTOP-*"))
      assert.equal("^.[%.]$", filter.glob_pattern("?[.]"))
      assert.equal("^[^0123456789]$", filter.glob_pattern("[!0-9]"))
    end)
  end)

  describe("failed_targets", function()
    it("true: some target did not succeed, or fewer succeeded than were scanned", function()
      local r = seed()
      assert.is_false(matches({ failed_targets = true }, r))
      assert.is_true(matches({ failed_targets = false }, r))
      r.ListScannedTargets[2].ScanStatus = "Failed"
      assert.is_true(matches({ failed_targets = true }, r))
      assert.is_false(matches({ failed_targets = false }, r))
      r = seed()
      r.ListScannedTargets[3].ScanStatus = "Partial Success"
      assert.is_true(matches({ failed_targets = true }, r))
      r = seed()
      r.ListScannedTargets[1].ScanStatus = "SUCCESS"
      assert.is_false(matches({ failed_targets = true }, r))
      r = seed()
      r.NumberOfSuccessfullyScannedTargets = 2
      assert.is_true(matches({ failed_targets = true }, r))
      assert.is_false(matches({ failed_targets = false }, r))
    end)

    it("reads a single target object and ignores null or missing statuses and counts", function()
      local r = seed()
      r.ListScannedTargets = { Ip = "127.0.0.1", ScanStatus = "Failed" }
      assert.is_true(matches({ failed_targets = true }, r))
      r = seed()
      r.NumberOfSuccessfullyScannedTargets, r.NumberOfTargets = null, 3
      r.ListScannedTargets = { { ScanStatus = null }, null, { Ip = "1.2.3.4" } }
      assert.is_false(matches({ failed_targets = true }, r))
      assert.is_true(matches({ failed_targets = false }, r))
      r.ListScannedTargets = nil
      assert.is_false(matches({ failed_targets = true }, r))
    end)
  end)

  describe("combined criteria", function()
    it("are ANDed across keys", function()
      local r = seed()
      assert.is_true(matches({ status = "Success", since = "2022-12-01", before = "2023-01-01",
                               hostname = "DESKTOP-*", target = "127.0.0.0/24",
                               session = "01DECC497F4B4EC49A5FC4E12597F8C8",
                               definition = "4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae", failed_targets = false }, r))
      assert.is_false(matches({ status = "Success", since = "2023-01-01" }, r))
      assert.is_false(matches({ status = "Failed", hostname = "DESKTOP-*" }, r))
      assert.is_false(matches({ target = "127.0.0.0/24", hostname = "SERVER-*" }, r))
    end)

    it("combine by building another filter, and never touch the record", function()
      local a = filter{ status = "Success" }
      local b = filter{ hostname = "*test2" }
      local both = function(rec) return a(rec) and b(rec) end
      local r = seed()
      local copy = seed()
      assert.is_true(both(r))
      assert.same(copy, r)
    end)

    it("match nothing for what is not a table, and history-by-definition records", function()
      local f = filter{ status = "Success" }
      for _, v in ipairs{ 1, "x", null, true } do
        assert.is_false(f(v))
      end
      assert.is_false(f(nil))
      assert.is_true(filter{}({}))
      local hist = { ScanDefinitionIds = "d1", LastScanned = "2022-12-19T15:14:24.5561791Z",
                     ScanStatus = "Partial Success", ScannerId = "s1" }
      assert.is_true(matches({ status = "partialsuccess", definition = "D1", since = SEED_TIME }, hist))
      assert.is_false(matches({ target = "0.0.0.0/0" }, hist))
      assert.is_false(matches({ session = "x" }, hist))
    end)
  end)

  describe("speed", function()
    it("allocates nothing per record once its caches are warm", function()
      local records = {}
      for i = 1, 200 do
        local r = seed()
        r.SessionIds = string.format("%032x", i)
        r.LastScanned = string.format("2022-12-%02dT15:14:%02d.%07dZ", i % 28 + 1, i % 60, i * 7919)
        r.ListScannedTargets[1].Ip = "10.0." .. i .. ".1"
        records[i] = r
      end
      local f = assert(filter{ status = { "Success", "Failed" }, session = { "x", string.format("%032x", 7) },
                               since = "2022-12-01", before = "2023-01-01T00:00:00.5Z", target = "10.0.0.0/16",
                               hostname = "desktop-*", failed_targets = false })
      local g = assert(filter{ target = { "fe80::/10", "10.0.0.0/8" }, hostname = { "x*", "*3" },
                               since = 1671000000.25 })
      local function run()
        local hits = 0
        for _ = 1, 50 do
          for i = 1, #records do
            if f(records[i]) then hits = hits + 1 end
            if g(records[i]) then hits = hits + 1 end
          end
        end
        return hits
      end
      -- warm the caches, and on LuaJIT let the compiler finish its traces (they live on the heap)
      run()
      collectgarbage()
      collectgarbage("stop")
      local before = collectgarbage("count")
      local hits = run()
      local grown = collectgarbage("count") - before
      collectgarbage("restart")
      -- f: session 7 only; g: days 14 to 28 of December, 7 records each
      assert.equal(50 * (1 + 15 * 7), hits)
      assert.is_true(grown < 64, grown .. " KiB for 20000 calls")
    end)
  end)

  describe("apply", function()
    local records = {}
    for i = 1, 6 do
      local r = seed()
      r.SessionIds = "s" .. i
      r.ScanStatus = i % 2 == 0 and "Failed" or "Success"
      records[i] = r
    end

    it("keeps the matching records in order, in a new list", function()
      local out = filter.apply(records, filter{ status = "Failed" })
      assert.same({ "s2", "s4", "s6" }, { out[1].SessionIds, out[2].SessionIds, out[3].SessionIds })
      assert.equal(3, #out)
      assert.equal(records[2], out[1])
      assert.equal(6, #records)
    end)

    it("builds the filter from a criteria table", function()
      local out = filter.apply(records, { session = { "s1", "s5" } })
      assert.same({ "s1", "s5" }, { out[1].SessionIds, out[2].SessionIds })
      assert.same({}, filter.apply({}, { status = "Failed" }))
    end)

    it("returns the build error, or an error for bad arguments", function()
      local out, err = filter.apply(records, { status = {} })
      assert.is_nil(out)
      assert.equal("filter: 'status' is an empty list", err.message)
      out, err = filter.apply("records", filter{})
      assert.is_nil(out)
      assert.equal("filter: apply: records must be a list, got \"records\"", err.message)
      out, err = filter.apply(records, 42)
      assert.is_nil(out)
      assert.equal("filter: apply: expected a filter function or a criteria table, got number", err.message)
    end)
  end)
end)
