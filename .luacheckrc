std = "max"
max_line_length = 120
not_globals = { "string.len", "table.getn" }
globals = {}
read_globals = { "ngx", "jit" }
exclude_files = { "build/**", "lua_modules/**", ".luarocks/**" }

files["spec/**/*.lua"] = { std = "+busted" }
files["spec/server/**/*.lua"] = { std = "luajit", read_globals = { "ngx" } }
files["examples/openresty/**/*.lua"] = { std = "luajit", read_globals = { "ngx" } }
