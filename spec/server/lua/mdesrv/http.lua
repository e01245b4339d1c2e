-- luacheck: globals ngx
--- Response helpers: one place that writes status, headers and body.
local data = require "mdesrv.data"

local M = {}

M.JSON = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
M.JSON_PLAIN = "application/json; charset=utf-8"

local CODES = {
  [400] = "BadRequest", [401] = "Unauthorized", [403] = "Forbidden", [404] = "NotFound",
  [405] = "MethodNotAllowed", [408] = "RequestTimeout", [409] = "Conflict",
  [415] = "UnsupportedMediaType", [429] = "TooManyRequests", [500] = "InternalServerError",
  [502] = "BadGateway", [503] = "ServiceUnavailable", [504] = "GatewayTimeout",
}
M.CODES = CODES


--- Send a complete response. headers: optional { name = value }.
function M.send(status, body, ctype, headers)
  local ctx = ngx.ctx
  ngx.status = status
  if ctx.req_id then ngx.header["request-id"] = ctx.req_id end
  if ctx.force_ctype and body then ctype = ctx.force_ctype end
  if ctype then ngx.header["Content-Type"] = ctype end
  if headers then
    for k, v in pairs(headers) do ngx.header[k] = v end
  end
  if body and status ~= 204 and status ~= 304 then
    ngx.header["Content-Length"] = #body
    ngx.print(body)
  else
    ngx.header["Content-Length"] = nil
    ngx.send_headers()
  end
  return ngx.exit(ngx.HTTP_OK)
end


--- The MDE error body {"error":{"code","message","target"}}; target = the request id.
function M.error_body(code, message)
  return '{"error":{"code":' .. data.quote(code) .. ',"message":' .. data.quote(message)
    .. ',"target":' .. data.quote(ngx.ctx.req_id or "") .. '}}'
end


--- Send an MDE error.
function M.error(status, code, message, headers)
  ngx.ctx.error_code = code
  return M.send(status, M.error_body(code or CODES[status] or "Error", message or ""),
    M.JSON_PLAIN, headers)
end


return M
