--- Bench only: the worker-thread side of variant `thread_tables` of bench/nginx_paths_handler.lua
-- (the body decoded in the thread's VM and the tables copied back to the worker's VM). The
-- shipped transport (mde.transport.ngx_thread) returns the raw body instead.
local core = require "mde.core"

local M = {}
local handle

function M.send(req)
  if handle == nil then handle = core.new() end
  return handle:perform(req)
end

return M
