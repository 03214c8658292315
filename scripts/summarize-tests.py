#!/usr/bin/env python3
"""Counts test results from meson's testlog.json files and prints 'N passed, N failed, N skipped'.

A doctest binary counts as its test cases (from its own summary line); any other test
counts as one. Exits 1 if anything failed or if no test ran at all."""
import json
import re
import sys

DOCTEST = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed\s*\|\s*(\d+) skipped")

passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError as e:
        print(f"summarize-tests: cannot read {path}: {e}", file=sys.stderr)
        failed += 1
        continue
    for line in lines:
        if not line.strip():
            continue
        t = json.loads(line)
        result = t.get("result", "")
        m = DOCTEST.search(t.get("stdout", "") or "")
        ok = result in ("OK", "EXPECTEDFAIL")
        if m:
            _, p, f, s = map(int, m.groups())
            passed += p
            failed += f
            skipped += s
            if not ok and f == 0:  # crashed or timed out after its last summary
                failed += 1
        elif result == "SKIP":
            skipped += 1
        elif ok:
            passed += 1
        else:
            failed += 1
        if not ok:
            print(f"FAILED: {t.get('name')} ({result})")

print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or passed == 0 else 0)
