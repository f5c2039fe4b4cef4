#!/usr/bin/python3
"""Print the pass/fail/skip counts of one or more meson build dirs' last test runs.

Reads <builddir>/meson-logs/testlog.json (one JSON object per line). The last line
printed is exactly "N passed, N failed" (what CI reads); skipped tests are listed
above it by name so a skip is never silent.
"""
import json
import os
import sys

passed = failed = skipped = 0
skipped_names = []
failed_names = []
for build in sys.argv[1:]:
    log = os.path.join(build, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        print(f"{build}: no test log (build or setup failed)")
        failed += 1
        failed_names.append(f"{build}: (no tests ran)")
        continue
    for line in open(log, encoding="utf-8"):
        line = line.strip()
        if not line:
            continue
        t = json.loads(line)
        res = t.get("result")
        name = f"{build}: {t.get('name')}"
        if res in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif res == "SKIP":
            skipped += 1
            skipped_names.append(name)
        else:
            failed += 1
            failed_names.append(f"{name} [{res}]")
for n in skipped_names:
    print(f"SKIPPED {n}")
for n in failed_names:
    print(f"FAILED  {n}")
print(f"{skipped} skipped")
print(f"{passed} passed, {failed} failed")
