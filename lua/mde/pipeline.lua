--- The one road every request travels, whatever the transport:
--   token (mde.auth) -> pacing (mde.pacing) -> transport -> status and body
--   -> retry with backoff and Retry-After -> error object (mde.errors).
-- Transports only move bytes; all policy lives here.

local type, tostring = type, tostring
local min, max, random = math.min, math.max, math.random

local errors = require "mde.errors"
local url = require "mde.url"
local auth = require "mde.auth"
local pacing = require "mde.pacing"
local redact = require "mde.redact"

local M = {}

--- Private state of each client (secrets, transport, store), kept out of the
-- client table so that no dump or tostring of a client can show a secret.
local STATE = setmetatable({}, { __mode = "k" })
M.state = STATE

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


-- Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^(n-1))].
local function backoff(o, n)
  return random() * min(o.backoff.cap, o.backoff.base * 2 ^ (n - 1))
end


--- Send one request with pacing, retries and the deadline; no auth, no status policy
-- beyond what retries need. Returns the final response (any status) or nil, err.
-- @param c client; @param req transport request (method, url, headers, body, bearer)
-- @param policy { safe = bool, pace = bool, origin = "scheme://host:port", deadline = abs time, what = text }
function M.perform(c, req, policy)
  local p = STATE[c]
  local o = c.options
  local now = p.now
  local deadline = policy.deadline or (now() + o.deadline)
  local retries = policy.safe and o.retries or 0
  local attempt = 0
  local what = policy.what or "request"

  req.timeout = o.timeout
  req.connect_timeout = o.connect_timeout
  req.ca_file, req.insecure = o.ca_file, o.insecure
  req.proxy, req.user_agent, req.max_body = o.proxy, o.user_agent, o.max_body

  while true do
    attempt = attempt + 1
    local t = now()
    if t >= deadline then
      return nil, errors.new{ kind = "timeout", message = what .. ": deadline passed before the request could leave" }
    end

    if policy.pace and p.windows then
      local wait, needed = pacing.reserve(p.store, p.pace_key, p.windows, t, deadline - t)
      if not wait then
        return nil, errors.new{ kind = "throttled", retry_after = needed,
          message = ("%s: the client-side rate limit needs a %.1f s wait, past the call's deadline"):format(
            what, needed) }
      end
      if wait > 0 then
        p.log{ type = "throttle", reason = "pacing", wait = wait, method = req.method, url = req.url }
        p.sleep(wait)
      end
    end

    if o.insecure then
      p.log{ type = "warning", message = "TLS verification is off (insecure = true)", url = req.url }
    end
    p.log{ type = "request", method = req.method, url = req.url, attempt = attempt }
    -- no attempt may outlive the deadline
    local left = deadline - now()
    req.timeout = min(o.timeout, max(left, 0.001))
    local started = now()
    local resp, facts = p.transport:send(req)
    local elapsed = now() - started

    local retry_reason, wait, err
    if resp then
      local rid = resp.headers and (resp.headers["request-id"] or resp.headers["x-ms-request-id"])
      p.log{ type = "response", method = req.method, url = req.url, status = resp.status,
             elapsed = elapsed, attempt = attempt, request_id = rid }
      local status = resp.status
      if not retryable_status(status) then
        return resp
      end
      err = errors.from_response(resp, now())
      if status == 429 then
        local ra = err.retry_after
        if ra and p.windows then
          pacing.block(p.store, p.pace_key, now() + ra + RETRY_AFTER_MARGIN, now())
        end
        wait = ra and (ra + RETRY_AFTER_MARGIN) or max(1, backoff(o, attempt + 1))
      else
        wait = err.retry_after or backoff(o, attempt)
      end
      retry_reason = tostring(status)
      if attempt > retries then return resp end
    else
      err = errors.from_facts(facts, what)
      if facts.kind ~= "timeout" and facts.kind ~= "network" then
        return nil, err
      end
      if attempt > retries then return nil, err end
      retry_reason = facts.kind
      wait = backoff(o, attempt)
    end

    if now() + wait >= deadline then
      -- a retry would pass the deadline: report what we have
      if resp then return resp end
      return nil, err
    end
    p.log{ type = "retry", attempt = attempt, reason = retry_reason, wait = wait,
           method = req.method, url = req.url, status = resp and resp.status or nil }
    p.sleep(wait)
  end
end


local function is_json_type(ct)
  ct = ct and ct:lower() or ""
  return ct:find("^application/json") or ct:find("^[%w.-]+/[%w.-]+%+json") ~= nil
end


--- One API call with the whole policy.
-- @param spec { method, url (absolute), body (string), headers (list), safe, expect ("json"|"any") }
-- @return the response { status, headers, body } or nil, err
function M.call(c, spec)
  local p = STATE[c]
  local now = p.now
  local deadline = now() + (spec.deadline or c.options.deadline)
  local api_origin = url.origin(c.base_url)
  local target = spec.url
  if url.origin(target) ~= api_origin then
    return nil, errors.new{ kind = "unsafe_redirect",
      message = ("refusing to send the token to %s: the client's API host is %s"):format(
        tostring(url.origin(target) or target), api_origin) }
  end

  local method, body = spec.method, spec.body
  local headers = { "Accept: application/json" }
  if body then headers[#headers + 1] = "Content-Type: application/json" end
  if spec.headers then
    for i = 1, #spec.headers do headers[#headers + 1] = spec.headers[i] end
  end

  local refreshed, redirects = false, 0
  while true do
    local token, terr = auth.token(c, p)
    if not token then return nil, terr end
    local resp, err = M.perform(c, {
      method = method, url = target, headers = headers, body = body, bearer = token,
    }, { safe = spec.safe, pace = true, deadline = deadline, what = method .. " " .. target })
    if not resp then return nil, err end

    local status = resp.status
    if status == 401 and not refreshed and auth.invalidate(c, p, token) then
      refreshed = true
      p.log{ type = "token", action = "refresh", reason = "401 from the API" }
    elseif REDIRECTS[status] then
      local loc = url.resolve(target, resp.headers and resp.headers.location)
      if not loc then
        return nil, errors.new{ kind = "http", status = status, message = "redirect without a usable Location" }
      end
      if url.origin(loc) ~= api_origin then
        return nil, errors.new{ kind = "unsafe_redirect", status = status,
          message = ("the API redirected to %s, which is not the configured API host %s; not followed"):format(
            tostring(url.origin(loc) or "an invalid URL"), api_origin) }
      end
      redirects = redirects + 1
      if redirects > MAX_REDIRECTS then
        return nil, errors.new{ kind = "http", status = status, message = "too many redirects" }
      end
      if status == 303 or ((status == 301 or status == 302) and method ~= "GET") then
        method, body = "GET", nil
      end
      target = loc
    elseif status >= 200 and status < 300 then
      if resp.decode_error then
        return nil, errors.new{ kind = "decode", status = status,
          message = "the API's JSON could not be decoded: " .. resp.decode_error,
          request_id = resp.headers["request-id"] }
      end
      if spec.expect == "json" and type(resp.body) ~= "table" then
        local ct = resp.headers["content-type"]
        local why = (resp.body == nil or resp.body == "") and "an empty body"
          or (is_json_type(ct) and "JSON that is not an object or list")
          or ("a body of type " .. tostring(ct or "(none)"))
        return nil, errors.new{ kind = "decode", status = status,
          message = "expected a JSON object from the API, got " .. why,
          request_id = resp.headers["request-id"] }
      end
      return resp
    else
      local e = M.scrub(p, errors.from_response(resp, now()), token)
      if status == 401 then
        e.message = (e.message or "") .. (refreshed and " (a freshly fetched token was refused too)"
          or " (the given token was refused)")
      elseif status == 403 then
        e.message = ("%s (token scope: %s; reading scans needs the application permission Machine.Read.All, "
          .. "changing them Machine.ReadWrite.All)"):format(e.message or "Forbidden", c.scope)
      end
      return nil, e
    end
  end
end


return M
