--- What a Lua user would otherwise write: LuaSocket + LuaSec (ssl.https) + lua-cjson.
-- ssl.https opens a TLS connection per request (it sends "Connection: close").
-- On Lua 5.3+ Debian's cjson leaves every number a float: no integer fix-up is done here.
--
--   lua5.4 bench/tools/luasocket.lua --mode small|pages|each --base URL --ca CA ...
package.path = "bench/tools/?.lua;" .. package.path

local common = require "common"
local https = require "ssl.https"
local ltn12 = require "ltn12"
local cjson = require "cjson"

local o = common.args(arg)

local function post(u, body)
  local chunks = {}
  local _, status = https.request{
    url = u, method = "POST", sink = ltn12.sink.table(chunks), source = ltn12.source.string(body),
    headers = { ["content-type"] = "application/json", ["accept"] = "application/json",
                ["authorization"] = "Bearer " .. o.token, ["content-length"] = tostring(#body) },
    protocol = "tlsv1_2", verify = "peer", cafile = o.ca, options = "all",
  }
  if status ~= 200 then error("status " .. tostring(status)) end
  return table.concat(chunks)
end

common.run(o, function()
  if o.mode == "small" then
    local u = o.base .. common.HISTORY_BY_SESSION
    local body = '{"SessionIds":["' .. o.sid .. '"]}'
    local bytes = 0
    for _ = 1, o.n do
      local s = post(u, body)
      bytes = bytes + #s
      local v = cjson.decode(s)
      if #v.value ~= 1 then error("no record") end
    end
    return o.n, bytes, o.n
  end
  local u = o.base .. common.HISTORY_BY_DEFINITION .. "?$top=" .. o.top
  local body = '{"ScanDefinitionIds":["' .. o.def .. '"]}'
  local calls, bytes, records, list = 0, 0, 0, {}
  while u do
    local s = post(u, body)
    calls, bytes = calls + 1, bytes + #s
    local page = cjson.decode(s)
    local items = page.value
    records = records + #items
    if o.mode == "pages" then
      for i = 1, #items do list[#list + 1] = items[i] end
    end
    u = page["@odata.nextLink"]
  end
  -- the whole listing was held (pages mode) until here
  if o.mode == "pages" and #list ~= records then error("lost records") end
  return calls, bytes, records
end)
