--- Clients of the specs: pointed at a local server, pacing off, fast backoff, and a fresh
-- token cache each (the server forgets its tokens on every reset).
local mde = require "mde"
local core = require "mde.core"
local store = require "mde.store"

local M = {}

--- NONE as an option value removes a default (e.g. `client_secret = NONE` with `token = ...`).
M.NONE = setmetatable({}, { __tostring = function() return "NONE" end })


--- The options of a spec client of server `s`, with `extra` on top.
function M.options(s, extra)
  local o = { base_url = s.base_url, authority = s.authority, tenant_id = "t", client_id = "c",
              client_secret = "s", ca_file = s.ca_file, rate_limit = false,
              backoff = { base = 0.01, cap = 0.05 }, store = store.new(core.now) }
  for k, v in pairs(extra or {}) do
    if v == M.NONE then o[k] = nil else o[k] = v end
  end
  return o
end


--- A spec client of server `s` (raises if mde.new refuses the options).
function M.new(s, extra)
  return assert(mde.new(M.options(s, extra)))
end


return M
