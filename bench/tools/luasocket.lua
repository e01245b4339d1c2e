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

common.run_posts(o, post, cjson.decode)
