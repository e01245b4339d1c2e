-- luacheck: ignore 613 631
-- Verbatim response samples of the two revisions of Microsoft's "Get scan history by session"
-- page (../shared/seeds/001_*.txt and 000_*.txt). Neither is valid JSON:
--   SEED_001: trailing commas; ListScannedTargets written as an object followed by bare objects.
--   SEED_000: U+202F (narrow no-break space) used as whitespace, and trailing spaces.
-- SEED_000_CLEAN is SEED_000 with U+202F replaced by a plain space (valid JSON).
local M = {}

M.SEED_001 = [[
{
 "@odata.context": "https://api.securitycenter.microsoft.com/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId",
    "value": [
    {
     "orgId": "asdf781a0c-792d-46d3-bbea-a93dbc0bfcaa",
     "ScanDefinitionIds": "4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae",
     "SessionIds": "01decc497f4b4ec49a5fc4e12597f8c8",
     "NumberOfSuccessfullyScannedTargets": 3,
     "NumberOfTargets": 3,
     "ScanStatus": "Success",
     "LastScanned": "2022-12-19T15:14:24.5561791Z",
     "ListScannedTargets": {
         "Ip": "127.0.0.1",
         "Hostname": "DESKTOP-Test",
         "ScannedDeviceDescription": "Network device",
         "ErrorMessage": "",
         "ScanStatus": "Success",
         "ScanDuration": "00:08:30",
        },
        {
         "Ip": "127.0.0.2",
         "Hostname": "DESKTOP-Test2",
         "ScannedDeviceDescription": "Network device 2",
         "ErrorMessage": "",
         "ScanStatus": "Success",
         "ScanDuration": "00:08:00",
        },
{
         "Ip": "127.0.0.3",
         "Hostname": "DESKTOP-Test3",
         "ScannedDeviceDescription": "Network device 3",
         "ErrorMessage": "",
         "ScanStatus": "Success",
         "ScanDuration": "00:08:50",
        },
    }
  ]
}
]]

M.SEED_000 = [[
{
"scanType": "Network", 
"scanName": "Test Network scan", 
"isActive": true, 
"target": "127.0.0.1", 
"intervalInHours": 4, 
"scannerAgent": { 
    "machineId": "896226a67c5e2917e44fb5c0368dc6c83129c5bf" 
    }, 
"scanAuthenticationParams": { 
    "@odata.type": "#microsoft.windowsDefenderATP.api.SnmpAuthParams", 
    "type": "AuthPriv", 
    "username": "username", 
    "authProtocol": "authProtocol", 
    "authPassword": "authPassword", 
    "privProtocol": "privProtocol", 
    "privPassword": "privPassword", 
    "communityString": "community-string" 
    } 
} 
]]

M.SEED_000_CLEAN = (M.SEED_000:gsub("\226\128\175", " "))

return M
