--- Output formats of the mde tool: aligned text tables, CSV (RFC 4180), JSON and NDJSON.
--
-- syntax: local format = require "mde.format"
--         local w = format.writer("csv", io.stdout, { kind = "session", targets = true })
--         for record in client:each_session(ids) do w:add(record) end
--         w:finish()
--
-- Writers stream: CSV and NDJSON write each row as it is added; JSON writes one array, one
-- element per line, as elements come; a table keeps the first `sample` rows (1000) to measure
-- the column widths, then streams with those widths (longer cells are cut with an ellipsis).
-- Every record goes through `mde.redact` first, so scan credentials never reach any format.
--
-- Writer options (all optional):
--   kind       "session" (default), "definition" or "agent": picks the default columns
--   columns    list of column names (API spelling, dotted paths into nested objects such as
--              "scannerAgent.machineName"; "Target.Ip" etc. with `targets`); nil = defaults
--   targets    one row per scanned target: the session's fields plus `Target` (one entry of
--              ListScannedTargets; a session without targets gives one row with empty Target)
--   header     false: no header row (table and CSV)
--   csv_guard  true (default): a CSV text cell starting with = + - @ TAB or CR gets a leading '
--              so spreadsheets do not run it as a formula (host names come from scanned devices)
--   vertical   table only: a single record is shown as "field  value" lines
--   footer     table only: a "(N rows)" line at the end
--   ellipsis   string marking a cut cell ("…" when the locale is UTF-8, else "...")
--   max_width  widest table column, in display columns (default 48; the last column 96)
--   sample     rows measured before a table starts printing (default 1000)
--   redact     false: skip mde.redact (never done by the mde tool)
--
-- Also: format.json(v), format.csv_row(list), format.cell(v), format.width(s),
-- format.truncate(s, w, ellipsis), format.clean(s), format.get(record, path),
-- format.targets(record), format.align(header, rows, opts), format.COLUMNS, format.LABELS.

local type, tostring, tonumber, pairs, ipairs, next = type, tostring, tonumber, pairs, ipairs, next
local byte, char, find, format, gsub, lower, rep, sub =
  string.byte, string.char, string.find, string.format, string.gsub, string.lower, string.rep, string.sub
local concat, sort = table.concat, table.sort
local floor, huge = math.floor, math.huge

local redact = require "mde.redact"

local NULL
do
  local ok, cjson = pcall(require, "cjson")
  if ok and type(cjson) == "table" then NULL = cjson.null end
end

local M = {}


--------------------------------------------------------------------------------------------
-- columns

--- Default columns per kind of record: `table` (short, for people) and `all` (CSV).
M.COLUMNS = {
  session = {
    table = { "SessionIds", "ScanStatus", "LastScanned", "NumberOfSuccessfullyScannedTargets",
              "NumberOfTargets", "ScanDefinitionIds" },
    all = { "SessionIds", "ScanDefinitionIds", "ScanStatus", "LastScanned",
            "NumberOfSuccessfullyScannedTargets", "NumberOfTargets", "orgId" },
  },
  target = {
    table = { "SessionIds", "LastScanned", "ScanStatus", "Target.Ip", "Target.Hostname",
              "Target.ScanStatus", "Target.ScanDuration", "Target.ErrorMessage" },
    all = { "SessionIds", "ScanDefinitionIds", "ScanStatus", "LastScanned",
            "NumberOfSuccessfullyScannedTargets", "NumberOfTargets", "orgId", "Target.Ip",
            "Target.Hostname", "Target.ScannedDeviceDescription", "Target.ScanStatus",
            "Target.ScanDuration", "Target.ErrorMessage" },
  },
  definition = {
    table = { "id", "scanName", "scanType", "isActive", "intervalInHours", "target",
              "scannerAgent.machineName", "latestScan.status" },
    all = { "id", "scanName", "scanType", "isActive", "intervalInHours", "targetType", "target",
            "createdBy", "orgId", "scannerAgent.id", "scannerAgent.machineName",
            "scannerAgent.machineId", "latestScan.status", "latestScan.executionDateTime",
            "latestScan.failureReason" },
  },
  agent = {
    table = { "id", "computerDnsName", "lastSeen", "ScannerSoftwareVersion", "mdeClientVersion" },
    all = { "id", "computerDnsName", "machineId", "lastSeen", "ScannerSoftwareVersion",
            "mdeClientVersion", "LastCommandExecutionTimestamp", "AssignedApplicationId" },
  },
}

--- Table headers that differ from the column name (the two counters are long names for numbers).
M.LABELS = {
  NumberOfSuccessfullyScannedTargets = "Succeeded",
  NumberOfTargets = "Targets",
}

-- target fields that may be named without "Target." when rows are targets
local TARGET_FIELDS = { "Ip", "Hostname", "ScannedDeviceDescription", "ScanStatus", "ScanDuration",
                        "ErrorMessage" }


--- Parse "--columns a,b,c": a list of names, each resolved against the known columns of the
-- kind (ignoring case; table labels accepted) so output uses the API's spelling.
-- Returns the list, or nil and a message.
function M.columns(spec, kind, targets)
  if type(spec) ~= "string" or spec == "" then return nil, "--columns needs a list of names" end
  local known = {}
  local set = M.COLUMNS[targets and "target" or (kind or "session")] or {}
  for _, list in pairs(set) do
    for _, name in ipairs(list) do known[lower(name)] = name end
  end
  for name, label in pairs(M.LABELS) do known[lower(label)] = name end
  if targets then
    for _, f in ipairs(TARGET_FIELDS) do
      local full = "Target." .. f
      known[lower(full)] = full
      if f ~= "ScanStatus" then known[lower(f)] = full end
    end
  end
  local out = {}
  for item in (spec .. ","):gmatch("([^,]*),") do
    item = item:match("^%s*(.-)%s*$")
    if item == "" then return nil, "--columns: empty column name in '" .. spec .. "'" end
    local name = known[lower(item)] or item
    if not targets and lower(name):find("^target%.") then
      return nil, ("--columns: '%s' is a target column; add --targets (one row per scanned target)"):format(item)
    end
    out[#out + 1] = name
  end
  return out
end


--------------------------------------------------------------------------------------------
-- values

local path_cache = {}

local function split_path(path)
  local p = path_cache[path]
  if not p then
    p = {}
    for seg in path:gmatch("[^.]+") do p[#p + 1] = seg end
    path_cache[path] = p
  end
  return p
end


-- t[key], or the value of the key equal to it ignoring case
local function field(t, key)
  local v = t[key]
  if v ~= nil then return v end
  local lk = lower(key)
  for k, x in pairs(t) do
    if type(k) == "string" and lower(k) == lk then return x end
  end
  return nil
end


--- The value at a dotted path ("scannerAgent.machineName"); keys are tried as spelled, then
-- ignoring case; a key that itself holds dots ("@odata.type") is found too. nil when absent.
function M.get(record, path)
  if type(record) ~= "table" then return nil end
  local v = field(record, path)
  if v ~= nil or not find(path, ".", 1, true) then return v end
  local segs = split_path(path)
  v = record
  for i = 1, #segs do
    if type(v) ~= "table" then return nil end
    v = field(v, segs[i])
  end
  return v
end
local get = M.get


--- One row per scanned target: a shallow copy of the session without ListScannedTargets, plus
-- `Target` (the target). A session with no targets gives one row whose Target is empty.
function M.targets(record)
  local base = {}
  for k, v in pairs(record) do
    if k ~= "ListScannedTargets" then base[k] = v end
  end
  local list = record.ListScannedTargets
  if type(list) == "table" and list[1] == nil and next(list) ~= nil then list = { list } end
  if type(list) ~= "table" or list[1] == nil then
    base.Target = {}
    return { base }
  end
  local rows = {}
  for i = 1, #list do
    local r = {}
    for k, v in pairs(base) do r[k] = v end
    r.Target = list[i]
    rows[i] = r
  end
  return rows
end


--------------------------------------------------------------------------------------------
-- JSON (deterministic: known keys in a fixed order, then the others sorted)

local KEY_RANK = {}
for i, k in ipairs{ "id", "SessionIds", "ScanDefinitionIds", "ScanStatus", "LastScanned",
    "NumberOfSuccessfullyScannedTargets", "NumberOfTargets", "ScannerId", "orgId",
    "Ip", "Hostname", "ScannedDeviceDescription", "ScanDuration", "ErrorMessage",
    "ListScannedTargets", "Target",
    "scanName", "scanType", "isActive", "intervalInHours", "targetType", "target", "createdBy",
    "computerDnsName", "machineId", "lastSeen", "scannerAgent", "latestScan",
    "scanAuthenticationParams" } do
  KEY_RANK[k] = i
end

local function key_before(a, b)
  local ra, rb = KEY_RANK[a], KEY_RANK[b]
  if ra and rb then return ra < rb end
  if ra or rb then return ra ~= nil end
  return a < b
end

-- fields that are lists even when empty
local LIST_FIELDS = { ListScannedTargets = true, value = true }

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
                  ["\r"] = "\\r", ["\t"] = "\\t" }
for c = 0, 31 do
  local ch = char(c)
  if not ESCAPES[ch] then ESCAPES[ch] = format("\\u%04x", c) end
end
ESCAPES[char(127)] = "\\u007f"

local function json_string(s)
  if find(s, '[%c"\\]') then s = gsub(s, '[%c"\\]', ESCAPES) end
  return '"' .. s .. '"'
end

local mtype = math.type

local function number_text(n)
  if mtype and mtype(n) == "integer" then return tostring(n) end
  if n ~= n or n == huge or n == -huge then return nil end
  if n == floor(n) and n > -2 ^ 53 and n < 2 ^ 53 then return format("%.0f", n) end
  local s = format("%.14g", n)
  if tonumber(s) ~= n then s = format("%.17g", n) end
  return s
end
M.number_text = number_text

local function is_list(t)
  local n = #t
  if n == 0 then return false end
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then return false end
  end
  return true
end

local encode

-- objects whose keys are written in a given order (objects built from --columns)
local ORDERED = setmetatable({}, { __mode = "k" })

local UNRANKED = 1e9
local KEY_TEXT, key_text_n = {}, 0

-- '"key":', cached (keys repeat in every record)
local function key_text(k)
  local s = KEY_TEXT[k]
  if not s then
    s = json_string(tostring(k)) .. ":"
    if key_text_n >= 4096 then KEY_TEXT, key_text_n = {}, 0 end
    KEY_TEXT[k] = s
    key_text_n = key_text_n + 1
  end
  return s
end

-- the keys of t in output order (insertion sort: objects have few keys)
local function ordered_keys(t)
  local keys, ranks, n = {}, {}, 0
  for k in pairs(t) do
    local r = KEY_RANK[k] or UNRANKED
    local j = n
    while j >= 1 do
      local rj = ranks[j]
      if rj < r or (rj == r and (r ~= UNRANKED or tostring(keys[j]) <= tostring(k))) then break end
      keys[j + 1], ranks[j + 1] = keys[j], rj
      j = j - 1
    end
    keys[j + 1], ranks[j + 1] = k, r
    n = n + 1
  end
  return keys, n
end

-- encode t into buf from index n + 1; returns the new last index
local function encode_table(t, buf, n, key, seen)
  if seen[t] then n = n + 1; buf[n] = "null"; return n end
  if next(t) == nil then
    n = n + 1
    buf[n] = LIST_FIELDS[key] and "[]" or "{}"
    return n
  end
  seen[t] = true
  if t[1] ~= nil and is_list(t) then
    n = n + 1
    buf[n] = "["
    for i = 1, #t do
      if i > 1 then n = n + 1; buf[n] = "," end
      n = encode(t[i], buf, n, nil, seen)
    end
    n = n + 1
    buf[n] = "]"
  else
    local keys, count = ORDERED[t]
    if keys then count = #keys else keys, count = ordered_keys(t) end
    n = n + 1
    buf[n] = "{"
    local first = true
    for i = 1, count do
      local k = keys[i]
      local v = t[k]
      if v == nil and type(k) == "string" then v = t[tonumber(k)] end
      if v ~= nil then
        if not first then n = n + 1; buf[n] = "," end
        first = false
        n = n + 1
        buf[n] = key_text(k)
        n = encode(v, buf, n, k, seen)
      end
    end
    n = n + 1
    buf[n] = "}"
  end
  seen[t] = nil
  return n
end

encode = function(v, buf, n, key, seen)
  local tv = type(v)
  n = n + 1
  if tv == "string" then
    if find(v, '[%c"\\]') then v = gsub(v, '[%c"\\]', ESCAPES) end
    buf[n] = '"'
    buf[n + 1] = v
    buf[n + 2] = '"'
    return n + 2
  elseif tv == "number" then
    buf[n] = number_text(v) or "null"
  elseif tv == "boolean" then
    buf[n] = v and "true" or "false"
  elseif tv == "table" then
    return encode_table(v, buf, n - 1, key, seen)
  else
    buf[n] = "null"            -- nil, mde.null, functions, other userdata
  end
  return n
end

--- Mark `t` so that format.json writes its keys in the order of `keys` (a list); returns t.
-- Keys whose value is nil when it is encoded are left out; keys not in the list are not written.
function M.ordered(t, keys)
  ORDERED[t] = keys
  return t
end

--- JSON text of a value, on one line; object keys in a fixed order (known API fields first,
-- then sorted), so the same data always gives the same bytes. mde.null gives null.
function M.json(v)
  local buf = {}
  encode(v, buf, 0, nil, {})
  return concat(buf)
end
local json = M.json


--- The text of a value in a table or CSV cell: "" for nil and JSON null, whole numbers
-- without a fraction, true/false, JSON for objects and lists.
function M.cell(v)
  local tv = type(v)
  if tv == "string" then return v end
  if v == nil or v == NULL then return "" end
  if tv == "number" then return number_text(v) or "" end
  if tv == "boolean" then return v and "true" or "false" end
  if tv == "table" then return json(v) end
  return ""
end
local cell = M.cell


--------------------------------------------------------------------------------------------
-- CSV (RFC 4180)

local function csv_field(v, guard)
  local s = cell(v)
  if guard and type(v) == "string" and find(s, "^[=+%-@\t\r]") then s = "'" .. s end
  if find(s, '[,"\r\n]') then s = '"' .. gsub(s, '"', '""') .. '"' end
  return s
end
M.csv_field = csv_field

--- One CSV record: fields joined by commas, quoted where needed, ending in CRLF.
-- `n`: the number of fields (values may hold nil), default #values.
function M.csv_row(values, guard, n)
  local out = {}
  for i = 1, n or #values do out[i] = csv_field(values[i], guard) end
  return concat(out, ",") .. "\r\n"
end


--------------------------------------------------------------------------------------------
-- display width

-- sorted, disjoint ranges of code points
local WIDE = {
  { 0x1100, 0x115F }, { 0x231A, 0x231B }, { 0x2329, 0x232A }, { 0x23E9, 0x23EC }, { 0x23F0, 0x23F0 },
  { 0x23F3, 0x23F3 }, { 0x25FD, 0x25FE }, { 0x2614, 0x2615 }, { 0x2648, 0x2653 }, { 0x267F, 0x267F },
  { 0x2693, 0x2693 }, { 0x26A1, 0x26A1 }, { 0x26AA, 0x26AB }, { 0x26BD, 0x26BE }, { 0x26C4, 0x26C5 },
  { 0x26CE, 0x26CE }, { 0x26D4, 0x26D4 }, { 0x26EA, 0x26EA }, { 0x26F2, 0x26F3 }, { 0x26F5, 0x26F5 },
  { 0x26FA, 0x26FA }, { 0x26FD, 0x26FD }, { 0x2705, 0x2705 }, { 0x270A, 0x270B }, { 0x2728, 0x2728 },
  { 0x274C, 0x274C }, { 0x274E, 0x274E }, { 0x2753, 0x2755 }, { 0x2757, 0x2757 }, { 0x2795, 0x2797 },
  { 0x27B0, 0x27B0 }, { 0x27BF, 0x27BF }, { 0x2B1B, 0x2B1C }, { 0x2B50, 0x2B50 }, { 0x2B55, 0x2B55 },
  { 0x2E80, 0x303E }, { 0x3041, 0x33FF }, { 0x3400, 0x4DBF }, { 0x4E00, 0x9FFF }, { 0xA000, 0xA4CF },
  { 0xA960, 0xA97F }, { 0xAC00, 0xD7A3 }, { 0xF900, 0xFAFF }, { 0xFE10, 0xFE19 }, { 0xFE30, 0xFE6F },
  { 0xFF00, 0xFF60 }, { 0xFFE0, 0xFFE6 }, { 0x16FE0, 0x16FE4 }, { 0x17000, 0x18AFF },
  { 0x1B000, 0x1B2FF }, { 0x1F004, 0x1F004 }, { 0x1F0CF, 0x1F0CF }, { 0x1F18E, 0x1F18E },
  { 0x1F191, 0x1F19A }, { 0x1F200, 0x1F251 }, { 0x1F300, 0x1F64F }, { 0x1F680, 0x1F6FF },
  { 0x1F7E0, 0x1F7EB }, { 0x1F90C, 0x1F9FF }, { 0x1FA70, 0x1FAFF }, { 0x20000, 0x2FFFD },
  { 0x30000, 0x3FFFD },
}
local ZERO = {
  { 0x0300, 0x036F }, { 0x0483, 0x0489 }, { 0x0591, 0x05BD }, { 0x0610, 0x061A }, { 0x064B, 0x065F },
  { 0x0E31, 0x0E31 }, { 0x0E34, 0x0E3A }, { 0x0E47, 0x0E4E }, { 0x1AB0, 0x1AFF }, { 0x1DC0, 0x1DFF },
  { 0x200B, 0x200F }, { 0x2060, 0x2064 }, { 0x20D0, 0x20FF }, { 0xFE00, 0xFE0F }, { 0xFE20, 0xFE2F },
  { 0xE0100, 0xE01EF },
}

local function in_ranges(cp, ranges)
  local lo, hi = 1, #ranges
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    local r = ranges[mid]
    if cp < r[1] then hi = mid - 1
    elseif cp > r[2] then lo = mid + 1
    else return true end
  end
  return false
end

local function cp_width(cp)
  if cp < 0x300 then return 1 end
  if in_ranges(cp, ZERO) then return 0 end
  if in_ranges(cp, WIDE) then return 2 end
  return 1
end

-- the code point at s[i] and the index after it; nil when the bytes there are not UTF-8
local function decode(s, i)
  local c = byte(s, i)
  if c < 0x80 then return c, i + 1 end
  local n, cp, min
  if c >= 0xC2 and c <= 0xDF then n, cp, min = 1, c - 0xC0, 0x80
  elseif c >= 0xE0 and c <= 0xEF then n, cp, min = 2, c - 0xE0, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then n, cp, min = 3, c - 0xF0, 0x10000
  else return nil end
  for k = 1, n do
    local cc = byte(s, i + k)
    if not cc or cc < 0x80 or cc > 0xBF then return nil end
    cp = cp * 64 + (cc - 0x80)
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
  return cp, i + n + 1
end

--- The number of terminal columns `s` takes (UTF-8; East Asian wide characters count 2,
-- combining marks 0). Invalid bytes count 1 each.
function M.width(s)
  if not find(s, "[\128-\255]") then return #s end
  local w, i, n = 0, 1, #s
  while i <= n do
    local cp, j = decode(s, i)
    if cp then
      w = w + cp_width(cp)
      i = j
    else
      w = w + 1
      i = i + 1
    end
  end
  return w
end
local width = M.width


-- code points a terminal must not receive raw: C1 controls, bidi overrides and isolates
local function unsafe_cp(cp)
  return (cp >= 0x80 and cp <= 0x9F) or (cp >= 0x202A and cp <= 0x202E) or (cp >= 0x2066 and cp <= 0x2069)
end

--- A single line that is safe to print on a terminal: tabs and line breaks become spaces;
-- other control characters, C1 controls, bidi overrides and bytes that are not UTF-8
-- become "?" (a host name cannot move the cursor, recolour the screen or reorder text).
function M.clean(s)
  s = gsub(s, "[\t\r\n]", " ")
  if find(s, "[%c]") then s = gsub(s, "%c", "?") end
  if not find(s, "[\128-\255]") then return s end
  local out, i, n, last = nil, 1, #s, 1
  while i <= n do
    local cp, j = decode(s, i)
    if cp and not unsafe_cp(cp) then
      i = j
    else
      out = out or {}
      out[#out + 1] = sub(s, last, i - 1)
      out[#out + 1] = "?"
      i = cp and j or i + 1
      last = i
    end
  end
  if not out then return s end
  out[#out + 1] = sub(s, last)
  return concat(out)
end
local clean = M.clean


--- Cut `s` to at most `w` display columns, ending in `ellipsis` when cut.
function M.truncate(s, w, ellipsis)
  if width(s) <= w then return s end
  ellipsis = ellipsis or "..."
  local room = w - width(ellipsis)
  if room <= 0 then return sub(ellipsis, 1, w) end
  local used, i, n = 0, 1, #s
  while i <= n do
    local cp, j = decode(s, i)
    local cw = cp and cp_width(cp) or 1
    if used + cw > room then break end
    used = used + cw
    i = cp and j or i + 1
  end
  return sub(s, 1, i - 1) .. ellipsis
end
local truncate = M.truncate


--- The ellipsis for this terminal: "…" under a UTF-8 locale, "..." otherwise.
function M.default_ellipsis(getenv)
  getenv = getenv or os.getenv
  local loc = getenv("LC_ALL") or getenv("LC_CTYPE") or getenv("LANG") or ""
  if loc == "" then loc = getenv("LC_CTYPE") or getenv("LANG") or "" end
  return lower(loc):find("utf%-?8") and "\226\128\166" or "..."
end


local function pad(s, w, right)
  local gap = w - width(s)
  if gap <= 0 then return s end
  if right then return rep(" ", gap) .. s end
  return s .. rep(" ", gap)
end

local function rstrip(s)
  return (gsub(s, " +$", ""))
end

--- Measure column widths: the widest of header and cells, capped (opts.max_width, the last
-- column opts.max_last). Cells must already be clean.
function M.widths(header, rows, opts)
  opts = opts or {}
  local n = #header
  local cap, cap_last = opts.max_width or 48, opts.max_last or 96
  local w = {}
  for i = 1, n do w[i] = header[i] and width(header[i]) or 0 end
  for _, r in ipairs(rows) do
    for i = 1, n do
      local cw = width(r[i] or "")
      if cw > w[i] then w[i] = cw end
    end
  end
  for i = 1, n do
    local c = i == n and cap_last or cap
    if w[i] > c then w[i] = c end
  end
  return w
end

--- One aligned line: cells padded to `w` (right-aligned where right[i]), two spaces apart,
-- cut with the ellipsis where too wide, trailing spaces removed.
function M.line(cells, w, right, ellipsis)
  local out = {}
  for i = 1, #w do
    out[i] = pad(truncate(cells[i] or "", w[i], ellipsis), w[i], right and right[i])
  end
  return rstrip(concat(out, "  "))
end
local line = M.line

--- Aligned text: header, a rule of dashes, rows. Returns a list of lines (no newlines).
-- rows are lists of strings (cleaned here); opts: right = { [i] = true }, ellipsis, max_width.
function M.align(header, rows, opts)
  opts = opts or {}
  local h = {}
  for i = 1, #header do h[i] = clean(header[i]) end
  local cleaned = {}
  for k, r in ipairs(rows) do
    local c = {}
    for i = 1, #header do c[i] = clean(r[i] or "") end
    cleaned[k] = c
  end
  local w = M.widths(h, cleaned, opts)
  local lines = {}
  if opts.header ~= false then
    lines[1] = line(h, w, opts.right, opts.ellipsis)
    local rule = {}
    for i = 1, #w do rule[i] = rep("-", w[i]) end
    lines[2] = concat(rule, "  ")
  end
  for _, c in ipairs(cleaned) do lines[#lines + 1] = line(c, w, opts.right, opts.ellipsis) end
  return lines
end


--------------------------------------------------------------------------------------------
-- writers

local Writer = {}
Writer.__index = Writer

local KINDS = { table = true, csv = true, json = true, ndjson = true }
M.FORMATS = { "table", "csv", "json", "ndjson" }


--- A writer of `fmt` ("table", "csv", "json", "ndjson") to `out` (anything with :write()).
function M.writer(fmt, out, opts)
  if not KINDS[fmt] then error("mde.format: unknown format " .. tostring(fmt), 2) end
  opts = opts or {}
  local kind = opts.kind or "session"
  local set = M.COLUMNS[(opts.targets and kind == "session") and "target" or kind] or M.COLUMNS.session
  local columns = opts.columns or (fmt == "table" and set.table or set.all)
  local w = setmetatable({
    fmt = fmt, out = out, opts = opts, columns = columns, explicit = opts.columns ~= nil,
    targets = opts.targets and kind == "session",
    records = 0, rows = 0, started = false,
    ellipsis = opts.ellipsis or "...",
    guard = opts.csv_guard ~= false,
    pending = {}, widths = nil, right = {},
    seen = {},                       -- columns that matched some value (warn about typos)
  }, Writer)
  return w
end


-- the object written for a row in JSON/NDJSON
function Writer:object(row)
  if not self.explicit then return row end
  local o, order, placed = {}, {}, {}
  ORDERED[o] = order
  for _, col in ipairs(self.columns) do
    local top = split_path(col)[1]
    if row[col] ~= nil or get(row, col) == nil then top = col end
    if not placed[top] then placed[top] = true; order[#order + 1] = top end
    local v = get(row, col)
    if v ~= nil then
      self.seen[col] = true
      local segs = split_path(col)
      if #segs == 1 or row[col] ~= nil then
        o[col] = v
      else
        local t = o
        for i = 1, #segs - 1 do
          local s = segs[i]
          if type(t[s]) ~= "table" then t[s] = {} end
          t = t[s]
        end
        t[segs[#segs]] = v
      end
    else
      o[col] = NULL
    end
  end
  return o
end


function Writer:label(col)
  if self.fmt == "table" then return M.LABELS[col] or col end
  return col
end


function Writer:emit_row(row)
  local fmt = self.fmt
  self.rows = self.rows + 1
  if fmt == "ndjson" then
    self.out:write(json(self:object(row)), "\n")
  elseif fmt == "json" then
    self.out:write(self.started and ",\n" or "[\n", json(self:object(row)))
    self.started = true
  else
    local values, cells = {}, {}
    for i, col in ipairs(self.columns) do
      local v = get(row, col)
      if v ~= nil then self.seen[col] = true end
      values[i] = v
    end
    if fmt == "csv" then
      if not self.started then
        self.started = true
        if self.opts.header ~= false then self.out:write(M.csv_row(self.columns, false)) end
      end
      self.out:write(M.csv_row(values, self.guard, #self.columns))
    else
      for i = 1, #self.columns do
        cells[i] = clean(cell(values[i]))
        if type(values[i]) == "number" then self.right[i] = true end
      end
      if self.widths then
        self.out:write(line(cells, self.widths, self.right, self.ellipsis), "\n")
      else
        local p = self.pending
        p[#p + 1] = cells
        if #p >= (self.opts.sample or 1000) then self:flush_table() end
      end
    end
  end
end


-- print the buffered table rows, fixing the column widths
function Writer:flush_table()
  local header = {}
  for i, col in ipairs(self.columns) do header[i] = clean(self:label(col)) end
  self.widths = M.widths(header, self.pending, { max_width = self.opts.max_width, max_last = self.opts.max_last })
  if self.opts.header ~= false then
    self.out:write(line(header, self.widths, self.right, self.ellipsis), "\n")
    local rule = {}
    for i = 1, #self.widths do rule[i] = rep("-", self.widths[i]) end
    self.out:write(concat(rule, "  "), "\n")
  end
  for _, cells in ipairs(self.pending) do
    self.out:write(line(cells, self.widths, self.right, self.ellipsis), "\n")
  end
  self.pending = {}
  self.started = true
end


-- leaf paths of a record, for the vertical view
local function leaves(v, prefix, out)
  if type(v) == "table" and next(v) ~= nil then
    if is_list(v) then
      local scalars = true
      for i = 1, #v do if type(v[i]) == "table" then scalars = false end end
      if scalars then
        out[#out + 1] = { prefix, json(v) }
        return out
      end
      for i = 1, #v do leaves(v[i], prefix .. "." .. i, out) end
      return out
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    sort(keys, key_before)
    for _, k in ipairs(keys) do
      leaves(v[k], prefix == "" and k or (prefix .. "." .. k), out)
    end
  else
    out[#out + 1] = { prefix, cell(v) }
  end
  return out
end


function Writer:vertical(record)
  local pairs_ = {}
  if self.explicit then
    for _, col in ipairs(self.columns) do pairs_[#pairs_ + 1] = { col, cell(get(record, col)) } end
  else
    leaves(record, "", pairs_)
  end
  local rows = {}
  for i, p in ipairs(pairs_) do rows[i] = { p[1], p[2] } end
  local lines = M.align({ "Field", "Value" }, rows, { ellipsis = self.ellipsis, max_width = 48,
    max_last = self.opts.max_last or 96, header = false })
  self.out:write(concat(lines, "\n"), "\n")
end


--- Add a record (redacted here; expanded to one row per target when asked).
function Writer:add(record)
  if self.opts.redact ~= false then record = redact(record) end
  self.records = self.records + 1
  if self.fmt == "table" and self.opts.vertical and self.records == 1 then
    self.first = record                     -- a lone record is shown vertically
    return
  end
  if self.first then
    local first = self.first
    self.first = nil
    self:add_rows(first)
  end
  self:add_rows(record)
end


function Writer:add_rows(record)
  if self.targets and type(record) == "table" then
    local rows = M.targets(record)
    for i = 1, #rows do self:emit_row(rows[i]) end
  else
    self:emit_row(record)
  end
end


function Writer:flush()
  if self.out.flush then self.out:flush() end
end


--- Finish the output: close the JSON array, print a table's buffered rows, write a CSV header
-- when there was no row. Returns the number of records.
function Writer:finish()
  local fmt = self.fmt
  if fmt == "table" and self.first then
    self:vertical(self.first)
    self.first = nil
    return self.records
  end
  if fmt == "json" then
    self.out:write(self.started and "\n]\n" or "[]\n")
  elseif fmt == "csv" then
    if not self.started and self.opts.header ~= false then self.out:write(M.csv_row(self.columns, false)) end
  elseif fmt == "table" then
    if not self.started then
      if #self.pending == 0 then
        if self.opts.footer then self.out:write("(no rows)\n") end
        return self.records
      end
      self:flush_table()
    end
    if self.opts.footer then
      self.out:write(("(%d row%s)\n"):format(self.rows, self.rows == 1 and "" or "s"))
    end
  end
  return self.records
end


--- Explicit columns that matched no value in any row (likely typos).
function Writer:unmatched()
  if not self.explicit or self.rows == 0 then return {} end
  local out = {}
  for _, col in ipairs(self.columns) do
    if not self.seen[col] then out[#out + 1] = col end
  end
  return out
end


return M
