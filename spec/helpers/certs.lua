--- Test certificates for the local MDE-like server, made with the `openssl` CLI.
--
-- Generated once into spec/fixtures/ and reused across runs (the keys are throwaway test keys,
-- gitignored).  Pure Lua 5.1-5.4; no dependency on mde.core.
--
--   local certs = require "spec.helpers.certs"
--   local files = certs.ensure()            -- generates what is missing, returns the paths
--   files.ca, files.server_cert, files.app_key, ...
--
-- Files (all under spec/fixtures/):
--   ca.pem / ca.key                   test CA ("lua-mde test CA")
--   server.pem / server.key           server cert signed by the CA, SAN IP:127.0.0.1, IP:::1, DNS:localhost
--   wrongname.pem / wrongname.key     signed by the CA, valid for DNS:wrong.example only
--   other_ca.pem / other_ca.key       an unrelated CA (did not sign anything we serve)
--   app.pem / app.key                 the app's client certificate (self-signed, RSA 2048), PKCS#8 key
--   app_pkcs1.key                     the same key, traditional "BEGIN RSA PRIVATE KEY" form
--   app_encrypted.key                 the same key, encrypted PKCS#8 (AES-256), passphrase below
--   wrong.pem / wrong.key             an unregistered RSA 2048 key and its self-signed cert

local M = {}

M.PASSPHRASE = "lua-mde-test-passphrase"

--- Prefix for external tools (openssl, curl, nginx): a sanitizer runtime preloaded into the
-- test process (LD_PRELOAD=libclang_rt.asan...) must not leak into them (curl deadlocks in
-- setlocale under it).
M.CLEAN_ENV = "env -u LD_PRELOAD "

local FILES = {
  ca = "ca.pem", ca_key = "ca.key",
  server_cert = "server.pem", server_key = "server.key",
  wrongname_cert = "wrongname.pem", wrongname_key = "wrongname.key",
  other_ca = "other_ca.pem", other_ca_key = "other_ca.key",
  app_cert = "app.pem", app_key = "app.key", app_pkcs1_key = "app_pkcs1.key",
  app_encrypted_key = "app_encrypted.key",
  wrong_cert = "wrong.pem", wrong_key = "wrong.key",
}
M.FILES = FILES


local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end


local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.sh_quote = sh_quote


local function run(cmd)
  local ok, how, code = os.execute(cmd)
  -- Lua 5.1 returns a number, 5.2+ returns true/nil, "exit", code
  if ok == true or ok == 0 then return true end
  return nil, ("command failed (%s %s): %s"):format(tostring(how), tostring(code), cmd)
end
M.run = run


local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end


--- Absolute path of the repository root (the directory holding spec/).
function M.repo_root()
  local src = debug.getinfo(1, "S").source
  local path = src:sub(1, 1) == "@" and src:sub(2) or "spec/helpers/certs.lua"
  local root = path:gsub("spec/helpers/certs%.lua$", "")
  if root == "" then root = "." end
  root = root:gsub("/$", "")
  if root:sub(1, 1) ~= "/" then
    local pwd = os.getenv("PWD")
    if not pwd then
      local p = io.popen("pwd")
      pwd = p:read("*l")
      p:close()
    end
    root = (root == "." or root == "./") and pwd or (pwd .. "/" .. root:gsub("^%./", ""))
  end
  return root
end


local function all_present(dir)
  for _, name in pairs(FILES) do
    if not exists(dir .. "/" .. name) then return false end
  end
  return true
end


local function sleep(sec)
  local ok, socket = pcall(require, "socket")
  if ok and socket.sleep then socket.sleep(sec) else os.execute("sleep " .. sec) end
end


local SERVER_EXT = [[
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost
]]

local WRONGNAME_EXT = [[
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
]]


local function generate(dir)
  local tmp = dir .. "/.gen-" .. tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
  assert(run("mkdir -p " .. sh_quote(tmp)))
  local function p(name) return sh_quote(tmp .. "/" .. name) end
  local O = M.CLEAN_ENV .. "openssl"
  local q = " 2>/dev/null"
  local steps = {
    -- CA
    O .. " req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj '/CN=lua-mde test CA'"
      .. " -keyout " .. p("ca.key") .. " -out " .. p("ca.pem")
      .. " -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'" .. q,
    -- server cert
    O .. " req -new -newkey rsa:2048 -nodes -subj '/CN=127.0.0.1' -keyout " .. p("server.key")
      .. " -out " .. p("server.csr") .. q,
    O .. " x509 -req -sha256 -days 3650 -in " .. p("server.csr") .. " -CA " .. p("ca.pem")
      .. " -CAkey " .. p("ca.key") .. " -set_serial 1001 -extfile " .. p("server.ext")
      .. " -out " .. p("server.pem") .. q,
    -- wrong-name cert
    O .. " req -new -newkey rsa:2048 -nodes -subj '/CN=wrong.example' -keyout " .. p("wrongname.key")
      .. " -out " .. p("wrongname.csr") .. q,
    O .. " x509 -req -sha256 -days 3650 -in " .. p("wrongname.csr") .. " -CA " .. p("ca.pem")
      .. " -CAkey " .. p("ca.key") .. " -set_serial 1002 -extfile " .. p("wrongname.ext")
      .. " -out " .. p("wrongname.pem") .. q,
    -- unrelated CA
    O .. " req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj '/CN=lua-mde other CA'"
      .. " -keyout " .. p("other_ca.key") .. " -out " .. p("other_ca.pem")
      .. " -addext 'basicConstraints=critical,CA:TRUE'" .. q,
    -- app client certificate (self-signed, as Entra app certificates usually are)
    O .. " req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj '/CN=lua-mde test app'"
      .. " -keyout " .. p("app.key") .. " -out " .. p("app.pem") .. q,
    O .. " rsa -in " .. p("app.key") .. " -traditional -out " .. p("app_pkcs1.key") .. q,
    O .. " pkcs8 -topk8 -v2 aes-256-cbc -in " .. p("app.key") .. " -passout pass:" .. M.PASSPHRASE
      .. " -out " .. p("app_encrypted.key") .. q,
    -- unregistered key + cert
    O .. " req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj '/CN=lua-mde unregistered app'"
      .. " -keyout " .. p("wrong.key") .. " -out " .. p("wrong.pem") .. q,
  }
  write_file(tmp .. "/server.ext", SERVER_EXT)
  write_file(tmp .. "/wrongname.ext", WRONGNAME_EXT)
  for _, cmd in ipairs(steps) do
    local ok, err = run(cmd)
    if not ok then
      run("rm -rf " .. sh_quote(tmp))
      error("certificate generation failed: " .. err)
    end
  end
  for _, name in pairs(FILES) do
    -- world-readable: nginx workers run as nobody; these are throwaway test keys
    assert(run("chmod 0644 " .. p(name)))
    assert(os.rename(tmp .. "/" .. name, dir .. "/" .. name))
  end
  run("rm -rf " .. sh_quote(tmp))
end


--- Make sure every fixture exists (generating the set when any is missing) and return paths.
-- @param dir optional directory (default <repo>/spec/fixtures)
function M.ensure(dir)
  dir = dir or (M.repo_root() .. "/spec/fixtures")
  if not all_present(dir) then
    assert(run("mkdir -p " .. sh_quote(dir)))
    -- mkdir is atomic: a lock so that parallel test runs do not mix two generations
    local lock = dir .. "/.lock"
    local got = false
    for _ = 1, 300 do
      if run("mkdir " .. sh_quote(lock) .. " 2>/dev/null") then got = true break end
      if all_present(dir) then break end
      sleep(0.1)
    end
    if got then
      local ok, err = pcall(function()
        if not all_present(dir) then generate(dir) end
      end)
      run("rmdir " .. sh_quote(lock))
      if not ok then error(err, 0) end
    elseif not all_present(dir) then
      error("certificate generation: could not take the lock " .. lock
        .. " (remove it if no other test run is generating certificates)")
    end
  end
  local out = { dir = dir, passphrase = M.PASSPHRASE }
  for k, name in pairs(FILES) do out[k] = dir .. "/" .. name end
  return out
end


return M
