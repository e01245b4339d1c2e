-- The C core mde.core: handle life cycle, request checking, perform against the local HTTPS
-- server (real nginx, real TLS), JSON decoding with integers, transport failures as facts,
-- perform_all, and the libcrypto helpers. Run: lua5.4 /usr/bin/busted spec/core_spec.lua
local core = require "mde.core"
local server = require "spec.helpers.server"
local certs = require "spec.helpers.certs"

local HAS_INTEGERS = math.type ~= nil
local AGENTS = "/api/DeviceAuthenticatedScanAgents"
local HISTORY = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId"


--- Calls fn(...) and expects it to raise an error containing `text` (plain).
local function raises(text, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error containing: " .. text)
  err = tostring(err)
  assert.truthy(err:find(text, 1, true), "error was: " .. err)
  return err
end


local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end


-- runs cmd without a sanitizer runtime preloaded into this process (.ci/sanitize.sh)
local function shell(cmd)
  local p = assert(io.popen(certs.CLEAN_ENV .. "sh -c " .. certs.sh_quote(cmd)))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end


-- A throwaway HTTP/1.1 server for what nginx will not send: raw response bytes per path
-- (a header line past libcurl's limit, obsolete line folding, a Content-Length it never
-- keeps to). Loopback only; it exits by itself after `lifetime` seconds, and stop() ends it
-- by its pid before that.
local RAW_SERVER = [==[
import os, socket, sys, threading, time
CL = b"Connection: close\r\n"
R = {
  "/ok": b"HTTP/1.1 200 OK\r\n" + CL + b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
  "/bigline": b"HTTP/1.1 200 OK\r\n" + CL + b"X-Big: " + b"a" * 150000 + b"\r\nContent-Length: 2\r\n\r\nok",
  "/fold": b"HTTP/1.1 200 OK\r\n" + CL + b"X-A: one\r\n  two\r\nX-B:\r\n\tcont\r\nX-C: a\r\nX-C:\r\n  b\r\n"
           b"X-D:\r\nContent-Length: 2\r\n\r\nok",
  "/announce": b"HTTP/1.1 200 OK\r\n" + CL + b"Content-Type: application/json\r\n"
               b"Content-Length: 1073741824\r\n\r\n{}",
}
def handle(c):
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(65536)
            if not d:
                return
            data += d
        c.sendall(R.get(data.split(b" ")[1].decode(), b"HTTP/1.1 404 NF\r\n" + CL + b"Content-Length: 0\r\n\r\n"))
        c.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        c.close()
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
s.settimeout(0.2)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.settimeout(10)
    threading.Thread(target=handle, args=(c,), daemon=True).start()
]==]

local function start_raw_server(lifetime)
  local portfile = os.tmpname()
  os.remove(portfile)
  local p = assert(io.popen(certs.CLEAN_ENV .. "sh -c " .. certs.sh_quote(
    '/usr/bin/python3 -c "$1" "$2" "$3" >/dev/null 2>&1 & echo $!') .. " sh "
    .. certs.sh_quote(RAW_SERVER) .. " " .. certs.sh_quote(portfile) .. " " .. tostring(lifetime or 120)))
  local pid = assert(tonumber(p:read("*l")), "no pid")
  p:close()
  local port
  for _ = 1, 100 do
    local text = server.read_file(portfile)
    port = text and tonumber(text)
    if port then break end
    server.sleep(0.05)
  end
  os.remove(portfile)
  assert(port, "the raw server did not start")
  return {
    url = function(_, path) return "http://127.0.0.1:" .. port .. path end,
    stop = function() if server.alive(pid) then os.execute("kill " .. pid .. " 2>/dev/null") end end,
  }
end


-- Garbage whose finalizer calls fn(); until fn returns true it leaves another such object
-- behind, so one is always waiting for the end of the current GC cycle, which comes at some
-- allocation: possibly one in the middle of a call of mde.core.
local function finalizer_chain(fn)
  local function make()
    local function on_gc() if not fn() then make() end end
    if newproxy then                              -- 5.1, LuaJIT: only userdata have __gc
      getmetatable(newproxy(true)).__gc = on_gc
    else
      setmetatable({}, { __gc = on_gc })
    end
  end
  make()
end


-- runs fn with GC cycles ending often, then restores the collector
local function with_eager_gc(fn)
  local ok, err
  if _VERSION == "Lua 5.4" then
    -- generational, with a minor collection every 2 % of growth: cycles that cost little
    -- (valgrind), each running the finalizers of what died young
    local mode = collectgarbage("generational", 2, 100)
    ok, err = pcall(fn)
    collectgarbage(mode)
  else
    local pause = collectgarbage("setpause", 100)
    local stepmul = collectgarbage("setstepmul", 400)
    ok, err = pcall(fn)
    collectgarbage("setpause", pause)
    collectgarbage("setstepmul", stepmul)
  end
  collectgarbage()
  if not ok then error(err, 0) end
end


-- the process's peak virtual size in KiB (Linux), or nil
local function vm_peak_kb()
  local status = server.read_file("/proc/self/status")
  return status and tonumber(status:match("VmPeak:%s*(%d+)"))
end


-- A C program that loads mde.core in 8 Lua states on 8 threads at once, built with
-- ThreadSanitizer from src/ (so it needs no build of the module): luaopen_mde_core must not
-- touch memory shared by the states without the once-only initialisation's ordering.
local TSAN_HARNESS = [==[
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <lualib.h>
#include "mde.h"
static char want[512];
static int bad;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void *load(void *arg)
{
	int i;
	(void)arg;
	for (i = 0; i < 20; i++) {
		lua_State *L = luaL_newstate();
		luaL_openlibs(L);
		lua_pushcfunction(L, luaopen_mde_core);
		if (lua_pcall(L, 0, 1, 0) != LUA_OK || lua_getfield(L, -1, "curl_version") != LUA_TSTRING
		    || strcmp(lua_tostring(L, -1), want) != 0) {
			pthread_mutex_lock(&mu);
			bad++;
			pthread_mutex_unlock(&mu);
		}
		lua_close(L);
	}
	return NULL;
}
int main(void)
{
	pthread_t t[8];
	int i;
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	lua_pushcfunction(L, luaopen_mde_core);
	lua_call(L, 0, 1);
	lua_getfield(L, -1, "curl_version");
	snprintf(want, sizeof want, "%s", lua_tostring(L, -1));
	lua_close(L);
	for (i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, load, NULL);
	for (i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	printf("mismatches %d\n", bad);
	return bad != 0;
}
]==]


describe("mde.core", function()
  it("has a version, libcurl's version and the JSON null", function()
    assert.equal("0.1.0", core._VERSION)
    assert.truthy(core.curl_version:find("^libcurl/"))
    assert.equal(require("cjson").null, core.null)
  end)

  describe("handle", function()
    it("prints its state and nothing else", function()
      local h = core.new()
      assert.equal("mde.Handle (open)", tostring(h))
      h:close()
      assert.equal("mde.Handle (closed)", tostring(h))
    end)

    it("closes idempotently, then refuses to perform", function()
      local h = core.new()
      h:close()
      h:close()
      raises("attempt to use a closed mde.Handle", h.perform, h, { url = "https://127.0.0.1/" })
    end)

    it("is collected whether closed or not", function()
      local weak = setmetatable({}, { __mode = "v" })
      weak[1], weak[2] = core.new(), core.new()
      weak[2]:close()
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
      assert.is_nil(weak[2])
    end)

    if _VERSION == "Lua 5.4" then
      it("closes as a to-be-closed variable", function()
        local f = assert(load([[
          local core = ...
          local keep
          do
            local h <close> = core.new()
            keep = h
          end
          return tostring(keep)
        ]]))
        assert.equal("mde.Handle (closed)", f(core))
      end)
    end

    it("raises on methods called on something else", function()
      local h = core.new()
      raises("mde.Handle expected", h.perform, {}, { url = "x" })
      h:close()
    end)
  end)

  describe("request checking (misuse raises, nothing is sent)", function()
    local h
    before_each(function() h = core.new() end)
    after_each(function() h:close() end)

    local function bad(req, text)
      return raises(text, h.perform, h, req)
    end

    it("needs a table with a url", function()
      raises("table expected, got string", h.perform, h, "https://127.0.0.1/")
      bad({}, "field 'url' is required")
      bad({ url = "" }, "field 'url': must not be empty")
      bad({ url = "https://127.0.0.1/\0x" }, "field 'url': must not contain NUL")
    end)

    it("names an unknown field", function()
      bad({ url = "https://127.0.0.1/", timout = 5 }, "unknown field 'timout'")
      bad({ url = "https://127.0.0.1/", [1] = "x" }, "field names must be strings, got number")
    end)

    it("takes only the known methods", function()
      bad({ url = "https://127.0.0.1/", method = "get" }, "field 'method': invalid method 'get'")
      bad({ url = "https://127.0.0.1/", method = "HEAD" }, "invalid method 'HEAD'")
      bad({ url = "https://127.0.0.1/", method = "GET", body = "x" }, "field 'body': not allowed with GET")
    end)

    it("checks types and ranges", function()
      local u = "https://127.0.0.1/"
      bad({ url = u, timeout = "5" }, "field 'timeout': number expected, got string")
      bad({ url = u, timeout = 0 }, "field 'timeout': must be a positive number of seconds")
      bad({ url = u, connect_timeout = -1 }, "field 'connect_timeout': must be a positive")
      bad({ url = u, timeout = 0 / 0 }, "field 'timeout': must be a positive")
      bad({ url = u, timeout = math.huge }, "field 'timeout': must be a positive")
      bad({ url = u, insecure = 1 }, "field 'insecure': boolean expected, got number")
      bad({ url = u, decode = "no" }, "field 'decode': boolean expected, got string")
      bad({ url = u, max_body = -1 }, "field 'max_body'")
      bad({ url = u, max_body = 1.5 }, "field 'max_body': must be a whole number")
      bad({ url = u, body = {} }, "field 'body': string expected, got table")
      bad({ url = u, headers = "X-A: b" }, "field 'headers': table expected, got string")
      bad({ url = u, headers = { "X-A: b", 5 } }, "field 'headers': item 2: string expected, got number")
      bad({ url = u, ca_file = false }, "field 'ca_file': string expected, got boolean")
      bad({ url = u, lists = true }, "field 'lists': string expected, got boolean")
      bad({ url = u, lists = "" }, "field 'lists': must not be empty")
    end)

    it("refuses header injection", function()
      local u = "https://127.0.0.1/"
      bad({ url = u, headers = { "X-A: b\r\nX-Evil: 1" } }, "without CR, LF or NUL")
      bad({ url = u, headers = { "" } }, "item 1 must be a non-empty line")
      bad({ url = u, user_agent = "ua\r\nX-Evil: 1" }, "field 'user_agent': must not contain CR or LF")
    end)

    it("never echoes the bearer token", function()
      local u = "https://127.0.0.1/"
      local err = bad({ url = u, bearer = "SECRET-TOKEN\r\nX-Evil: 1" }, "field 'bearer'")
      assert.is_nil(err:find("SECRET", 1, true))
      bad({ url = u, bearer = "" }, "field 'bearer': must not be empty")
    end)

    it("leaves the handle usable after a misuse", function()
      bad({ url = "https://127.0.0.1/", nope = true }, "unknown field 'nope'")
      assert.equal("mde.Handle (open)", tostring(h))
    end)
  end)

  describe("sha256 and random_bytes", function()
    it("hashes to base64url", function()
      -- SHA-256("abc") = ba7816bf...; base64url without padding
      assert.equal("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0", core.sha256("abc"))
      assert.has.error(function() core.sha256(nil) end)
    end)

    it("gives random bytes of the length asked", function()
      local a, b = core.random_bytes(16), core.random_bytes(16)
      assert.equal(16, #a)
      assert.not_equal(a, b)
      assert.has.error(function() core.random_bytes(0) end)
      assert.has.error(function() core.random_bytes(257) end)
    end)
  end)

  describe("is_json", function()
    it("knows the JSON content types, with parameters and in any case", function()
      for _, ct in ipairs{ "application/json", "Application/JSON; charset=utf-8",
                           "application/json; odata.metadata=minimal", "application/problem+json" } do
        assert.is_true(core.is_json(ct), ct)
      end
      for _, ct in ipairs{ "text/plain", "text/html", "application/jsonp", "json", "", "+json" } do
        assert.is_false(core.is_json(ct), ct)
      end
    end)
  end)

  describe("as_lists", function()
    it("makes a field of every record a list: lists stay, an object is wrapped, anything else is empty", function()
      local obj = { Ip = "10.0.0.1" }
      local list = { { Ip = "10.0.0.2" }, { Ip = "10.0.0.3" } }
      local empty = {}
      local items = {
        { L = list }, { L = obj }, { L = empty }, {}, { L = core.null }, { L = "x" }, "not a record", { L = 5 },
      }
      assert.equal(items, core.as_lists(items, "L"))
      assert.equal(list, items[1].L)
      assert.same({ obj }, items[2].L)
      assert.equal(obj, items[2].L[1])
      assert.equal(empty, items[3].L)
      for i = 4, 6 do assert.same({}, items[i].L) end
      assert.equal("not a record", items[7])
      assert.same({}, items[8].L)
      assert.same({}, core.as_lists({}, "L"))
      assert.has_error(function() core.as_lists(nil, "L") end)
      assert.has_error(function() core.as_lists({}, 1) end)
    end)
  end)

  describe("decode with a list field", function()
    it("makes that field of every listing record a list, in a body's value or a body that is a list", function()
      local t = assert(core.decode('{"n":2,"value":[{"L":{"a":1}},{"L":[{"b":2}]},{"x":3},{"L":null},'
        .. '"s",5,{"L":{}}],"other":{"L":{"c":1}}}', "L"))
      assert.same({ { a = 1 } }, t.value[1].L)
      assert.same({ { b = 2 } }, t.value[2].L)
      assert.same({}, t.value[3].L)
      assert.same({}, t.value[4].L)
      assert.same({ "s", 5 }, { t.value[5], t.value[6] })
      assert.same({}, t.value[7].L)
      assert.same({ c = 1 }, t.other.L) -- (not a record of the listing: as it came)
      if HAS_INTEGERS then
        assert.equal("integer", math.type(t.n))
        assert.equal("integer", math.type(t.value[1].L[1].a))
        assert.equal("integer", math.type(t.value[3].x))
        assert.equal("integer", math.type(t.value[6]))
      end
      local list = assert(core.decode('[{"L":{"a":1}},{"y":1}]', "L"))
      assert.same({ { a = 1 } }, list[1].L)
      assert.same({}, list[2].L)
      assert.same({ L = { a = 1 } }, assert(core.decode('{"value":[{"L":{"a":1}}]}')).value[1])
      assert.equal(3, core.decode("3", "L"))
      local v, err = core.decode("{", "L")
      assert.is_nil(v)
      assert.equal("string", type(err))
    end)
  end)

  describe("decode", function()
    it("decodes JSON with integers where the number is whole", function()
      local v = core.decode('{"n":3,"f":3.5,"neg":-4,"z":0,"e":1e3,"big":1e300,"a":[1,2.25,[3]]}')
      assert.equal(3, v.n)
      assert.equal(3.5, v.f)
      assert.equal(1e300, v.big)
      assert.equal(1000, v.e)
      assert.equal(3, v.a[3][1])
      if HAS_INTEGERS then
        assert.equal("integer", math.type(v.n))
        assert.equal("integer", math.type(v.neg))
        assert.equal("integer", math.type(v.z))
        assert.equal("integer", math.type(v.e))
        assert.equal("integer", math.type(v.a[1]))
        assert.equal("integer", math.type(v.a[3][1]))
        assert.equal("float", math.type(v.f))
        assert.equal("float", math.type(v.a[2]))
        assert.equal("float", math.type(v.big))       -- beyond the integer range
        assert.equal("integer", math.type(core.decode("7")))
        assert.equal("integer", math.type(core.decode("-9223372036854775808")))
        assert.equal("float", math.type(core.decode("9223372036854775808")))
      end
    end)

    it("leaves the integer walk out when cjson makes integers itself", function()
      if not HAS_INTEGERS then return end
      -- a second mde.core of this state, over a cjson that makes an integer of "[1]" (what
      -- mde.core asks at load) and nothing else: mde.core trusts it, so "2" stays a float
      local path = assert(package.searchpath("mde.core", package.cpath))
      local open = assert(package.loadlib(path, "luaopen_mde_core"))
      local real = package.loaded.cjson
      package.loaded.cjson = { new = function()
        local j = real.new()
        return setmetatable({ decode = function(s)
          if s == "[1]" then return { 1 } end
          return j.decode(s)
        end }, { __index = j })
      end }
      local ok, err = pcall(function()
        local other = open()
        assert.equal("float", math.type(other.decode("[2]")[1]))
        assert.equal("float", math.type(other.decode("2")))
        -- the list field is still applied
        local page = other.decode('{"value":[{"L":{"a":1}},{"x":1}]}', "L")
        assert.same({ { a = 1 } }, page.value[1].L)
        assert.same({}, page.value[2].L)
      end)
      package.loaded.cjson = real
      open() -- (the state's decoder is the real cjson's again)
      assert(ok, err)
      assert.equal("integer", math.type(core.decode("[2]")[1]))
    end)

    it("keeps -0 a float, with its sign", function()
      local v = core.decode('{"a":-0,"b":-0.0,"c":[-0.0],"z":0}')
      assert.equal(-math.huge, 1 / v.a)
      assert.equal(-math.huge, 1 / v.b)
      assert.equal(-math.huge, 1 / v.c[1])
      assert.equal(-math.huge, 1 / core.decode("-0.0"))
      assert.equal(math.huge, 1 / v.z)
      if HAS_INTEGERS then
        assert.equal("float", math.type(v.a))
        assert.equal("float", math.type(v.c[1]))
        assert.equal("float", math.type(core.decode("-0")))
        assert.equal("integer", math.type(v.z))
      end
    end)

    it("keeps JSON null as core.null in objects and arrays", function()
      local v = core.decode('{"a":null,"b":[null,1,null]}')
      assert.equal(core.null, v.a)
      assert.equal(3, #v.b)
      assert.equal(core.null, v.b[1])
      assert.equal(core.null, v.b[3])
      assert.equal(core.null, core.decode("null"))
    end)

    it("returns nil and a message for invalid JSON", function()
      local v, err = core.decode('{"a":1,}')
      assert.is_nil(v)
      assert.equal("string", type(err))
      assert.is_nil((core.decode("")))
      assert.is_nil((core.decode("NaN")))                -- strict numbers
      assert.is_nil((core.decode("[0x10]")))
    end)

    it("bounds nesting", function()
      local ok_depth = string.rep("[", 900) .. string.rep("]", 900)
      assert.equal("table", type(core.decode(ok_depth)))
      local v, err = core.decode(string.rep("[", 1100) .. string.rep("]", 1100))
      assert.is_nil(v)
      assert.truthy(err:find("nest", 1, true) or err:find("depth", 1, true), err)
    end)

    it("raises on a non-string", function()
      raises("string expected", core.decode, 5)
    end)
  end)

  describe("perform against the local server", function()
    local s, token, h

    setup(function()
      s = server.start{}
      h = core.new()
    end)
    teardown(function()
      h:close()
      if s then s:stop() end
    end)
    before_each(function()
      s:reset()                   -- also forgets the tokens it issued
      token = s:issue_token()
    end)

    -- a request for the agents route, answered by an injected fault when `fault` is given
    local function get(fault, extra)
      if fault then
        fault.route = fault.route or "agents"
        s:control{ faults = { fault } }
      end
      local req = { url = s.base_url .. AGENTS, ca_file = s.ca_file, bearer = token, timeout = 10 }
      for k, v in pairs(extra or {}) do req[k] = v end
      return h:perform(req)
    end

    local function json(body, extra)
      local f = { status = 200, body = body, content_type = "application/json; charset=utf-8" }
      for k, v in pairs(extra or {}) do f[k] = v end
      return f
    end

    it("decodes a JSON body: integers, floats, nesting, null", function()
      local r = assert(get(json('{"n":3,"f":3.5,"nested":{"a":[1,2,{"b":null}]},"list":[null,"x"]}')))
      assert.equal(200, r.status)
      assert.is_nil(r.decode_error)
      assert.equal(3, r.body.n)
      assert.equal(3.5, r.body.f)
      if HAS_INTEGERS then
        assert.equal("integer", math.type(r.body.n))
        assert.equal("float", math.type(r.body.f))
        assert.equal("integer", math.type(r.body.nested.a[2]))
        assert.equal("integer", math.type(r.status))
      end
      assert.equal(core.null, r.body.nested.a[3].b)
      assert.equal(core.null, r.body.list[1])
      assert.equal("x", r.body.list[2])
    end)

    it("decodes the real agents response with the bearer token it sent", function()
      local r = assert(get())
      assert.equal(200, r.status)
      assert.equal("table", type(r.body))
      assert.equal("table", type(r.body.value))
      local seen = s:requests{ route = "agents" }
      assert.equal(1, #seen)
      assert.is_true(seen[1].auth)
    end)

    it("is refused without the token (the header really carries it)", function()
      local r = assert(h:perform{ url = s.base_url .. AGENTS, ca_file = s.ca_file })
      assert.equal(401, r.status)
      assert.equal("Unauthorized", r.body.error.code)
    end)

    it("reports status, effective url, HTTP version and time", function()
      local r = assert(get())
      assert.equal(s.base_url .. AGENTS, r.url)
      assert.equal("1.1", r.http_version)
      assert.equal("number", type(r.time))
      assert.truthy(r.time >= 0 and r.time < 10)
    end)

    it("lower-cases header names and joins repeated ones", function()
      local r = assert(get(json("{}", { headers = { ["X-Mixed-Case"] = "Yes", ["X-Dup"] = { "a", "b" },
                                                      ["Retry-After"] = "5" } })))
      assert.equal("Yes", r.headers["x-mixed-case"])
      assert.equal("a, b", r.headers["x-dup"])
      assert.equal("5", r.headers["retry-after"])
      assert.truthy(r.headers["content-type"]:find("application/json", 1, true))
      for name in pairs(r.headers) do assert.equal(name:lower(), name) end
    end)

    it("parses the headers on first read only, from raw_headers as received", function()
      local r = assert(get(json("{}", { headers = { ["X-Mixed-Case"] = "Yes" } })))
      assert.is_nil(rawget(r, "headers"))
      assert.matches("^HTTP/1%.1 200", r.raw_headers)
      assert.truthy(r.raw_headers:find("X-Mixed-Case: Yes\r\n", 1, true))
      local parsed = r.headers
      assert.equal(parsed, rawget(r, "headers"))
      assert.equal(parsed, r.headers)
      assert.equal("Yes", parsed["x-mixed-case"])
      assert.truthy(r.raw_headers:find("X-Mixed-Case", 1, true)) -- (parsed from a copy)
      assert.is_nil(r.other)
      assert.is_nil(r[1])
      r.raw_headers = nil
      local r2 = assert(get(json("{}")))
      r2.raw_headers = 42
      assert.is_nil(r2.headers)
    end)

    it("makes the `lists` field of listing records a list as it decodes", function()
      local body = '{"value":[{"T":{"Ip":"10.0.0.1"}},{"T":null},{"n":7}]}'
      local r = assert(get(json(body), { lists = "T" }))
      assert.same({ { Ip = "10.0.0.1" } }, r.body.value[1].T)
      assert.same({}, r.body.value[2].T)
      assert.same({}, r.body.value[3].T)
      if HAS_INTEGERS then assert.equal("integer", math.type(r.body.value[3].n)) end
      r = assert(get(json(body)))
      assert.same({ Ip = "10.0.0.1" }, r.body.value[1].T)
      assert.equal(core.null, r.body.value[2].T)
    end)

    it("returns a non-JSON body as the raw string", function()
      local r = assert(get{ status = 200, body = "hello", content_type = "text/plain" })
      assert.equal("hello", r.body)
      assert.is_nil(r.decode_error)
    end)

    it("decodes +json media types, whatever their case", function()
      local r = assert(get{ status = 400, body = '{"error":{"code":"BadRequest"}}',
                            content_type = "Application/Problem+JSON; charset=utf-8" })
      assert.equal(400, r.status)
      assert.equal("BadRequest", r.body.error.code)
    end)

    it("keeps JSON raw with decode = false", function()
      local r = assert(get(json('{"n":3}'), { decode = false }))
      assert.equal('{"n":3}', r.body)
    end)

    it("gives decode_error and the raw body for invalid JSON", function()
      local r = assert(get{ mode = "malformed" })
      assert.equal(200, r.status)
      assert.equal("string", type(r.decode_error))
      assert.equal("string", type(r.body))
      assert.truthy(r.body:find('"orgId":"x",,', 1, true))
    end)

    it("gives decode_error for an empty JSON body", function()
      local r = assert(get{ mode = "empty" })
      assert.equal("", r.body)
      assert.equal("empty body", r.decode_error)
    end)

    it("sends method, body and header lines as given", function()
      local body = '{"SessionIds":["01decc497f4b4ec49a5fc4e12597f8c8"]}'
      local r = assert(h:perform{
        method = "POST", url = s.base_url .. HISTORY, ca_file = s.ca_file, bearer = token,
        body = body, headers = { "Content-Type: application/json" }, user_agent = "core-spec/1",
      })
      assert.equal(200, r.status)
      local seen = s:requests{ route = "history_by_session" }
      assert.equal(1, #seen)
      assert.equal("POST", seen[1].method)
      assert.equal(body, seen[1].body)
      assert.equal("application/json", seen[1].content_type)
      assert.equal("core-spec/1", seen[1].user_agent)
    end)

    it("sends PATCH and DELETE with the method name", function()
      s:control{ faults = { { route = "all", status = 200, body = "{}", content_type = "application/json" } } }
      local u = s.base_url .. "/api/DeviceAuthenticatedScanDefinitions/x"
      assert(h:perform{ method = "PATCH", url = u, ca_file = s.ca_file, bearer = token, body = "{}" })
      assert(h:perform{ method = "DELETE", url = u, ca_file = s.ca_file, bearer = token })
      local seen = s:requests()
      assert.equal("PATCH", seen[#seen - 1].method)
      assert.equal("DELETE", seen[#seen].method)
    end)

    -- the handle sets only a request's own options while the shared ones (CA, proxy, user
    -- agent, insecure, limits) stay the same: nothing of one request may leak into the next
    it("carries nothing of one request over to the next on the same handle", function()
      s:control{ faults = { { route = "all", status = 200, body = "{}", content_type = "application/json" } } }
      local u = s.base_url .. "/api/DeviceAuthenticatedScanDefinitions/x"
      local function send(req)
        req.url = req.url or u
        req.ca_file = req.ca_file or s.ca_file
        req.bearer = token
        assert(h:perform(req))
        local seen = s:requests()
        return seen[#seen]
      end
      local r = send{ method = "PATCH", body = "one", user_agent = "ua/1", headers = { "Content-Type: text/x-one" } }
      assert.same({ "PATCH", "one", "ua/1", "text/x-one" }, { r.method, r.body, r.user_agent, r.content_type })
      r = send{ method = "GET" }
      assert.equal("GET", r.method)
      assert.equal(0, r.body_length)
      assert.is_nil(r.user_agent)
      assert.is_nil(r.content_type)
      r = send{ method = "POST", body = "two" }
      assert.same({ "POST", "two", "application/x-www-form-urlencoded" }, { r.method, r.body, r.content_type })
      r = send{ method = "DELETE" }
      assert.same({ "DELETE", 0 }, { r.method, r.body_length })
      r = send{ method = "POST" }
      assert.same({ "POST", 0 }, { r.method, r.body_length })
      r = send{ method = "DELETE", body = "three" }
      assert.same({ "DELETE", "three" }, { r.method, r.body })
      r = send{ method = "PUT", body = "four", user_agent = "ua/2" }
      assert.same({ "PUT", "four", "ua/2" }, { r.method, r.body, r.user_agent })
      -- a timeout is the request's own: the next one without it waits as long as it takes
      s:control{ faults = { { route = "all", status = 200, body = "{}", content_type = "application/json",
                              delay = 0.3 } } }
      local resp, f = h:perform{ url = u, ca_file = s.ca_file, bearer = token, timeout = 0.1 }
      assert.is_nil(resp)
      assert.equal("timeout", f.kind)
      assert.equal(200, assert(h:perform{ url = u, ca_file = s.ca_file, bearer = token }).status)
      -- TLS trust: verification skipped once is on again for the next request
      s:control{ faults = {} }
      assert(h:perform{ url = s.badname_url .. AGENTS, ca_file = s.ca_file, insecure = true, bearer = token,
                        timeout = 5 })
      resp, f = h:perform{ url = s.badname_url .. AGENTS, ca_file = s.ca_file, bearer = token, timeout = 5 }
      assert.is_nil(resp)
      assert.equal("tls", f.kind)
      resp, f = h:perform{ url = s.base_url .. AGENTS, ca_file = s.other_ca_file, bearer = token, timeout = 5 }
      assert.is_nil(resp)
      assert.equal("tls", f.kind)
      assert.equal(200, assert(h:perform{ url = s.base_url .. AGENTS, ca_file = s.ca_file, bearer = token }).status)
      -- a body limit is the handle's until a request asks for another
      s:control{ faults = { { route = "all", status = 200, body = ("x"):rep(1000), content_type = "text/plain" } } }
      resp, f = h:perform{ url = u, ca_file = s.ca_file, bearer = token, max_body = 100 }
      assert.is_nil(resp)
      assert.equal("too_large", f.kind)
      assert.equal(1000, #assert(h:perform{ url = u, ca_file = s.ca_file, bearer = token }).body)
    end)

    it("does not follow redirects", function()
      local r = assert(get{ mode = "redirect", location = "https://127.0.0.1:1/elsewhere" })
      assert.equal(302, r.status)
      assert.equal("https://127.0.0.1:1/elsewhere", r.headers.location)
      assert.equal(s.base_url .. AGENTS, r.url)
    end)

    it("stops at max_body: too_large (Content-Length and chunked)", function()
      local r, f = get({ mode = "huge", size = 100000 }, { max_body = 1000 })
      assert.is_nil(r)
      assert.equal("too_large", f.kind)
      r, f = get({ mode = "huge", size = 100000, chunked = true }, { max_body = 1000 })
      assert.is_nil(r)
      assert.equal("too_large", f.kind)
      assert.equal("number", type(f.curl_code))
      r = assert(get({ mode = "huge", size = 100000 }, { max_body = 100000, decode = false }))
      assert.equal(100000, #r.body)
    end)

    it("times out: timeout", function()
      -- short: nginx finishes the delayed request before it stops
      local r, f = get({ delay = 0.6 }, { timeout = 0.1 })
      assert.is_nil(r)
      assert.equal("timeout", f.kind)
      assert.equal(28, f.curl_code)
      assert.equal("string", type(f.message))
    end)

    it("reports a reset connection and a truncated body as network errors, never half a body", function()
      local r, f = get{ mode = "reset" }
      assert.is_nil(r)
      assert.equal("network", f.kind)
      r, f = get{ mode = "truncated" }
      assert.is_nil(r)
      assert.equal("network", f.kind)
    end)

    it("reports a refused connection: network", function()
      local r, f = h:perform{ url = "https://127.0.0.1:1/", timeout = 5 }
      assert.is_nil(r)
      assert.equal("network", f.kind)
      assert.equal(7, f.curl_code)
    end)

    it("verifies TLS: wrong CA and wrong name are tls, insecure = true skips both", function()
      local r, f = h:perform{ url = s.base_url .. AGENTS, ca_file = s.other_ca_file, timeout = 5 }
      assert.is_nil(r)
      assert.equal("tls", f.kind)
      r, f = h:perform{ url = s.badname_url .. AGENTS, ca_file = s.ca_file, timeout = 5 }
      assert.is_nil(r)
      assert.equal("tls", f.kind)
      r = assert(h:perform{ url = s.badname_url .. AGENTS, ca_file = s.other_ca_file, insecure = true,
                            bearer = token, timeout = 5 })
      assert.equal(200, r.status)
    end)

    it("refuses schemes other than http and https: invalid", function()
      local r, f = h:perform{ url = "file:///etc/passwd" }
      assert.is_nil(r)
      assert.equal("invalid", f.kind)
    end)

    it("keeps the token out of error messages", function()
      local r, f = h:perform{ url = "https://127.0.0.1:1/", bearer = "SECRET-TOKEN-123" }
      assert.is_nil(r)
      assert.is_nil(f.message:find("SECRET", 1, true))
    end)

    it("reuses one handle for many requests", function()
      for _ = 1, 20 do
        assert.equal(200, assert(get()).status)
      end
    end)

    it("shares connections and TLS sessions between the handles of a state", function()
      local function agents_log()
        local out = {}
        for _, r in ipairs(s:stats().requests) do if r.route == "agents" then out[#out + 1] = r end end
        return out
      end
      local req = { url = s.base_url .. AGENTS, ca_file = s.ca_file, bearer = token, timeout = 10 }
      local a, b = core.new(), core.new()
      assert.equal(200, assert(a:perform(req)).status)
      assert.equal(200, assert(b:perform(req)).status) -- on a's connection
      -- a's next request asks the server to close the connection after it: b must open a new
      -- one, and resumes the TLS session a's connection negotiated (no full handshake)
      req.headers = { "Connection: close" }
      assert.equal(200, assert(a:perform(req)).status)
      req.headers = nil
      assert.equal(200, assert(b:perform(req)).status)
      a:close()
      b:close()
      local log = agents_log()
      assert.equal(4, #log)
      assert.equal(log[1].connection, log[2].connection)
      assert.equal(log[1].connection, log[3].connection)
      assert.are_not.equal(log[3].connection, log[4].connection)
      assert.is_true(log[4].tls_resumed)
    end)
  end)

  describe("over HTTP/2", function()
    local s, token

    setup(function()
      s = server.start{ http2 = true }
      token = s:issue_token()
    end)
    teardown(function() if s then s:stop() end end)

    it("negotiates h2 and parses its headers", function()
      local h = core.new()
      local r = assert(h:perform{ url = s.base_url .. AGENTS, ca_file = s.ca_file, bearer = token })
      h:close()
      assert.equal("2", r.http_version)
      assert.equal(200, r.status)
      assert.truthy(r.headers["content-type"])
      assert.equal("table", type(r.body.value))
    end)

    it("runs requests concurrently with perform_all, results in request order", function()
      s:control{ faults = { { route = "agents", delay = 0.4 } } }
      local handles, reqs = {}, {}
      for i = 1, 6 do
        handles[i] = core.new()
        reqs[i] = { url = s.base_url .. AGENTS, ca_file = s.ca_file, bearer = token, timeout = 10 }
      end
      reqs[4] = { url = "https://127.0.0.1:1/", timeout = 5 }
      reqs[5] = { url = s.base_url .. AGENTS, ca_file = s.other_ca_file, timeout = 5 }
      local t0 = server.now()
      local results = core.perform_all(handles, reqs)
      local elapsed = server.now() - t0
      assert.equal(6, #results)
      for _, i in ipairs{ 1, 2, 3, 6 } do
        assert.equal(200, results[i].resp.status)
        assert.is_nil(results[i].facts)
      end
      assert.equal("network", results[4].facts.kind)
      assert.equal("tls", results[5].facts.kind)
      assert.truthy(elapsed < 1.5, "4 delayed requests took " .. elapsed .. " s")
      -- the handles stay usable one by one
      assert.equal(200, assert(handles[1]:perform(reqs[1])).status)
      for i = 1, 6 do handles[i]:close() end
    end)

    it("checks every request before sending any", function()
      local a, b = core.new(), core.new()
      raises("request 2: unknown field 'nope'", core.perform_all, { a, b },
             { { url = s.base_url .. AGENTS, ca_file = s.ca_file }, { url = s.base_url, nope = 1 } })
      raises("a handle can take one request at a time", core.perform_all, { a, a },
             { { url = s.base_url }, { url = s.base_url } })
      raises("as many requests as handles expected", core.perform_all, { a }, {})
      b:close()
      raises("item 2: open mde.Handle expected", core.perform_all, { a, b },
             { { url = s.base_url }, { url = s.base_url } })
      assert.same({}, core.perform_all({}, {}))
      a:close()
    end)
  end)

  describe("re-entered by finalizers in the middle of a call", function()
    -- In Lua any allocation may run pending __gc finalizers, so Lua code runs inside
    -- perform and perform_all while they build the response. Whatever it does to the
    -- handles in use, the call finishes on them: a perform on one raises "in use", a
    -- close waits for the end of the call. The sanitizer and valgrind runs check that
    -- nothing is read after it is freed.
    local s, token, req
    local ITEMS = 2000    -- decoding that many objects lets the collector end a cycle inside the call

    setup(function()
      s = server.start{}
      token = s:issue_token()
      local items = {}
      for i = 1, ITEMS do items[i] = '{"a":"x"}' end
      s:control{ faults = { { route = "agents", status = 200, content_type = "application/json",
                              body = '{"value":[' .. table.concat(items, ",") .. "]}" } } }
      req = { url = s.base_url .. AGENTS, ca_file = s.ca_file, bearer = token, timeout = 10 }
    end)
    teardown(function() if s then s:stop() end end)

    -- Runs call(state) up to 50 times under one finalizer chain, which runs once per GC
    -- cycle and calls on_inside(state) the first time it finds state.inside set (the
    -- response's decoding allocates enough to end a cycle or more). call returns false
    -- when the finalizer ran before the call claimed its handles. Fails unless it ran
    -- inside a call, after the claim, at least once.
    local function inside_calls(on_inside, call)
      local hits, state, over = 0, nil, false
      finalizer_chain(function()
        local st = state
        if st and st.inside and not st.hit then
          st.hit = true
          st.seen = tostring(st.h)
          on_inside(st)
        end
        return over
      end)
      with_eager_gc(function()
        for _ = 1, 50 do
          state = {}
          local claimed = call(state) ~= false
          if state.hit and claimed then
            hits = hits + 1
            assert.equal("mde.Handle (in use)", state.seen)
          end
          state = nil
          if hits >= 3 then break end
        end
      end)
      over = true
      assert.truthy(hits > 0, "no finalizer ran inside a call")
    end

    local function assert_whole(r)
      assert.equal(200, r.status)
      assert.equal(ITEMS, #r.body.value)
      assert.equal("x", r.body.value[ITEMS].a)
      assert.equal(s.base_url .. AGENTS, r.url)
      assert.truthy(r.headers["content-type"])
    end

    it("closes the handle in use when perform ends, with its response whole", function()
      inside_calls(function(state) state.h:close() end, function(state)
        state.h = core.new()
        state.inside = true
        local ok, r = pcall(state.h.perform, state.h, req)
        state.inside = false
        if not ok then
          -- only when closed before the call claimed the handle
          assert.truthy(tostring(r):find("attempt to use a closed mde.Handle", 1, true), r)
        else
          assert_whole(r)
          if state.hit then assert.equal("mde.Handle (closed)", tostring(state.h)) end
        end
        state.h:close()
        return ok
      end)
    end)

    it("refuses a perform on the handle in use: mde.Handle is in use", function()
      local h = core.new()
      inside_calls(function(state)
        state.err = select(2, pcall(h.perform, h, req))
        state.all_err = select(2, pcall(core.perform_all, { h }, { req }))
      end, function(state)
        state.h = h
        state.inside = true
        local r = assert(h:perform(req))
        state.inside = false
        assert_whole(r)
        if state.hit and state.seen ~= "mde.Handle (open)" then
          assert.truthy(tostring(state.err):find("mde.Handle is in use", 1, true), state.err)
          assert.truthy(tostring(state.all_err):find("item 1: mde.Handle is in use", 1, true), state.all_err)
        end
        -- seen idle: the finalizer ran before the call claimed the handle
        return state.seen ~= "mde.Handle (open)"
      end)
      assert.equal("mde.Handle (open)", tostring(h))       -- idle again afterwards
      assert_whole(assert(h:perform(req)))
      h:close()
    end)

    it("keeps perform_all's handles alive and its results whole, whatever the finalizer does", function()
      inside_calls(function(state)
        local a = state.handles[1]
        state.refused = not pcall(a.perform, a, req)
        state.handles[2]:close()
        -- the caller's table no longer holds handle 3: only the call keeps it
        state.handles[3] = nil
        state.reqs[1].headers = nil
      end, function(state)
        state.handles = { core.new(), core.new(), core.new() }
        state.reqs = {}
        for i = 1, 3 do
          state.reqs[i] = { url = req.url, ca_file = req.ca_file, bearer = token, headers = { "X-N: " .. i } }
        end
        local two = state.handles[2]
        state.h = state.handles[1]
        state.inside = true
        local ok, results = pcall(core.perform_all, state.handles, state.reqs)
        state.inside = false
        if not ok then
          -- only when the finalizer ran before the call claimed the handles
          assert.truthy(tostring(results):find("open mde.Handle expected", 1, true), results)
        else
          for i = 1, 3 do assert_whole(results[i].resp) end
          if state.hit then
            assert.is_true(state.refused)
            assert.equal("mde.Handle (closed)", tostring(two))
          end
        end
        for _, h in pairs(state.handles) do h:close() end
        two:close()
        return ok
      end)
    end)
  end)

  describe("against a raw server (what nginx will not send)", function()
    local raw, h

    setup(function()
      raw = start_raw_server(120)
      h = core.new()
    end)
    teardown(function()
      h:close()
      if raw then raw:stop() end
    end)

    it("reports a header line too long for libcurl as too_large, without raising", function()
      local r, f = h:perform{ url = raw:url("/bigline"), timeout = 10 }
      assert.is_nil(r)
      assert.equal("too_large", f.kind)
      assert.truthy(f.message:find("header", 1, true), f.message)
      assert.equal(200, assert(h:perform{ url = raw:url("/ok"), timeout = 10 }).status)
    end)

    it("gives that header line's facts in perform_all, and the other results", function()
      local handles = { core.new(), core.new(), core.new() }
      local results = core.perform_all(handles, {
        { url = raw:url("/ok"), timeout = 10, bearer = "SECRET-TOKEN-1" },
        { url = raw:url("/bigline"), timeout = 10, bearer = "SECRET-TOKEN-2" },
        { url = raw:url("/ok"), timeout = 10, bearer = "SECRET-TOKEN-3" },
      })
      assert.equal("ok", results[1].resp.body)
      assert.is_nil(results[2].resp)
      assert.equal("too_large", results[2].facts.kind)
      assert.equal("ok", results[3].resp.body)
      for i = 1, 3 do
        assert.equal(200, assert(handles[i]:perform{ url = raw:url("/ok"), timeout = 10 }).status)
        handles[i]:close()
      end
    end)

    it("joins folded lines to the value they continue, an empty one without a leading space", function()
      local r = assert(h:perform{ url = raw:url("/fold"), timeout = 10 })
      assert.equal("one two", r.headers["x-a"])
      assert.equal("cont", r.headers["x-b"])
      assert.equal("a, b", r.headers["x-c"])
      assert.equal("", r.headers["x-d"])
    end)

    it("does not reserve memory for the Content-Length a server announces", function()
      local before = vm_peak_kb()
      if not before then return pending("no /proc/self/status") end
      -- 1 GiB announced, 2 bytes sent
      local r, f = h:perform{ url = raw:url("/announce"), timeout = 10 }
      assert.is_nil(r)
      assert.equal("network", f.kind)
      local grown = vm_peak_kb() - before
      assert.truthy(grown < 256 * 1024, ("peak virtual size grew by %d KiB"):format(grown))
      -- with max_body below the announcement: refused up front
      r, f = h:perform{ url = raw:url("/announce"), timeout = 10, max_body = 1000 }
      assert.is_nil(r)
      assert.equal("too_large", f.kind)
    end)

    it("caps a timeout too long for libcurl instead of overflowing it", function()
      -- as many seconds as there are milliseconds in a 64-bit long, and more
      for _, secs in ipairs{ 2 ^ 63 / 1000, 2 ^ 63, 1e300 } do
        local r, f = h:perform{ url = raw:url("/ok"), timeout = secs, connect_timeout = secs }
        assert.is_nil(f)
        assert.equal(200, r.status)
      end
      raises("field 'timeout': must be a positive", h.perform, h, { url = raw:url("/ok"), timeout = math.huge })
    end)
  end)

  describe("loaded by many states at once", function()
    it("reads libcurl's version text only inside the once-only initialisation (TSan)", function()
      if shell("command -v clang >/dev/null && echo yes") ~= "yes" then return pending("no clang") end
      local dir = shell("mktemp -d")
      local src = dir .. "/harness.c"
      local f = assert(io.open(src, "w"))
      f:write(TSAN_HARNESS)
      f:close()
      local q = certs.sh_quote
      local out = shell("clang -std=c99 -D_POSIX_C_SOURCE=200809L -O1 -g -fsanitize=thread -Isrc"
        .. " $(pkg-config --cflags lua5.4 libcurl) -o " .. q(dir .. "/harness") .. " " .. q(src)
        .. " src/*.c $(pkg-config --libs lua5.4 libcurl libcrypto) -lpthread 2>&1 && echo BUILT")
      if not out:find("BUILT$") then
        shell("rm -rf " .. q(dir))
        error("cannot build the TSan harness (clang is installed): " .. out)
      end
      out = shell("TSAN_OPTIONS='halt_on_error=1 exitcode=66' " .. q(dir .. "/harness") .. " 2>&1; echo exit=$?")
      shell("rm -rf " .. q(dir))
      if out:find("FATAL: ThreadSanitizer", 1, true) then return pending("TSan cannot run here") end
      assert.is_nil(out:find("WARNING: ThreadSanitizer", 1, true), out)
      assert.truthy(out:find("mismatches 0\nexit=0", 1, true), out)
    end)
  end)

  describe("RS256 and thumbprints", function()
    local files, key, cert

    setup(function()
      files = certs.ensure()
      key, cert = read(files.app_key), read(files.app_cert)
    end)

    local function openssl_b64url(cmd)
      return (shell(cmd .. " | openssl base64 -A"):gsub("+", "-"):gsub("/", "_"):gsub("=", ""))
    end

    it("signs like openssl dgst -sha256 -sign (PKCS#1 v1.5)", function()
      local sig = assert(core.sign_rs256(key, nil, "header.claims"))
      local want = openssl_b64url("printf %s header.claims | openssl dgst -sha256 -sign "
                                  .. certs.sh_quote(files.app_key))
      assert.equal(want, sig)
      assert.is_nil(sig:find("[=+/]"))
    end)

    it("reads PKCS#1, encrypted PKCS#8 with its passphrase, and a key after a certificate", function()
      local sig = core.sign_rs256(key, nil, "x")
      assert.equal(sig, core.sign_rs256(read(files.app_pkcs1_key), nil, "x"))
      assert.equal(sig, core.sign_rs256(read(files.app_encrypted_key), certs.PASSPHRASE, "x"))
      assert.equal(sig, core.sign_rs256(cert .. key, nil, "x"))
    end)

    it("fails with a message that holds neither key nor passphrase", function()
      local enc = read(files.app_encrypted_key)
      local sig, err = core.sign_rs256(enc, nil, "x")
      assert.is_nil(sig)
      assert.equal("cannot read private key (wrong passphrase or not a PEM key)", err)
      sig, err = core.sign_rs256(enc, "not-the-passphrase", "x")
      assert.is_nil(sig)
      assert.is_nil(err:find("not-the-passphrase", 1, true))
      sig, err = core.sign_rs256("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", nil, "x")
      assert.is_nil(sig)
      assert.is_nil(err:find("AAAA", 1, true))
    end)

    it("refuses a key that is not RSA", function()
      local ec = shell("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null")
      local sig, err = core.sign_rs256(ec, nil, "x")
      assert.is_nil(sig)
      assert.equal("private key is not an RSA key (RS256 needs one)", err)
    end)

    it("gives the certificate's SHA-1 and SHA-256 thumbprints, base64url", function()
      local x5t, x5t256 = core.cert_thumbprints(cert)
      local der = "openssl x509 -outform DER -in " .. certs.sh_quote(files.app_cert)
      assert.equal(openssl_b64url(der .. " | openssl dgst -sha1 -binary"), x5t)
      assert.equal(openssl_b64url(der .. " | openssl dgst -sha256 -binary"), x5t256)
      assert.equal(27, #x5t)
      assert.equal(43, #x5t256)
      local none, err = core.cert_thumbprints(key)
      assert.is_nil(none)
      assert.equal("cannot read certificate (not a PEM certificate)", err)
    end)

    it("encodes base64url without padding", function()
      assert.equal("", core.base64url(""))
      assert.equal("Zg", core.base64url("f"))
      assert.equal("Zm8", core.base64url("fo"))
      assert.equal("Zm9v", core.base64url("foo"))
      assert.equal("Zm9vYg", core.base64url("foob"))
      assert.equal("__79", core.base64url("\255\254\253"))
    end)
  end)
end)
