--- Reports over scan sessions: totals, success rate per scan definition, sessions per day by
-- status and the failed targets, as one self-contained HTML page and as plain text.
--
-- syntax: local report = require "mde.report"
--         local r = report.new{ definitions = defs, since = "2024-06-01" }
--         for record in client:each_session(ids, criteria) do r:add(record) end
--         io.open("report.html", "w"):write(r:html())
--         print(r:text())
--
-- Records are aggregated as they come: a report keeps counters per definition and per day, and
-- the `max_failed` most recent failed targets (a min-heap on LastScanned), never the records.
--
-- Options of report.new (all optional):
--   definitions  list of scan definitions (tables with id and scanName) or of ids: names and
--                order of the per-definition table (definitions without sessions are listed too)
--   since, before  the requested time range (ISO 8601 or epoch seconds), shown in the title and
--                used as the chart's range
--   filters      a short text describing other criteria, shown under the title
--   title        default "Authenticated scan report"
--   max_failed   failed targets kept for the table (default 1000; the total is always counted)
--   generated    the generation time shown (default: now, UTC)
--
-- The HTML has no script and no external resource, and a Content-Security-Policy that forbids
-- both; every value from the API is escaped for its context (text or attribute). Records go
-- through mde.redact, and only the fields listed above are shown: no credential can appear.

local type, tostring, pairs, ipairs, next = type, tostring, pairs, ipairs, next
local floor, max, min, ceil, huge = math.floor, math.max, math.min, math.ceil, math.huge
local concat, sort = table.concat, table.sort
local format, gsub, lower, rep, sub = string.format, string.gsub, string.lower, string.rep, string.sub

local filter = require "mde.filter"
local fmt = require "mde.format"

local parse_time, normalize_status = filter.parse_time, filter.normalize_status

local M = {}

local Report = {}
Report.__index = Report

M.STATUSES = { "success", "partial", "failed", "other" }
local STATUS_LABEL = { success = "Success", partial = "Partial success", failed = "Failed", other = "Other" }
local STATUS_COLOR = { success = "#2e7d32", partial = "#f0a30a", failed = "#c62828", other = "#8a8a8a" }
M.STATUS_LABEL = STATUS_LABEL


--- "Success", "Failed", "Partial Success" (any case/spacing) -> success, failed, partial; else other.
function M.status_class(s)
  if type(s) ~= "string" then return "other" end
  local n = normalize_status(s)
  if n == "success" or n == "succeeded" then return "success" end
  if n == "failed" or n == "failure" then return "failed" end
  if n == "partialsuccess" or n == "partiallysucceeded" or n == "partial" then return "partial" end
  return "other"
end
local status_class = M.status_class


-- civil date of a day number (days since 1970-01-01), H. Hinnant's civil_from_days
local function civil(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- day number of a civil date (H. Hinnant's days_from_civil)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end


local function day_text(day)
  local y, m, d = civil(day)
  return format("%04d-%02d-%02d", y, m, d)
end
M.day_text = day_text


local function first_id(v)
  if type(v) == "string" then return v end
  if type(v) == "table" and type(v[1]) == "string" then return v[1] end
  return nil
end


--- A new, empty report.
function M.new(o)
  o = o or {}
  local r = setmetatable({
    title = o.title or "Authenticated scan report",
    since = o.since, before = o.before, filters = o.filters,
    max_failed = o.max_failed or 1000,
    generated = o.generated or os.date("!%Y-%m-%d %H:%M UTC"),
    sessions = 0, targets = 0, failed_targets = 0,
    counts = { success = 0, partial = 0, failed = 0, other = 0 },
    defs = {}, def_order = {},
    days = {}, undated = 0,
    first = nil, last = nil, first_text = nil, last_text = nil,
    heap = {}, seq = 0,
  }, Report)
  for _, d in ipairs(o.definitions or {}) do
    if type(d) == "string" then
      r:definition(d)
    elseif type(d) == "table" and type(d.id) == "string" then
      local e = r:definition(d.id)
      if type(d.scanName) == "string" and d.scanName ~= "" then e.name = d.scanName end
      if type(d.scanType) == "string" then e.scan_type = d.scanType end
      if type(d.isActive) == "boolean" then e.active = d.isActive end
    end
  end
  return r
end


-- the entry of a definition id (created on first sight)
function Report:definition(id)
  local key = lower(id)
  local e = self.defs[key]
  if not e then
    e = { id = id, sessions = 0, targets = 0, failed_targets = 0,
          counts = { success = 0, partial = 0, failed = 0, other = 0 } }
    self.defs[key] = e
    self.def_order[#self.def_order + 1] = key
  end
  return e
end


-- keep the newest max_failed failed targets: a min-heap on (time, seq)
local function older(a, b)
  if a.t ~= b.t then return a.t < b.t end
  return a.seq < b.seq
end

local function heap_push(h, x)
  h[#h + 1] = x
  local i = #h
  while i > 1 do
    local p = floor(i / 2)
    if older(h[i], h[p]) then h[i], h[p] = h[p], h[i]; i = p else break end
  end
end

local function heap_replace_top(h, x)
  h[1] = x
  local i, n = 1, #h
  while true do
    local l, rr, s = 2 * i, 2 * i + 1, i
    if l <= n and older(h[l], h[s]) then s = l end
    if rr <= n and older(h[rr], h[s]) then s = rr end
    if s == i then break end
    h[i], h[s] = h[s], h[i]
    i = s
  end
end


local function text(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return fmt.number_text(v) or "" end
  return ""
end


--- Count one session record.
function Report:add(rec)
  if type(rec) ~= "table" then return end
  self.sessions = self.sessions + 1
  local class = status_class(rec.ScanStatus)
  self.counts[class] = self.counts[class] + 1

  local def_id = first_id(rec.ScanDefinitionIds) or "(unknown)"
  local d = self:definition(def_id)
  d.sessions = d.sessions + 1
  d.counts[class] = d.counts[class] + 1

  local when = type(rec.LastScanned) == "string" and parse_time(rec.LastScanned) or nil
  if when then
    -- the day from whole seconds: a float of epoch + 0.9999999 s can round up to the next day
    local whole_s = parse_time((gsub(rec.LastScanned, "(%d%d:%d%d:%d%d)[.,]%d+", "%1"))) or when
    local day = floor(whole_s / 86400)
    local c = self.days[day]
    if not c then c = { success = 0, partial = 0, failed = 0, other = 0 }; self.days[day] = c end
    c[class] = c[class] + 1
    if not self.first or when < self.first then self.first, self.first_text = when, rec.LastScanned end
    if not self.last or when > self.last then self.last, self.last_text = when, rec.LastScanned end
    if not d.last or when > d.last then d.last, d.last_text, d.last_status = when, rec.LastScanned, rec.ScanStatus end
  else
    self.undated = self.undated + 1
  end

  local list = rec.ListScannedTargets
  if type(list) == "table" and list[1] == nil and next(list) ~= nil then list = { list } end
  local n_targets, n_failed = 0, 0
  if type(list) == "table" then
    for _, t in ipairs(list) do
      if type(t) == "table" then
        n_targets = n_targets + 1
        if status_class(t.ScanStatus) ~= "success" then
          n_failed = n_failed + 1
          self:keep_failed(rec, t, when or -huge, def_id)
        end
      end
    end
  end
  -- no target details: use the counters of the session
  if n_targets == 0 and type(rec.NumberOfTargets) == "number" then
    n_targets = rec.NumberOfTargets
    local ok = type(rec.NumberOfSuccessfullyScannedTargets) == "number" and rec.NumberOfSuccessfullyScannedTargets or 0
    n_failed = max(0, n_targets - ok)
  end
  self.targets = self.targets + n_targets
  self.failed_targets = self.failed_targets + n_failed
  d.targets = d.targets + n_targets
  d.failed_targets = d.failed_targets + n_failed
end


function Report:keep_failed(rec, t, when, def_id)
  self.seq = self.seq + 1
  local h = self.heap
  local x = { t = when, seq = self.seq }
  if #h >= self.max_failed then
    if self.max_failed == 0 or not older(h[1], x) then return end
  end
  x.row = {
    session = text(rec.SessionIds), last = text(rec.LastScanned), definition = def_id,
    ip = text(t.Ip), hostname = text(t.Hostname), status = text(t.ScanStatus),
    duration = text(t.ScanDuration), error = text(t.ErrorMessage),
    description = text(t.ScannedDeviceDescription),
  }
  if #h >= self.max_failed then heap_replace_top(h, x) else heap_push(h, x) end
end


--- The kept failed targets, newest first (rows: session, last, definition, ip, hostname,
-- status, duration, error, description).
function Report:failed_rows()
  local list = {}
  for i, x in ipairs(self.heap) do list[i] = x end
  sort(list, function(a, b)
    if a.t ~= b.t then return a.t > b.t end
    return a.seq < b.seq                     -- targets of one session in the API's order
  end)
  local rows = {}
  for i, x in ipairs(list) do rows[i] = x.row end
  return rows
end


local function rate(n, total)
  if total == 0 then return nil end
  return n / total
end

local function percent(r)
  if not r then return "-" end
  return format("%.1f%%", r * 100)
end
M.percent = percent


--- The definitions in order: requested ones first, then others seen in the records.
function Report:definitions()
  local out = {}
  for _, key in ipairs(self.def_order) do
    local d = self.defs[key]
    out[#out + 1] = d
  end
  return out
end


local function def_name(d)
  return d.name or d.id
end


--- The buckets of the chart: { unit = "day"|"week"|"month", list = { {label=, from=day, counts} } }.
-- Daily up to 62 buckets, then weekly (from Mondays) up to 62, then monthly. The range is
-- since..before when given; else it ends on the newest session's day and starts on the oldest's,
-- at most 62 days earlier (older sessions are in the totals, and a note under the chart).
function Report:buckets()
  local lo, hi
  for day in pairs(self.days) do
    if not lo or day < lo then lo = day end
    if not hi or day > hi then hi = day end
  end
  local s = self.since and parse_time(self.since)
  local b = self.before and parse_time(self.before)
  if s then
    lo = floor(s / 86400)
  elseif lo and hi and hi - lo > 61 then
    -- no --since: the chart covers at most the 62 days up to the newest session, from the first
    -- day in that window that has sessions
    local first
    for day in pairs(self.days) do
      if day >= hi - 61 and (not first or day < first) then first = day end
    end
    lo = first
  end
  if b then hi = ceil(b / 86400) - 1 end
  if not lo or not hi or hi < lo then return { unit = "day", list = {} } end
  local unit, key, label_of, from_of
  if hi - lo + 1 <= 62 then
    unit = "day"
    key = function(day) return day end
    from_of = function(k) return k end
  elseif floor((hi + 3) / 7) - floor((lo + 3) / 7) + 1 <= 62 then
    unit = "week"
    key = function(day) return floor((day + 3) / 7) end
    from_of = function(k) return k * 7 - 3 end
  else
    unit = "month"
    key = function(day) local y, m = civil(day); return y * 12 + m - 1 end
    from_of = function(k)
      local y, m = floor(k / 12), k % 12 + 1
      return days_from_civil(y, m, 1)
    end
  end
  label_of = function(k)
    local from = from_of(k)
    if unit == "month" then return sub(day_text(from), 1, 7) end
    return day_text(from)
  end
  local klo, khi = key(lo), key(hi)
  local list, index = {}, {}
  for k = klo, khi do
    local e = { key = k, label = label_of(k), counts = { success = 0, partial = 0, failed = 0, other = 0 } }
    list[#list + 1] = e
    index[k] = e
  end
  for day, c in pairs(self.days) do
    local e = index[key(day)]
    if e then
      for _, st in ipairs(M.STATUSES) do e.counts[st] = e.counts[st] + c[st] end
    end
  end
  return { unit = unit, list = list }
end


--- Sessions outside the chart's range (before since / after before, or without a date).
function Report:outside_chart(b)
  local inside = 0
  for _, e in ipairs(b.list) do
    for _, st in ipairs(M.STATUSES) do inside = inside + e.counts[st] end
  end
  return self.sessions - inside
end


local SUMMARY_KEYS = { "title", "since", "before", "filters", "incomplete", "first_scanned", "last_scanned",
  "sessions", "success", "partial", "failed", "other", "success_rate", "targets", "failed_targets", "html",
  "definitions", "chart_unit", "chart" }

--- The figures of the report as a plain table (what `mde report --format json` prints).
function Report:summary()
  local defs = {}
  for _, d in ipairs(self:definitions()) do
    defs[#defs + 1] = fmt.ordered({
      id = d.id, name = d.name, sessions = d.sessions, success = d.counts.success,
      partial = d.counts.partial, failed = d.counts.failed, other = d.counts.other,
      success_rate = rate(d.counts.success, d.sessions), targets = d.targets,
      failed_targets = d.failed_targets, last_scanned = d.last_text, last_status = d.last_status,
    }, { "id", "name", "sessions", "success", "partial", "failed", "other", "success_rate", "targets",
         "failed_targets", "last_scanned", "last_status" })
  end
  local b = self:buckets()
  local days = {}
  for _, e in ipairs(b.list) do
    days[#days + 1] = fmt.ordered({ from = e.label, success = e.counts.success, partial = e.counts.partial,
      failed = e.counts.failed, other = e.counts.other }, { "from", "success", "partial", "failed", "other" })
  end
  return fmt.ordered({
    title = self.title, since = self.since, before = self.before, filters = self.filters,
    first_scanned = self.first_text, last_scanned = self.last_text,
    sessions = self.sessions, success = self.counts.success, partial = self.counts.partial,
    failed = self.counts.failed, other = self.counts.other,
    success_rate = rate(self.counts.success, self.sessions),
    targets = self.targets, failed_targets = self.failed_targets,
    definitions = defs, chart_unit = b.unit, chart = days,
    incomplete = self.incomplete,
  }, SUMMARY_KEYS)
end


-- "2024-06-20 to 2024-06-30 (UTC)": since (else the oldest session) to before (else the newest)
function Report:range_text()
  local function shown(v)
    if type(v) == "number" then return day_text(floor(v / 86400)) end
    return tostring(v)
  end
  local from = self.since and shown(self.since) or (self.first_text and sub(self.first_text, 1, 10))
  local to
  if self.before then
    to = shown(self.before) .. " (exclusive)"
  else
    to = self.last_text and sub(self.last_text, 1, 10)
  end
  if not from and not to then return "no sessions" end
  if not to then return "from " .. from .. " (UTC)" end
  if not from then return "until " .. to .. " (UTC)" end
  if from == to then return from .. " (UTC)" end
  return from .. " to " .. to .. " (UTC)"
end


--------------------------------------------------------------------------------------------
-- plain text

local function bar_text(d, width)
  if d.sessions == 0 then return "" end
  local cells = {}
  local used = 0
  local marks = { success = "#", partial = "+", failed = "x", other = "?" }
  for _, st in ipairs(M.STATUSES) do
    local n = floor(d.counts[st] / d.sessions * width + 0.5)
    if n > width - used then n = width - used end
    cells[#cells + 1] = rep(marks[st], n)
    used = used + n
  end
  return "[" .. concat(cells) .. rep(" ", width - used) .. "]"
end


--- A summary a newcomer can read, for a terminal or a mail (lines end in "\n").
-- opts: failed = rows of failed targets to list (default 10), ellipsis.
function Report:text(opts)
  opts = opts or {}
  local ell = opts.ellipsis or "..."
  local out = {}
  local function add(s) out[#out + 1] = s end
  local defs = self:definitions()
  add(format("%s: %s", self.title, self:range_text()))
  local names = {}
  for i, d in ipairs(defs) do
    if i > 4 then names[#names + 1] = format("and %d more", #defs - 4); break end
    names[#names + 1] = def_name(d)
  end
  add(fmt.clean(format("Scan definitions: %d (%s)", #defs, concat(names, ", "))))
  if self.filters then add(fmt.clean("Filters: " .. self.filters)) end
  if self.incomplete then add(fmt.clean("INCOMPLETE: " .. self.incomplete)) end
  add("")
  local c = self.counts
  local detail = format("%d succeeded, %d partially succeeded, %d failed", c.success, c.partial, c.failed)
  if c.other > 0 then detail = detail .. format(", %d other", c.other) end
  local lines = fmt.align({ "", "" }, {
    { "Sessions", format("%d  (%s)", self.sessions, detail) },
    { "Success rate", percent(rate(c.success, self.sessions)) .. "  (sessions whose status is Success)" },
    { "Targets", format("%d scanned, %d failed", self.targets, self.failed_targets) },
    { "Oldest session", self.first_text or "-" },
    { "Newest session", self.last_text or "-" },
  }, { header = false, max_last = 120 })
  for _, l in ipairs(lines) do add("  " .. l) end
  add("")
  add("Success rate by scan definition  (bar: # success, + partial, x failed)")
  local rows = {}
  for _, d in ipairs(defs) do
    rows[#rows + 1] = { def_name(d), tostring(d.sessions), tostring(d.counts.success),
      tostring(d.counts.partial), tostring(d.counts.failed), percent(rate(d.counts.success, d.sessions)),
      bar_text(d, 20) }
  end
  lines = fmt.align({ "Definition", "Sessions", "Success", "Partial", "Failed", "Rate", "Mix" }, rows,
    { right = { false, true, true, true, true, true }, max_width = 40, ellipsis = ell })
  for _, l in ipairs(lines) do add("  " .. l) end
  add("")
  local failed = self:failed_rows()
  local show = opts.failed or 10
  if self.failed_targets == 0 then
    add("No failed targets.")
  else
    add(format("Most recent failed targets (%d of %d)", min(show, #failed), self.failed_targets))
    rows = {}
    for i = 1, min(show, #failed) do
      local f = failed[i]
      local d = self.defs[lower(f.definition)]
      rows[#rows + 1] = { f.last:sub(1, 19), d and def_name(d) or f.definition, f.hostname, f.ip, f.status, f.error }
    end
    lines = fmt.align({ "Last scanned", "Definition", "Hostname", "IP", "Status", "Error" }, rows,
      { max_width = 28, max_last = 60, ellipsis = ell })
    for _, l in ipairs(lines) do add("  " .. l) end
  end
  return concat(out, "\n") .. "\n"
end


--------------------------------------------------------------------------------------------
-- HTML

local HTML_ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

--- Escape for HTML text and quoted attribute values (also drops control characters).
function M.escape(s)
  s = tostring(s)
  s = gsub(s, "[%z\1-\8\11\12\14-\31\127]", "\239\191\189")
  return (gsub(s, "[&<>\"']", HTML_ESC))
end
local esc = M.escape


-- 1, 2, 5 x 10^k step giving at most `n` ticks up to `top`
local function nice_step(top, n)
  if top <= 0 then return 1 end
  local raw = top / n
  local mag = 10 ^ floor(math.log(raw) / math.log(10))
  for _, m in ipairs{ 1, 2, 5, 10 } do
    if m * mag >= raw then return max(1, m * mag) end
  end
  return max(1, 10 * mag)
end


local function num(n)
  local s = format("%.1f", n)
  return (gsub(s, "%.0$", ""))
end


--- The chart of sessions per bucket by status, as inline SVG.
function Report:svg()
  local b = self:buckets()
  local list = b.list
  local W, H = 960, 330
  local L, R, T, B = 56, 16, 40, 78
  local PW, PH = W - L - R, H - T - B
  local top = 0
  for _, e in ipairs(list) do
    local s = 0
    for _, st in ipairs(M.STATUSES) do s = s + e.counts[st] end
    if s > top then top = s end
  end
  local step = nice_step(top, 5)
  local ymax = max(step, ceil(top / step) * step)
  local o = {}
  local function add(s) o[#o + 1] = s end
  local unit_word = b.unit == "day" and "day" or b.unit
  add(format('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" '
    .. 'aria-labelledby="chart-title" class="chart">', W, H, W, H))
  add(format('<title id="chart-title">Sessions per %s by status</title>', unit_word))
  -- legend
  local x = L
  for _, st in ipairs{ "success", "partial", "failed", "other" } do
    if st ~= "other" or self.counts.other > 0 then
      add(format('<rect x="%s" y="12" width="14" height="14" fill="%s"/>', num(x), STATUS_COLOR[st]))
      local label = format("%s (%d)", STATUS_LABEL[st], self.counts[st])
      add(format('<text x="%s" y="24" class="legend">%s</text>', num(x + 20), esc(label)))
      x = x + 30 + #label * 7.5
    end
  end
  -- grid and y axis
  for v = 0, ymax, step do
    local y = T + PH - v / ymax * PH
    add(format('<line x1="%d" x2="%d" y1="%s" y2="%s" class="grid"/>', L, L + PW, num(y), num(y)))
    add(format('<text x="%d" y="%s" class="tick" text-anchor="end">%s</text>', L - 6, num(y + 4), num(v)))
  end
  add(format('<text transform="translate(14 %s) rotate(-90)" class="axis" text-anchor="middle">Sessions</text>',
    num(T + PH / 2)))
  -- bars
  local n = #list
  if n == 0 then
    add(format('<text x="%s" y="%s" class="axis" text-anchor="middle">No sessions</text>', num(L + PW / 2),
      num(T + PH / 2)))
  end
  local slot = n > 0 and PW / n or PW
  local bw = max(1, slot * 0.72)
  local every = max(1, ceil(n / (PW / 64)))
  for i, e in ipairs(list) do
    local bx = L + (i - 1) * slot + (slot - bw) / 2
    local y = T + PH
    local total = 0
    for _, st in ipairs(M.STATUSES) do total = total + e.counts[st] end
    for _, st in ipairs(M.STATUSES) do
      local c = e.counts[st]
      if c > 0 then
        local h = c / ymax * PH
        y = y - h
        add(format('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s</title></rect>',
          num(bx), num(y), num(bw), num(h), STATUS_COLOR[st],
          esc(format("%s: %d %s of %d", e.label, c, STATUS_LABEL[st], total))))
      end
    end
    if (i - 1) % every == 0 then
      local lx, ly = bx + bw / 2, T + PH + 14
      local label = b.unit == "month" and e.label or sub(e.label, 6)
      add(format('<text transform="translate(%s %s) rotate(-40)" class="tick" text-anchor="end">%s</text>',
        num(lx + 4), num(ly), esc(label)))
    end
  end
  add(format('<line x1="%d" x2="%d" y1="%d" y2="%d" class="axisline"/>', L, L + PW, T + PH, T + PH))
  local first_year = list[1] and sub(list[1].label, 1, 4)
  local last_year = list[n] and sub(list[n].label, 1, 4)
  local years = first_year == last_year and (first_year or "") or ((first_year or "") .. "-" .. (last_year or ""))
  local xtitle = ({ day = "Day", week = "Week (starting Monday)", month = "Month" })[b.unit] .. ", UTC"
  if b.unit ~= "month" then xtitle = xtitle .. ", " .. years end
  add(format('<text x="%s" y="%d" class="axis" text-anchor="middle">%s</text>', num(L + PW / 2), H - 6, esc(xtitle)))
  add("</svg>")
  return concat(o, "\n"), b
end


local CSS = [[
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d2125; background: #f6f7f9; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 40px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; }
.sub { color: #55606b; margin: 0; }
.banner { background: #fdecea; border: 1px solid #c62828; color: #8e1b1b; padding: 10px 14px;
          border-radius: 6px; margin: 16px 0; font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 18px 0 6px; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 10px 16px; flex: 1 1 0;
        min-width: 110px; }
.card .v { font-size: 26px; font-weight: 650; display: block; }
.card .k { color: #55606b; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card.success .v { color: #2e7d32; } .card.failed .v { color: #c62828; } .card.partial .v { color: #b26a00; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #dde1e6; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #eceff2; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; font-size: 13px; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.err { overflow-wrap: anywhere; max-width: 360px; }
td.id, td.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; white-space: nowrap; }
td.id { font-size: 11px; }
td.nowrap { white-space: nowrap; }
.bar { display: flex; width: 180px; height: 12px; background: #eceff2; border-radius: 3px; overflow: hidden; }
.bar span { display: block; height: 100%; }
.chart { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; width: 100%; height: auto; }
.chart .grid { stroke: #e3e7eb; } .chart .axisline { stroke: #6b7680; }
.chart .tick { font-size: 11px; fill: #55606b; } .chart .axis { font-size: 12px; fill: #33404c; }
.chart .legend { font-size: 12px; fill: #1d2125; }
.note { color: #55606b; font-size: 13px; }
details { margin-top: 8px; } summary { cursor: pointer; color: #33404c; }
footer { color: #6b7680; font-size: 12px; margin-top: 32px; }
]]


local function td(v, class)
  if class then return format('<td class="%s">%s</td>', class, esc(v)) end
  return "<td>" .. esc(v) .. "</td>"
end

local function stacked_bar(counts, total)
  if total == 0 then return '<div class="bar" title="no sessions"></div>' end
  local spans = {}
  for _, st in ipairs(M.STATUSES) do
    local c = counts[st]
    if c > 0 then
      spans[#spans + 1] = format('<span style="width:%s%%;background:%s" title="%s"></span>',
        num(c / total * 100), STATUS_COLOR[st], esc(format("%d %s", c, STATUS_LABEL[st])))
    end
  end
  return '<div class="bar">' .. concat(spans) .. "</div>"
end


--- The whole report as one HTML document (UTF-8).
function Report:html()
  local o = {}
  local function add(s) o[#o + 1] = s end
  local defs = self:definitions()
  local c = self.counts
  local range = self:range_text()
  add("<!DOCTYPE html>")
  add('<html lang="en">')
  add("<head>")
  add('<meta charset="utf-8">')
  add([[<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; ]]
    .. [[img-src data:; base-uri 'none'; form-action 'none'">]])
  add('<meta name="viewport" content="width=device-width, initial-scale=1">')
  add('<meta name="generator" content="lua-mde">')
  add("<title>" .. esc(self.title .. " - " .. range) .. "</title>")
  add("<style>" .. CSS .. "</style>")
  add("</head>")
  add("<body><main>")
  add('<h1 id="title">' .. esc(self.title) .. "</h1>")
  local names = {}
  for _, d in ipairs(defs) do names[#names + 1] = def_name(d) end
  add(format('<p class="sub" id="range">%s &middot; %d scan definition%s: %s</p>', esc(range), #defs,
    #defs == 1 and "" or "s", esc(concat(names, ", "))))
  if self.filters then add('<p class="sub">Filters: ' .. esc(self.filters) .. "</p>") end
  add('<p class="sub">Generated ' .. esc(self.generated) .. "</p>")
  if self.incomplete then
    add('<div class="banner" id="incomplete">Incomplete report: ' .. esc(self.incomplete) .. "</div>")
  end

  -- totals
  add('<section class="cards" aria-label="Totals">')
  local cards = {
    { "sessions", "Sessions", tostring(self.sessions), "" },
    { "success", "Succeeded", tostring(c.success), "success" },
    { "partial", "Partially succeeded", tostring(c.partial), "partial" },
    { "failed", "Failed", tostring(c.failed), "failed" },
    { "rate", "Success rate", percent(rate(c.success, self.sessions)), "" },
    { "targets", "Targets scanned", tostring(self.targets), "" },
    { "failed-targets", "Failed targets", tostring(self.failed_targets), "failed" },
  }
  if c.other > 0 then table.insert(cards, 5, { "other", "Other status", tostring(c.other), "" }) end
  for _, k in ipairs(cards) do
    add(format('<div class="card %s"><span class="v" id="total-%s">%s</span><span class="k">%s</span></div>',
      k[4], k[1], esc(k[3]), esc(k[2])))
  end
  add("</section>")

  -- per definition
  add("<h2>Success rate by scan definition</h2>")
  add('<table id="definitions"><thead><tr><th>Scan definition</th><th>Type</th><th class="n">Sessions</th>'
    .. '<th class="n">Success</th><th class="n">Partial</th><th class="n">Failed</th><th class="n">Rate</th>'
    .. "<th>Mix</th><th>Last session</th><th class=\"n\">Failed targets</th></tr></thead><tbody>")
  for _, d in ipairs(defs) do
    local name_cell = '<td><span class="name">' .. esc(def_name(d)) .. "</span>"
    if d.name then name_cell = name_cell .. '<br><span class="note mono">' .. esc(d.id) .. "</span>" end
    if d.active == false then name_cell = name_cell .. ' <span class="note">(inactive)</span>' end
    add("<tr>" .. name_cell .. "</td>" .. td(d.scan_type or "") .. td(tostring(d.sessions), "n")
      .. td(tostring(d.counts.success), "n") .. td(tostring(d.counts.partial), "n")
      .. td(tostring(d.counts.failed), "n") .. td(percent(rate(d.counts.success, d.sessions)), "n")
      .. "<td>" .. stacked_bar(d.counts, d.sessions) .. "</td>"
      .. td(d.last_text and (sub(d.last_text, 1, 16):gsub("T", " ") .. " " .. text(d.last_status)) or "-")
      .. td(tostring(d.failed_targets), "n") .. "</tr>")
  end
  add("</tbody></table>")

  -- chart
  local svg, b = self:svg()
  add(format("<h2>Sessions per %s by status</h2>", b.unit))
  add(svg)
  local outside = self:outside_chart(b)
  if outside > 0 then
    add(format('<p class="note">%d session%s outside the chart\'s range (or without a date) %s counted in the '
      .. "totals above; the oldest was scanned on %s.</p>", outside, outside == 1 and "" or "s",
      outside == 1 and "is" or "are", esc(self.first_text and sub(self.first_text, 1, 10) or "-")))
  end
  add("<details><summary>Chart data</summary>")
  add(format('<table id="chart-data"><thead><tr><th>%s</th><th class="n">Success</th><th class="n">Partial</th>'
    .. '<th class="n">Failed</th><th class="n">Other</th></tr></thead><tbody>',
    b.unit == "day" and "Day" or (b.unit == "week" and "Week of" or "Month")))
  for _, e in ipairs(b.list) do
    add("<tr>" .. td(e.label) .. td(tostring(e.counts.success), "n") .. td(tostring(e.counts.partial), "n")
      .. td(tostring(e.counts.failed), "n") .. td(tostring(e.counts.other), "n") .. "</tr>")
  end
  add("</tbody></table></details>")

  -- failed targets
  local failed = self:failed_rows()
  add(format("<h2>Failed targets (%d)</h2>", self.failed_targets))
  if self.failed_targets == 0 then
    add('<p class="note" id="no-failed">No failed targets.</p>')
  else
    if #failed < self.failed_targets then
      add(format('<p class="note">The %d most recent of %d failed targets. All of them: '
        .. "<code>mde sessions ... --failed-targets --targets --format csv</code>.</p>", #failed, self.failed_targets))
    end
    add('<table id="failed"><thead><tr><th>Session</th><th>Last scanned (UTC)</th><th>Scan definition</th>'
      .. "<th>IP</th><th>Hostname</th><th>Status</th><th>Duration</th><th>Error message</th></tr></thead><tbody>")
    for _, f in ipairs(failed) do
      local d = self.defs[lower(f.definition)]
      add("<tr>" .. td(f.session, "id") .. td((sub(f.last, 1, 19):gsub("T", " ")), "nowrap")
        .. td(d and def_name(d) or f.definition) .. td(f.ip, "mono") .. td(f.hostname, "nowrap") .. td(f.status)
        .. td(f.duration, "nowrap") .. td(f.error, "err") .. "</tr>")
    end
    add("</tbody></table>")
  end
  add("<footer>Generated by lua-mde from the Microsoft Defender for Endpoint authenticated-scan API. "
    .. "Scan credentials are never included. Times are UTC.</footer>")
  add("</main></body></html>")
  return concat(o, "\n") .. "\n"
end


return M
