local clouds = require "mde.clouds"

describe("mde.clouds.resolve", function()
  local COMMERCIAL_SCOPE = "https://api.securitycenter.microsoft.com/.default"

  it("defaults to the commercial cloud", function()
    local r = assert(clouds.resolve{})
    assert.equal("https://api.security.microsoft.com", r.base_url)
    assert.equal("https://login.microsoftonline.com", r.authority)
    assert.equal(COMMERCIAL_SCOPE, r.scope)
  end)

  for region, host in pairs{ us = "us", eu = "eu", uk = "uk", au = "au", swa = "swa", ina = "ina" } do
    it("keeps the commercial scope on regional host " .. region, function()
      local r = assert(clouds.resolve{ region = region })
      assert.equal("https://" .. host .. ".api.security.microsoft.com", r.base_url)
      assert.equal(COMMERCIAL_SCOPE, r.scope)
    end)
  end

  it("resolves the US Government clouds", function()
    local gcc = assert(clouds.resolve{ cloud = "gcc" })
    assert.same({ "https://api-gcc.securitycenter.microsoft.us", "https://login.microsoftonline.com",
                  "https://api-gcc.securitycenter.microsoft.us/.default" }, { gcc.base_url, gcc.authority, gcc.scope })
    for _, name in ipairs{ "gcc-high", "dod" } do
      local r = assert(clouds.resolve{ cloud = name })
      assert.same({ "https://api-gov.securitycenter.microsoft.us", "https://login.microsoftonline.us",
                    "https://api-gov.securitycenter.microsoft.us/.default" }, { r.base_url, r.authority, r.scope })
    end
  end)

  it("lets base_url, authority and scope override", function()
    local r = assert(clouds.resolve{ cloud = "dod", base_url = "https://127.0.0.1:9/", authority = "https://a/",
                                     scope = "x/.default" })
    assert.same({ "https://127.0.0.1:9", "https://a", "x/.default" }, { r.base_url, r.authority, r.scope })
  end)

  it("takes a base_url that ends in /api as the same root", function()
    assert.equal("https://127.0.0.1:9", assert(clouds.resolve{ base_url = "https://127.0.0.1:9/api/" }).base_url)
    assert.equal("https://h/x", assert(clouds.resolve{ base_url = "https://h/x" }).base_url)
  end)

  it("rejects unknown clouds and regions", function()
    local r, err = clouds.resolve{ cloud = "moon" }
    assert.is_nil(r)
    assert.matches("unknown cloud 'moon'", err, 1, true)
    r, err = clouds.resolve{ region = "mars" }
    assert.is_nil(r)
    assert.matches("unknown region 'mars'", err, 1, true)
    r, err = clouds.resolve{ cloud = "gcc", region = "eu" }
    assert.is_nil(r)
    assert.matches("commercial cloud only", err, 1, true)
  end)
end)
