--- lua-mde inside OpenResty/nginx: the handlers of examples/openresty/nginx.conf.
--
--   GET /history?session=ID[,ID...]   scan history of sessions, as JSON (`session` may repeat)
--   GET /failed?definition=ID         an HTML page listing the failed targets of a scan definition
--
-- One client per worker, made in init_worker_by_lua: it keeps no per-request state, so every
-- request of the worker shares it (and, through `lua_shared_dict mde`, every worker shares
-- one token and one rate-limit budget). The calls never block the worker: inside nginx
-- `require("mde")` sends through nginx's thread pool (mde.transport.ngx).
--
-- Configuration, from the environment (each named by an `env` directive in nginx.conf):
--   MDE_TENANT_ID, MDE_CLIENT_ID, MDE_CLIENT_SECRET   the application's credentials
--   MDE_BASE_URL, MDE_AUTHORITY, MDE_CA_FILE          a local test server (run.sh sets them)
--   MDE_TIMEOUT, MDE_RETRIES                          optional: seconds per attempt, retries
--   MDE_RATE_LIMIT                                    optional: "LIMIT/SECONDS[,LIMIT/SECONDS]"

-- luacheck: globals ngx.status ngx.header

local mde = require "mde"
local cjson = require "cjson"

local ngx = ngx
local tostring, tonumber, type, ipairs = tostring, tonumber, type, ipairs
local concat = table.concat

local M = {}

-- A private cjson instance: nothing else in nginx can change how it encodes.
local json = cjson.new()
if json.encode_empty_table_as_object then json.encode_empty_table_as_object(false) end -- OpenResty's cjson

local client, client_err


local function rate_limit(spec)
  if not spec or spec == "" then return nil end
  local windows = {}
  for limit, window in spec:gmatch("(%d+)/([%d.]+)") do
    windows[#windows + 1] = { limit = tonumber(limit), window = tonumber(window) }
  end
  return windows
end


--- init_worker_by_lua: one client for this worker.
function M.init_worker()
  local env = os.getenv
  client, client_err = mde.new{
    tenant_id = env("MDE_TENANT_ID"),
    client_id = env("MDE_CLIENT_ID"),
    client_secret = env("MDE_CLIENT_SECRET"),
    base_url = env("MDE_BASE_URL"),
    authority = env("MDE_AUTHORITY"),
    ca_file = env("MDE_CA_FILE"),
    timeout = tonumber(env("MDE_TIMEOUT") or ""),
    retries = tonumber(env("MDE_RETRIES") or ""),
    rate_limit = rate_limit(env("MDE_RATE_LIMIT")),
    -- no `store`: the lua_shared_dict named "mde" is used (see nginx.conf)
  }
  if not client then
    ngx.log(ngx.ERR, "mde example: cannot create the client: ", tostring(client_err))
  end
end


-- HTTP status of a failed call, for our own clients
local STATUS_OF_KIND = {
  invalid_argument = 400, throttled = 503, timeout = 504,
}


-- err (an mde error object) -> a JSON error answer
local function fail(err)
  ngx.status = STATUS_OF_KIND[err.kind] or 502
  if err.kind == "throttled" and err.retry_after then
    ngx.header["Retry-After"] = tostring(math.ceil(err.retry_after))
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(json.encode{ error = {
    kind = err.kind, status = err.status, code = err.code, message = err.message,
    request_id = err.request_id, retry_after = err.retry_after, text = tostring(err),
  } })
  return ngx.exit(ngx.OK)
end


local function bad_request(msg)
  return fail(mde.errors.new{ kind = "invalid_argument", message = msg })
end


local function the_client()
  if not client then
    return fail(mde.errors.new(client_err or { kind = "invalid_argument", message = "no client" }))
  end
  return client
end


-- the values of a query argument: repeated and/or comma-separated
local function ids_of(arg)
  local v = ngx.req.get_uri_args()[arg]
  if v == nil or v == true then return nil end
  if type(v) ~= "table" then v = { v } end
  local ids = {}
  for _, s in ipairs(v) do
    if type(s) == "string" then
      for id in s:gmatch("[^,%s]+") do ids[#ids + 1] = id end
    end
  end
  return #ids > 0 and ids or nil
end


--- GET /history?session=ID: the sessions' records, as the API gives them, in a JSON list.
function M.history()
  local c = the_client()
  local ids = ids_of("session")
  if not ids then return bad_request("give ?session=ID (repeat it, or separate IDs with commas)") end
  local records, err = c:scan_history_by_session(ids)
  if not records then return fail(err) end
  ngx.header["Content-Type"] = "application/json"
  -- (Debian's lua-cjson encodes an empty table as {}; the answer is always a list)
  ngx.say(#records == 0 and "[]" or json.encode(records))
end


local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }
local function html(v)
  if v == nil or v == mde.null then return "" end
  return (tostring(v):gsub("[&<>\"']", ESC))
end


local function failed_target(t)
  return type(t) == "table" and type(t.ScanStatus) == "string" and t.ScanStatus:lower() ~= "success"
end


--- GET /failed?definition=ID: every target that failed in the definition's sessions, in HTML.
function M.failed()
  local c = the_client()
  local ids = ids_of("definition")
  if not ids then return bad_request("give ?definition=ID") end
  -- every page of the history, keeping only sessions with a failed target
  local sessions, err = c:sessions(ids, { failed_targets = true })
  if not sessions then return fail(err) end

  local rows, n = {}, 0
  for _, s in ipairs(sessions) do
    for _, t in ipairs(s.ListScannedTargets) do
      if failed_target(t) then
        n = n + 1
        rows[#rows + 1] = ("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>"):format(
          html(s.LastScanned), html(s.SessionIds), html(t.Ip), html(t.Hostname), html(t.ScanStatus),
          html(t.ErrorMessage))
      end
    end
  end
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.say(concat{
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Failed targets</title>",
    "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style></head><body>\n",
    "<h1>Failed targets of ", html(concat(ids, ", ")), "</h1>\n",
    "<p>", tostring(n), " failed targets in ", tostring(#sessions), " sessions.</p>\n",
    "<table>\n<tr><th>last scanned</th><th>session</th><th>IP</th><th>host name</th><th>status</th>",
    "<th>error</th></tr>\n", concat(rows, "\n"), "\n</table>\n</body></html>",
  })
end


return M
