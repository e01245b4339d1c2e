-- client:each holds one page at a time: 1,000,000 records through a process that stays
-- under 64 MB at its peak (measured in a child process, so nothing else counts).
local server = require "spec.helpers.server"

describe("streaming", function()
  local s

  setup(function() s = server.start{} end)
  teardown(function() if s then s:stop() end end)

  it("iterates 1,000,000 records under 64 MB of peak memory", function()
    local cmd = ("env -u LD_PRELOAD lua5.4 spec/scripts/each_bulk.lua %s %s 1000000"):format(s.base_url, s.ca_file)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    local count, seconds, peak_kb = out:match("^(%d+)%s+([%d.]+)%s+(%d+)")
    assert.equal("1000000", count, out)
    print(("\n[memory_spec] 1,000,000 records in %.1f s, peak RSS %.1f MB"):format(tonumber(seconds),
      tonumber(peak_kb) / 1024))
    assert.is_true(tonumber(peak_kb) < 64 * 1024, "peak " .. peak_kb .. " kB")
  end)
end)
