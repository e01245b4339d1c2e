rockspec_format = "3.0"
package = "lua-mde"
version = "scm-1"

source = {
   url = "git+https://github.com/lua-mde/lua-mde.git",
   branch = "main",
}

description = {
   summary = "Client for the Microsoft Defender for Endpoint API (authenticated scans)",
   detailed = [[
Lua client for the Microsoft Defender for Endpoint API, with a small C core
over libcurl (one reused easy handle, HTTP/2, JSON decoding with integers)
and libcrypto (RS256 client assertions). Runs on Lua 5.1-5.4 and LuaJIT,
and in OpenResty.
]],
   license = "MIT",
}

dependencies = {
   "lua >= 5.1",
   "lua-cjson >= 2.1.0",
}

external_dependencies = {
   CURL = { header = "curl/curl.h", library = "curl" },
   OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}

build = {
   type = "builtin",
   modules = {
      ["mde.core"] = {
         sources = {
            "src/core.c", "src/request.c", "src/headers.c", "src/decode.c",
            "src/multi.c", "src/jwt.c", "src/clock.c",
         },
         libraries = { "curl", "crypto" },
         incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
         libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      },
      ["mde"] = "lua/mde.lua",
      ["mde.client"] = "lua/mde/client.lua",
      ["mde.scans"] = "lua/mde/scans.lua",
      ["mde.paging"] = "lua/mde/paging.lua",
      ["mde.pipeline"] = "lua/mde/pipeline.lua",
      ["mde.auth"] = "lua/mde/auth.lua",
      ["mde.jwt"] = "lua/mde/jwt.lua",
      ["mde.pacing"] = "lua/mde/pacing.lua",
      ["mde.store"] = "lua/mde/store.lua",
      ["mde.errors"] = "lua/mde/errors.lua",
      ["mde.redact"] = "lua/mde/redact.lua",
      ["mde.filter"] = "lua/mde/filter.lua",
      ["mde.gather"] = "lua/mde/gather.lua",
      ["mde.clouds"] = "lua/mde/clouds.lua",
      ["mde.ip"] = "lua/mde/ip.lua",
      ["mde.time"] = "lua/mde/time.lua",
      ["mde.url"] = "lua/mde/url.lua",
      ["mde.transport.curl"] = "lua/mde/transport/curl.lua",
      ["mde.transport.ngx"] = "lua/mde/transport/ngx.lua",
      ["mde.transport.ngx_thread"] = "lua/mde/transport/ngx_thread.lua",
      ["mde.store.ngx"] = "lua/mde/store/ngx.lua",
      ["mde.format"] = "lua/mde/format.lua",
      ["mde.report"] = "lua/mde/report.lua",
      ["mde.cli"] = "lua/mde/cli.lua",
   },
   install = {
      bin = { mde = "bin/mde" },
   },
}

test = {
   type = "busted",
}
