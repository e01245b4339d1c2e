"""What an automation engineer would otherwise use: Python requests (Debian's python3-requests,
run with /usr/bin/python3) with a Session (keep-alive) and the json module (resp.json()).

  /usr/bin/python3 bench/tools/requests_tool.py --mode small|pages|each --base URL --ca CA ...
Prints the protocol of bench/tools/common.lua.
"""
import gc
import json
import resource
import sys
import time

import requests

HISTORY_BY_SESSION = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId"
HISTORY_BY_DEFINITION = "/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId"


def args(argv):
    o, i = {}, 0
    while i < len(argv):
        k = argv[i][2:]
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            o[k] = argv[i + 1]
            i += 2
        else:
            o[k] = True
            i += 1
    return o


def main():
    o = args(sys.argv[1:])
    n, reps, warmup = int(o.get("n", 1000)), int(o.get("reps", 5)), int(o.get("warmup", 1))
    top = int(o.get("top", 1000))
    s = requests.Session()
    s.trust_env = False  # no proxies or CA bundle from the environment: loopback, our CA
    s.verify = o["ca"]
    s.headers.update({"Accept": "application/json", "Content-Type": "application/json",
                      "Authorization": "Bearer " + o.get("token", "bench-token")})
    mode = o["mode"]

    def once():
        if mode == "small":
            url = o["base"] + HISTORY_BY_SESSION
            body = json.dumps({"SessionIds": [o["sid"]]})
            nbytes = 0
            for _ in range(n):
                r = s.post(url, data=body)
                if r.status_code != 200:
                    raise SystemExit("status %d" % r.status_code)
                nbytes += len(r.content)
                if len(r.json()["value"]) != 1:
                    raise SystemExit("no record")
            return n, nbytes, n
        url = o["base"] + HISTORY_BY_DEFINITION + "?$top=%d" % top
        body = json.dumps({"ScanDefinitionIds": [o["def"]]})
        calls = nbytes = records = 0
        kept = []
        while url:
            r = s.post(url, data=body)
            if r.status_code != 200:
                raise SystemExit("status %d" % r.status_code)
            calls += 1
            nbytes += len(r.content)
            page = r.json()
            items = page["value"]
            records += len(items)
            if mode == "pages":
                kept.extend(items)
            url = page.get("@odata.nextLink")
        return calls, nbytes, records

    for rep in range(warmup + reps):
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        calls, nbytes, records = once()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if rep >= warmup:
            print("rep %.6f %d %d %d %.6f" % (dt, calls, nbytes, records, dc), flush=True)
    print("rss_kb %d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


main()
