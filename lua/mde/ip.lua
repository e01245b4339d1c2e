--- IP addresses and CIDR blocks, in pure Lua (5.1 to 5.4, LuaJIT), for `mde.filter`.
--
-- Every address is held in its 128-bit form, as four 32-bit words, so that one comparison
-- serves both families: an IPv4 address `a.b.c.d` is the IPv4-mapped IPv6 address
-- `::ffff:a.b.c.d`, and an IPv4 block `a.b.c.d/n` is the block `::ffff:a.b.c.d/(96+n)`.
-- Consequences, on purpose:
--  * `10.0.0.0/8` contains both `10.1.2.3` and `::ffff:10.1.2.3`;
--  * an IPv6 block contains a dotted IPv4 address only when the block lies inside the IPv4
--    space `::ffff:0:0/96`, so `::/0` and `fe80::/10` never contain `10.1.2.3`.
--
-- API (no bit operators, so it runs everywhere):
--   ip.parse(s)         -> addr | nil, msg   addr = { family = 4|6, w1, w2, w3, w4 } (words 1..4)
--                          IPv6: full RFC 4291 text forms, "::" compression, embedded IPv4
--                          ("::ffff:1.2.3.4"), any hex case; a zone ("fe80::1%eth0") is ignored.
--                          IPv4: dotted quad, no leading zeros ("010.0.0.1" is refused, as
--                          inet_pton does, since some tools read it as octal).
--   ip.parse_cidr(s)    -> block | nil, msg  "a.b.c.d/n", "x::y/n" or a bare address (a /32 or
--                          /128 block). Host bits below the prefix are ignored ("10.1.2.3/8" is
--                          10.0.0.0/8). block = { family =, prefix = (as written), text = s, ... }
--   ip.contains(block, addr) -> boolean      both already parsed
--   ip.in_cidr(a, b)    -> boolean | nil, msg  a: address string or addr; b: CIDR string or block
--   ip.lookup(s)        -> addr | false      ip.parse through a bounded cache, for hot loops
--                          (target IPs repeat across session records); false when unparseable

local tonumber, type = tonumber, type
local find, match, sub, byte = string.find, string.match, string.sub, string.byte
local floor = math.floor


local M = {}


local MAPPED_HI = 65535          -- word 3 of ::ffff:a.b.c.d
local CACHE_MAX = 20000          -- entries kept by ip.lookup before it starts over


-- "a.b.c.d" -> 32-bit number | nil
local function parse_v4(s)
  local a, b, c, d = match(s, "^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
  if not a then
    return nil
  end
  -- leading zeros refused: "1.02.3.4" is ambiguous (octal to some parsers)
  if (#a > 1 and byte(a) == 48) or (#b > 1 and byte(b) == 48)
    or (#c > 1 and byte(c) == 48) or (#d > 1 and byte(d) == 48) then
    return nil
  end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then
    return nil
  end
  return ((a * 256 + b) * 256 + c) * 256 + d
end


-- Appends the 16-bit groups of `part` ("1:2:abcd", maybe ending in a dotted IPv4 when
-- `v4_tail`) to `out`; true | nil.
local function parse_groups(part, v4_tail, out)
  if part == "" then
    return true
  end
  local pos = 1
  while true do
    local colon = find(part, ":", pos, true)
    local piece = sub(part, pos, (colon or 0) - 1)
    if not colon and v4_tail and find(piece, ".", 1, true) then
      local v4 = parse_v4(piece)
      if not v4 then
        return nil
      end
      out[#out + 1] = floor(v4 / 65536)
      out[#out + 1] = v4 % 65536
      return true
    end
    if not match(piece, "^%x%x?%x?%x?$") then
      return nil
    end
    out[#out + 1] = tonumber(piece, 16)
    if not colon then
      return true
    end
    pos = colon + 1
  end
end


-- "x:y::z" -> list of eight 16-bit groups | nil
local function parse_v6(s)
  local groups = {}
  local dc = find(s, "::", 1, true)
  if dc then
    if find(s, "::", dc + 1, true) then
      return nil                                   -- two "::", or ":::"
    end
    local tail = {}
    local tail_text = sub(s, dc + 2)
    if not parse_groups(sub(s, 1, dc - 1), false, groups)
      or not parse_groups(tail_text, true, tail) then
      return nil
    end
    local missing = 8 - #groups - #tail
    if missing < 1 then
      return nil
    end
    for _ = 1, missing do
      groups[#groups + 1] = 0
    end
    for i = 1, #tail do
      groups[#groups + 1] = tail[i]
    end
    return groups
  end
  if not parse_groups(s, true, groups) or #groups ~= 8 then
    return nil
  end
  return groups
end


function M.parse(s)
  if type(s) ~= "string" then
    return nil, "not a string"
  end
  if find(s, ":", 1, true) then
    local zone = find(s, "%", 1, true)
    if zone then
      if not match(s, "^%%[%w%.%-_]+$", zone) then
        return nil, "invalid IPv6 zone"
      end
      s = sub(s, 1, zone - 1)
    end
    local g = parse_v6(s)
    if not g then
      return nil, "invalid IPv6 address"
    end
    return { family = 6,
             g[1] * 65536 + g[2], g[3] * 65536 + g[4],
             g[5] * 65536 + g[6], g[7] * 65536 + g[8] }
  end
  local v4 = parse_v4(s)
  if not v4 then
    return nil, "invalid IPv4 address"
  end
  return { family = 4, 0, 0, MAPPED_HI, v4 }
end


function M.parse_cidr(s)
  if type(s) ~= "string" then
    return nil, "not a string"
  end
  local addr_text, prefix_text = match(s, "^([^/]*)/(.*)$")
  local addr, msg = M.parse(addr_text or s)
  if not addr then
    return nil, msg
  end
  local family = addr.family
  local max = family == 4 and 32 or 128
  local prefix = max
  if prefix_text then
    prefix = match(prefix_text, "^%d%d?%d?$") and tonumber(prefix_text)
    if not prefix or prefix > max then
      return nil, "invalid prefix length (0 to " .. max .. " for IPv" .. family .. ")"
    end
  end
  local bits = family == 4 and prefix + 96 or prefix
  -- words compared whole, then the top `bits % 32` bits of the next one (by division)
  local full = floor(bits / 32)
  local block = { family = family, prefix = prefix, text = s, full = full,
                  addr[1], addr[2], addr[3], addr[4] }
  local rest = bits - full * 32
  if rest > 0 then
    block.div = 2 ^ (32 - rest)
    block.part = floor(addr[full + 1] / block.div)
  end
  -- A block holds dotted IPv4 addresses only inside ::ffff:0:0/96; their words 1 to 3 are
  -- those of every such block, so for them word 4 alone is compared (the common case, fast).
  if bits >= 96 and addr[1] == 0 and addr[2] == 0 and addr[3] == MAPPED_HI then
    block.div4 = 2 ^ (128 - bits)
    block.part4 = floor(addr[4] / block.div4)
  end
  return block
end


local function contains(block, addr)
  if addr.family == 4 then
    local div4 = block.div4
    return div4 ~= nil and floor(addr[4] / div4) == block.part4
  end
  local full = block.full
  for i = 1, full do
    if addr[i] ~= block[i] then
      return false
    end
  end
  local div = block.div
  if div then
    return floor(addr[full + 1] / div) == block.part
  end
  return true
end
M.contains = contains


function M.in_cidr(a, b)
  local addr, block, msg = a, b
  if type(a) ~= "table" then
    addr, msg = M.parse(a)
    if not addr then
      return nil, msg
    end
  end
  if type(b) ~= "table" then
    block, msg = M.parse_cidr(b)
    if not block then
      return nil, msg
    end
  end
  return contains(block, addr)
end


local cache, cached = {}, 0

function M.lookup(s)
  if type(s) ~= "string" then
    return false
  end
  local addr = cache[s]
  if addr == nil then
    addr = M.parse(s) or false
    if cached >= CACHE_MAX then
      cache, cached = {}, 0
    end
    cache[s] = addr
    cached = cached + 1
  end
  return addr
end


return M
