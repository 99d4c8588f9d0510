"""The `amoiq-chat` command: migrate, create-admin, serve (one and several processes)."""
import json
import os
import signal
import subprocess
import urllib.request

from amoiq_chat.credentials import hash_api_key

from .conftest import CLI, cli_env, free_port, wait_for_port


def run_cli(settings, *args, **env):
    return subprocess.run([*CLI, *args], env=cli_env(settings, **env), capture_output=True, text=True, timeout=120)


def test_migrate_reports_an_up_to_date_database(settings):
    result = run_cli(settings, "migrate")  # the test database was migrated when it was made
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "database is up to date"


def test_create_admin_prints_tenant_and_keys_once(settings, db_conn):
    result = run_cli(settings, "create-admin", "--email", "cli-owner@example.com", "--password", "long-enough-1")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    tenant_id = lines["tenant id"].strip()
    publishable = lines["publishable key"].strip()
    secret = lines["secret key"].split()[0]
    assert tenant_id.startswith("tenant-") and publishable.startswith("pk_") and secret.startswith("sk_")
    with db_conn.cursor() as cur:
        cur.execute("SELECT kind, key_hash, public_key FROM api_keys WHERE tenant_id = %s ORDER BY kind", (tenant_id,))
        rows = cur.fetchall()
        cur.execute("SELECT username, password FROM users WHERE tenant_id = %s", (tenant_id,))
        username, password_hash = cur.fetchone()
    assert rows == [("publishable", hash_api_key(publishable), publishable), ("secret", hash_api_key(secret), None)]
    assert username == "cli-owner" and password_hash.startswith("$argon2id$")
    again = run_cli(settings, "create-admin", "--email", "cli-owner@example.com", "--password", "long-enough-1")
    assert again.returncode == 1 and "already registered" in again.stderr
    short = run_cli(settings, "create-admin", "--email", "x@example.com", "--password", "short")
    assert short.returncode == 2


def test_bad_configuration_stops_with_a_clear_message(settings):
    result = run_cli(settings, "migrate", PORT="not-a-port")
    assert result.returncode == 2
    assert "configuration error: PORT must be a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_two_workers_shares_one_port(settings, tmp_path):
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:  # the workers' own log, shown if they do not stop
        process = subprocess.Popen([*CLI, "serve", "--port", str(port), "--workers", "2"],
                                   env=cli_env(settings, LOG_LEVEL="INFO"), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_for_port(port, process)  # the supervisor's socket: connections wait there until a worker serves
        for n in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=60 if n == 0 else 5) as resp:
                assert resp.status == 200
                assert json.loads(resp.read())["services"]["postgres"]["status"] == "up"
    finally:
        process.terminate()
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the workers too: nothing outlives the test
            process.wait(10)
            code = "still running 30 s after SIGTERM"
    assert code == 0, f"serve --workers 2 ended with {code}; its log:\n{log_path.read_text()[-4000:]}"
