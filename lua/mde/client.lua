--- The client object: options, named calls of the authenticated-scan API, paging.

local type, tostring, pairs, ipairs, setmetatable = type, tostring, pairs, ipairs, setmetatable
local ceil = math.ceil
local concat = table.concat

local cjson = require "cjson.safe"
local core = require "mde.core"
local errors = require "mde.errors"
local clouds = require "mde.clouds"
local pacing = require "mde.pacing"
local paging = require "mde.paging"
local pipeline = require "mde.pipeline"
local gathering = require "mde.gather"
local redact = require "mde.redact"
local scans = require "mde.scans"
local storemod = require "mde.store"
local url = require "mde.url"

local M = {}

local NO_HEADERS = {} -- (shared, never modified)

--- The shortest credential that is scrubbed, as a literal, from log events and error messages.
M.MIN_SECRET = 6

local Client = {}
Client.__index = Client
M.Client = Client

-- Defaults of the options that have one.
M.DEFAULTS = {
  timeout = 30,            -- seconds, one HTTP attempt
  connect_timeout = 10,    -- seconds
  deadline = 300,          -- seconds, a whole call: pacing waits and retries included
  retries = 3,
  max_body = 64 * 1024 * 1024,
  page_size = 4096,        -- the API's largest $top
  batch_size = 50,         -- IDs per SessionIds / ScanDefinitionIds request
  concurrency = 4,         -- requests in flight at once for the batches of one call
  user_agent = "lua-mde/0.1",
  backoff = { base = 0.5, cap = 30 },
}

local function positive(v) return type(v) == "number" and v > 0 and v < math.huge end
local function whole(v) return type(v) == "number" and v >= 0 and v % 1 == 0 end
local function nonempty(v) return type(v) == "string" and v ~= "" end

-- option -> check(value) returning true, or false and what was expected
local CHECKS = {
  tenant_id = { nonempty, "a non-empty string" },
  client_id = { nonempty, "a non-empty string" },
  client_secret = { nonempty, "a non-empty string" },
  certificate = { function(v) return type(v) == "table" end,
                  "a table { key_file =, cert_file = } or { key =, cert = }" },
  token = { nonempty, "a non-empty string" },
  token_provider = { function(v) return type(v) == "function" end, "a function" },
  cloud = { nonempty, "a string" },
  region = { nonempty, "a string" },
  base_url = { function(v) return url.split(v) ~= nil end, "an absolute http(s) URL" },
  authority = { function(v) return url.split(v) ~= nil end, "an absolute http(s) URL" },
  scope = { nonempty, "a non-empty string" },
  timeout = { positive, "a positive, finite number of seconds" },
  connect_timeout = { positive, "a positive, finite number of seconds" },
  deadline = { positive, "a positive, finite number of seconds" },
  ca_file = { nonempty, "a file path" },
  insecure = { function(v) return type(v) == "boolean" end, "a boolean" },
  proxy = { nonempty, "a proxy URL" },
  user_agent = { nonempty, "a string" },
  retries = { whole, "a whole number >= 0" },
  rate_limit = { function() return true end, "" },        -- checked by mde.pacing
  max_body = { function(v) return whole(v) and v > 0 end, "a positive whole number of bytes" },
  page_size = { function(v) return whole(v) and v >= 1 and v <= 4096 end, "a whole number from 1 to 4096" },
  batch_size = { function(v) return whole(v) and v >= 1 end, "a positive whole number" },
  concurrency = { function(v) return whole(v) and v >= 1 and v <= 64 end, "a whole number from 1 to 64" },
  logger = { function(v) return type(v) == "function" end, "a function(event)" },
  backoff = { function(v) return type(v) == "table" and positive(v.base) and positive(v.cap) end,
              "a table { base = seconds, cap = seconds }" },
  store = { function(v) return type(v) == "table" and type(v.get) == "function" end, "a store (see mde.store)" },
  transport = { function(v) return type(v) == "table" and type(v.send) == "function" end, "a transport object" },
}

-- the option names, sorted, for messages
local NAMES = {}
for k in pairs(CHECKS) do NAMES[#NAMES + 1] = k end
table.sort(NAMES)


-- Inside nginx (any phase: a client made in init_by_lua serves requests later) the
-- non-blocking transport; a failure to load it is raised, never hidden behind a blocking one.
local function default_transport()
  if rawget(_G, "ngx") and type(ngx.get_phase) == "function" and type(ngx.run_worker_thread) == "function" then
    return require "mde.transport.ngx"
  end
  return require "mde.transport.curl"
end


--- Create a client. Returns the client, or nil and an invalid_argument error.
function M.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    return errors.invalid("mde.new: options must be a table, got %s", type(opts))
  end
  for k, v in pairs(opts) do
    local check = CHECKS[k]
    if not check then
      return errors.invalid("mde.new: unknown option '%s' (known: %s)", tostring(k), concat(NAMES, ", "))
    end
    if not check[1](v) then
      return errors.invalid("mde.new: option '%s' must be %s, got %s", k, check[2], type(v))
    end
  end

  local windows, perr = pacing.check(opts.rate_limit)
  if windows == nil then return errors.invalid("mde.new: option 'rate_limit' %s", perr) end

  local where, cerr = clouds.resolve(opts)
  if not where then return errors.invalid("mde.new: %s", cerr) end

  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for _, k in ipairs{ "timeout", "connect_timeout", "deadline", "retries", "max_body", "page_size",
                      "batch_size", "concurrency", "user_agent", "backoff", "ca_file" } do
    if opts[k] ~= nil then o[k] = opts[k] end
  end
  o.insecure = opts.insecure == true
  -- "http://user:password@host:port" shows as "http://user:<redacted>@host:port"
  o.proxy = opts.proxy and (opts.proxy:gsub("^(%a[%w+.-]*://[^/@:]*):[^/@]*@", "%1:<redacted>@"))

  -- credentials: exactly one source
  local sources = {}
  if opts.token then sources[#sources + 1] = "token" end
  if opts.token_provider then sources[#sources + 1] = "token_provider" end
  if opts.client_secret then sources[#sources + 1] = "client_secret" end
  if opts.certificate then sources[#sources + 1] = "certificate" end
  if #sources == 0 then
    return errors.invalid("mde.new: no credentials: give client_secret, certificate, token or token_provider")
  end
  if #sources > 1 then
    return errors.invalid("mde.new: give one kind of credentials, not %s", concat(sources, " and "))
  end
  if (opts.client_secret or opts.certificate) and not (opts.tenant_id and opts.client_id) then
    return errors.invalid("mde.new: %s needs tenant_id and client_id", sources[1])
  end

  local transport_mod = opts.transport or default_transport()
  -- a transport object may bring its own clock (the nginx one does); otherwise the C core's
  local now, sleep = transport_mod.now or core.now, transport_mod.sleep or core.sleep

  local certificate
  if opts.certificate then
    for k in pairs(opts.certificate) do
      if k ~= "key_file" and k ~= "cert_file" and k ~= "key" and k ~= "cert" and k ~= "passphrase" then
        return errors.invalid("mde.new: option 'certificate' has an unknown key '%s'", tostring(k))
      end
    end
    local cert, err = require("mde.jwt").load(opts.certificate)
    if not cert then return errors.invalid("mde.new: %s", err) end
    certificate = cert
  end

  -- the literal secrets of this client: scrubbed from every log event and error message
  -- (secrets shorter than MIN_SECRET are not searched for: they would garble ordinary text)
  local secrets = {}
  for _, v in ipairs{ opts.client_secret or false, opts.token or false,
                      certificate and certificate.passphrase or false } do
    if v and #v >= M.MIN_SECRET then secrets[#secrets + 1] = v end
  end
  -- log(event): nil without a logger, so that no event table is built for nobody
  local logger = opts.logger
  local log
  if logger then
    log = function(event)
      event.time = now()
      pcall(logger, redact.event(event, secrets))
    end
  end

  local c = setmetatable({
    base_url = where.base_url,
    authority = where.authority,
    scope = where.scope,
    resource = where.resource,
    cloud = opts.cloud or "commercial",
    region = opts.region,
    tenant_id = opts.tenant_id,
    client_id = opts.client_id,
    credential = sources[1],
    options = o,
  }, Client)

  local transport = opts.transport and opts.transport or transport_mod.new()
  -- secrets and live state sit outside the client table: no dump of the client shows them
  pipeline.state[c] = {
    client_secret = opts.client_secret,
    certificate = certificate,
    static_token = opts.token,
    token_provider = opts.token_provider,
    store = opts.store or (transport_mod.default_store and transport_mod.default_store())
      or storemod.default(now),
    windows = windows,
    -- the service counts calls per app and tenant: so does the budget, when they are known;
    -- a client with only a token (and no tenant_id/client_id) has a budget of its own
    pace_key = "mde:pace:" .. ((opts.tenant_id and opts.client_id) and (opts.tenant_id .. "|" .. opts.client_id)
      or ("client:" .. core.base64url(core.random_bytes(12)))),
    proxy = opts.proxy, -- (may hold credentials: options.proxy shows it without them)
    transport = transport,
    now = now,
    sleep = sleep,
    log = log,
    secrets = secrets,
    urls = {}, -- endpoint -> its absolute URL (see endpoint_url)
  }
  return c
end


function Client:__tostring()
  return ("mde.Client (%s, tenant %s, client %s, %s)"):format(self.base_url, tostring(self.tenant_id),
    tostring(self.client_id), self.credential)
end


--- Release the transport (connections). The client cannot be used afterwards.
function Client:close()
  local p = pipeline.state[self]
  if p.transport and p.transport.close then p.transport:close() end
end


-- Checks shared by the calls ---------------------------------------------------

local function check_ids(ids, what)
  if type(ids) == "string" then
    if ids == "" then return errors.invalid("%s: an ID must be a non-empty string", what) end
    return { ids }
  end
  if type(ids) ~= "table" then
    return errors.invalid("%s: IDs must be a string or a list of strings, got %s", what, type(ids))
  end
  local n = #ids
  if n == 0 then return errors.invalid("%s: the list of IDs is empty", what) end
  for k in pairs(ids) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
      return errors.invalid("%s: IDs must be a list (found key %s)", what, tostring(k))
    end
  end
  local seen, unique = {}, nil
  for i = 1, n do
    local id = ids[i]
    if type(id) ~= "string" or id == "" then
      return errors.invalid("%s: ID #%d must be a non-empty string, got %s", what, i, type(id))
    end
    -- each ID once, in the order first given: one record per ID however the IDs are batched
    if seen[id] then
      if not unique then
        unique = {}
        for j = 1, i - 1 do unique[j] = ids[j] end
      end
    else
      seen[id] = true
      if unique then unique[#unique + 1] = id end
    end
  end
  return unique or ids
end


local LIST_OPTS = { top = true, skip = true, all = true, batch_size = true, query = true }

local NO_OPTS = {} -- (shared, never modified)

local function check_list_opts(opts, what)
  if opts == nil then return NO_OPTS end
  if type(opts) ~= "table" then return errors.invalid("%s: opts must be a table, got %s", what, type(opts)) end
  for k in pairs(opts) do
    if not LIST_OPTS[k] then
      return errors.invalid("%s: unknown option '%s' (known: all, batch_size, query, skip, top)", what, tostring(k))
    end
  end
  if opts.top ~= nil and not (whole(opts.top) and opts.top >= 1 and opts.top <= 4096) then
    return errors.invalid("%s: 'top' must be a whole number from 1 to 4096", what)
  end
  if opts.skip ~= nil and not whole(opts.skip) then
    return errors.invalid("%s: 'skip' must be a whole number >= 0", what)
  end
  if opts.all ~= nil and type(opts.all) ~= "boolean" then
    return errors.invalid("%s: 'all' must be a boolean", what)
  end
  if opts.all and (opts.top or opts.skip) then
    return errors.invalid("%s: 'all' pages through everything; it does not combine with 'top' or 'skip'", what)
  end
  if opts.batch_size ~= nil and not (whole(opts.batch_size) and opts.batch_size >= 1) then
    return errors.invalid("%s: 'batch_size' must be a positive whole number", what)
  end
  if opts.query ~= nil and type(opts.query) ~= "table" then
    return errors.invalid("%s: 'query' must be a table", what)
  end
  return opts
end


--- ListScannedTargets is always a list: a single object is wrapped, absence is an empty list.
-- The transports of mde do it as they decode a page (the request's `lists`, one pass over the
-- records with the integer fix-up); for a transport that does not, it is done here.
local HISTORY_LISTS = "ListScannedTargets"

local function normalise_history(items)
  return core.as_lists(items, HISTORY_LISTS)
end
M.normalise_history = normalise_history

-- the field a request's listing records need made a list, if any
local function lists_of(r)
  return r.endpoint and r.endpoint.history and HISTORY_LISTS or nil
end

-- the records of a response of request r still need it from us
local function needs_lists(c, r)
  return lists_of(r) ~= nil and not pipeline.state[c].transport.applies_lists
end


local function encode(body, what)
  if type(body) == "string" or body == nil then return body end
  if type(body) ~= "table" then
    return errors.invalid("%s: body must be a table or a JSON string, got %s", what, type(body))
  end
  local s, err = cjson.encode(body)
  if not s then return errors.invalid("%s: body cannot be encoded as JSON: %s", what, tostring(err)) end
  return s
end


local function check_headers(h, what)
  if h == nil then return {} end
  if type(h) ~= "table" then return errors.invalid("%s: headers must be a table", what) end
  local out = {}
  for k, v in pairs(h) do
    if type(k) ~= "string" or type(v) ~= "string" or k:find("[%c:]") or v:find("[\r\n]") then
      return errors.invalid("%s: headers must map names to single-line strings", what)
    end
    if k:lower() == "authorization" then
      return errors.invalid("%s: the Authorization header is set by the client", what)
    end
    out[#out + 1] = k .. ": " .. v
  end
  table.sort(out)
  return out
end


-- The URL of a path (relative to base_url) or of an absolute URL.
local function target_url(c, path)
  if path:match("^%a[%w+.-]*://") then return path end
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  return c.base_url .. path
end


-- Generic requests -----------------------------------------------------------

local REQUEST_OPTS = { query = true, body = true, headers = true, safe = true, deadline = true }
local METHODS = { GET = true, POST = true, PATCH = true, PUT = true, DELETE = true }

local function prepare(c, method, path, opts, what)
  if type(method) ~= "string" or not METHODS[method:upper()] then
    return errors.invalid("%s: method must be one of GET, POST, PATCH, PUT, DELETE", what)
  end
  method = method:upper()
  if type(path) ~= "string" or path == "" then
    return errors.invalid("%s: path must be a non-empty string", what)
  end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then return errors.invalid("%s: opts must be a table", what) end
  for k in pairs(opts) do
    if not REQUEST_OPTS[k] then
      return errors.invalid("%s: unknown option '%s' (known: body, deadline, headers, query, safe)", what, tostring(k))
    end
  end
  if opts.query ~= nil and type(opts.query) ~= "table" then
    return errors.invalid("%s: query must be a table", what)
  end
  if opts.deadline ~= nil and not positive(opts.deadline) then
    return errors.invalid("%s: deadline must be a positive number of seconds", what)
  end
  local body, err = encode(opts.body, what)
  if err then return nil, err end
  local headers, herr = check_headers(opts.headers, what)
  if not headers then return nil, herr end
  local full = target_url(c, path)
  local bare = full:match("^[^?#]*")
  local route_path = bare:sub(#c.base_url + 1)
  local endpoint = bare:sub(1, #c.base_url) == c.base_url and scans.lookup(method, route_path) or nil
  local safe = opts.safe
  if safe == nil then
    safe = method == "GET" or (endpoint ~= nil and endpoint.safe)
  end
  return {
    method = method, url = full, query = opts.query, body = body, headers = headers,
    safe = safe, endpoint = endpoint, deadline = opts.deadline,
  }
end


--- client:request(method, path_or_url, { query, body, headers, safe, deadline })
-- @return { status, headers, body } or nil, err
function Client:request(method, path, opts)
  local r, err = prepare(self, method, path, opts, "request")
  if not r then return nil, err end
  local resp
  resp, err = pipeline.call(self, {
    method = r.method, url = url.with_query(r.url, r.query), body = r.body, headers = r.headers,
    safe = r.safe, deadline = r.deadline, expect = "any",
  })
  if not resp then return nil, err end
  if resp.headers == nil then resp.headers = {} end -- (mde.core parses them on this first read)
  return resp
end


-- The pipeline's spec of the page at URL `u` of a prepared listing request.
local function page_spec(r, u, lists)
  return { method = r.method, url = u, body = r.body, headers = r.headers,
    safe = r.safe, deadline = r.deadline, deadline_at = r.deadline_at, expect = "json", lists = lists }
end


-- An iterator of pages over a prepared request; page_size false = follow nextLinks only.
local function page_iterator(c, r, page_size, first)
  local lists = lists_of(r)
  local fetch = function(u) return pipeline.call(c, page_spec(r, u, lists)) end
  return paging.iterate(fetch, r.listing or r.url, r.query, {
    page_size = page_size,
    origin = url.origin(c.base_url),
    normalise = needs_lists(c, r) and normalise_history or nil,
    first = first,
  })
end


--- for page in client:pages(method, path, opts) do ... end
-- Raises the error object on failure.
function Client:pages(method, path, opts)
  local r, err = prepare(self, method, path, opts, "pages")
  if not r then error(err, 2) end
  return page_iterator(self, r, self.options.page_size)
end


--- for item in client:each(method, path, opts) do ... end
function Client:each(method, path, opts)
  local next_page = self:pages(method, path, opts)
  local page, i = nil, 0
  return function()
    while true do
      if page then
        i = i + 1
        local item = page[i]
        if item ~= nil then return item end
      end
      -- let go of the last page before the next one arrives: only one is ever held
      page = nil
      page, i = next_page(), 0
      if not page then return nil end
    end
  end
end


-- Named calls ----------------------------------------------------------------

-- The lists of at most `size` IDs that one call sends.
local function batches(list, size)
  if #list <= size then return { list } end
  local out = {}
  for b = 1, ceil(#list / size) do
    local batch = {}
    for i = (b - 1) * size + 1, math.min(b * size, #list) do batch[#batch + 1] = list[i] end
    out[b] = batch
  end
  return out
end


-- The absolute URL of an endpoint without {id}, built once per client.
local function endpoint_url(c, e)
  local urls = pipeline.state[c].urls
  local u = urls[e]
  if not u then
    u = c.base_url .. e.path
    urls[e] = u
  end
  return u
end


local NO_QUERY = {} -- (shared, never modified: paging copies a query before changing it)

-- How a listing is fetched: the request, and the page size: n pages with $top/$skip
-- (all = true), false follows nextLinks only (the by-session call, whose answer the IDs
-- bound), nil takes one page as the API gives it.
-- `deadline_at`: when the whole named call must end (nil: each request has its own deadline).
local function plan(c, e, body, opts, deadline_at)
  local query = NO_QUERY
  if opts.query or opts.top or opts.skip then
    query = {}
    if opts.query then for k, v in pairs(opts.query) do query[k] = v end end
    if opts.top then query["$top"] = opts.top end
    if opts.skip then query["$skip"] = opts.skip end
  end
  local page_size
  if opts.all then
    page_size = c.options.page_size
  elseif e.body_key == "SessionIds" and not (opts.top or opts.skip) then
    page_size = false
  end
  local listing = endpoint_url(c, e)
  -- (also the pipeline's spec of the call that fetches the first page: url is that page's)
  local r = {
    method = e.method, url = paging.first_url(listing, query, page_size), listing = listing,
    query = query, headers = NO_HEADERS, body = body, safe = e.safe, expect = "json",
    endpoint = e, deadline_at = deadline_at, lists = e.history and HISTORY_LISTS or nil,
  }
  return r, page_size
end


-- The lists one after the other, in one list (the first one's table). Pages are joined once
-- all have arrived, not one by one as they come: a long list that grows while the garbage
-- collector marks the pages being decoded is marked again and again (W2 of bench/: 20% slower).
local function join(lists)
  local out = lists[1] or {}
  for l = 2, #lists do
    local items, n = lists[l], #out
    if table.move then
      table.move(items, 1, #items, n + 1, out)
    else
      for i = 1, #items do out[n + i] = items[i] end
    end
  end
  return out
end


-- The pages of a listing whose first page told the total (paging.counted: `ahead`), after the
-- first one (`items`): `concurrency` at a time, each with the whole policy of a call. The
-- pages are taken in order up to the first short one; a page that repeats the one before it
-- (a service that ignores $skip) is the paging-loop error. Returns the list of pages and the
-- query of the page after the last one when the service says there is more (the total grew
-- meanwhile: the rest is followed page by page), or nil, err.
local function counted_pages(c, r, items, ahead)
  local lists = lists_of(r)
  local query = {}
  for k, v in pairs(r.query) do query[k] = v end
  query["$top"] = ahead.top
  local pages, previous = { items }, paging.fingerprint(items)
  local skip, width = ahead.from, c.options.concurrency
  while skip < ahead.to do
    local specs = {}
    while #specs < width and skip < ahead.to do
      query["$skip"] = skip
      specs[#specs + 1] = page_spec(r, url.with_query(r.listing, query), lists)
      skip = skip + ahead.top
    end
    local results = pipeline.call_all(c, specs, width)
    for k = 1, #specs do
      local resp, err = results[k].resp, results[k].err
      if not resp then return nil, err end
      local page, fp = paging.page(resp, specs[k].url, #pages + 1, previous)
      if not page then return nil, fp end
      if #page == 0 then return pages end
      previous = fp
      pages[#pages + 1] = page
      if #page < ahead.top then return pages end
      if k == #specs and skip >= ahead.to and resp.body["@odata.nextLink"] ~= nil then
        query["$skip"] = skip
        return pages, query
      end
    end
  end
  return pages
end


-- The items of a planned listing, every page of it; `first` is its first response when
-- fetched ahead. Most listings end with their first page: the page iterator only comes in
-- when more may follow.
local function collect(c, r, page_size, first)
  local resp, err = first, nil
  if not resp then resp, err = pipeline.call(c, r) end
  if not resp then return nil, err end
  local body = resp.body
  if page_size == false and type(body) == "table" and body["@odata.nextLink"] == nil
     and type(body.value) == "table" then -- (the by-session answer: its IDs bound it to one page)
    local items = body.value
    if needs_lists(c, r) then normalise_history(items) end
    return items
  end
  if page_size ~= nil and paging.more(body, r.query, page_size) then
    local pages = {}
    -- the total told: the other pages are known, and fetched `concurrency` at a time
    local ahead = page_size and c.options.concurrency > 1
      and paging.counted(body, r.url, r.listing, r.query, page_size)
    if ahead then
      local rest
      pages, rest = counted_pages(c, r, paging.items(body), ahead)
      if not pages then return nil, rest end
      if needs_lists(c, r) then for i = 1, #pages do normalise_history(pages[i]) end end
      if not rest then return join(pages) end
      -- (the rest, one page after the other, from the page after the last one)
      r = { method = r.method, url = url.with_query(r.listing, rest), listing = r.listing, query = rest,
        headers = r.headers, body = r.body, safe = r.safe, endpoint = r.endpoint, deadline = r.deadline,
        deadline_at = r.deadline_at }
      resp = nil
    end
    local ok, perr = pcall(function()
      for items in page_iterator(c, r, page_size, resp) do pages[#pages + 1] = items end
    end)
    if not ok then
      if errors.is(perr) then return nil, perr end
      error(perr, 0)
    end
    return join(pages)
  end
  local items = paging.items(body)
  if not items then
    return nil, errors.new{ kind = "decode", status = resp.status, message = "expected a listing from " .. r.listing }
  end
  if needs_lists(c, r) then normalise_history(items) end
  return items
end


-- The JSON body of a call that takes IDs: { "<body_key>": [ ids ] }.
local function ids_body(e, ids)
  if type(ids) == "string" then return '{"' .. e.body_key .. '":[' .. cjson.encode(ids) .. "]}" end
  return cjson.encode{ [e.body_key] = ids }
end


-- A call that takes IDs: ceil(N / batch_size) requests, the first page of each batch
-- fetched `concurrency` at a time, results joined in the order of the IDs.
local function by_ids(c, name, ids, opts, what)
  local e = scans.endpoints[name]
  local err
  opts, err = check_list_opts(opts, what)
  if not opts then return nil, err end
  -- one deadline for the whole call, all its batches and pages
  local deadline_at = pipeline.state[c].now() + c.options.deadline
  if type(ids) == "string" and ids ~= "" then -- the common case: one ID, one request
    return collect(c, plan(c, e, ids_body(e, ids), opts, deadline_at))
  end
  local list
  list, err = check_ids(ids, what)
  if not list then return nil, err end
  local parts = batches(list, opts.batch_size or c.options.batch_size)
  if #parts == 1 then
    return collect(c, plan(c, e, ids_body(e, parts[1]), opts, deadline_at))
  end
  local plans, sizes, firsts = {}, {}, {}
  for b = 1, #parts do
    plans[b], sizes[b] = plan(c, e, ids_body(e, parts[b]), opts, deadline_at)
  end
  local lists = {}
  if c.options.concurrency > 1 and gathering.concurrent then
    -- every batch a task of a gathering: their pages in flight together, `concurrency` at a time
    local fns = {}
    for b = 1, #parts do
      local r, size = plans[b], sizes[b]
      fns[b] = function() return collect(c, r, size) end
    end
    local results = gathering.gather(fns, { concurrency = c.options.concurrency })
    for b = 1, #parts do
      if not results[b][1] then return nil, results[b][2] end
      lists[b] = results[b][1]
    end
    return join(lists)
  end
  if c.options.concurrency > 1 then -- (plain Lua 5.1: the first pages at once, then batch by batch)
    local results = pipeline.call_all(c, plans, c.options.concurrency)
    for b = 1, #parts do
      if results[b].err then return nil, results[b].err end
      firsts[b] = results[b].resp
    end
  end
  for b = 1, #parts do
    local items, cerr = collect(c, plans[b], sizes[b], firsts[b])
    if not items then return nil, cerr end
    lists[b] = items
  end
  return join(lists)
end


--- Scan history of sessions: a list of session records, in the order the API gives them.
function Client:scan_history_by_session(session_ids, opts)
  return by_ids(self, "history_by_session", session_ids, opts, "scan_history_by_session")
end


--- Scan history of scan definitions (OData $top/$skip; all = true for every page).
function Client:scan_history_by_definition(definition_ids, opts)
  return by_ids(self, "history_by_definition", definition_ids, opts, "scan_history_by_definition")
end



-- The filter of a criteria table or function; nil, err on bad criteria.
local function as_filter(criteria, what)
  if criteria == nil then return function() return true end end
  if type(criteria) == "function" then return criteria end
  if type(criteria) ~= "table" then
    return errors.invalid("%s: criteria must be a table or a filter function, got %s", what, type(criteria))
  end
  local f, err = require("mde.filter")(criteria)
  if not f then return nil, err end
  return f
end


--- Every session of the given scan definitions that passes a filter, one at a time:
--   for record in client:each_session(definition_ids, { status = "Failed", since = "2024-06-01" }) do ... end
-- Walks every page of the history of each batch of definitions (one page held at a time).
-- Bad arguments raise the invalid_argument error; failures during iteration raise the error object.
function Client:each_session(definition_ids, criteria)
  local what = "each_session"
  local list, err = check_ids(definition_ids, what)
  if not list then error(err, 2) end
  local keep
  keep, err = as_filter(criteria, what)
  if not keep then error(err, 2) end
  local e = scans.endpoints.history_by_definition
  local parts = batches(list, self.options.batch_size)
  local batch_no, nbatches = 0, #parts
  local next_page, page, i
  return function()
    while true do
      if page then
        i = i + 1
        local r = page[i]
        if r == nil then
          page = nil
        elseif keep(r) then
          return r
        end
      elseif next_page then
        page, i = next_page(), 0
        if not page then next_page = nil end
      else
        batch_no = batch_no + 1
        if batch_no > nbatches then return nil end
        next_page = page_iterator(self, plan(self, e, cjson.encode{ [e.body_key] = parts[batch_no] }, { all = true }))
      end
    end
  end
end


--- The same as a list: client:sessions(definition_ids, criteria) -> list | nil, err
-- ("every failed session of these definitions since Monday").
function Client:sessions(definition_ids, criteria)
  local out = {}
  local ok, err = pcall(function()
    for r in self:each_session(definition_ids, criteria) do out[#out + 1] = r end
  end)
  if not ok then
    if errors.is(err) then return nil, err end
    error(err, 0)
  end
  return out
end

local function listing(c, name, opts, what)
  local err
  opts, err = check_list_opts(opts, what)
  if not opts then return nil, err end
  if opts.batch_size then return errors.invalid("%s: 'batch_size' applies to calls that take IDs", what) end
  return collect(c, plan(c, scans.endpoints[name], nil, opts, pipeline.state[c].now() + c.options.deadline))
end


local function one(c, name, id, body, what)
  if type(id) ~= "string" or id == "" then
    return errors.invalid("%s: id must be a non-empty string, got %s", what, type(id))
  end
  local e = scans.endpoints[name]
  local resp, err = pipeline.call(c, {
    method = e.method, url = c.base_url .. e.path:gsub("{id}", function() return url.escape(id) end),
    body = body, headers = NO_HEADERS, safe = e.safe, expect = "json",
  })
  if not resp then return nil, err end
  return resp.body
end


function Client:scan_definitions(opts)
  return listing(self, "definitions", opts, "scan_definitions")
end


function Client:scan_definition(id)
  return one(self, "definition", id, nil, "scan_definition")
end


function Client:scan_agents(opts)
  return listing(self, "agents", opts, "scan_agents")
end


function Client:scan_agent(id)
  return one(self, "agent", id, nil, "scan_agent")
end


local function check_definition(def, what, required)
  if type(def) ~= "table" or next(def) == nil then
    return errors.invalid("%s: the definition must be a non-empty table", what)
  end
  if required then
    for _, k in ipairs{ "scanType", "scanName", "isActive", "target", "intervalInHours", "targetType",
                        "scannerAgent", "scanAuthenticationParams" } do
      if def[k] == nil then return errors.invalid("%s: missing required field '%s'", what, k) end
    end
  end
  return encode(def, what)
end


function Client:create_scan_definition(def)
  local body, err = check_definition(def, "create_scan_definition", true)
  if not body then return nil, err end
  local e = scans.endpoints.create_definition
  local resp
  resp, err = pipeline.call(self, { method = e.method, url = self.base_url .. e.path, body = body,
    headers = NO_HEADERS, safe = false, expect = "json" })
  return resp and resp.body, err
end


function Client:update_scan_definition(id, changes)
  local body, err = check_definition(changes, "update_scan_definition", false)
  if not body then return nil, err end
  return one(self, "update_definition", id, body, "update_scan_definition")
end


--- Delete scan definitions (BatchDelete). Returns true (or the API's answer when it sends one).
function Client:delete_scan_definitions(ids)
  local list, err = check_ids(ids, "delete_scan_definitions")
  if not list then return nil, err end
  local e = scans.endpoints.delete_definitions
  local answer = true
  for _, batch in ipairs(batches(list, self.options.batch_size)) do
    local resp
    resp, err = pipeline.call(self, { method = e.method, url = self.base_url .. e.path,
      body = cjson.encode{ [e.body_key] = batch }, headers = NO_HEADERS, safe = false, expect = "any" })
    if not resp then return nil, err end
    if type(resp.body) == "table" and next(resp.body) ~= nil then answer = resp.body end
  end
  return answer
end


return M
