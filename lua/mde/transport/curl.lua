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
-- (req.lists: mde.core makes that field of every listing record a list, in its decode pass)
Transport.applies_lists = true


-- handle n of this transport's pool (the n-th of its requests in one perform_all)
function Transport:pool_handle(n)
  local pool = self.pool
  if not pool then
    pool = {}
    self.pool = pool
  end
  local h = pool[n]
  if not h then
    h = core.new()
    pool[n] = h
  end
  return h
end


--- Requests of one or more transports in flight at once on one thread (libcurl's multi
-- interface): reqs[i] on a handle of transports[i]'s pool. Returns a list of
-- { resp = ..., facts = ... } in request order.
function M.send_group(transports, reqs)
  -- a wave may be smaller than an earlier one (6 batches, 4 at a time: 4 then 2):
  -- perform_all takes exactly one handle per request
  local handles, used = {}, {}
  for i = 1, #reqs do
    local t = transports[i]
    local n = (used[t] or 0) + 1
    used[t] = n
    handles[i] = t:pool_handle(n)
  end
  return core.perform_all(handles, reqs)
end
Transport.send_group = M.send_group


--- Several requests of this transport in flight at once.
function Transport:send_all(reqs)
  local transports = {}
  for i = 1, #reqs do transports[i] = self end
  return M.send_group(transports, reqs)
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
