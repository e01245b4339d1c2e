--- mde.gather: calls of several clients (several tenants) in flight at once, on one thread.
--
--   local results = mde.gather({
--     function() return contoso:scan_history_by_session(ids) end,
--     function() return fabrikam:scan_definitions{ all = true } end,
--   }, { concurrency = 8 })
--   -- results[i] = { n = ..., <what function i returned> }: results[1][1] is the list of records
--   -- or nil, and results[1][2] the error
--
-- Each function runs as a coroutine. Its calls of any client (each with that client's token,
-- pacing, retries and deadline) yield to the gathering, which sends the waiting calls of all
-- the functions together, `concurrency` at a time, with libcurl's multi interface, and
-- resumes each function with its results. Functions end in any order; the results keep the
-- order of `fns`. An error raised in a function is raised by gather.
--
-- A function must not yield on its own, nor call a client from inside a C function's
-- callback (table.sort's comparator, string.gsub's replacement): a Lua coroutine cannot
-- yield across those. On plain Lua 5.1, whose pcall cannot be yielded across either, the
-- functions run one after the other.

local type, select, error, ipairs, tostring = type, select, error, ipairs, tostring
local create, resume, status = coroutine.create, coroutine.resume, coroutine.status

local errors = require "mde.errors"
local pipeline = require "mde.pipeline"

local GATHERING, GATHER = pipeline.GATHERING, pipeline.GATHER
local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

-- plain Lua 5.1 cannot yield across pcall, which the paging helpers use
local YIELDABLE = not (_VERSION == "Lua 5.1" and not rawget(_G, "jit"))

local DEFAULT_CONCURRENCY = 4


local function gather(fns, opts)
  if type(fns) ~= "table" then
    return errors.invalid("mde.gather: a list of functions expected, got %s", type(fns))
  end
  for i = 1, #fns do
    if type(fns[i]) ~= "function" then
      return errors.invalid("mde.gather: item %d is a %s, not a function", i, type(fns[i]))
    end
  end
  if opts ~= nil and type(opts) ~= "table" then
    return errors.invalid("mde.gather: opts must be a table, got %s", type(opts))
  end
  local width = opts and opts.concurrency or DEFAULT_CONCURRENCY
  if type(width) ~= "number" or width < 1 or width % 1 ~= 0 then
    return errors.invalid("mde.gather: 'concurrency' must be a positive whole number")
  end

  local results = {}
  if not YIELDABLE then
    for i = 1, #fns do results[i] = pack(fns[i]()) end
    return results
  end

  local waiting = {} -- the functions waiting for their calls: { i, co, items }
  local function advance(i, co, ...)
    local out = pack(resume(co, ...))
    if not out[1] then
      GATHERING[co] = nil
      error(out[2], 0)
    end
    if status(co) == "dead" then
      GATHERING[co] = nil
      results[i] = pack(unpack(out, 2, out.n))
    elseif out[2] == GATHER then
      waiting[#waiting + 1] = { i = i, co = co, items = out[3] }
    else
      GATHERING[co] = nil
      error("mde.gather: function " .. i .. " yielded " .. tostring(out[2])
        .. "; only the calls of mde clients may yield in a gathering", 0)
    end
  end

  for i = 1, #fns do
    local co = create(fns[i])
    GATHERING[co] = true
    advance(i, co)
  end
  while #waiting > 0 do
    local wave = waiting
    waiting = {}
    local items = {}
    for _, w in ipairs(wave) do
      for _, item in ipairs(w.items) do items[#items + 1] = item end
    end
    -- (a gathering inside a task of another hands its wave up to that one: call_many yields)
    local outs = pipeline.call_many(items, width)
    local k = 0
    for _, w in ipairs(wave) do
      local mine = {}
      for j = 1, #w.items do mine[j] = outs[k + j] end
      k = k + #w.items
      advance(w.i, w.co, mine)
    end
  end
  return results
end


return {
  gather = gather,
  -- do the functions of a gathering overlap on this Lua (not on plain 5.1)
  concurrent = YIELDABLE,
}
