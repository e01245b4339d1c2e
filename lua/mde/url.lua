--- The few URL operations the client needs: encoding query strings and forms,
-- and telling whether a URL stays on the configured host.

local tostring, type, pairs = tostring, type, pairs
local concat, sort = table.concat, table.sort

local M = {}


local function escape_char(c)
  return ("%%%02X"):format(c:byte())
end

--- Percent-encode everything but RFC 3986 unreserved characters and "$"
-- (OData's system query options are spelled `$top`, `$skip`: sent as written).
function M.escape(s)
  return (tostring(s):gsub("[^%w%-%._~%$]", escape_char))
end


-- A query value as text: whole numbers without a fraction ($top=10, never 10.0 on Lua 5.3+).
local function value(v)
  if type(v) == "number" and v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 then
    return ("%d"):format(v)
  end
  return v
end


--- Encode a table as `k=v&...` (sorted keys, so requests are reproducible).
-- List values repeat the key.
function M.encode(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local out = {}
  for i = 1, #keys do
    local k = keys[i]
    local v = t[k]
    if type(v) == "table" then
      for j = 1, #v do out[#out + 1] = M.escape(k) .. "=" .. M.escape(value(v[j])) end
    else
      out[#out + 1] = M.escape(k) .. "=" .. M.escape(value(v))
    end
  end
  return concat(out, "&")
end


local DEFAULT_PORT = { http = "80", https = "443" }

--- Split a URL into scheme, host, port and the rest (path, query).
-- Returns nil for anything that is not an absolute http(s) URL.
function M.split(u)
  if type(u) ~= "string" then return nil end
  local scheme, authority, rest = u:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil end
  scheme = scheme:lower()
  if not DEFAULT_PORT[scheme] then return nil end
  if authority:find("@", 1, true) then return nil end -- no userinfo in API URLs
  local host, port = authority:match("^(%[[%x:.]+%])(.*)$")
  if not host then host, port = authority:match("^([^:]*)(.*)$") end
  if port ~= "" then
    port = port:match("^:(%d+)$")
    if not port then return nil end
  else
    port = DEFAULT_PORT[scheme]
  end
  if host == "" then return nil end
  return scheme, host:lower(), tostring(tonumber(port)), rest
end


--- "scheme://host:port" of a URL, or nil.
function M.origin(u)
  local scheme, host, port = M.split(u)
  if not scheme then return nil end
  return scheme .. "://" .. host .. ":" .. port
end


--- Resolve a reference against the URL `base` (RFC 3986, 5.2): absolute, network-path
-- ("//host/..."), absolute-path ("/..."), query-only ("?...") and relative-path ("a/b",
-- "../a") references, dot segments removed.
function M.resolve(base, ref)
  if type(ref) ~= "string" or type(base) ~= "string" then return nil end
  if ref:match("^%a[%w+.-]*:") then return ref end
  local scheme, authority, path, query = base:match("^(%a[%w+.-]*:)(//[^/?#]*)([^?#]*)(%??[^#]*)")
  if not scheme then return nil end
  ref = ref:gsub("#.*$", "")
  if ref:sub(1, 2) == "//" then return scheme .. ref end
  if ref == "" then return scheme .. authority .. path .. query end
  if ref:sub(1, 1) == "?" then return scheme .. authority .. path .. ref end
  local rpath, rquery = ref:match("^([^?]*)(.*)$")
  if rpath:sub(1, 1) ~= "/" then
    -- merge: the base path up to its last "/", then the reference's path
    rpath = (path ~= "" and path:match("^(.*/)") or "/") .. rpath
  end
  -- remove dot segments
  local out = {}
  for seg in (rpath .. "/"):gmatch("([^/]*)/") do
    if seg == ".." then
      if #out > 1 then out[#out] = nil end
    elseif seg ~= "." then
      out[#out + 1] = seg
    end
  end
  local last = rpath:match("([^/]*)$")
  if last == "." or last == ".." then out[#out + 1] = "" end
  local joined = table.concat(out, "/")
  if joined:sub(1, 1) ~= "/" then joined = "/" .. joined end
  return scheme .. authority .. joined .. rquery
end


local function unescape(s)
  return (s:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- A URL without its fragment -> the URL before "?", and its query as a table of decoded
-- names and values (a repeated name keeps its last value).
function M.parse_query(u)
  u = u:gsub("#.*$", "")
  local path, q = u:match("^([^?]*)%??(.*)$")
  local t = {}
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    t[unescape(k)] = unescape(v)
  end
  return path, t
end


--- Append a query table to a URL that may already have a query string.
function M.with_query(u, query)
  if not query or next(query) == nil then return u end
  local q = M.encode(query)
  return u .. (u:find("?", 1, true) and "&" or "?") .. q
end


return M
