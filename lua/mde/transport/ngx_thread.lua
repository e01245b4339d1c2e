--- The half of the nginx transport that runs in nginx's thread pool.
--
-- `mde.transport.ngx` calls `ngx.run_worker_thread(pool, "mde.transport.ngx_thread", "send", req)`:
-- nginx takes a Lua VM of its worker-thread VM pool (plain LuaJIT VMs, separate from the
-- worker's main VM, with its package.path and package.cpath), requires this module there and
-- runs `send` on a thread of the pool, so libcurl's blocking transfer never runs on the
-- event loop. The request table is copied into that VM and the response table copied back.
-- The body comes back as the raw string: the worker's VM decodes it with core.decode, which
-- costs the event loop less than copying the decoded tables out of this VM does
-- (bench/nginx_paths.lua: 6.8 ms vs 10.4 ms of event-loop CPU for a 2.2 MB page).
--
-- A VM serves one task at a time and stays in the pool between tasks, so the one mde.core
-- handle each VM keeps here carries its connections and TLS sessions over to the next call
-- (keep-alive), like mde.transport.curl does in a plain Lua process. Nothing of a request is
-- kept: the handle sets a request's own options for every request, resets the others when
-- they change (mde.core) and wipes the Authorization header when the transfer ends.

local core = require "mde.core"

local M = {}

-- this VM's handle (VMs are never used by two threads at once)
local handle


--- req -> resp | nil, facts (the shapes of mde.core's h:perform), resp.body undecoded.
function M.send(req)
  if handle == nil then handle = core.new() end
  req.decode = false -- (this VM's copy of the request)
  local ok, resp, facts = pcall(handle.perform, handle, req)
  if not ok then
    -- misuse (a bad request table) or out of memory: mde.core raised, after cleaning up
    -- (the handle stays usable); the caller's side raises it again in the worker's VM
    return nil, { raised = tostring(resp) }
  end
  -- the copy into the worker's VM takes fields, not metatables: parse the headers here
  if resp then local _ = resp.headers end
  return resp, facts
end


--- Close this VM's handle (its connections). The next send opens a new one.
function M.close()
  if handle then
    handle:close()
    handle = nil
  end
  return true
end


return M
