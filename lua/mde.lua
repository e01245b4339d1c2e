--- lua-mde: a client for the Microsoft Defender for Endpoint API
-- (authenticated scans), with a C core over libcurl.
--
--   local mde = require "mde"
--   local client = assert(mde.new{ tenant_id = ..., client_id = ..., client_secret = ... })
--   local sessions, err = client:scan_history_by_session{ "01decc497f4b4ec49a5fc4e12597f8c8" }
--
-- See README.md for every option and call.

local core = require "mde.core"
local client = require "mde.client"

local M = {
  _VERSION = "lua-mde 0.1.0",
  --- The value JSON null decodes to (everywhere: in objects and in lists).
  null = core.null,
  errors = require "mde.errors",
  clouds = require "mde.clouds",
}


--- Create a client: `mde.new(options)` -> client | nil, err (see README.md for the options).
M.new = client.new


-- mde.filter, mde.redact and mde.gather load on first use
setmetatable(M, { __index = function(t, k)
  if k == "gather" then
    local gather = require("mde.gather").gather
    rawset(t, k, gather)
    return gather
  end
  if k == "filter" or k == "redact" then
    local mod = require("mde." .. k)
    rawset(t, k, mod)
    return mod
  end
end })


return M
