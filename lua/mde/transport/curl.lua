--- The libcurl transport: one mde.core handle per client, reused across calls
-- so connections and TLS sessions stay warm. It moves bytes and nothing else:
-- send(req) -> response | nil, facts (see mde.core).

local setmetatable = setmetatable

local core = require "mde.core"

local M = {}
M.name = "curl"

local Transport = {}
Transport.__index = Transport


function M.new()
  return setmetatable({ handle = core.new() }, Transport)
end


function Transport:send(req)
  return self.handle:perform(req)
end
-- (perform keeps nothing of req once it returns: the pipeline may fill it again)
Transport.request_reusable = true


--- Several requests in flight at once on one thread (libcurl's multi interface).
-- Returns a list of { resp = ..., facts = ... } in request order.
function Transport:send_all(reqs)
  local pool = self.pool or {}
  self.pool = pool
  -- a wave may be smaller than an earlier one (6 batches, 4 at a time: 4 then 2):
  -- perform_all takes exactly one handle per request
  local handles = {}
  for i = 1, #reqs do
    if not pool[i] then pool[i] = core.new() end
    handles[i] = pool[i]
  end
  return core.perform_all(handles, reqs)
end


function Transport:close()
  self.handle:close()
  if self.pool then
    for i = 1, #self.pool do self.pool[i]:close() end
    self.pool = nil
  end
end


M.now, M.sleep = core.now, core.sleep
-- a transport object passed as the `transport` option carries its clock too
Transport.now, Transport.sleep = core.now, core.sleep


return M
