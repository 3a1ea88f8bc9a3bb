#!/usr/bin/env python3
"""Runs the Eclipse Paho interoperability suites (MQTT 3.1.1 client_test.py and MQTT 5.0
client_test5.py, from a checkout of paho.mqtt.testing kept outside this repository) against a
broker, one test at a time with a time limit each, and ends with one line "N passed, M failed".

Usage: interop.py SUITE_DIR HOST PORT [v3|v5|both] [TEST_NAME ...]
"""
import os
import subprocess
import sys
import tempfile

RUNNER = r'''
import os, runpy, signal, sys, unittest
suite_file, host, port, name, limit = sys.argv[1:6]
def alarm(*_):
    raise TimeoutError("test exceeded %s s" % limit)
signal.signal(signal.SIGALRM, alarm)
result = {"status": "ERROR", "why": "did not run"}
def main(*a, **k):
    mod = sys.modules["__main__"]
    loader = unittest.TestLoader()
    names = loader.getTestCaseNames(mod.Test)
    if name == "--list":
        print("TESTS " + " ".join(names))
        return
    suite = unittest.TestSuite([loader.loadTestsFromName("Test." + name, mod)])
    signal.alarm(int(limit))
    r = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    signal.alarm(0)
    bad = r.failures + r.errors
    if r.testsRun == 1 and not bad:
        result.update(status="PASS", why="")
    else:
        why = bad[0][1].strip().splitlines()[-1] if bad else "not run"
        result.update(status="FAIL", why=why)
unittest.main = main
os.chdir(os.path.dirname(os.path.abspath(suite_file)))
sys.path.insert(0, os.getcwd())
sys.argv = [suite_file, "--hostname", host, "--port", port]
try:
    runpy.run_path(suite_file, run_name="__main__")
except SystemExit:
    pass
except BaseException as e:
    result.update(status="ERROR", why=repr(e))
if name != "--list":
    print("RESULT %s %s" % (result["status"], result["why"].replace("\n", " ")[:300]))
sys.stdout.flush()
os._exit(0)
'''

# Corrections made to the suite before it runs, in a copy beside the original: bugs of the
# suite's own that make a test a race on any broker that handles connections in parallel. Each is
# (file, text, replacement, occurrences); when the text is not found that many times (the suite
# changed), the file runs as it is and a line says so. INTEROP_UNPATCHED=1 runs it as it is.
FIXES = [
    # test_subscribe_options and test_request_response: after the second client subscribes, the
    # test waits for a SUBACK on the first client's callback (which already has one), so it
    # publishes from the first client without waiting for the second client's SUBACK, and the
    # PUBLISH may be routed before the SUBSCRIBE is handled. Elsewhere the suite waits on the
    # second client's callback (callback2), as here after the fix.
    ("client_test5.py",
     "      bclient.subscribe([topics[0]], [MQTTV5.SubscribeOptions(2, noLocal=True)])\n"
     "      self.waitfor(callback.subscribeds, 1, 3)\n",
     "      bclient.subscribe([topics[0]], [MQTTV5.SubscribeOptions(2, noLocal=True)])\n"
     "      self.waitfor(callback2.subscribeds, 1, 3)\n",
     2),
]


def prepare(suite):
    """Returns the file to run for suite (a corrected copy beside it, or suite) and notes."""
    if os.environ.get("INTEROP_UNPATCHED") == "1":
        return suite, []
    text = open(suite).read()
    notes = []
    changed = False
    for name, old, new, count in FIXES:
        if name != os.path.basename(suite):
            continue
        if text.count(old) != count:
            notes.append("note   %s: the suite's text changed; its known race is not corrected" % name)
            continue
        text = text.replace(old, new)
        changed = True
        notes.append("note   %s: the second client's SUBACK is awaited before the publish in "
                     "test_subscribe_options and test_request_response (a race in the suite, see scripts/interop.py)" % name)
    if not changed:
        return suite, notes
    copy = os.path.join(os.path.dirname(suite), ".mcloudtt-" + os.path.basename(suite))
    with open(copy, "w") as f:
        f.write(text)
    return copy, notes


def run(runner, suite, host, port, name, limit, log):
    try:
        p = subprocess.run([sys.executable, "-u", runner, suite, host, port, name, str(limit)],
                           capture_output=True, text=True, timeout=limit + 30)
        out, err = p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        out, err = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), ""
        out += "\nRESULT FAIL timed out"
    log.write("===== %s %s\n%s\n%s\n" % (os.path.basename(suite), name, out, err))
    return out

def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        print("0 passed, 1 failed")
        return 2
    suite_dir, host, port = sys.argv[1:4]
    which = sys.argv[4] if len(sys.argv) > 4 else "both"
    only = sys.argv[5:]
    interop = os.path.join(suite_dir, "interoperability")
    if not os.path.isfile(os.path.join(interop, "client_test5.py")):
        print("paho.mqtt.testing not found at %s; fetch it there (see README, 'Interoperability')" % suite_dir, file=sys.stderr)
        print("0 passed, 1 failed")
        return 2
    limit = int(os.environ.get("INTEROP_TEST_TIMEOUT", "60"))
    suites = {"v3": "client_test.py", "v5": "client_test5.py"}
    chosen = ["v3", "v5"] if which == "both" else [which]
    passed = failed = 0
    fd, runner = tempfile.mkstemp(suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write(RUNNER)
    logpath = os.environ.get("INTEROP_LOG", "/tmp/mcloudtt-interop.log")
    with open(logpath, "w") as log:
        for label in chosen:
            suite, notes = prepare(os.path.join(interop, suites[label]))
            for note in notes:
                print(note)
            listing = run(runner, suite, host, port, "--list", limit, log)
            names = []
            for line in listing.splitlines():
                if line.startswith("TESTS "):
                    names = line.split()[1:]
            if only:
                names = [n for n in names if n in only]
            if not names:
                print("FAIL   %s: could not list the suite's tests (see %s)" % (label, logpath))
                failed += 1
                continue
            for name in names:
                out = run(runner, suite, host, port, name, limit, log)
                status, why = "FAIL", "no result"
                for line in out.splitlines():
                    if line.startswith("RESULT "):
                        parts = line.split(" ", 2)
                        status, why = parts[1], parts[2] if len(parts) > 2 else ""
                if status == "PASS":
                    passed += 1
                    print("PASS   %s %s" % (label, name))
                else:
                    failed += 1
                    print("FAIL   %s %s: %s" % (label, name, why))
                sys.stdout.flush()
            if suite != os.path.join(interop, suites[label]):
                os.unlink(suite)
    os.unlink(runner)
    print("suite output: %s" % logpath)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1

if __name__ == "__main__":
    sys.exit(main())
