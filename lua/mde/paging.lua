--- Paging over OData listings: follow `@odata.nextLink` when the service gives
-- one, and `$top`/`$skip` otherwise, stopping on a short or empty page. At most
-- one page is held at a time. A nextLink that leaves the API host is refused
-- (the token is never sent there), and one that repeats a URL already fetched
-- ends the iteration with an error instead of looping forever.

local type, tostring, tonumber, pairs = type, tostring, tonumber, pairs
local error = error

local errors = require "mde.errors"
local url = require "mde.url"

local M = {}


--- The items of a decoded listing body: `value` of an OData envelope, or the body if it is a list.
function M.items(body)
  if type(body) ~= "table" then return nil end
  local v = body.value
  if type(v) == "table" then return v end
  if body[1] ~= nil or next(body) == nil then return body end
  return nil
end


local function copy(t)
  local out = {}
  if t then for k, v in pairs(t) do out[k] = v end end
  return out
end


--- An iterator over pages.
-- @param fetch function(url) -> response | nil, err (one API call: token, pacing, retries)
-- @param base the URL of the listing, without query
-- @param query the caller's query table (may hold $top and $skip)
-- @param o { page_size = n or false (only follow nextLinks), origin = API origin, normalise = fn(items),
--   first = the response of the first page, when it was fetched ahead }
-- @return iterator yielding (items, response)
-- The query of the first page: the caller's, with $top = page_size unless it has one.
local function first_query(query, page_size)
  query = copy(query)
  if not tonumber(query["$top"]) and page_size then query["$top"] = page_size end
  return query
end


--- The URL of the first page `iterate` fetches (to fetch it ahead, e.g. several at once).
function M.first_url(base, query, page_size)
  if page_size and not tonumber(query and query["$top"]) then query = first_query(query, page_size) end
  return url.with_query(base, query)
end


--- May pages follow the first one (`body`)? A nextLink says so, and so does a full page
-- when paging by $top (the query's, or page_size; page_size false: nextLinks only).
function M.more(body, query, page_size)
  if type(body) ~= "table" then return false end
  local link = body["@odata.nextLink"]
  if type(link) == "string" and link ~= "" then return true end
  local top = tonumber(query and query["$top"]) or page_size
  local items = M.items(body)
  return (top and items and #items > 0 and #items >= top) and true or false
end


-- What tells a page from the next one: its size and the ids of its first and last items
-- (nil when items carry no id). Two pages in a row with one fingerprint mean a service that
-- ignores $skip (or a nextLink that does not advance): the quirk that makes clients loop.
local function identity(item)
  if type(item) ~= "table" then return nil end
  local id = item.id or item.SessionIds or item.Id or item.machineId
  return (type(id) == "string" or type(id) == "number") and tostring(id) or nil
end

local function fingerprint(items)
  local first, last = identity(items[1]), identity(items[#items])
  return first and last and (#items .. "|" .. first .. "|" .. last) or nil
end
M.fingerprint = fingerprint


--- Page number `n` of a listing, the response `resp` of URL `u`, after a page of fingerprint
-- `previous`: its items and fingerprint, or nil and the error (not a listing; the same page
-- again, a service that does not advance). An empty page has no fingerprint.
function M.page(resp, u, n, previous)
  local items = M.items(resp.body)
  if not items then
    return nil, errors.new{ kind = "decode", status = resp.status,
      message = "expected a listing (an object with a 'value' list) from " .. u }
  end
  if #items == 0 then return items, nil end
  local fp = fingerprint(items)
  if fp and fp == previous then
    return nil, errors.new{ kind = "http", code = "PagingLoop", status = resp.status,
      message = ("page %d repeats page %d (%s): the service does not advance; stopped instead of looping"):format(
        n, n - 1, u) }
  end
  return items, fp
end


--- When the first page of a $top/$skip listing tells the total (`@odata.count`, OData's answer
-- to `$count=true`), the skips of every other page are known: they can be fetched together.
-- Returns { top =, from = (the second page's $skip), to = (the total) } or nil: no count, a
-- short first page, nothing left, or a nextLink of another form than the next $skip (an
-- opaque link is followed, never guessed at).
-- @param body the first page; first_url its URL; base, query, page_size as for `iterate`
function M.counted(body, first_url, base, query, page_size)
  local total = type(body) == "table" and tonumber(body["@odata.count"])
  if not total or total % 1 ~= 0 then return nil end
  local q = first_query(query, page_size)
  local top, skip = tonumber(q["$top"]), tonumber(q["$skip"]) or 0
  local items = M.items(body)
  -- (a first page of other than $top items: a service that does not keep to $top)
  if not top or top < 1 or not items or #items ~= top or total <= skip + top then return nil end
  local link = body["@odata.nextLink"]
  if link ~= nil then
    local resolved = type(link) == "string" and url.resolve(first_url, link)
    if not resolved then return nil end
    q["$skip"] = skip + top
    local want_path, want = url.parse_query(url.with_query(base, q))
    local path, got = url.parse_query(resolved)
    if path ~= want_path then return nil end
    for k, v in pairs(want) do if got[k] ~= v then return nil end end
    for k in pairs(got) do if want[k] == nil then return nil end end
  end
  return { top = top, from = skip + top, to = total }
end


function M.iterate(fetch, base, query, o)
  query = first_query(query, o.page_size)
  local top = tonumber(query["$top"])
  local skip = tonumber(query["$skip"]) or 0
  local next_url = url.with_query(base, query)
  local fetched, pages, done, linked, previous = {}, 0, false, false, nil
  local first = o.first -- a first page already fetched

  local function fail(e)
    done = true
    error(e, 0)
  end

  return function()
    if done then return nil end
    fetched[next_url] = true
    local resp, err = first, nil
    first = nil
    if not resp then resp, err = fetch(next_url) end
    if not resp then return fail(err) end
    pages = pages + 1
    local items, fp = M.page(resp, next_url, pages, previous)
    if not items then return fail(fp) end
    local n = #items
    local link = resp.body["@odata.nextLink"]
    if n == 0 then
      done = true
      return nil
    end
    previous = fp
    skip = skip + n
    if type(link) == "string" and link ~= "" then
      local resolved = url.resolve(next_url, link)
      if not resolved or url.origin(resolved) ~= o.origin then
        return fail(errors.new{ kind = "unsafe_redirect",
          message = ("@odata.nextLink points at %s, not the configured API host %s; not followed"):format(
            tostring(resolved and url.origin(resolved) or link), o.origin) })
      end
      if fetched[resolved] then
        return fail(errors.new{ kind = "http", code = "PagingLoop", status = resp.status,
          message = ("@odata.nextLink repeats %s after %d pages; stopped instead of looping"):format(resolved, pages) })
      end
      next_url = resolved
      linked = true
    elseif top and n >= top and not linked then
      -- no nextLink from the start: $top/$skip until a short page (some services drop
      -- the nextLink when $top is given); once the service has given nextLinks, the
      -- end of their chain is the end
      query["$skip"] = skip
      next_url = url.with_query(base, query)
    else
      done = true
    end
    if o.normalise then o.normalise(items) end
    return items, resp
  end
end


return M
