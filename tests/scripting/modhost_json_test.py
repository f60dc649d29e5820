"""Driving modhost from another language: every command with --output json,
the documented exit codes, from Python's standard unittest (docs/scripting.md).

Run: MODHOST=build/bin/modhost MODHOST_IMAGES=build/images python3 tests/scripting/modhost_json_test.py
"""
import json
import os
import random
import subprocess
import unittest

MODHOST = os.environ.get("MODHOST", "modhost")
IMAGES = os.environ.get("MODHOST_IMAGES", "build/images")


def modhost(*args, check=True):
    """Runs `modhost -o json ARGS`; returns (exit code, parsed stdout)."""
    p = subprocess.run([MODHOST, "-o", "json", *args], capture_output=True, text=True, timeout=300)
    doc = json.loads(p.stdout) if p.stdout.strip() else None
    if check and p.returncode != 0:
        raise AssertionError(f"modhost {' '.join(args)} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p.returncode, doc


def docker_answers():
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@unittest.skipUnless(docker_answers(), "no Docker engine answers (scripts/start-docker starts one)")
class ChaosFromPython(unittest.TestCase):
    def setUp(self):
        os.environ["MODHOST_SCOPE"] = f"py{random.randrange(10**8)}"
        modhost("image", "load", os.path.join(IMAGES, "modhost-busybox.tar"))
        _, self.enclave = modhost("enclave", "add", "--name", "py")

    def tearDown(self):
        modhost("clean", "--all")

    def test_kill_a_service_and_read_the_report(self):
        for name in ("web", "db"):
            _, svc = modhost("service", "add", "py", name, "modhost/busybox:1", "--", "sleep", "3600")
            self.assertEqual(svc["status"], "running")
        _, run = modhost("module", "exec", "builtin:chaos", "--enclave-id", self.enclave["id"],
                         "--execute-params", json.dumps({"action": "kill", "services": ["db"], "seed": 7}))
        self.assertEqual(run["module"]["name"], "chaos")
        self.assertEqual([a["service"] for a in run["result"]["actions"]], ["db"])
        self.assertEqual(run["result"]["seed"], 7)
        _, services = modhost("service", "ls", "py")
        status = {s["name"]: s["status"] for s in services["services"]}
        self.assertEqual(status, {"web": "running", "db": "exited"})
        _, events = modhost("enclave", "events", "py")
        self.assertIn(("db", "kill"), [(e["subject"], e["action"]) for e in events])

    def test_errors_are_json_with_stable_exit_codes(self):
        code, doc = modhost("service", "inspect", "py", "ghost", check=False)
        self.assertEqual(code, 4)
        self.assertEqual(doc["error"]["code"], "not_found")
        self.assertEqual(doc["error"]["exitCode"], 4)
        code, doc = modhost("module", "exec", "builtin:partition", "--enclave-id", "py",
                            "--execute-params", '{"partitions": {"a": ["ghost"]}}', check=False)
        self.assertEqual(code, 3)
        self.assertEqual(doc["error"]["code"], "invalid_argument")
        self.assertIn("unknown service 'ghost'", doc["error"]["message"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
