local url = require "mde.url"

describe("mde.url", function()
  it("escapes reserved characters", function()
    assert.equal("a%20b%2Fc%3F%26~$", url.escape("a b/c?&~$"))
  end)

  it("writes whole numbers without a fraction", function()
    assert.equal("$skip=20&$top=10&x=1.5", url.encode{ ["$top"] = 10.0, ["$skip"] = 20.0, x = 1.5 })
  end)

  it("encodes forms with sorted keys", function()
    assert.equal("$top=10&a=x%3Dy&b=1&b=2", url.encode{ a = "x=y", ["$top"] = 10, b = { 1, 2 } })
  end)

  it("splits URLs and normalises ports", function()
    assert.same({ "https", "api.security.microsoft.com", "443", "/api/x?y=1" },
                { url.split("https://API.security.microsoft.com/api/x?y=1") })
    assert.same({ "https", "[::1]", "8443", "" }, { url.split("https://[::1]:8443") })
    assert.is_nil(url.split("ftp://x/"))
    assert.is_nil(url.split("https://user@host/"))
    assert.is_nil(url.split("https://host:port/"))
    assert.is_nil(url.split("/relative"))
  end)

  it("compares origins", function()
    assert.equal(url.origin("https://h:443/a"), url.origin("https://H/b"))
    assert.not_equal(url.origin("https://127.0.0.1:1/a"), url.origin("https://localhost:1/a"))
  end)

  it("resolves references", function()
    assert.equal("https://h:1/x?y", url.resolve("https://h:1/a/b?c", "/x?y"))
    assert.equal("https://o/x", url.resolve("https://h:1/a", "https://o/x"))
    assert.equal("https://o/x", url.resolve("https://h:1/a", "//o/x"))
    -- relative references (OData allows nextLinks relative to the request URL)
    local base = "https://h:1/api/DeviceAuthenticatedScanAgents?$top=2"
    assert.equal("https://h:1/api/DeviceAuthenticatedScanAgents?$skip=2",
                 url.resolve(base, "DeviceAuthenticatedScanAgents?$skip=2"))
    assert.equal("https://h:1/api/DeviceAuthenticatedScanAgents?$skip=4", url.resolve(base, "?$skip=4"))
    assert.equal("https://h:1/z", url.resolve(base, "../z"))
    assert.equal("https://h:1/z", url.resolve(base, "../../../z"))
    assert.equal("https://h:1/api/c", url.resolve(base, "a/../c"))
    assert.equal("https://h:1/x", url.resolve("https://h:1/a", "x"))
    assert.is_nil(url.resolve("not a url", "x"))
  end)

  it("appends queries", function()
    assert.equal("https://h/p?$top=5", url.with_query("https://h/p", { ["$top"] = 5 }))
    assert.equal("https://h/p?a=1&b=2", url.with_query("https://h/p?a=1", { b = 2 }))
    assert.equal("https://h/p", url.with_query("https://h/p", {}))
  end)

  it("parses queries, decoded, whatever their order", function()
    local path, q = url.parse_query("https://h/p?%24skip=10&$top=5&a=x%20y+z&flag#frag")
    assert.equal("https://h/p", path)
    assert.same({ ["$skip"] = "10", ["$top"] = "5", a = "x y z", flag = "" }, q)
    assert.same({ "https://h/p", {} }, { url.parse_query("https://h/p") })
    local again = select(2, url.parse_query(url.with_query("https://h/p", { ["$top"] = 5, b = "a&b" })))
    assert.same({ ["$top"] = "5", b = "a&b" }, again)
  end)
end)
