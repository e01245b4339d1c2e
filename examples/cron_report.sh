#!/usr/bin/env bash
# Daily report of Defender for Endpoint authenticated scans, for cron.
#
#   cron_report.sh OUTPUT_DIR [DAYS]
#
# Writes into OUTPUT_DIR, for the last DAYS days (default 7, UTC):
#   report-YYYY-MM-DD.html          the HTML report (self-contained: mail it or serve it as is)
#   summary-YYYY-MM-DD.json         the figures (sessions, success rate, per definition, per day)
#   failed-targets-YYYY-MM-DD.csv   every failed target, one row each, for a spreadsheet
# and deletes reports older than KEEP_DAYS (default 30). Prints nothing when all is well, so
# cron mails only problems: a failed run (with the reason; the exit code is mde's: 2 usage,
# 3 auth, 4 API, 5 partial) or a success rate below MIN_SUCCESS_RATE, e.g. 0.9 (exit code 6).
# Overlapping runs are skipped.
#
# Credentials come from the environment or a config file (chmod 600), never from the crontab
# line:
#   # /etc/cron.d/mde-report
#   MDE_CONFIG=/etc/lua-mde/mde.conf
#   MIN_SUCCESS_RATE=0.9
#   15 6 * * *  reports  /opt/lua-mde/examples/cron_report.sh /var/lib/mde-reports 7
#
#   # /etc/lua-mde/mde.conf  (owner reports, mode 600)
#   tenant_id = 00000000-0000-0000-0000-000000000000
#   client_id = 11111111-1111-1111-1111-111111111111
#   client_secret = ...
#
# MDE (default: `mde` on PATH, else this checkout's bin/mde) picks the tool.
set -uo pipefail

out=${1:?usage: cron_report.sh OUTPUT_DIR [DAYS]}
days=${2:-7}
keep=${KEEP_DAYS:-30}
case $days in ''|*[!0-9]*) echo "cron_report.sh: DAYS must be a number, got '$days'" >&2; exit 2 ;; esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "${MDE:-}" ]; then mde=$MDE
elif command -v mde >/dev/null 2>&1; then mde=mde
else mde="$here/../bin/mde"; fi

umask 077                                   # reports name hosts and networks: keep them private
mkdir -p "$out" || exit 1
exec 9>"$out/.cron_report.lock"
if ! flock -n 9; then exit 0; fi            # the previous run is still going

today=$(date -u +%F)
since=$(date -u -d "$days days ago" +%F 2>/dev/null || date -u -v-"$days"d +%F)
status=0

explain() {
  case $1 in
    2) echo "usage or configuration error (see above)" ;;
    3) echo "authentication failed: check the app's secret or certificate and its Machine.Read.All permission" ;;
    4) echo "the API or the network failed (see above); the next run will try again" ;;
    5) echo "partial results: a page failed midway; what was fetched is in the .partial file" ;;
    *) echo "unexpected error (exit $1)" ;;
  esac
}

# the report and its figures, in one pass over the sessions
"$mde" report --since "$since" --html "$out/report-$today.html" \
  --format json --output "$out/summary-$today.json" --quiet
rc=$?
if [ $rc -ne 0 ]; then echo "mde report: $(explain $rc)" >&2; status=$rc; fi

# every failed target, for whoever fixes them
"$mde" sessions --since "$since" --failed-targets --targets --format csv \
  --columns SessionIds,LastScanned,ScanDefinitionIds,Target.Ip,Target.Hostname,Target.ScanStatus,Target.ErrorMessage \
  --output "$out/failed-targets-$today.csv" --quiet
rc=$?
if [ $rc -ne 0 ]; then echo "mde sessions: $(explain $rc)" >&2; [ $status -ne 0 ] || status=$rc; fi

# alert on a low success rate
if [ $status -eq 0 ] && [ -n "${MIN_SUCCESS_RATE:-}" ] && [ -f "$out/summary-$today.json" ]; then
  if command -v jq >/dev/null 2>&1; then
    rate=$(jq -r '.success_rate // empty' "$out/summary-$today.json")
  else
    # the summary's keys come in a fixed order: the overall success_rate before the per-definition ones
    rate=$(grep -o '"success_rate":[0-9.eE+-]*' "$out/summary-$today.json" | head -n 1 | cut -d: -f2)
  fi
  if [ -n "$rate" ] && awk -v r="$rate" -v min="$MIN_SUCCESS_RATE" 'BEGIN { exit !(r < min) }'; then
    printf 'Authenticated scans since %s: success rate %.1f%%, below %.1f%%. Report: %s\n' \
      "$since" "$(awk -v r="$rate" 'BEGIN { print r * 100 }')" \
      "$(awk -v r="$MIN_SUCCESS_RATE" 'BEGIN { print r * 100 }')" "$out/report-$today.html"
    status=6
  fi
fi

find "$out" -maxdepth 1 -type f \( -name 'report-*.html' -o -name 'summary-*.json' -o -name 'failed-targets-*.csv' \
  -o -name '*.partial' \) -mtime +"$keep" -delete 2>/dev/null

exit $status
