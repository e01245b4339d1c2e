--- Error objects of lua-mde.
-- Every failure a caller can act on is returned as `nil, err`, where `err` is
-- a table with a readable `tostring(err)` and the fields `kind`, `status`,
-- `code`, `message`, `request_id` and `retry_after`. Error objects carry no
-- secret: whatever builds them passes only facts the library may print.

local setmetatable, getmetatable = setmetatable, getmetatable
local type, tostring, tonumber = type, tostring, tonumber
local concat = table.concat
local mdetime = require "mde.time"

local M = {}

--- The kinds of error, as listed in CONTRACT.md.
M.KINDS = {
  invalid_argument = true, auth = true, http = true, throttled = true,
  timeout = true, network = true, tls = true, decode = true,
  too_large = true, unsafe_redirect = true,
}

local Error = {}
Error.__index = Error
M.Error = Error


function Error.__tostring(e)
  local head = { "mde: ", e.kind }
  if e.status then head[#head + 1] = " " .. tostring(e.status) end
  if e.code then head[#head + 1] = " " .. tostring(e.code) end
  local parts = { concat(head) }
  if e.message and e.message ~= "" then parts[#parts + 1] = ": " .. e.message end
  if e.retry_after then parts[#parts + 1] = " (retry after " .. tostring(e.retry_after) .. " s)" end
  if e.request_id then parts[#parts + 1] = " [request id " .. tostring(e.request_id) .. "]" end
  return concat(parts)
end


--- Build an error object.
-- @tparam table t fields: kind (required), status, code, message, request_id,
-- retry_after, curl_code, and any extra facts (strings and numbers only).
function M.new(t)
  if type(t) == "string" then t = { kind = "http", message = t } end
  local kind = t.kind
  if not M.KINDS[kind] then
    error("mde.errors.new: unknown error kind " .. tostring(kind), 2)
  end
  local e = {}
  for k, v in pairs(t) do e[k] = v end
  return setmetatable(e, Error)
end


--- Is `v` an error object of this module?
function M.is(v)
  return type(v) == "table" and getmetatable(v) == Error
end


--- `nil, invalid_argument error`, for the checks of the public API.
function M.invalid(fmt, ...)
  return nil, M.new{ kind = "invalid_argument", message = fmt:format(...) }
end


--- Add context to a message, keeping the rest of the facts.
function M.wrap(e, context)
  local w = M.new(e)
  w.message = context .. (e.message and (": " .. e.message) or "")
  return w
end


--- The error facts of a transport (`{ kind, curl_code, message }`) as an error object.
function M.from_facts(facts, what)
  local kind = facts.kind
  if kind == "invalid" then
    kind = "invalid_argument" -- a URL libcurl cannot use (bad syntax, scheme not http/https)
  elseif not M.KINDS[kind] then
    kind = "network"
  end
  local msg = facts.message or kind
  if what then msg = what .. ": " .. msg end
  return M.new{ kind = kind, message = msg, curl_code = facts.curl_code }
end


local function header(resp, name)
  local h = resp.headers
  return h and h[name]
end


--- Parse a Retry-After value: delta seconds or an HTTP date. Returns seconds (>= 0) or nil.
-- `now` is the current epoch time (seconds), used for the HTTP-date form.
function M.parse_retry_after(v, now)
  if type(v) == "number" then return v >= 0 and v or 0 end
  if type(v) ~= "string" then return nil end
  local n = tonumber(v:match("^%s*(%d+%.?%d*)%s*$"))
  if n then return n end
  -- IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 also allows obsolete forms;
  -- the day name is ignored, which covers RFC 850 dates with a 2-digit year too).
  local d, mon, y, hh, mm, ss = v:match("(%d%d?)[ %-](%a%a%a)[ %-](%d+) (%d%d):(%d%d):(%d%d)")
  if not d then return nil end
  local months = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7,
                   Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
  local m = months[mon]
  if not m then return nil end
  y = tonumber(y)
  if y < 100 then y = y + (y < 70 and 2000 or 1900) end
  local t = mdetime.epoch(y, m, tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss))
  local delta = t - (now or 0)
  return delta > 0 and delta or 0
end


local KIND_OF_STATUS = { [401] = "auth", [403] = "auth", [429] = "throttled" }

--- Build the error object of a non-success HTTP response.
-- The API's error body `{"error": {"code", "message", "target"}}` and the
-- login service's `{"error", "error_description", "error_codes"}` are both read.
function M.from_response(resp, now)
  local status = resp.status
  local body = resp.body
  local code, message, request_id
  if type(body) == "table" then
    local eb = body.error
    if type(eb) == "table" then
      code = type(eb.code) == "string" and eb.code or nil
      message = type(eb.message) == "string" and eb.message or nil
      request_id = type(eb.target) == "string" and eb.target or nil
    elseif type(eb) == "string" then
      -- login service (Entra ID): code = the AADSTS code where there is one
      local desc = type(body.error_description) == "string" and body.error_description or nil
      code = desc and desc:match("^(AADSTS%d+)") or eb
      message = desc or eb
      request_id = type(body.correlation_id) == "string" and body.correlation_id or nil
    elseif type(body.message) == "string" then
      message = body.message
    end
  elseif type(body) == "string" and body ~= "" then
    -- not JSON: keep a short, single-line excerpt for the reader
    message = body:sub(1, 200):gsub("%s+", " ")
  end
  request_id = request_id or header(resp, "request-id") or header(resp, "x-ms-request-id")
    or header(resp, "client-request-id")
  local e = M.new{
    kind = KIND_OF_STATUS[status] or "http",
    status = status,
    code = code,
    message = message or ("HTTP " .. tostring(status)),
    request_id = request_id,
  }
  if status == 429 or status == 503 then
    e.retry_after = M.parse_retry_after(header(resp, "retry-after"), now)
  end
  if type(body) == "table" and type(body.error) == "string" then
    e.oauth_error = body.error
  end
  return e
end


return M
