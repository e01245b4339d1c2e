--- Clouds and regions of the Defender for Endpoint API, as data.
-- Sources: ../shared/reference/mde-auth-and-endpoints.md (Microsoft's "Use
-- Defender for Endpoint APIs" and "for US Government customers" pages).
-- The token audience (resource) does not change with the regional host.

local M = {}

M.clouds = {
  commercial = {
    login = "https://login.microsoftonline.com",
    api = "https://api.security.microsoft.com",
    resource = "https://api.securitycenter.microsoft.com",
    regions = {
      us = "https://us.api.security.microsoft.com",
      eu = "https://eu.api.security.microsoft.com",
      uk = "https://uk.api.security.microsoft.com",
      au = "https://au.api.security.microsoft.com",
      swa = "https://swa.api.security.microsoft.com",
      ina = "https://ina.api.security.microsoft.com",
    },
  },
  gcc = {
    login = "https://login.microsoftonline.com",
    api = "https://api-gcc.securitycenter.microsoft.us",
    resource = "https://api-gcc.securitycenter.microsoft.us",
  },
  ["gcc-high"] = {
    login = "https://login.microsoftonline.us",
    api = "https://api-gov.securitycenter.microsoft.us",
    resource = "https://api-gov.securitycenter.microsoft.us",
  },
  dod = {
    login = "https://login.microsoftonline.us",
    api = "https://api-gov.securitycenter.microsoft.us",
    resource = "https://api-gov.securitycenter.microsoft.us",
  },
}


--- Resolve `cloud`, `region` and the overrides into base_url, authority and scope.
-- Returns a table `{ base_url, authority, scope, resource }`, or nil and a message.
function M.resolve(o)
  local name = o.cloud or "commercial"
  local cloud = M.clouds[name]
  if not cloud then
    return nil, ("unknown cloud '%s' (expected commercial, gcc, gcc-high or dod)"):format(tostring(name))
  end
  local api = cloud.api
  if o.region ~= nil then
    local regional = cloud.regions and cloud.regions[o.region]
    if not regional then
      if not cloud.regions then
        return nil, ("region '%s' is for the commercial cloud only, not '%s'"):format(tostring(o.region), name)
      end
      return nil, ("unknown region '%s' (expected us, eu, uk, au, swa or ina)"):format(tostring(o.region))
    end
    api = regional
  end
  -- the API's root: ".../api" (as some samples write it) means the same host; the client adds
  -- "/api/..." to every path
  local base = (o.base_url or api):gsub("/+$", ""):gsub("/api$", "")
  return {
    base_url = base,
    authority = (o.authority or cloud.login):gsub("/+$", ""),
    resource = cloud.resource,
    scope = o.scope or (cloud.resource .. "/.default"),
  }
end


return M
