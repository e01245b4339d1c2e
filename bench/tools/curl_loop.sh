#!/usr/bin/env bash
# The curl command line in a loop: one process (and one TLS connection) per call, bodies to
# /dev/null (the CLI does not decode). Pages are fetched by $skip (a shell loop cannot follow
# a nextLink without a JSON tool).
#   bench/tools/curl_loop.sh small|pages BASE CA TOKEN N_OR_PAGES REPS WARMUP SID_OR_DEF TOP
set -euo pipefail
mode=$1 base=$2 ca=$3 token=$4 n=$5 reps=$6 warmup=$7 id=$8 top=${9:-1000}
hdr=(-H "Accept: application/json" -H "Content-Type: application/json" -H "Authorization: Bearer $token")
now() { date +%s.%N; }
for ((r = 1; r <= warmup + reps; r++)); do
  t0=$(now)
  if [ "$mode" = small ]; then
    body="{\"SessionIds\":[\"$id\"]}"
    for ((i = 0; i < n; i++)); do
      curl -sSf --cacert "$ca" "${hdr[@]}" -d "$body" -o /dev/null \
        "$base/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId"
    done
    calls=$n
  else
    body="{\"ScanDefinitionIds\":[\"$id\"]}"
    for ((i = 0; i < n; i++)); do
      curl -sSf --cacert "$ca" "${hdr[@]}" -d "$body" -o /dev/null \
        "$base/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId?\$top=$top&\$skip=$((i * top))"
    done
    calls=$n
  fi
  t1=$(now)
  if [ "$r" -gt "$warmup" ]; then
    awk -v a="$t0" -v b="$t1" -v c="$calls" 'BEGIN { printf "rep %.6f %d 0 0 -1\n", b - a, c }'
  fi
done
echo "rss_kb -1"
