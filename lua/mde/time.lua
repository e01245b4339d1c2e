--- Calendar arithmetic without os.time (which depends on the local time zone).

local floor = math.floor

local M = {}

--- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
function M.days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end


--- Epoch seconds of a UTC date and time.
function M.epoch(y, m, d, hh, mm, ss)
  return M.days_from_civil(y, m, d) * 86400 + (hh or 0) * 3600 + (mm or 0) * 60 + (ss or 0)
end


return M
