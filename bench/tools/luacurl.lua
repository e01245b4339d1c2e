--- What a Lua 5.1 user would otherwise write: Debian's lua-curl (Lua-cURL 0.3, `require "curl"`,
-- libcurl-gnutls) with one easy handle (keep-alive) + lua-cjson.
--
--   lua5.1 bench/tools/luacurl.lua --mode small|pages|each --base URL --ca CA ...
package.path = "bench/tools/?.lua;" .. package.path

local common = require "common"
local curl = require "curl"
local cjson = require "cjson"

local o = common.args(arg)

local e = curl.easy_init()
local chunks, n, status = {}, 0, nil
e:setopt(curl.OPT_WRITEFUNCTION, function(s)
  n = n + 1
  chunks[n] = s
  return #s
end)
e:setopt(curl.OPT_HEADERFUNCTION, function(s)
  local code = s:match("^HTTP/%S+ (%d%d%d)")
  if code then status = tonumber(code) end
  return #s
end)
e:setopt(curl.OPT_CAINFO, o.ca)
e:setopt(curl.OPT_HTTPHEADER, { "Accept: application/json", "Content-Type: application/json",
  "Expect:", "Authorization: Bearer " .. o.token })

local function post(u, body)
  chunks, n, status = {}, 0, nil
  e:setopt(curl.OPT_URL, u)
  e:setopt(curl.OPT_POSTFIELDS, body)
  local code, msg = e:perform()
  if code and code ~= 0 then error("curl: " .. tostring(msg)) end
  if status ~= 200 then error("status " .. tostring(status)) end
  return table.concat(chunks)
end

common.run_posts(o, post, cjson.decode)
