--- lua-mde under the benchmark (any Lua the core is built for; run from the repository root
-- with package.cpath pointing at build/<lua>/).
--
--   lua5.4 bench/tools/mde.lua --mode small|pages|each --base URL --ca CA [--variant V] ...
-- variants: client (default: the public API, pacing off), paced (the public API with a rate
--   limit so high it never waits: the cost of pacing itself), core (mde.core's handle:perform
--   directly: the C core without the Lua layer).
-- small: client:scan_history_by_session(sid), n times
-- pages: client:scan_history_by_definition(def, { all = true }) (a list of every record)
-- each:  for record in client:each("POST", HISTORY_BY_DEFINITION, { body = ... }) (streamed)
package.path = "lua/?.lua;lua/?/init.lua;bench/tools/?.lua;" .. package.path

local common = require "common"
local o = common.args(arg)

local variant = o.variant or "client"

if variant == "core" then
  local core = require "mde.core"
  local h = core.new()
  local small_req = {
    method = "POST", url = o.base .. common.HISTORY_BY_SESSION, bearer = o.token, ca_file = o.ca,
    headers = { "Accept: application/json", "Content-Type: application/json" },
    body = '{"SessionIds":["' .. (o.sid or "") .. '"]}', timeout = 30, user_agent = "lua-mde/0.1",
  }
  local page_body = '{"ScanDefinitionIds":["' .. (o.def or "") .. '"]}'
  common.run(o, function()
    if o.mode == "small" then
      for _ = 1, o.n do
        local resp, facts = h:perform(small_req)
        if not resp or resp.status ~= 200 then error(facts and facts.message or resp.status) end
      end
      return o.n, 0, o.n
    end
    local u = o.base .. common.HISTORY_BY_DEFINITION .. "?$top=" .. o.top
    local calls, records, kept = 0, 0, {}
    while u do
      local resp, facts = h:perform{
        method = "POST", url = u, bearer = o.token, ca_file = o.ca, body = page_body,
        headers = small_req.headers, timeout = 30, user_agent = "lua-mde/0.1" }
      if not resp or resp.status ~= 200 then error(facts and facts.message or resp.status) end
      calls = calls + 1
      records = records + #resp.body.value
      if o.mode == "pages" then kept[#kept + 1] = resp.body end
      u = resp.body["@odata.nextLink"]
    end
    -- every page was held (pages mode) until here
    if o.mode == "pages" and #kept ~= calls then error("lost pages") end
    return calls, 0, records
  end)
  return
end

local mde = require "mde"
local client = assert(mde.new{
  base_url = o.base, token = o.token, ca_file = o.ca, page_size = o.top,
  rate_limit = variant == "paced" and { { limit = 1000000000, window = 60 } } or false,
})

common.run(o, function()
  if o.mode == "small" then
    for _ = 1, o.n do
      local list, err = client:scan_history_by_session(o.sid)
      if not list or #list ~= 1 then error(tostring(err)) end
    end
    return o.n, 0, o.n
  elseif o.mode == "pages" then
    local list, err = client:scan_history_by_definition(o.def, { all = true })
    if not list then error(tostring(err)) end
    return 0, 0, #list
  elseif o.mode == "each" then
    local records = 0
    for _ in client:each("POST", common.HISTORY_BY_DEFINITION, { body = { ScanDefinitionIds = { o.def } } }) do
      records = records + 1
    end
    return 0, 0, records
  end
  error("unknown mode " .. tostring(o.mode))
end)
