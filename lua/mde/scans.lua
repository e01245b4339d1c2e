--- The authenticated-scan endpoints, as data: the only place their paths are spelled.
-- Fields: method, path ("{id}" is replaced by the escaped id), body_key (the
-- list of IDs sent in the body), safe (may be retried automatically),
-- paged (OData $top/$skip and @odata.nextLink), history (records carry
-- ListScannedTargets, normalised to a list).

local M = {}

local DEFS = "/api/DeviceAuthenticatedScanDefinitions"
local AGENTS = "/api/DeviceAuthenticatedScanAgents"

M.endpoints = {
  history_by_session = { method = "POST", path = DEFS .. "/GetScanHistoryBySessionId",
    body_key = "SessionIds", safe = true, paged = true, history = true },
  -- an older revision of the docs (seed 000): kept reachable through client:request
  history_by_session_get = { method = "GET", path = DEFS .. "/ScanHistoryBySessionId",
    safe = true, history = true },
  history_by_definition = { method = "POST", path = DEFS .. "/GetScanHistoryByScanDefinitionId",
    body_key = "ScanDefinitionIds", safe = true, paged = true, history = true },
  definitions = { method = "GET", path = DEFS, safe = true, paged = true },
  definition = { method = "GET", path = DEFS .. "/{id}", safe = true },
  create_definition = { method = "POST", path = DEFS, safe = false },
  update_definition = { method = "PATCH", path = DEFS .. "/{id}", safe = false },
  delete_definitions = { method = "POST", path = DEFS .. "/BatchDelete",
    body_key = "ScanDefinitionIds", safe = false },
  agents = { method = "GET", path = AGENTS, safe = true, paged = true },
  agent = { method = "GET", path = AGENTS .. "/{id}", safe = true },
}

-- "METHOD path" -> endpoint, for requests made by path (client:request, pages, each)
local by_route = {}
for _, e in pairs(M.endpoints) do
  if not e.path:find("{id}", 1, true) then by_route[e.method .. " " .. e.path:lower()] = e end
end


--- The endpoint a method and path (no query) belong to, if any.
function M.lookup(method, path)
  return by_route[method .. " " .. path:lower()]
end


return M
