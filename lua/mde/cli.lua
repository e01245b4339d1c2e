--- The `mde` command-line tool (bin/mde is a thin launcher around `cli.main`).
--
-- syntax: local code = require("mde.cli").main(arg [, env])
--
-- `env` replaces the process's surroundings (for tests): getenv, stdout, stderr, stdin,
-- isatty(fd) -> boolean, now() -> seconds. Returns the exit code (see EXIT) instead of exiting.
-- Uses only the public API of lua-mde: mde.new, the client's calls and iterators, mde.filter,
-- mde.redact, mde.errors, plus mde.format and mde.report.

local type, tostring, tonumber, pairs, ipairs, select = type, tostring, tonumber, pairs, ipairs, select
local concat, sort = table.concat, table.sort
local floor, ceil, min = math.floor, math.ceil, math.min
local format, rep = string.format, string.rep

local M = {}

M.VERSION = "0.1.0"

--- Exit codes.
M.EXIT = { ok = 0, internal = 1, usage = 2, auth = 3, api = 4, partial = 5 }
local EXIT = M.EXIT


--------------------------------------------------------------------------------------------
-- usage errors

local Usage = {}
Usage.__index = Usage
Usage.__tostring = function(e) return "mde: " .. e.message end

local function usage(fmt, ...)
  local msg = select("#", ...) > 0 and format(fmt, ...) or fmt
  error(setmetatable({ message = msg }, Usage), 0)
end


--------------------------------------------------------------------------------------------
-- options

-- name -> { arg = metavar or nil, short = letter, many = repeatable, help = text }
local OPTIONS = {
  help = { short = "h", help = "show help (also: mde help COMMAND)" },
  version = { help = "print the version" },
  -- credentials and connection
  ["tenant-id"] = { arg = "ID", help = "Entra ID tenant (MDE_TENANT_ID)" },
  ["client-id"] = { arg = "ID", help = "application (client) id (MDE_CLIENT_ID)" },
  ["client-secret"] = { arg = "SECRET", help = "client secret (MDE_CLIENT_SECRET; warned about on the command line)" },
  ["cert-file"] = { arg = "FILE", help = "certificate (PEM) for the client-assertion flow (MDE_CERT_FILE)" },
  ["key-file"] = { arg = "FILE", help = "private key (PEM) of that certificate (MDE_KEY_FILE)" },
  ["key-passphrase"] = { arg = "PASS", help = "passphrase of an encrypted key (MDE_KEY_PASSPHRASE; warned about)" },
  token = { arg = "TOKEN", help = "a ready bearer token (MDE_TOKEN; warned about on the command line)" },
  cloud = { arg = "NAME", help = "commercial (default), gcc, gcc-high, dod (MDE_CLOUD)" },
  region = { arg = "NAME", help = "us, eu, uk, au, swa, ina: regional API host (MDE_REGION)" },
  ["base-url"] = { arg = "URL", help = "API base URL, overriding cloud/region (MDE_BASE_URL)" },
  authority = { arg = "URL", help = "login service base URL (MDE_AUTHORITY)" },
  ["ca-file"] = { arg = "FILE", help = "CA bundle to trust (MDE_CA_FILE)" },
  insecure = { help = "do not verify TLS certificates (warned about; never in production)" },
  proxy = { arg = "URL", help = "HTTP(S) proxy" },
  config = { arg = "FILE", help = "config file of key = value lines (MDE_CONFIG)" },
  ["rate-limit"] = { arg = "N/SECONDS", many = true,
                     help = "client-side pacing window, repeatable (default 100/60 and 1500/3600; 'off')" },
  retries = { arg = "N", help = "retries of a failed request (429, 5xx, timeouts); default 3" },
  timeout = { arg = "SECONDS", help = "timeout of one HTTP attempt; default 30" },
  ["page-size"] = { arg = "N", help = "records per page ($top, 1-4096); default 4096" },
  ["batch-size"] = { arg = "N", help = "IDs per request; default 50" },
  -- output
  format = { arg = "FMT", short = "f",
             help = "table, csv, json or ndjson (default: table on a terminal, else ndjson)" },
  output = { arg = "FILE", short = "o", help = "write to FILE (atomically: a temp file renamed when complete)" },
  columns = { arg = "A,B,C", short = "c", help = "columns, as the API names them (dotted paths into objects)" },
  targets = { help = "one row per scanned target (adds Target.Ip, Target.Hostname, ...)" },
  ["no-header"] = { help = "no header row (table, CSV)" },
  ["csv-raw"] = { help = "do not prefix CSV cells starting with = + - @ (formula guard)" },
  quiet = { short = "q", help = "no progress, notes or summary (warnings and errors still go to stderr)" },
  progress = { help = "show progress on stderr even when it is not a terminal" },
  verbose = { short = "v", help = "log every request, retry, wait and token event to stderr (redacted)" },
  ["ids-file"] = { arg = "FILE", many = true, help = "read IDs from FILE ('-': standard input), one per line" },
  -- listing
  top = { arg = "N", help = "one page of at most N records ($top)" },
  skip = { arg = "N", help = "skip N records ($skip), with --top" },
  all = { help = "every page (the default)" },
  -- filters
  status = { arg = "STATUS", many = true, help = "Success, Failed, 'Partial Success' (repeatable, comma-separated)" },
  since = { arg = "TIME", help = "sessions scanned at or after TIME (YYYY-MM-DD or ISO 8601, UTC)" },
  before = { arg = "TIME", help = "sessions scanned before TIME" },
  target = { arg = "CIDR", many = true, help = "sessions with a target in this IP or CIDR block (repeatable)" },
  hostname = { arg = "GLOB", many = true, help = "sessions with a target whose host name matches (*, ?, [a-z])" },
  ["failed-targets"] = { help = "sessions where at least one target did not succeed" },
  -- report
  html = { arg = "FILE", help = "write the HTML report to FILE" },
  title = { arg = "TEXT", help = "title of the report" },
  ["max-failed"] = { arg = "N", help = "failed targets listed in the HTML report (default 1000)" },
}

local SHORT = {}
for name, o in pairs(OPTIONS) do if o.short then SHORT[o.short] = name end end

local CONNECTION = { "tenant-id", "client-id", "client-secret", "cert-file", "key-file", "key-passphrase",
  "token", "cloud", "region", "base-url", "authority", "ca-file", "insecure", "proxy", "config",
  "rate-limit", "retries", "timeout", "page-size", "batch-size" }
local COMMON = { "help", "quiet", "progress", "verbose" }
local OUTPUT = { "format", "output", "columns", "no-header", "csv-raw" }
local FILTERS = { "status", "since", "before", "target", "hostname", "failed-targets" }
local LISTING = { "top", "skip", "all" }


local function set_of(...)
  local s = {}
  for i = 1, select("#", ...) do
    for _, n in ipairs((select(i, ...))) do s[n] = true end
  end
  return s
end


--------------------------------------------------------------------------------------------
-- commands (help text and allowed options; the code is further down)

local COMMANDS = {
  history = {
    kind = "session", ids = "SESSION_ID",
    summary = "scan history of sessions",
    usage = "mde history SESSION_ID... [options]",
    text = "The scan history of the given sessions (POST .../GetScanHistoryBySessionId), sent in\n"
      .. "batches of --batch-size IDs. Session IDs not found are reported on stderr.",
    examples = {
      "mde history 01decc497f4b4ec49a5fc4e12597f8c8",
      "mde history 01decc497f4b4ec49a5fc4e12597f8c8 --targets --format table",
      "mde history --ids-file sessions.txt --format csv -o history.csv",
    },
    opts = set_of(COMMON, CONNECTION, OUTPUT, { "targets", "ids-file" }),
  },
  ["definition-history"] = {
    kind = "session", ids = "DEF_ID",
    summary = "scan history of scan definitions (every page, or one with --top/--skip)",
    usage = "mde definition-history [DEF_ID...] [--top N [--skip N] | --all] [options]",
    text = "The sessions of the given scan definitions, newest first (POST\n"
      .. ".../GetScanHistoryByScanDefinitionId). Every page by default (streamed); --top/--skip ask\n"
      .. "for one page. Without IDs: every scan definition.",
    examples = {
      "mde definition-history 4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae",
      "mde definition-history 4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae --top 10",
      "mde definition-history --format ndjson > sessions.ndjson",
    },
    opts = set_of(COMMON, CONNECTION, OUTPUT, LISTING, { "targets", "ids-file" }),
  },
  sessions = {
    kind = "session", ids = "DEF_ID",
    summary = "sessions of scan definitions, through filters",
    usage = "mde sessions [DEF_ID...] [--status S] [--since T] [--before T] [--target CIDR] "
      .. "[--hostname GLOB] [--failed-targets] [options]",
    text = "Every session of the given scan definitions (all definitions when none are given)\n"
      .. "that passes the filters, streamed page by page. Filters combine with AND; a repeated\n"
      .. "filter means any of. Times are UTC.",
    examples = {
      "mde sessions --status Failed --since 2024-06-01",
      "mde sessions 4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae --failed-targets --targets -f table",
      "mde sessions --target 10.0.0.0/8 --hostname 'SRV-*' --format csv -o srv.csv",
      "mde sessions --status 'Partial Success' --status Failed --columns SessionIds,LastScanned",
    },
    opts = set_of(COMMON, CONNECTION, OUTPUT, FILTERS, { "targets", "ids-file" }),
  },
  definitions = {
    kind = "definition",
    summary = "scan definitions (credentials redacted)",
    usage = "mde definitions [--top N [--skip N]] [options]",
    text = "Every scan definition. Scan credentials (passwords, community strings, key-vault\n"
      .. "secret names) are shown as <redacted> in every format.",
    examples = {
      "mde definitions",
      "mde definitions --columns id --format csv --no-header    # the IDs, one per line",
      "mde definitions --format json -o definitions.json",
    },
    opts = set_of(COMMON, CONNECTION, OUTPUT, LISTING),
  },
  definition = {
    kind = "definition", ids = "DEF_ID", vertical = true,
    summary = "one or more scan definitions by ID",
    usage = "mde definition DEF_ID... [options]",
    text = "The given scan definitions (credentials redacted). One definition is shown as a list of\n"
      .. "fields in table format.",
    examples = { "mde definition 4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae" },
    opts = set_of(COMMON, CONNECTION, OUTPUT, { "ids-file" }),
  },
  agents = {
    kind = "agent",
    summary = "scan agents",
    usage = "mde agents [--top N [--skip N]] [options]",
    text = "Every scan agent (the devices that run authenticated scans).",
    examples = { "mde agents", "mde agents --format csv -o agents.csv" },
    opts = set_of(COMMON, CONNECTION, OUTPUT, LISTING),
  },
  agent = {
    kind = "agent", ids = "AGENT_ID", vertical = true,
    summary = "one or more scan agents by ID",
    usage = "mde agent AGENT_ID... [options]",
    text = "The given scan agents.",
    examples = { "mde agent 0d9f5a2e-8c41-4b7a-9e36-5f2a1c7d8e01" },
    opts = set_of(COMMON, CONNECTION, OUTPUT, { "ids-file" }),
  },
  report = {
    kind = "session", ids = "DEF_ID",
    summary = "HTML report and readable summary of scan definitions",
    usage = "mde report [DEF_ID...] [--html FILE] [filters] [--title TEXT] [options]",
    text = "Totals, success rate per scan definition, sessions per day by status and the failed\n"
      .. "targets of the given scan definitions (all of them when none are given), through the\n"
      .. "same filters as `mde sessions`. --html writes one self-contained HTML file (no script,\n"
      .. "no external resource). The summary goes to stdout (--format json: the figures as JSON)\n"
      .. "unless --quiet. If a page fails midway, what was gathered is written to FILE.partial\n"
      .. "with an 'Incomplete' banner and the exit code is 5.",
    examples = {
      "mde report --html report.html",
      "mde report --since 2024-06-01 --html june.html",
      "mde report 4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae --status Failed --html failed.html -q",
      "mde report --since \"$(date -u -d '7 days ago' +%F)\" --format json | jq .success_rate",
    },
    opts = set_of(COMMON, CONNECTION, FILTERS, { "format", "output", "ids-file", "html", "title", "max-failed" }),
  },
}

local COMMAND_ORDER = { "history", "definition-history", "sessions", "definitions", "definition", "agents",
                        "agent", "report" }


--------------------------------------------------------------------------------------------
-- help

local EXIT_TEXT = [[
Exit codes:
  0  success
  1  unexpected internal error
  2  usage error (bad command, option or value; bad credentials options)
  3  authentication failed (token refused or not obtained, 401/403)
  4  API or transport error (HTTP error, timeout, TLS, network, invalid JSON)
  5  partial results: some output was written, then an error stopped the run
     (with --output/--html the file is left as FILE.partial, never as FILE)]]

local ENV_TEXT = [[
Configuration (flags > environment > config file):
  MDE_TENANT_ID MDE_CLIENT_ID MDE_CLIENT_SECRET     client-credentials flow
  MDE_CERT_FILE MDE_KEY_FILE MDE_KEY_PASSPHRASE     certificate (signed client assertion) flow
  MDE_TOKEN                                         a ready bearer token
  MDE_CLOUD MDE_REGION MDE_BASE_URL MDE_AUTHORITY MDE_CA_FILE
  MDE_CONFIG    config file: `key = value` lines, # comments; keys are the long option
                names (tenant_id or tenant-id, client_secret, rate_limit = 100/60, 1500/3600, ...).
                Keep it private (chmod 600): mde warns when a file holding a secret is readable
                by group or others.
  Secrets given as flags are visible in ps and shell history: mde warns; prefer the environment.]]

local function option_line(name)
  local o = OPTIONS[name]
  local left = "  " .. (o.short and ("-" .. o.short .. ", ") or "    ") .. "--" .. name
    .. (o.arg and (" " .. o.arg) or "")
  if #left < 30 then left = left .. rep(" ", 30 - #left) else left = left .. "\n" .. rep(" ", 30) end
  return left .. o.help
end

local function options_text(names)
  local lines = {}
  for _, n in ipairs(names) do lines[#lines + 1] = option_line(n) end
  return concat(lines, "\n")
end

function M.help(command)
  if command and COMMANDS[command] then
    local c = COMMANDS[command]
    local own = {}
    local common = set_of(COMMON, CONNECTION, OUTPUT)
    for name in pairs(c.opts) do if not common[name] then own[#own + 1] = name end end
    sort(own)
    local out = { "usage: " .. c.usage, "", c.text, "" }
    if #own > 0 then out[#out + 1] = "Options of this command:\n" .. options_text(own) .. "\n" end
    local has_output = c.opts.columns ~= nil
    if has_output then
      out[#out + 1] = "Output options:\n" .. options_text(OUTPUT) .. "\n"
      local fmt = require "mde.format"
      local set = fmt.COLUMNS[c.kind]
      out[#out + 1] = "Columns (table): " .. concat(set.table, ",")
      out[#out + 1] = "Columns (csv):   " .. concat(set.all, ",")
      if c.opts.targets then
        out[#out + 1] = "With --targets:  " .. concat(fmt.COLUMNS.target.table, ",")
      end
      out[#out + 1] = ""
    elseif c.opts.format then
      out[#out + 1] = "Output options:\n" .. options_text({ "format", "output" })
        .. "\n  (report: --format text (default) or json; --output writes the summary to a file)\n"
    end
    out[#out + 1] = "Examples:"
    for _, e in ipairs(c.examples) do out[#out + 1] = "  " .. e end
    out[#out + 1] = ""
    out[#out + 1] = "Credentials, connection and the other common options: see `mde help`."
    out[#out + 1] = "Exit codes: 0 ok, 2 usage, 3 auth, 4 API error, 5 partial results, 1 internal error."
    return concat(out, "\n") .. "\n"
  end
  local cmds = {}
  for _, n in ipairs(COMMAND_ORDER) do
    cmds[#cmds + 1] = ("  %-20s %s"):format(n, COMMANDS[n].summary)
  end
  return concat({
    "mde - Microsoft Defender for Endpoint authenticated scans, from the shell",
    "",
    "usage: mde COMMAND [IDS...] [options]        mde help COMMAND   for a command's options and examples",
    "",
    "Commands:",
    concat(cmds, "\n"),
    "  help [COMMAND]       this text, or a command's",
    "",
    "IDs are given as arguments, or read with --ids-file FILE (or '-' for standard input),",
    "one per line (blank lines and # comments ignored).",
    "",
    "Credentials and connection:",
    options_text(CONNECTION),
    "",
    "Output:",
    options_text(OUTPUT),
    options_text({ "targets", "ids-file", "quiet", "progress", "verbose" }),
    "",
    "Formats: table (aligned, for people; default when stdout is a terminal), csv (RFC 4180, CRLF,",
    "header row), json (one array), ndjson (one record per line, streamed; default otherwise).",
    "With --output FILE and no --format, the extension chooses (.csv .json .ndjson .jsonl .txt).",
    "JSON null prints as an empty cell in table/CSV. Scan credentials are redacted in every format.",
    "",
    ENV_TEXT,
    "",
    EXIT_TEXT,
    "",
    "Examples:",
    "  export MDE_TENANT_ID=... MDE_CLIENT_ID=... MDE_CLIENT_SECRET=...",
    "  mde definitions",
    "  mde sessions --status Failed --since 2024-06-01 --targets --format table",
    "  mde history 01decc497f4b4ec49a5fc4e12597f8c8",
    "  mde report --since 2024-06-01 --html report.html",
  }, "\n") .. "\n"
end


--------------------------------------------------------------------------------------------
-- argument parsing

--- Parse argv: returns { command =, ids = {...}, o = { option = value | list | true } }.
function M.parse(argv)
  local o, pos, command = {}, {}, nil
  local i, n = 1, #argv
  local only_pos = false
  local function set(name, value, shown)
    local spec = OPTIONS[name]
    if not spec then usage("unknown option %s (see mde help)", shown) end
    if spec.arg then
      if value == nil then
        i = i + 1
        value = argv[i]
        if value == nil then usage("option %s needs a value (%s)", shown, spec.arg) end
      end
      if spec.many then
        local list = o[name] or {}
        list[#list + 1] = value
        o[name] = list
      else
        o[name] = value
      end
    else
      if value ~= nil then usage("option %s takes no value", shown) end
      o[name] = true
    end
  end
  while i <= n do
    local a = argv[i]
    if only_pos or a == "-" or a:sub(1, 1) ~= "-" then
      if command == nil then command = a else pos[#pos + 1] = a end
    elseif a == "--" then
      only_pos = true
    elseif a:sub(1, 2) == "--" then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      if not name then name = a:sub(3) end
      set(name, value, "--" .. name)
    else
      local letter, rest = a:sub(2, 2), a:sub(3)
      local name = SHORT[letter]
      if not name then usage("unknown option %s (see mde help)", a) end
      if OPTIONS[name].arg then
        set(name, rest ~= "" and rest or nil, "-" .. letter)
      else
        set(name, nil, "-" .. letter)
        -- -qv: more flags
        for k = 1, #rest do
          local nm = SHORT[rest:sub(k, k)]
          if not nm or OPTIONS[nm].arg then usage("unknown option -%s in %s", rest:sub(k, k), a) end
          set(nm, nil, "-" .. rest:sub(k, k))
        end
      end
    end
    i = i + 1
  end
  return { command = command, ids = pos, o = o }
end


--------------------------------------------------------------------------------------------
-- small helpers

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function exec_ok(cmd)
  local r1, _, r3 = os.execute(cmd)
  if type(r1) == "number" then return r1 == 0 end      -- Lua 5.1
  return r1 == true and (r3 == nil or r3 == 0)
end

local function default_isatty(fd)
  return exec_ok("test -t " .. fd)
end

local function whole(s, lo, hi, what)
  local v = tonumber(s)
  if not v or v % 1 ~= 0 or (lo and v < lo) or (hi and v > hi) then
    usage("%s must be a whole number%s, got '%s'", what,
      hi and format(" from %d to %d", lo, hi) or (lo and format(" >= %d", lo) or ""), tostring(s))
  end
  return floor(v)
end

local function positive(s, what)
  local v = tonumber(s)
  if not v or v <= 0 then usage("%s must be a positive number of seconds, got '%s'", what, tostring(s)) end
  return v
end

local function split_list(values)
  local out = {}
  for _, v in ipairs(values or {}) do
    for item in (v .. ","):gmatch("([^,]*),") do
      item = item:match("^%s*(.-)%s*$")
      if item ~= "" then out[#out + 1] = item end
    end
  end
  return out
end

local function one_or_list(list)
  if #list == 0 then return nil end
  if #list == 1 then return list[1] end
  return list
end

local function rate_limit(values, what)
  local windows = {}
  for _, v in ipairs(split_list(values)) do
    local lv = v:lower()
    if lv == "off" or lv == "none" or lv == "false" then return false end
    local n, s = v:match("^(%d+)%s*/%s*(%d+%.?%d*)$")
    if not n or tonumber(n) < 1 or tonumber(s) <= 0 then
      usage("%s: expected N/SECONDS (for example 100/60) or 'off', got '%s'", what, v)
    end
    windows[#windows + 1] = { limit = floor(tonumber(n)), window = tonumber(s) }
  end
  return windows
end


--------------------------------------------------------------------------------------------
-- configuration: flags > environment > file

-- setting -> { env = variable, secret = bool }
local SETTINGS = {
  tenant_id = { env = "MDE_TENANT_ID" }, client_id = { env = "MDE_CLIENT_ID" },
  client_secret = { env = "MDE_CLIENT_SECRET", secret = true },
  cert_file = { env = "MDE_CERT_FILE" }, key_file = { env = "MDE_KEY_FILE" },
  key_passphrase = { env = "MDE_KEY_PASSPHRASE", secret = true },
  token = { env = "MDE_TOKEN", secret = true },
  cloud = { env = "MDE_CLOUD" }, region = { env = "MDE_REGION" }, base_url = { env = "MDE_BASE_URL" },
  authority = { env = "MDE_AUTHORITY" }, ca_file = { env = "MDE_CA_FILE" },
  insecure = {}, proxy = {}, rate_limit = {}, retries = {}, timeout = {}, page_size = {}, batch_size = {},
}
M.SETTINGS = SETTINGS

local CREDENTIAL_KEYS = { "client_secret", "token", "cert_file", "key_file" }


--- Read a config file: `key = value` lines, # comments, optional quotes around the value.
-- Returns the table of settings and whether it holds a secret.
function M.read_config(path, text)
  local out, has_secret = {}, false
  local ln = 0
  for raw in (text .. "\n"):gmatch("([^\n]*)\n") do
    ln = ln + 1
    local line = raw:gsub("\r$", "")
    line = line:match("^%s*(.-)%s*$")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local k, v = line:match("^([%w_%-]+)%s*=%s*(.-)$")
      if not k then usage("%s:%d: expected `key = value`", path, ln) end
      k = k:lower():gsub("%-", "_")
      if not SETTINGS[k] then
        local names = {}
        for name in pairs(SETTINGS) do names[#names + 1] = name end
        sort(names)
        usage("%s:%d: unknown key '%s' (known: %s)", path, ln, k, concat(names, ", "))
      end
      local q = v:sub(1, 1)
      if (q == '"' or q == "'") and #v >= 2 and v:sub(-1) == q then
        v = v:sub(2, -2)
      else
        v = v:gsub("%s+#.*$", "")
      end
      out[k] = v
      if SETTINGS[k].secret and v ~= "" then has_secret = true end
    end
  end
  return out, has_secret
end


-- permission bits of a file (octal string like "644"), or nil
local function file_mode(path)
  local p = io.popen("stat -L -c %a " .. shell_quote(path) .. " 2>/dev/null || stat -L -f %Lp "
    .. shell_quote(path) .. " 2>/dev/null")
  if not p then return nil end
  local out = p:read("*a") or ""
  p:close()
  return out:match("^%s*([0-7]+)%s*$")
end
M.file_mode = file_mode


--------------------------------------------------------------------------------------------
-- progress on stderr

local Progress = {}
Progress.__index = Progress

local function new_progress(mode, stderr, now)
  return setmetatable({
    mode = mode,           -- false, "tty" (redrawn with \r) or "lines" (key=value lines)
    out = stderr, now = now,
    records = 0, pages = 0, retries = 0, waits = 0, waited = 0, batches = nil, batch = 0,
    state = "", width = 0, t0 = nil, drawn = false,
  }, Progress)
end

function Progress:event(ev)
  if not self.mode then return end
  local t = ev.time or self.now()
  self.t0 = self.t0 or t
  self.t = t
  local kind = ev.type
  if kind == "response" then
    local url = type(ev.url) == "string" and ev.url or ""
    if type(ev.status) == "number" and ev.status >= 200 and ev.status < 300 and not url:find("/oauth2/", 1, true) then
      self.pages = self.pages + 1
      self.state = ""
      self:draw(true)
    end
  elseif kind == "request" then
    self.state = "fetching"
    self:draw()
  elseif kind == "retry" then
    self.retries = self.retries + 1
    self.state = format("retry in %.1f s (%s)", tonumber(ev.wait) or 0, tostring(ev.reason or "?"))
    self:draw(true)
  elseif kind == "throttle" then
    self.waits = self.waits + 1
    self.waited = self.waited + (tonumber(ev.wait) or 0)
    self.state = format("waiting %.1f s (rate limit)", tonumber(ev.wait) or 0)
    self:draw(true)
  end
end

function Progress:record()
  self.records = self.records + 1
  if self.mode == "tty" and self.records % 500 == 0 then self:draw() end
end

function Progress:batch_done()
  self.batch = self.batch + 1
  self:draw(true)
end

function Progress:eta()
  if not (self.batches and self.batches > 1 and self.batch > 0 and self.t and self.t0) then return nil end
  local left = self.batches - self.batch
  if left <= 0 then return nil end
  return (self.t - self.t0) / self.batch * left
end

function Progress:draw(milestone)
  if self.mode == "lines" then
    if not milestone then return end
    self.out:write(format("mde: progress records=%d pages=%d retries=%d rate_limit_waits=%d waited=%.1f%s\n",
      self.records, self.pages, self.retries, self.waits, self.waited,
      self.batches and format(" batch=%d/%d", self.batch, self.batches) or ""))
    return
  elseif self.mode ~= "tty" then
    return
  end
  local parts = { format("%d records", self.records), format("%d page%s", self.pages, self.pages == 1 and "" or "s") }
  if self.batches and self.batches > 1 then
    parts[#parts + 1] = format("batch %d/%d", min(self.batch + 1, self.batches), self.batches)
  end
  if self.retries > 0 then parts[#parts + 1] = format("%d retr%s", self.retries, self.retries == 1 and "y" or "ies") end
  if self.waits > 0 then parts[#parts + 1] = format("waited %.1f s for the rate limit", self.waited) end
  local eta = self:eta()
  if eta then parts[#parts + 1] = format("ETA %ds", ceil(eta)) end
  if self.state ~= "" then parts[#parts + 1] = self.state end
  local line = "mde: " .. concat(parts, ", ")
  local w = #line
  self.out:write("\r", line, w < self.width and rep(" ", self.width - w) or "")
  self.width = w
  self.drawn = true
  if self.out.flush then self.out:flush() end
end

function Progress:clear()
  if self.mode == "tty" and self.drawn then
    self.out:write("\r", rep(" ", self.width), "\r")
    self.drawn, self.width = false, 0
    if self.out.flush then self.out:flush() end
  end
end


--------------------------------------------------------------------------------------------
-- output files: temp file in the same directory, renamed on success

local Sink = {}
Sink.__index = Sink

local function open_sink(path, stdout)
  if not path or path == "-" then
    return setmetatable({ f = stdout, std = true, path = "-" }, Sink)
  end
  local dir, base = path:match("^(.*)/([^/]*)$")
  if not dir then dir, base = ".", path end
  if base == "" then usage("--output/--html: '%s' is a directory", path) end
  if dir == "" then dir = "/" end
  local tmp = format("%s/.%s.tmp%d%06d", dir, base, os.time(), math.random(0, 999999))
  local f, err = io.open(tmp, "wb")
  if not f then usage("cannot write %s: %s", path, tostring(err)) end
  return setmetatable({ f = f, path = path, tmp = tmp }, Sink)
end

function Sink:write(...)
  local ok, err = self.f:write(...)
  if not ok then error(("cannot write %s: %s"):format(self.path, tostring(err)), 0) end
  return self
end

function Sink:flush()
  if self.f.flush then self.f:flush() end
end

--- Finish: "ok" renames the temp file to the target; "partial" to target.partial;
-- "discard" removes it. Returns the final path.
function Sink:close(how)
  if self.std then self.f:flush(); return "-" end
  local ok, err = self.f:close()
  if not ok and how ~= "discard" then
    os.remove(self.tmp)
    error(("cannot write %s: %s"):format(self.path, tostring(err)), 0)
  end
  if how == "discard" then os.remove(self.tmp); return nil end
  local final = how == "partial" and (self.path .. ".partial") or self.path
  local rok, rerr = os.rename(self.tmp, final)
  if not rok then
    os.remove(self.tmp)
    error(("cannot rename the output to %s: %s"):format(final, tostring(rerr)), 0)
  end
  return final
end


--------------------------------------------------------------------------------------------
-- the run

local Run = {}
Run.__index = Run


-- an informational line: only for a person (stderr is a terminal, or --progress/--verbose)
function Run:note(fmt, ...)
  if self.quiet or not self.chatty then return end
  self.progress:clear()
  self.stderr:write(require("mde.format").clean("mde: " .. format(fmt, ...)), "\n")
end

function Run:warn(fmt, ...)
  self.progress:clear()
  self.stderr:write(require("mde.format").clean("mde: warning: " .. format(fmt, ...)), "\n")
end


-- IDs from the arguments, --ids-file and '-' (stdin); in order, without duplicates
function Run:read_ids(positional)
  local ids, seen = {}, {}
  local stdin_done = false
  local function add(id)
    id = id:match("^%s*(.-)%s*$")
    if id ~= "" and not seen[id] then
      seen[id] = true
      ids[#ids + 1] = id
    end
  end
  local function from_text(text)
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
      line = line:gsub("#.*$", "")
      for id in line:gmatch("[^%s,]+") do add(id) end
    end
  end
  local function from_stdin()
    if stdin_done then return end
    stdin_done = true
    from_text(self.stdin:read("*a") or "")
  end
  for _, a in ipairs(positional) do
    if a == "-" then from_stdin() else add(a) end
  end
  for _, path in ipairs(self.o["ids-file"] or {}) do
    if path == "-" then
      from_stdin()
    else
      local f, err = io.open(path, "rb")
      if not f then usage("--ids-file: cannot read %s", tostring(err)) end
      from_text(f:read("*a") or "")
      f:close()
    end
  end
  return ids, (#positional > 0 or self.o["ids-file"] ~= nil)
end


-- the client options from flags, environment and config file
function Run:settings()
  local o, getenv = self.o, self.getenv
  local function env(name)
    local v = getenv(name)
    if v == "" then return nil end
    return v
  end
  local flags = {}
  for k in pairs(SETTINGS) do
    local v = o[k:gsub("_", "-")]
    if v ~= nil then flags[k] = v end
  end
  local envs = {}
  for k, s in pairs(SETTINGS) do
    if s.env then envs[k] = env(s.env) end
  end
  local file = {}
  local cfg = o.config or env("MDE_CONFIG")
  if cfg then
    local f, err = io.open(cfg, "rb")
    if not f then usage("config file: %s", tostring(err)) end
    local text = f:read("*a") or ""
    f:close()
    local has_secret
    file, has_secret = M.read_config(cfg, text)
    if has_secret then
      local mode = file_mode(cfg)
      local group, others = tonumber(mode and mode:sub(-2, -2) or ""), tonumber(mode and mode:sub(-1) or "")
      if group and others and (group % 8 >= 4 or others % 8 >= 4) then
        self:warn("%s holds a secret and is readable by group or others (mode %s); run: chmod 600 %s",
          cfg, mode, cfg)
      end
    end
  end

  -- secrets on the command line
  local SECRET_FLAGS = { { "client-secret", "MDE_CLIENT_SECRET" }, { "token", "MDE_TOKEN" },
                         { "key-passphrase", "MDE_KEY_PASSPHRASE" } }
  for _, sf in ipairs(SECRET_FLAGS) do
    if o[sf[1]] then
      self:warn("--%s on the command line is visible in ps/shell history; use %s or a config file", sf[1], sf[2])
    end
  end

  local layers = { { name = "command line", t = flags }, { name = "environment", t = envs },
                   { name = "config file", t = file } }
  local function pick(k)
    for _, l in ipairs(layers) do
      if l.t[k] ~= nil then return l.t[k] end
    end
    return nil
  end
  -- credentials come from the first layer that has any
  local cred_layer
  for _, l in ipairs(layers) do
    for _, k in ipairs(CREDENTIAL_KEYS) do
      if l.t[k] ~= nil then cred_layer = cred_layer or l end
    end
  end
  local s = {}
  for k in pairs(SETTINGS) do s[k] = pick(k) end
  if cred_layer then
    for _, k in ipairs(CREDENTIAL_KEYS) do s[k] = cred_layer.t[k] end
  else
    for _, k in ipairs(CREDENTIAL_KEYS) do s[k] = nil end
  end
  s.credential_source = cred_layer and cred_layer.name
  self.secrets = {}
  for k, def in pairs(SETTINGS) do
    -- literal secrets scrubbed from --verbose lines too (beyond the library's redaction by field
    -- name); very short ones would mangle every line they occur in
    if def.secret and type(s[k]) == "string" and #s[k] >= 4 then self.secrets[#self.secrets + 1] = s[k] end
  end
  return s
end


function Run:client_options(s)
  local c = {
    tenant_id = s.tenant_id, client_id = s.client_id, client_secret = s.client_secret, token = s.token,
    cloud = s.cloud, region = s.region, base_url = s.base_url, authority = s.authority,
    ca_file = s.ca_file, proxy = s.proxy,
  }
  if s.cert_file or s.key_file then
    if not (s.cert_file and s.key_file) then
      usage("the certificate flow needs both a certificate and a key (--cert-file and --key-file)")
    end
    c.certificate = { cert_file = s.cert_file, key_file = s.key_file, passphrase = s.key_passphrase }
  end
  local insecure = s.insecure
  if type(insecure) == "string" then
    local l = insecure:lower()
    if l == "true" or l == "1" or l == "yes" then insecure = true
    elseif l == "false" or l == "0" or l == "no" or l == "" then insecure = false
    else usage("insecure must be true or false, got '%s'", insecure) end
  end
  if insecure == true then
    c.insecure = true
    self:warn("--insecure: TLS certificates are not verified; the token and the data can be intercepted")
  end
  if s.retries then c.retries = whole(s.retries, 0, nil, "--retries") end
  if s.timeout then c.timeout = positive(s.timeout, "--timeout") end
  if s.page_size then c.page_size = whole(s.page_size, 1, 4096, "--page-size") end
  if s.batch_size then c.batch_size = whole(s.batch_size, 1, nil, "--batch-size") end
  if s.rate_limit then
    local values = type(s.rate_limit) == "table" and s.rate_limit or { s.rate_limit }
    c.rate_limit = rate_limit(values, "--rate-limit")
  end
  self.batch_size = c.batch_size or 50
  local mde = self.mde
  local redact = mde.redact
  c.logger = function(ev)
    self.progress:event(ev)
    if self.verbose then
      local safe = redact.event(ev, self.secrets)
      local keys = {}
      for k in pairs(safe) do if k ~= "type" and k ~= "time" then keys[#keys + 1] = k end end
      sort(keys)
      local parts = { "mde: [" .. tostring(safe.type) .. "]" }
      for _, k in ipairs(keys) do
        local v = safe[k]
        if type(v) == "table" then v = require("mde.format").json(v) end
        if type(v) == "number" and v % 1 ~= 0 then v = format("%.3f", v) end
        parts[#parts + 1] = k .. "=" .. tostring(v)
      end
      self.progress:clear()
      self.stderr:write(require("mde.format").clean(concat(parts, " ")), "\n")
    end
    if ev.type == "request" and self.writer then self.writer:flush() end
  end
  return c
end


function Run:criteria()
  local o = self.o
  local c, text = {}, {}
  local status = split_list(o.status)
  if #status > 0 then c.status = one_or_list(status); text[#text + 1] = "status " .. concat(status, " or ") end
  if o.since then c.since = o.since; text[#text + 1] = "since " .. o.since end
  if o.before then c.before = o.before; text[#text + 1] = "before " .. o.before end
  local targets = split_list(o.target)
  if #targets > 0 then c.target = one_or_list(targets); text[#text + 1] = "target in " .. concat(targets, " or ") end
  local hosts = split_list(o.hostname)
  if #hosts > 0 then c.hostname = one_or_list(hosts); text[#text + 1] = "hostname " .. concat(hosts, " or ") end
  if o["failed-targets"] then c.failed_targets = true; text[#text + 1] = "with failed targets" end
  local f, err = self.mde.filter(c)
  if not f then usage("%s", (tostring(err):gsub("^mde: invalid_argument: ", ""))) end
  local other = {}
  for _, t in ipairs(text) do
    if not t:find("^since ") and not t:find("^before ") then other[#other + 1] = t end
  end
  return f, c, (#other > 0 and concat(other, "; ") or nil)
end


-- batches of IDs
function Run:batches(ids)
  local out, size = {}, self.batch_size
  for i = 1, #ids, size do
    local b = {}
    for k = i, min(i + size - 1, #ids) do b[#b + 1] = ids[k] end
    out[#out + 1] = b
  end
  return out
end


-- raise an API error as the error object
local function check(v, err)
  if v == nil and err ~= nil then error(err, 0) end
  return v
end


function Run:emit(record)
  self.writer:add(record)
  self.progress:record()
end


function Run:all_definitions()
  return check(self.client:scan_definitions{ all = true })
end


function Run:definition_ids(ids, given)
  if #ids > 0 then return ids end
  if given then usage("no IDs were given (the ID file or input was empty)") end
  local list = {}
  for _, d in ipairs(self:all_definitions()) do
    if type(d) == "table" and type(d.id) == "string" then list[#list + 1] = d.id end
  end
  return list
end


-- command bodies ------------------------------------------------------------------------

local RUN = {}

function RUN.history(run, ids, given)
  if #ids == 0 then usage(given and "no session IDs were read" or "history needs at least one SESSION_ID") end
  local batches = run:batches(ids)
  run.progress.batches = #batches
  local found = {}
  for _, b in ipairs(batches) do
    local list = check(run.client:scan_history_by_session(b))
    for _, r in ipairs(list) do
      if type(r) == "table" and type(r.SessionIds) == "string" then found[r.SessionIds:lower()] = true end
      run:emit(r)
    end
    run.progress:batch_done()
  end
  local missing = {}
  for _, id in ipairs(ids) do
    if not found[id:lower()] then missing[#missing + 1] = id end
  end
  if #missing > 0 then
    local shown = {}
    for i = 1, min(5, #missing) do shown[i] = missing[i] end
    run:warn("%d of %d session ID%s returned nothing: %s%s", #missing, #ids, #ids == 1 and "" or "s",
      concat(shown, ", "), #missing > 5 and ", ..." or "")
  end
end


local function stream_sessions(run, ids, keep)
  local batches = run:batches(ids)
  run.progress.batches = #batches
  for _, b in ipairs(batches) do
    for r in run.client:each_session(b, keep) do run:emit(r) end
    run.progress:batch_done()
  end
end


RUN["definition-history"] = function(run, ids, given)
  ids = run:definition_ids(ids, given)
  local o = run.o
  if o.top or o.skip then
    if o.all then usage("--all pages through everything; it does not combine with --top or --skip") end
    local opts = { top = o.top and whole(o.top, 1, 4096, "--top"), skip = o.skip and whole(o.skip, 0, nil, "--skip") }
    local list = check(run.client:scan_history_by_definition(ids, opts))
    for _, r in ipairs(list) do run:emit(r) end
    return
  end
  if #ids == 0 then return end
  stream_sessions(run, ids, nil)
end


function RUN.sessions(run, ids, given)
  local keep = run:criteria()
  ids = run:definition_ids(ids, given)
  if #ids == 0 then return end
  stream_sessions(run, ids, keep)
end


local function listing(run, call)
  local o = run.o
  local opts = { all = true }
  if o.top or o.skip then
    if o.all then usage("--all pages through everything; it does not combine with --top or --skip") end
    opts = { top = o.top and whole(o.top, 1, 4096, "--top"), skip = o.skip and whole(o.skip, 0, nil, "--skip") }
  end
  for _, r in ipairs(check(run.client[call](run.client, opts))) do run:emit(r) end
end

function RUN.definitions(run) listing(run, "scan_definitions") end
function RUN.agents(run) listing(run, "scan_agents") end


local function by_id(run, ids, given, call, what)
  if #ids == 0 then usage(given and "no IDs were read" or "%s needs at least one ID", what) end
  for _, id in ipairs(ids) do run:emit(check(run.client[call](run.client, id))) end
end

function RUN.definition(run, ids, given) by_id(run, ids, given, "scan_definition", "definition") end
function RUN.agent(run, ids, given) by_id(run, ids, given, "scan_agent", "agent") end


function RUN.report(run, ids, given)
  local o = run.o
  local keep, criteria, filters = run:criteria()
  local report = require "mde.report"
  local fmt = require "mde.format"
  local out_fmt = o.format or "text"
  if out_fmt ~= "text" and out_fmt ~= "json" then usage("report: --format must be text or json, got '%s'", out_fmt) end
  local max_failed = o["max-failed"] and whole(o["max-failed"], 0, nil, "--max-failed") or 1000

  -- names of the definitions (a failure here is not fatal: IDs are shown instead)
  local all_defs, derr = run.client:scan_definitions{ all = true }
  if not all_defs then
    if #ids == 0 then error(derr, 0) end
    run:note("cannot list the scan definitions (%s); the report shows IDs instead of names", tostring(derr))
    all_defs = {}
  end
  local known = {}
  for _, d in ipairs(all_defs) do
    if type(d) == "table" and type(d.id) == "string" then known[d.id:lower()] = d end
  end
  if #ids == 0 then
    if given then usage("no IDs were read") end
    for _, d in ipairs(all_defs) do if type(d) == "table" and type(d.id) == "string" then ids[#ids + 1] = d.id end end
  end
  local defs = {}
  for i, id in ipairs(ids) do defs[i] = known[id:lower()] and run.mde.redact(known[id:lower()]) or id end

  local r = report.new{ definitions = defs, since = criteria.since, before = criteria.before,
    filters = filters, title = o.title, max_failed = max_failed }
  run.report = r
  local batches = run:batches(ids)
  run.progress.batches = #batches
  local ok, err = pcall(function()
    for _, b in ipairs(batches) do
      for rec in run.client:each_session(b, keep) do
        r:add(rec)               -- the report reads only non-secret fields of sessions
        run.progress:record()
      end
      run.progress:batch_done()
    end
  end)
  run.progress:clear()
  if not ok then
    if r.sessions == 0 then error(err, 0) end
    r.incomplete = ("stopped after %d sessions: %s"):format(r.sessions, tostring(err))
  end

  local html_path
  if o.html then
    local sink = open_sink(o.html, run.stdout)
    local wok, werr = pcall(function() sink:write(r:html()) end)
    if not wok then sink:close("discard"); error(werr, 0) end
    html_path = sink:close(ok and "ok" or "partial")
  end
  if not run.quiet or o.output or out_fmt == "json" then
    local sink = open_sink(o.output, run.stdout)
    if out_fmt == "json" then
      local s = r:summary()
      s.html = html_path
      sink:write(fmt.json(s), "\n")
    else
      sink:write(r:text{ ellipsis = run.ellipsis })
      if html_path then sink:write("\nHTML report: ", html_path, "\n") end
    end
    sink:close(ok and "ok" or "partial")
  end
  if not ok then
    run.partial_error = err
  end
end


--------------------------------------------------------------------------------------------
-- main

local function exit_code_of(err)
  if getmetatable(err) == Usage then return EXIT.usage end
  if type(err) == "table" and err.kind then
    if err.kind == "invalid_argument" then return EXIT.usage end
    if err.kind == "auth" then return EXIT.auth end
    return EXIT.api
  end
  return EXIT.internal
end


local function error_text(err)
  local s = tostring(err)
  if type(err) ~= "table" or not err.kind then
    if getmetatable(err) ~= Usage then s = "internal error: " .. s end
  end
  if s:sub(1, 5) ~= "mde: " then s = "mde: " .. s end
  return s
end


local EXT_FORMAT = { csv = "csv", json = "json", ndjson = "ndjson", jsonl = "ndjson", txt = "table" }


function M.main(argv, env)
  env = env or {}
  local stdout, stderr = env.stdout or io.stdout, env.stderr or io.stderr
  local getenv = env.getenv or os.getenv
  local isatty = env.isatty or default_isatty
  local now = env.now or os.time
  local fmtmod = require "mde.format"

  local run = setmetatable({ stdout = stdout, stderr = stderr, stdin = env.stdin or io.stdin, getenv = getenv,
    progress = new_progress(false, stderr, now), quiet = false }, Run)

  local function fail(err, partial)
    run.progress:clear()
    stderr:write(fmtmod.clean(error_text(err)), "\n")
    if run.verbose and type(err) == "string" and run.traceback then stderr:write(run.traceback, "\n") end
    if partial then return EXIT.partial end
    return exit_code_of(err)
  end

  local ok, args = pcall(M.parse, argv)
  if not ok then return fail(args) end
  local o = args.o
  run.o = o

  if o.version then stdout:write("mde (lua-mde) ", M.VERSION, "\n"); return EXIT.ok end
  local command = args.command
  if command == "help" then
    local topic = args.ids[1]
    if topic and not COMMANDS[topic] then
      return fail(setmetatable({ message = "unknown command '" .. topic .. "'" }, Usage))
    end
    stdout:write(M.help(topic))
    return EXIT.ok
  end
  if o.help then
    stdout:write(M.help(COMMANDS[command or ""] and command or nil))
    return EXIT.ok
  end
  if not command then
    stderr:write(M.help())
    return EXIT.usage
  end
  local cmd = COMMANDS[command]
  if not cmd then
    local names = {}
    for _, n in ipairs(COMMAND_ORDER) do names[#names + 1] = n end
    return fail(setmetatable({ message = ("unknown command '%s' (commands: %s; see mde help)"):format(
      command, concat(names, ", ")) }, Usage))
  end
  for name in pairs(o) do
    if not cmd.opts[name] then
      return fail(setmetatable({ message = ("option --%s does not apply to '%s' (see mde help %s)"):format(
        name, command, command) }, Usage))
    end
  end

  run.verbose = o.verbose and true or false
  run.quiet = o.quiet and true or false
  run.ellipsis = fmtmod.default_ellipsis(getenv)
  local progress_mode = false
  if o.progress then
    progress_mode = isatty(2) and "tty" or "lines"
  elseif not run.quiet and not run.verbose and isatty(2) then
    progress_mode = "tty"
  end
  run.progress = new_progress(progress_mode, stderr, now)
  run.chatty = progress_mode ~= false or run.verbose

  -- everything that can fail from here on
  local writer, sink
  local body_ok, body_err = xpcall(function()
    local mde = require "mde"
    run.mde = mde
    local settings = run:settings()
    local copts = run:client_options(settings)
    local client, cerr = mde.new(copts)
    if not client then
      local msg = tostring(cerr)
      if msg:find("no credentials", 1, true) then
        msg = msg .. "; set MDE_TENANT_ID, MDE_CLIENT_ID and MDE_CLIENT_SECRET (or MDE_TOKEN), or see mde help"
      elseif settings.credential_source then
        msg = msg .. " (credentials from the " .. settings.credential_source .. ")"
      end
      cerr.message = msg:gsub("^mde: invalid_argument: ", "")
      error(cerr, 0)
    end
    run.client = client

    local ids, given = {}, false
    if cmd.ids then ids, given = run:read_ids(args.ids)
    elseif #args.ids > 0 then usage("'%s' takes no IDs (got '%s')", command, args.ids[1]) end

    if command == "report" then
      return RUN.report(run, ids, given)
    end

    -- output
    local f = o.format
    if f == nil and o.output and o.output ~= "-" then f = EXT_FORMAT[(o.output:match("%.(%w+)$") or ""):lower()] end
    if f == nil then f = isatty(1) and "table" or "ndjson" end
    if f ~= "table" and f ~= "csv" and f ~= "json" and f ~= "ndjson" then
      usage("--format must be table, csv, json or ndjson, got '%s'", f)
    end
    local columns
    if o.columns then
      local cerr2
      columns, cerr2 = fmtmod.columns(o.columns, cmd.kind, o.targets)
      if not columns then usage("%s", cerr2) end
    end
    sink = open_sink(o.output, stdout)
    writer = fmtmod.writer(f, sink, {
      kind = cmd.kind, columns = columns, targets = o.targets, header = not o["no-header"],
      csv_guard = not o["csv-raw"], vertical = cmd.vertical and #ids == 1, footer = f == "table" and not run.quiet
        and not o.output,
      ellipsis = f == "table" and run.ellipsis or "...",
    })
    run.writer = writer
    RUN[command](run, ids, given)
  end, function(e)
    if type(e) == "string" then run.traceback = debug.traceback(e, 2) end
    return e
  end)

  run.progress:clear()
  if body_ok then
    if command == "report" then
      if run.partial_error then return fail(run.partial_error, true) end
      return EXIT.ok
    end
    local wok, werr = pcall(function()
      writer:finish()
      local final = sink:close("ok")
      for _, col in ipairs(writer:unmatched()) do
        run:warn("column '%s' matched no field in any record", col)
      end
      if final ~= "-" then
        run:note("wrote %d record%s to %s", writer.records, writer.records == 1 and "" or "s", final)
      end
    end)
    if not wok then return fail(werr) end
    return EXIT.ok
  end

  -- failure: partial output?
  local partial = writer and writer.records > 0
  if partial and writer.fmt == "table" then
    pcall(function()
      if writer.first then writer:add_rows(writer.first); writer.first = nil end
      if not writer.started and #writer.pending > 0 then writer:flush_table() end
    end)
  end
  if sink then
    local cok, final = pcall(function() return sink:close(partial and "partial" or "discard") end)
    if partial and cok and final and final ~= "-" then
      run:warn("the run failed after %d record%s; they are in %s", writer.records,
        writer.records == 1 and "" or "s", final)
    end
  end
  return fail(body_err, partial)
end


return M
