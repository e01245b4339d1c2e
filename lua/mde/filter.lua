--- Session filters: `mde.filter`.
--
-- syntax: local f, err = filter{ status = "Failed", since = "2024-01-01", hostname = "DESKTOP-*" }
--         if f(record) then ... end
--         local matching, err = filter.apply(records, f_or_criteria)
--
-- `filter(criteria)` (same as `filter.build(criteria)`) checks the criteria once and returns a
-- plain function `f(record) -> boolean`, or `nil, err` (err.kind == "invalid_argument", the
-- message names the key). Criteria are combined with AND; a list means any of.
--
-- | key              | value                             | matched against                        |
-- | ---------------- | --------------------------------- | -------------------------------------- |
-- | `status`         | string or list                    | `ScanStatus`, ignoring case, spaces,   |
-- |                  |                                   | `_` and `-` ("Partial Success" ==      |
-- |                  |                                   | "PartialSuccess" == "partial_success") |
-- | `session`        | id or list                        | `SessionIds` (a string or a list)      |
-- | `definition`     | id or list                        | `ScanDefinitionIds` (string or list)   |
-- | `since`          | ISO 8601 string or epoch seconds  | `LastScanned >= since`                 |
-- | `before`         | ISO 8601 string or epoch seconds  | `LastScanned < before`                 |
-- | `target`         | IP or CIDR (v4/v6) or list        | any `ListScannedTargets[i].Ip` inside  |
-- | `hostname`       | glob or list (`*`, `?`, `[a-z]`,  | any `ListScannedTargets[i].Hostname`,  |
-- |                  | `[!a-z]`, `\` escapes)            | whole name, ignoring case              |
-- | `failed_targets` | boolean                           | true: some target's `ScanStatus` is a  |
-- |                  |                                   | string other than Success, or          |
-- |                  |                                   | NumberOfSuccessfullyScannedTargets <   |
-- |                  |                                   | NumberOfTargets; false: neither        |
--
-- Notes:
--  * Ids are compared ignoring case.
--  * `target` and `hostname` are separate criteria: each may be met by a different target of
--    the same session.
--  * A field that is missing, JSON null (mde.null) or of the wrong type has no value and meets no
--    criterion on it (a record without a parseable `LastScanned` never meets `since`/`before`).
--    `ListScannedTargets` may be a list, a single target object, or absent. A record that is not
--    a table matches nothing (an empty criteria table matches every table).
--  * Times: "YYYY-MM-DD" (midnight UTC), or "YYYY-MM-DDThh:mm[:ss[.fraction]]" with `Z`,
--    `+hh:mm`, `+hhmm`, `+hh` (or `-`) or no zone (read as UTC, which is what the API sends);
--    `t` or a space may replace `T`; any number of fraction digits (first 15 kept). Parsed
--    without `os.time`, so the local time zone plays no part. Comparisons keep whole seconds
--    and the fraction apart, so 7-digit fractions compare exactly.
--  * IPs: see mde/ip.lua. `10.0.0.0/8` also contains `::ffff:10.1.2.3`; `::/0` holds no dotted
--    IPv4 address. Host bits below the prefix are ignored.
--
-- Also exported, for other modules:
--   filter.parse_time(s_or_number) -> epoch seconds (with fraction) | nil, msg
--   filter.normalize_status(s)     -> "partialsuccess" for "Partial Success", ...
--   filter.parse_ip(s)             -> addr | nil, msg          (= mde.ip.parse)
--   filter.parse_cidr(s)           -> block | nil, msg         (= mde.ip.parse_cidr)
--   filter.in_cidr(ip, cidr)       -> boolean | nil, msg       (strings or parsed values)
--   filter.glob_pattern(glob)      -> anchored, case-insensitive Lua pattern | nil, msg
--   filter.KEYS                    -> list of the criteria names

local ip = require "mde.ip"
local days_from_civil = require("mde.time").days_from_civil

local type, next, tostring, setmetatable = type, next, tostring, setmetatable
local byte, char, find, gsub, lower, upper, sub, format =
  string.byte, string.char, string.find, string.gsub, string.lower, string.upper, string.sub,
  string.format
local concat, sort = table.concat, table.sort
local floor, huge = math.floor, math.huge
local lookup, contains = ip.lookup, ip.contains


local M = {}


local KEYS = { "status", "session", "definition", "since", "before", "target", "hostname",
               "failed_targets" }
local KNOWN = {}
for i = 1, #KEYS do
  KNOWN[KEYS[i]] = true
end
M.KEYS = KEYS


local NORM_CACHE_MAX = 1000      -- distinct status spellings remembered
local DAY_CACHE_MAX = 10000      -- distinct dates remembered by the time parser (27 years)


--------------------------------------------------------------------------------------------
-- errors

local errors
do
  local ok, mod = pcall(require, "mde.errors")
  if ok and type(mod) == "table" and type(mod.new) == "function" then
    errors = mod
  end
end

local ERR_MT = { __tostring = function(e) return e.message end }

local function fail(msg, ...)
  if select("#", ...) > 0 then
    msg = format(msg, ...)
  end
  msg = "filter: " .. msg
  if errors then
    return nil, errors.new{ kind = "invalid_argument", message = msg }
  end
  return nil, setmetatable({ kind = "invalid_argument", message = msg }, ERR_MT)
end


-- how a bad value is shown in a message
local function show(v)
  if type(v) == "string" then
    -- like %q, but the same on every Lua (5.1 writes "\000" where 5.2+ write "\0")
    return '"' .. v:gsub('[%c"\\]', function(ch)
      if ch == '"' or ch == "\\" then return "\\" .. ch end
      if ch == "\n" then return "\\n" end
      return "\\" .. ch:byte()
    end) .. '"'
  end
  return type(v) == "userdata" and "userdata (JSON null?)" or type(v)
end


--------------------------------------------------------------------------------------------
-- status

local norm_cache, norm_count = {}, 0

-- "Partial Success" -> "partialsuccess"; cached, since records repeat a handful of spellings
local function normalize_status(s)
  local n = norm_cache[s]
  if n == nil then
    n = (gsub(lower(s), "[%s_%-]", ""))
    if norm_count >= NORM_CACHE_MAX then
      norm_cache, norm_count = {}, 0
    end
    norm_cache[s] = n
    norm_count = norm_count + 1
  end
  return n
end
M.normalize_status = normalize_status


--------------------------------------------------------------------------------------------
-- time

local BAD_TIME = "expected YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm]"
local DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }


-- two ASCII digits at s[i], s[i+1] -> 0..99 | nil (zone offsets)
local function digits2(s, i)
  local a, b = byte(s, i, i + 1)
  if not b then
    return nil
  end
  a, b = a - 48, b - 48
  if a < 0 or a > 9 or b < 0 or b > 9 then
    return nil
  end
  return a * 10 + b
end


local day_cache, day_count = {}, 0

-- YYYYMMDD as a number -> epoch seconds of its midnight (UTC), checked and cached | nil, msg
local function day_start(date)
  local y = floor(date / 10000)
  local mo = floor(date / 100) % 100
  local d = date % 100
  if mo < 1 or mo > 12 then
    return nil, "month out of range"
  end
  local dim = DAYS[mo]
  if mo == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then
    dim = 29
  end
  if d < 1 or d > dim then
    return nil, "day out of range"
  end
  local secs = days_from_civil(y, mo, d) * 86400
  if day_count >= DAY_CACHE_MAX then
    day_cache, day_count = {}, 0
  end
  day_cache[date] = secs
  day_count = day_count + 1
  return secs
end


-- the value of the fraction digits s[fs..fe] (none when fs > fe); first 15 digits kept
local function fraction(s, fs, fe)
  if fe - fs > 14 then
    fe = fs + 14
  end
  local v = 0
  for i = fs, fe do
    v = v * 10 + byte(s, i) - 48
  end
  return v / 10 ^ (fe - fs + 1)
end


-- ISO 8601 text -> whole epoch seconds, fs, fe (where the fraction digits are: fraction(s, fs, fe))
-- | nil, msg. It runs once per record for since/before, so it allocates nothing and makes few
-- calls: `find` without captures checks the shape, one `byte` reads the digits, and the fraction
-- is only located (its value is needed only when the whole seconds tie).
local function time_parts(s)
  local n = #s
  if n == 10 then
    if not find(s, "^%d%d%d%d%-%d%d%-%d%d") then
      return nil, BAD_TIME
    end
  elseif not find(s, "^%d%d%d%d%-%d%d%-%d%d[Tt ]%d%d:%d%d") then
    return nil, BAD_TIME
  end
  local y1, y2, y3, y4, _, m1, m2, _, d1, d2, _, h1, h2, _, i1, i2, c, s1, s2, c20 = byte(s, 1, 20)
  -- YYYYMMDD as one number; 53328 = 48 * 1111 takes away the digits' "0"s
  local date = (((y1 * 10 + y2) * 10 + y3) * 10 + y4 - 53328) * 10000
    + m1 * 1000 + m2 * 100 + d1 * 10 + d2 - 53328
  local secs = day_cache[date]                            -- scans cluster on few days
  if not secs then
    local msg
    secs, msg = day_start(date)
    if not secs then
      return nil, msg
    end
  end
  if n == 10 then
    return secs, 1, 0
  end

  local hh, mi, ss, pos = h1 * 10 + h2 - 528, i1 * 10 + i2 - 528, 0, 17   -- 528 = 48 * 11
  if c == 58 then                                         -- :ss
    if not s2 or s1 < 48 or s1 > 57 or s2 < 48 or s2 > 57 then
      return nil, BAD_TIME
    end
    ss, pos, c = s1 * 10 + s2 - 528, 20, c20
  end
  if hh > 23 or mi > 59 or ss > 60 then                   -- 60: a leap second
    return nil, "hour, minute or second out of range"
  end
  secs = secs + hh * 3600 + mi * 60 + ss

  local fs, fe = 1, 0
  if c == 46 or c == 44 then                              -- . or ,
    local _, e = find(s, "^%d+", pos + 1)
    if not e then
      return nil, BAD_TIME
    end
    fs, fe, pos = pos + 1, e, e + 1
    c = byte(s, pos)
  end

  if c == nil then                                        -- no zone: UTC
    return secs, fs, fe
  end
  if (c == 90 or c == 122) and pos == n then              -- Z z
    return secs, fs, fe
  end
  if c == 43 or c == 45 then                              -- + -
    local oh, om = digits2(s, pos + 1), 0
    local last = pos + 2
    if oh and last < n then
      if byte(s, last + 1) == 58 then
        last = last + 1
      end
      om = digits2(s, last + 1)
      last = last + 2
    end
    if not oh or not om or last ~= n then
      return nil, BAD_TIME
    end
    if oh > 23 or om > 59 then
      return nil, "zone offset out of range"
    end
    local off = oh * 3600 + om * 60
    if c == 43 then
      return secs - off, fs, fe
    end
    return secs + off, fs, fe
  end
  return nil, BAD_TIME
end


-- string or number -> whole, fraction | nil, msg
local function time_value(v)
  if type(v) == "number" then
    if v ~= v or v == huge or v == -huge then
      return nil, "not a finite number"
    end
    local whole = floor(v)
    return whole, v - whole
  end
  if type(v) == "string" then
    local whole, fs, fe = time_parts(v)
    if not whole then
      return nil, fs
    end
    return whole, fraction(v, fs, fe)
  end
  return nil, "expected an ISO 8601 string or epoch seconds, got " .. show(v)
end


function M.parse_time(v)
  local whole, frac = time_value(v)
  if not whole then
    return nil, frac
  end
  return whole + frac
end


--------------------------------------------------------------------------------------------
-- globs

-- one byte as an item of a Lua character class (alphanumerics bare, the rest %-escaped)
local function class_item(b)
  local c = char(b)
  if find(c, "^%w$") then
    return c
  end
  return "%" .. c
end


-- glob -> anchored Lua pattern matching the whole name, ignoring case | nil, msg
function M.glob_pattern(glob)
  if find(glob, "\0", 1, true) then
    return nil, "contains a NUL byte"
  end
  local out = { "^" }
  local i, n = 1, #glob
  while i <= n do
    local c = sub(glob, i, i)
    if c == "*" then
      if out[#out] ~= ".*" then                           -- "**" is "*": no extra backtracking
        out[#out + 1] = ".*"
      end
      i = i + 1
    elseif c == "?" then
      out[#out + 1] = "."
      i = i + 1
    elseif c == "[" then
      local j, negate = i + 1, false
      local first = sub(glob, j, j)
      if first == "!" or first == "^" then
        negate, j = true, j + 1
      end
      local items, have, closed, start = {}, {}, false, j
      while j <= n do
        local ch = sub(glob, j, j)
        if ch == "]" and j > start then                   -- "[]a]": a leading ] is literal
          closed = true
          break
        end
        if ch == "\\" and j < n then
          j = j + 1
          ch = sub(glob, j, j)
        end
        local lo, hi = byte(ch), byte(ch)
        if sub(glob, j + 1, j + 1) == "-" and j + 2 <= n and sub(glob, j + 2, j + 2) ~= "]" then
          local e, skip = sub(glob, j + 2, j + 2), 2
          if e == "\\" and j + 3 <= n then
            e, skip = sub(glob, j + 3, j + 3), 3
          end
          hi = byte(e)
          if hi < lo then
            return nil, format("has a reversed range %q", sub(glob, j, j + skip))
          end
          j = j + skip
        end
        for b = lo, hi do
          local cs = char(b)
          for _, x in ipairs{ cs, lower(cs), upper(cs) } do
            if not have[x] then
              have[x] = true
              items[#items + 1] = class_item(byte(x))
            end
          end
        end
        j = j + 1
      end
      if not closed then
        return nil, "has an unclosed '['"
      end
      out[#out + 1] = (negate and "[^" or "[") .. concat(items) .. "]"
      i = j + 1
    else
      if c == "\\" and i < n then
        i = i + 1
        c = sub(glob, i, i)
      end
      local l, u = lower(c), upper(c)
      if l ~= u then
        out[#out + 1] = "[" .. l .. u .. "]"
      else
        out[#out + 1] = class_item(byte(c))
      end
      i = i + 1
    end
  end
  out[#out + 1] = "$"
  return concat(out)
end


--------------------------------------------------------------------------------------------
-- matching helpers (module level: the built filter allocates nothing per record)

-- set: the criteria's ids in lower case. `lower` is cheaper than looking for an upper-case
-- letter with a pattern, and makes no new string for an id already in lower case (interned).
local function id_hit(s, set)
  return set[s] or set[lower(s)] == true
end


-- field: an id string or a list of ids
local function id_in(field, set)
  if type(field) == "string" then
    return id_hit(field, set)
  end
  if type(field) == "table" then
    for i = 1, #field do
      local x = field[i]
      if type(x) == "string" and id_hit(x, set) then
        return true
      end
    end
  end
  return false
end


local function ip_hit(target, blocks, nblocks)
  if type(target) ~= "table" then
    return false
  end
  local addr = lookup(target.Ip)
  if not addr then
    return false
  end
  for j = 1, nblocks do
    if contains(blocks[j], addr) then
      return true
    end
  end
  return false
end


local function host_hit(target, patterns, npatterns)
  if type(target) ~= "table" then
    return false
  end
  local h = target.Hostname
  if type(h) ~= "string" then
    return false
  end
  for j = 1, npatterns do
    if find(h, patterns[j]) then
      return true
    end
  end
  return false
end


local function target_failed(target)
  if type(target) ~= "table" then
    return false
  end
  local st = target.ScanStatus
  return type(st) == "string" and normalize_status(st) ~= "success"
end


-- hit(target, a, b) for any target of the record; a single target object counts as a list of one
local function any_target(targets, hit, a, b)
  if type(targets) ~= "table" then
    return false
  end
  if targets[1] == nil then
    return hit(targets, a, b)
  end
  for i = 1, #targets do
    if hit(targets[i], a, b) then
      return true
    end
  end
  return false
end


local function has_failed(rec)
  local ok, total = rec.NumberOfSuccessfullyScannedTargets, rec.NumberOfTargets
  if type(ok) == "number" and type(total) == "number" and ok < total then
    return true
  end
  return any_target(rec.ListScannedTargets, target_failed)
end


--------------------------------------------------------------------------------------------
-- building

-- Levenshtein distance, for "did you mean"
local function distance(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do
    prev[j] = j
  end
  for i = 1, #a do
    cur[0] = i
    local ca = byte(a, i)
    for j = 1, #b do
      local cost = ca == byte(b, j) and 0 or 1
      local v = prev[j - 1] + cost
      if prev[j] + 1 < v then v = prev[j] + 1 end
      if cur[j - 1] + 1 < v then v = cur[j - 1] + 1 end
      cur[j] = v
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end


local function unknown_key(key)
  if type(key) ~= "string" then
    return fail("unexpected key [%s] (criteria are named: %s)", tostring(key),
                concat(KEYS, ", "))
  end
  local plain = gsub(lower(key), "[%s_%-]", "")
  local best, best_d
  for i = 1, #KEYS do
    local known = gsub(KEYS[i], "_", "")
    -- a typo, or a shortening ("host" for "hostname")
    local d = #plain >= 3 and sub(known, 1, #plain) == plain and 0 or distance(plain, known)
    if not best_d or d < best_d then
      best, best_d = KEYS[i], d
    end
  end
  if best_d <= 2 or best_d <= #plain / 3 then
    return fail("unknown key '%s' (did you mean '%s'?)", key, best)
  end
  return fail("unknown key '%s' (known: %s)", key, concat(KEYS, ", "))
end


-- a string or a non-empty list of them -> list | nil, err
local function string_list(key, v, what)
  if type(v) == "string" then
    if v == "" then
      return fail("'%s' is an empty string", key)
    end
    return { v }
  end
  if type(v) ~= "table" then
    return fail("'%s' must be %s or a list of them, got %s", key, what, show(v))
  end
  local n = #v
  if n == 0 then
    if next(v) == nil then
      return fail("'%s' is an empty list", key)
    end
    return fail("'%s' must be %s or a list of them, got a table that is not a list", key, what)
  end
  local count = 0
  for _ in next, v do
    count = count + 1
  end
  if count ~= n then
    return fail("'%s' must be %s or a list of them, got a table that is not a list", key, what)
  end
  for i = 1, n do
    local x = v[i]
    if type(x) ~= "string" or x == "" then
      return fail("'%s'[%d] must be %s, got %s", key, i, what, show(x))
    end
  end
  return v
end


local function id_set(key, v)
  local list, err = string_list(key, v, "a non-empty id string")
  if not list then
    return nil, err
  end
  local set = {}
  for i = 1, #list do
    set[lower(list[i])] = true
  end
  return set
end


local function time_bound(key, v)
  local whole, frac = time_value(v)
  if not whole then
    return fail("'%s' is not an ISO 8601 time or epoch seconds: %s (%s)", key, show(v), frac)
  end
  return whole, frac
end


function M.build(criteria)
  if type(criteria) ~= "table" then
    return fail("criteria must be a table, got %s", show(criteria))
  end
  local unknown
  for k in next, criteria do
    if not KNOWN[k] then
      unknown = unknown or {}
      unknown[#unknown + 1] = k
    end
  end
  if unknown then
    -- the same key reported whatever the table's hash order
    sort(unknown, function(a, b) return tostring(a) < tostring(b) end)
    return unknown_key(unknown[1])
  end
  local err
  local c = criteria

  local status_set
  if c.status ~= nil then
    local list
    list, err = string_list("status", c.status, "a non-empty status string")
    if not list then
      return nil, err
    end
    status_set = {}
    for i = 1, #list do
      local n = normalize_status(list[i])
      if n == "" then
        return fail("'status' has a blank value %s", show(list[i]))
      end
      status_set[n] = true
    end
  end

  local session_set, definition_set
  if c.session ~= nil then
    session_set, err = id_set("session", c.session)
    if not session_set then
      return nil, err
    end
  end
  if c.definition ~= nil then
    definition_set, err = id_set("definition", c.definition)
    if not definition_set then
      return nil, err
    end
  end

  local since_w, since_f, before_w, before_f
  if c.since ~= nil then
    since_w, since_f = time_bound("since", c.since)
    if not since_w then
      return nil, since_f
    end
  end
  if c.before ~= nil then
    before_w, before_f = time_bound("before", c.before)
    if not before_w then
      return nil, before_f
    end
  end
  if since_w and before_w
    and (since_w > before_w or (since_w == before_w and since_f >= before_f)) then
    return fail("'since' (%s) must be earlier than 'before' (%s): no time is in both",
                tostring(c.since), tostring(c.before))
  end
  local timed = since_w ~= nil or before_w ~= nil

  local blocks, nblocks
  if c.target ~= nil then
    local list
    list, err = string_list("target", c.target, "an IP address or CIDR block")
    if not list then
      return nil, err
    end
    blocks = {}
    for i = 1, #list do
      local block, msg = ip.parse_cidr(list[i])
      if not block then
        return fail("'target' has an invalid IP address or CIDR block %s: %s", show(list[i]), msg)
      end
      blocks[i] = block
    end
    nblocks = #blocks
  end

  local patterns, npatterns
  if c.hostname ~= nil then
    local list
    list, err = string_list("hostname", c.hostname, "a non-empty host name glob")
    if not list then
      return nil, err
    end
    patterns = {}
    for i = 1, #list do
      local pat, msg = M.glob_pattern(list[i])
      if not pat then
        return fail("'hostname' glob %s %s", show(list[i]), msg)
      end
      patterns[i] = pat
    end
    npatterns = #patterns
  end

  local want_failed = c.failed_targets
  if want_failed ~= nil and type(want_failed) ~= "boolean" then
    return fail("'failed_targets' must be true or false, got %s", show(want_failed))
  end

  -- cheap checks first; every value used below was computed above
  return function(rec)
    if type(rec) ~= "table" then
      return false
    end
    if status_set then
      local st = rec.ScanStatus
      if type(st) ~= "string" or not status_set[normalize_status(st)] then
        return false
      end
    end
    if session_set and not id_in(rec.SessionIds, session_set) then
      return false
    end
    if definition_set and not id_in(rec.ScanDefinitionIds, definition_set) then
      return false
    end
    if timed then
      local last = rec.LastScanned
      if type(last) ~= "string" then
        return false
      end
      local w, fs, fe = time_parts(last)
      if not w then
        return false
      end
      -- the fraction is read only when the whole seconds tie
      if since_w and (w < since_w or (w == since_w and fraction(last, fs, fe) < since_f)) then
        return false
      end
      if before_w and (w > before_w or (w == before_w and fraction(last, fs, fe) >= before_f)) then
        return false
      end
    end
    if want_failed ~= nil and has_failed(rec) ~= want_failed then
      return false
    end
    if blocks and not any_target(rec.ListScannedTargets, ip_hit, blocks, nblocks) then
      return false
    end
    if patterns and not any_target(rec.ListScannedTargets, host_hit, patterns, npatterns) then
      return false
    end
    return true
  end
end


--- records matching `f` (a built filter or a criteria table), in order, as a new list.
function M.apply(records, f)
  if type(records) ~= "table" then
    return fail("apply: records must be a list, got %s", show(records))
  end
  if type(f) == "table" then
    local err
    f, err = M.build(f)
    if not f then
      return nil, err
    end
  elseif type(f) ~= "function" then
    return fail("apply: expected a filter function or a criteria table, got %s", show(f))
  end
  local out, n = {}, 0
  for i = 1, #records do
    local rec = records[i]
    if f(rec) then
      n = n + 1
      out[n] = rec
    end
  end
  return out
end


M.parse_ip = ip.parse
M.parse_cidr = ip.parse_cidr
M.in_cidr = ip.in_cidr


return setmetatable(M, { __call = function(_, criteria) return M.build(criteria) end })
