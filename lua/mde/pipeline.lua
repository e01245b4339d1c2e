--- The one road every request travels, whatever the transport and however many
-- requests are in flight:
--   token (mde.auth) -> pacing (mde.pacing) -> transport -> status and body
--   -> retry with backoff and Retry-After -> error object (mde.errors).
-- Transports only move bytes; all policy lives here, as a small state machine
-- (`prepare` the next attempt, `judge` its outcome) driven one request at a
-- time by `call`, or several at once by `call_all` (one client) and `call_many`
-- (several: what mde.gather uses).

local type, tostring, setmetatable = type, tostring, setmetatable
local min, max = math.min, math.max
local find, byte = string.find, string.byte

local core = require "mde.core"
local errors = require "mde.errors"
local url = require "mde.url"
local auth = require "mde.auth"
local pacing = require "mde.pacing"
local redact = require "mde.redact"

local M = {}

--- Coroutines that mde.gather runs: their calls yield to it (GATHER, items), items a list
-- of { client, spec }, and it resumes them with the results list of those items.
local GATHERING = setmetatable({}, { __mode = "k" })
local GATHER = {}
M.GATHERING, M.GATHER = GATHERING, GATHER
local running, yield = coroutine.running, coroutine.yield

--- Private state of each client (secrets, transport, store), kept out of the
-- client table so that no dump or tostring of a client can show a secret.
local STATE = setmetatable({}, { __mode = "k" })
M.state = STATE

-- the request headers of most calls, shared (never modified)
local JSON_HEADERS = { "Accept: application/json" }
local JSON_BODY_HEADERS = { "Accept: application/json", "Content-Type: application/json" }
local unpack = table.unpack or unpack

local NO_HEADERS = {} -- (a response without headers: shared, never modified)
local REDIRECTS = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local MAX_REDIRECTS = 5
local RETRY_AFTER_MARGIN = 0.05


--- Scrub an error built from what a server said: a service that echoes a
-- credential (a secret, the token just sent) must not make us print it.
function M.scrub(p, e, token)
  if e.message then
    local list = { token }
    for i = 1, #p.secrets do list[#list + 1] = p.secrets[i] end
    e.message = redact.event({ m = e.message }, list).m
  end
  return e
end


local function retryable_status(status)
  return status == 429 or status == 500 or status == 502 or status == 503 or status == 504
end


-- A uniform number in [0, 1) from the system's CSPRNG: math.random is not seeded on Lua 5.1-5.3
-- and LuaJIT, so every process would draw the same "random" backoffs and retry in step.
local function random()
  local b1, b2, b3, b4, b5, b6 = core.random_bytes(6):byte(1, 6)
  return (((((b1 * 256 + b2) * 256 + b3) * 256 + b4) * 256 + b5) * 256 + b6) / 2 ^ 48
end
M.random = random


-- Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^(n-1))].
local function backoff(o, n)
  return random() * min(o.backoff.cap, o.backoff.base * 2 ^ (n - 1))
end


--- A request on its way.
-- spec = { method, url (absolute), body (string), headers (list), safe (may retry),
--   lists = a field of listing records the transport makes a list (transport.applies_lists),
--   expect = "json" | "any" (what a 2xx must carry), deadline (seconds from now),
--   auth = false (no bearer token: the token request), pace = false (no pacing),
--   raw = true (hand back the final response whatever its status), what = text for messages }
-- Returns the state, or nil and an error.
-- Is `u` on the host of `base` (a URL without a trailing slash)? The common case, a URL
-- the client built from `base`, is answered without parsing anything.
local function same_origin(u, base)
  if find(u, base, 1, true) == 1 then
    local after = byte(u, #base + 1)
    if after == nil or after == 47 or after == 63 then return true end -- end, "/", "?"
  end
  local o = url.origin(u)
  return o ~= nil and o == url.origin(base)
end
M.same_origin = same_origin


local function start(c, spec, st)
  local p = STATE[c]
  local base = spec.auth == false and c.authority or c.base_url
  if not same_origin(spec.url, base) then
    return nil, errors.new{ kind = "unsafe_redirect",
      message = ("refusing to send a request for %s to %s"):format(url.origin(base),
        tostring(url.origin(spec.url) or spec.url)) }
  end
  local headers = (spec.body and spec.auth ~= false) and JSON_BODY_HEADERS or JSON_HEADERS
  local extra = spec.headers
  if extra and #extra > 0 then
    headers = { unpack(headers) }
    for i = 1, #extra do headers[#headers + 1] = extra[i] end
  end
  local deadline = spec.deadline_at or (p.now() + (spec.deadline or c.options.deadline))
  local retries = spec.safe and c.options.retries or 0
  if st then -- (a state of this client's, done with: every field set again)
    st.c, st.p, st.spec, st.base, st.method, st.target, st.body, st.headers =
      c, p, spec, base, spec.method, spec.url, spec.body, headers
    st.deadline, st.retries, st.attempt, st.refreshed, st.redirects, st.what, st.token, st.ticket =
      deadline, retries, 0, false, 0, spec.what or spec.method, nil, nil
    return st
  end
  return {
    c = c, p = p, spec = spec, base = base,
    method = spec.method, target = spec.url, body = spec.body, headers = headers,
    deadline = deadline, retries = retries,
    attempt = 0, refreshed = false, redirects = 0,
    what = spec.what or spec.method,
    token = nil, ticket = nil, -- (set later: room made for them now)
  }
end


--- Get the next attempt ready: deadline, token, pacing.
-- Returns the transport request (in `req`, when given one this client made before) and the
-- pacing wait before it may leave, or nil and an error.
local function prepare(st, req)
  local c, p, o = st.c, st.p, st.c.options
  local now = p.now
  local t = now()
  if t >= st.deadline then
    return nil, errors.new{ kind = "timeout", message = st.what .. ": the call's deadline passed" }
  end
  local token
  if st.spec.auth ~= false then
    local err
    token, err = auth.token(c, p, false, st.deadline)
    if not token then return nil, err end
    st.token = token
    t = now() -- a token request may have taken a while
    if t >= st.deadline then
      return nil, errors.new{ kind = "timeout", message = st.what .. ": the call's deadline passed" }
    end
  end
  local wait = 0
  if st.spec.pace ~= false and p.windows then
    local needed
    local lock_err
    wait, needed, lock_err = pacing.reserve(p.store, p.pace_key, p.windows, t, st.deadline - t)
    if wait then st.ticket = needed end
    if lock_err then
      return nil, errors.new{ kind = "timeout",
        message = st.what .. ": the shared pacing state could not be locked (" .. tostring(lock_err) .. ")" }
    end
    if not wait then
      return nil, errors.new{ kind = "throttled", retry_after = needed,
        message = ("%s: the client-side rate limit needs a %.1f s wait, past the call's deadline"):format(
          st.what, needed) }
    end
    if wait > 0 and p.log then
      p.log{ type = "throttle", reason = "pacing", wait = wait, method = st.method, url = st.target }
    end
  end
  st.attempt = st.attempt + 1
  if p.log then -- (no event table is built when nobody listens)
    if o.insecure then
      p.log{ type = "warning", message = "TLS verification is off (insecure = true)", url = st.target }
    end
    p.log{ type = "request", method = st.method, url = st.target, attempt = st.attempt }
  end
  -- no attempt may outlive the deadline
  local timeout = min(o.timeout, max(st.deadline - t - wait, 0.001))
  if req then -- (the client's own fields are set already)
    req.method, req.url, req.headers, req.body, req.bearer, req.timeout, req.lists =
      st.method, st.target, st.headers, st.body, token, timeout, st.spec.lists
    return req, wait
  end
  return {
    method = st.method, url = st.target, headers = st.headers, body = st.body, bearer = token,
    timeout = timeout, lists = st.spec.lists,
    connect_timeout = o.connect_timeout, ca_file = o.ca_file, insecure = o.insecure,
    proxy = p.proxy, user_agent = o.user_agent, max_body = o.max_body,
  }, wait
end


-- A retry after `wait` seconds, if the budget of retries and the deadline allow it.
local function retry(st, wait, reason, status)
  if st.retries <= 0 or st.p.now() + wait >= st.deadline then return nil end
  st.retries = st.retries - 1
  local p = st.p
  if p.log then
    p.log{ type = "retry", attempt = st.attempt, reason = reason, wait = wait,
           method = st.method, url = st.target, status = status }
  end
  return "again", wait
end


--- Judge the outcome of an attempt.
-- Returns "again", wait (seconds before the next attempt) or "done", resp | nil, err.
local function judge(st, resp, facts, elapsed)
  local c, p, o = st.c, st.p, st.c.options
  local now = p.now
  if st.ticket then
    pacing.settle(p.store, st.ticket, now())
    st.ticket = nil
  end

  if not resp then
    local err = errors.from_facts(facts, st.what)
    if facts.kind == "timeout" or facts.kind == "network" then
      local again, wait = retry(st, backoff(o, st.attempt), facts.kind)
      if again then return again, wait end
    end
    return "done", nil, err
  end

  -- (resp.headers of mde.core is parsed when first read: read it only when needed)
  local status = resp.status
  if p.log then
    local headers = resp.headers or NO_HEADERS
    p.log{ type = "response", method = st.method, url = st.target, status = status, elapsed = elapsed,
           attempt = st.attempt, request_id = headers["request-id"] or headers["x-ms-request-id"] }
  end

  if status >= 200 and status < 300 then -- (first: the common case)
    if st.spec.raw then return "done", resp end
    if resp.decode_error then
      return "done", nil, errors.new{ kind = "decode", status = status,
        request_id = (resp.headers or NO_HEADERS)["request-id"],
        message = "the API's JSON could not be decoded: " .. resp.decode_error }
    end
    if st.spec.expect == "json" and type(resp.body) ~= "table" then
      local headers = resp.headers or NO_HEADERS
      local rid, ct = headers["request-id"], headers["content-type"]
      local why = (resp.body == nil or resp.body == "") and "an empty body"
        or (type(ct) == "string" and core.is_json(ct) and "JSON that is not an object or list")
        or ("a body of type " .. tostring(ct or "(none)"))
      return "done", nil, errors.new{ kind = "decode", status = status, request_id = rid,
        message = "expected a JSON object from the API, got " .. why }
    end
    return "done", resp
  end

  if retryable_status(status) then
    local e = errors.from_response(resp, now())
    local wait
    if status == 429 then
      local ra = e.retry_after
      if ra and p.windows and st.spec.pace ~= false then -- (the login service's 429 is not the API's)
        pacing.block(p.store, p.pace_key, now() + ra + RETRY_AFTER_MARGIN, now())
      end
      wait = ra and (ra + RETRY_AFTER_MARGIN) or max(1, backoff(o, st.attempt + 1))
    else
      wait = e.retry_after or backoff(o, st.attempt)
    end
    local again
    again, wait = retry(st, wait, tostring(status), status)
    if again then return again, wait end
  end

  if st.spec.raw then return "done", resp end

  if status == 401 and st.spec.auth ~= false and not st.refreshed and auth.invalidate(c, p, st.token) then
    st.refreshed = true
    if p.log then p.log{ type = "token", action = "refresh", reason = "401 from the API" } end
    return "again", 0
  end

  if REDIRECTS[status] then
    local loc = url.resolve(st.target, (resp.headers or NO_HEADERS).location)
    if not loc then
      return "done", nil, errors.new{ kind = "http", status = status, message = "redirect without a usable Location" }
    end
    if not same_origin(loc, st.base) then
      return "done", nil, errors.new{ kind = "unsafe_redirect", status = status,
        message = ("the API redirected to %s, which is not the configured API host %s; not followed"):format(
          tostring(url.origin(loc) or "an invalid URL"), url.origin(st.base)) }
    end
    st.redirects = st.redirects + 1
    if st.redirects > MAX_REDIRECTS then
      return "done", nil, errors.new{ kind = "http", status = status, message = "too many redirects" }
    end
    if status == 303 or ((status == 301 or status == 302) and st.method ~= "GET") then
      st.method, st.body = "GET", nil
    end
    st.target = loc
    return "again", 0
  end

  local e = M.scrub(p, errors.from_response(resp, now()), st.token)
  if status == 401 then
    e.message = (e.message or "") .. (st.refreshed and " (a freshly fetched token was refused too)"
      or " (the given token was refused)")
  elseif status == 403 then
    e.message = ("%s (token scope: %s; reading scans needs the application permission Machine.Read.All, "
      .. "changing them Machine.ReadWrite.All)"):format(e.message or "Forbidden", c.scope)
  end
  return "done", nil, e
end


--- One call with the whole policy. Returns the response { status, headers, body } or nil, err.
function M.call(c, spec)
  -- a task of mde.gather: the gathering runs the call, with those of the other tasks
  local co = running()
  if co and GATHERING[co] then
    local out = yield(GATHER, { { c, spec } })
    return out[1].resp, out[1].err
  end
  -- The state of a call and, when the transport keeps nothing of a request once send
  -- returns, its request table serve the client's next call too: a call takes them from
  -- the client (a call made meanwhile, say from a logger, makes its own) and gives them
  -- back when it is done.
  local p = STATE[c]
  local spare = p.spare_state
  p.spare_state = nil
  local st, err = start(c, spec, spare)
  if not st then
    p.spare_state = spare
    return nil, err
  end
  local transport = p.transport
  local reuse = transport.request_reusable
  local req = reuse and p.spare_req or nil
  if req then p.spare_req = nil end
  local verdict, a, b
  while true do
    local wait
    req, wait = prepare(st, req)
    if not req then return nil, wait end
    if wait > 0 then p.sleep(wait) end
    local t0 = p.log and p.now() -- (the elapsed time is for the log only)
    local resp, facts = transport:send(req)
    verdict, a, b = judge(st, resp, facts, t0 and p.now() - t0)
    if verdict == "done" then break end
    if not reuse then req = nil end
    if a > 0 then p.sleep(a) end
  end
  -- given back holding no token and nothing the caller may want collected (nor the client
  -- itself: on Lua 5.1 and LuaJIT a weak-keyed table is no ephemeron, and a client its own
  -- private state pointed at would never be collected)
  st.c, st.p, st.spec, st.body, st.token, st.headers = nil, nil, nil, nil, nil, nil
  p.spare_state = st
  if reuse then
    req.bearer, req.body, req.headers = nil, nil, nil
    p.spare_req = req
  end
  return a, b
end


-- The requests of one wave on their way at once: with the transport's send_all when they
-- share one transport, across the transports of several clients when these share a
-- send_group (mde.transport.curl: one perform_all), else one after the other.
local function send_wave(sts, reqs)
  local t1 = sts[1].p.transport
  if #reqs == 1 then
    local resp, facts = t1:send(reqs[1])
    return { { resp = resp, facts = facts } }
  end
  local same, group, transports = true, t1.send_group, {}
  for k = 1, #sts do
    local t = sts[k].p.transport
    transports[k] = t
    if t ~= t1 then same = false end
    if t.send_group ~= group then group = nil end
  end
  if same and t1.send_all then return t1:send_all(reqs) end
  if group then return group(transports, reqs) end
  local outs = {}
  for k = 1, #reqs do
    local resp, facts = transports[k]:send(reqs[k])
    outs[k] = { resp = resp, facts = facts }
  end
  return outs
end


-- Drives the started states `queue` (each with .index) to their end, `width` in flight at
-- once, into results[index] = { resp = ..., err = ... }.
local function run_all(queue, results, width)
  if #queue == 0 then return results end
  local p1 = queue[1].p -- (the clock: every client of a process reads the same one)
  local concurrent = false
  for _, st in ipairs(queue) do
    local t = st.p.transport
    if t.send_all or t.send_group then concurrent = true end
  end
  if not concurrent then width = 1 end

  while #queue > 0 do
    -- the next wave: up to `width` requests whose retry wait is over, in order
    local now = p1.now()
    local wave, rest, soonest = {}, {}, nil
    for _, st in ipairs(queue) do
      if #wave < width and st.ready <= now then
        wave[#wave + 1] = st
      else
        rest[#rest + 1] = st
        if not soonest or st.ready < soonest then soonest = st.ready end
      end
    end
    queue = rest
    if #wave == 0 then
      p1.sleep(soonest - now)
    else
      local reqs, sts, longest = {}, {}, 0
      for _, st in ipairs(wave) do
        local req, wait = prepare(st)
        if req then
          reqs[#reqs + 1], sts[#sts + 1] = req, st
          if wait > longest then longest = wait end
        else
          results[st.index] = { err = wait }
        end
      end
      -- departures never decrease: once the last reserved one may leave, all may
      if longest > 0 then p1.sleep(longest) end
      if #reqs > 0 then
        local t0 = p1.now()
        local outs = send_wave(sts, reqs)
        local elapsed = p1.now() - t0
        for k, st in ipairs(sts) do
          local verdict, a, b = judge(st, outs[k].resp, outs[k].facts, elapsed)
          if verdict == "done" then
            results[st.index] = { resp = a, err = b }
          else
            st.ready = p1.now() + a
            queue[#queue + 1] = st
          end
        end
        table.sort(queue, function(x, y) return x.index < y.index end)
      end
    end
  end
  return results
end


--- Calls of several clients (items[i] = { client, spec }), up to `width` in flight at once on
-- one thread, each with the whole policy of `call` (its client's token, pacing and retries).
-- Returns a list of { resp = ..., err = ... } in the order of `items`.
function M.call_many(items, width)
  -- in a task of mde.gather: sent with the calls of the other tasks
  local co = running()
  if co and GATHERING[co] then return yield(GATHER, items) end
  local results, queue = {}, {}
  for i = 1, #items do
    local st, err = start(items[i][1], items[i][2])
    if st then
      st.index, st.ready = i, 0
      queue[#queue + 1] = st
    else
      results[i] = { err = err }
    end
  end
  return run_all(queue, results, width)
end


--- Several calls of one client, up to `width` in flight at once on one thread (when the
-- transport can: libcurl's multi interface), each with the whole policy of `call`.
-- Returns a list of { resp = ..., err = ... } in the order of `specs`.
function M.call_all(c, specs, width)
  local items = {}
  for i = 1, #specs do items[i] = { c, specs[i] } end
  return M.call_many(items, width)
end


return M
