"""The hash-chained audit log: chain, retries, concurrent writers, tampering, checkpoints, CLI."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import multiprocessing
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner, Result

from tests.cli_checks import assert_one_line_error
from zdp.cli import audit_cmd
from zdp.compliance.audit.log import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    AuditLog,
    AuditLogError,
    AuditVerificationError,
    Checkpoint,
    checkpoints_path_for,
    default_log_path,
    verify_log,
)
from zdp.compliance.engine_key import engine_key, engine_public_key_path
from zdp.signing import fingerprint, generate_key_pair, load_private_key

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"engine").digest())  # same in children
OTHER = Ed25519PrivateKey.generate()
WF = "deploy-x-prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

cli = typer.Typer()
cli.add_typer(audit_cmd.app, name="audit")


def event(index: int, run: str = "9f3a") -> AuditEvent:
    return AuditEvent(
        event_id=f"{run}/{index}",
        at=T0 + timedelta(seconds=index),
        kind="phase",
        message=f"step {index}",
        actor="alice" if index % 2 else None,
        data={"index": index, "weights": {"stable": 90, "canary": 10}},
    )


def events(count: int, run: str = "9f3a", start: int = 0) -> list[AuditEvent]:
    return [event(i, run) for i in range(start, start + count)]


def lines_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, entries: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def verify(path: Path) -> AuditVerificationError:
    with pytest.raises(AuditVerificationError) as caught:
        verify_log(path, public_keys=[KEY.public_key()])
    return caught.value


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


@pytest.fixture
def log_of_ten(log_path: Path) -> Path:
    """Ten entries and one checkpoint covering all of them."""
    AuditLog(log_path, KEY, checkpoint_every=10).append(WF, events(10))
    assert len(checkpoints_path_for(log_path).read_text().splitlines()) == 1
    return log_path


# --------------------------------------------------------------------------- the chain


def test_entries_form_a_contiguous_chain_of_canonical_hashes(log_path: Path) -> None:
    result = AuditLog(log_path, KEY).append(WF, events(5))

    assert (result.appended, result.skipped, result.size) == (5, 0, 5)
    entries = lines_of(log_path)
    assert [e["seq"] for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after["prev_hash"] == before["hash"]
    for entry in entries:  # anyone can recompute a hash from the line itself
        content = {k: v for k, v in entry.items() if k != "hash"}
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode()).hexdigest() == entry["hash"]
    assert entries[1]["at"] == "2025-03-01T09:00:01.000000Z"
    assert result.head_hash == entries[-1]["hash"]
    assert verify_log(log_path, public_keys=[]).entries == 5


def test_event_times_are_hashed_in_utc_whatever_zone_they_came_in(log_path: Path) -> None:
    paris = datetime(2025, 3, 1, 10, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    log = AuditLog(log_path, None)
    log.append(WF, [AuditEvent(event_id="r/0", at=paris, kind="k", message="m", data={"t": paris})])

    entry = lines_of(log_path)[0]
    assert entry["at"] == "2025-03-01T10:00:00.000000Z"
    assert entry["data"] == {"t": "2025-03-01T10:00:00.000000Z"}
    assert AuditEntry.model_validate(entry).at == paris


def test_data_that_is_not_plain_json_is_refused() -> None:
    with pytest.raises(ValueError, match="data must be plain JSON"):
        AuditEvent(event_id="r/0", at=T0, kind="k", message="m", data={"x": float("nan")})
    with pytest.raises(ValueError, match="data must be plain JSON"):
        AuditEvent(event_id="r/0", at=T0, kind="k", message="m", data={"x": object()})


def test_re_appending_logged_events_adds_nothing(log_path: Path) -> None:
    log = AuditLog(log_path, KEY)
    log.append(WF, events(3))

    retried = log.append(WF, events(5))  # the activity retried with two more events
    assert (retried.appended, retried.skipped, retried.size) == (2, 3, 5)

    fresh = AuditLog(log_path, KEY).append(WF, events(5))  # another process, same events
    assert (fresh.appended, fresh.skipped, fresh.size) == (0, 5, 5)
    assert fresh.head_hash == retried.head_hash

    other_workflow = log.append("deploy-y-prod", events(2))  # same event ids, other workflow
    assert other_workflow.appended == 2
    assert verify_log(log_path, public_keys=[]).entries == 7


def test_an_event_repeated_in_one_call_is_logged_once(log_path: Path) -> None:
    result = AuditLog(log_path, None).append(WF, [event(0), event(1), event(0)])
    assert (result.appended, result.skipped) == (2, 1)


def test_an_empty_workflow_id_is_refused(log_path: Path) -> None:
    with pytest.raises(AuditLogError, match="without a workflow id"):
        AuditLog(log_path, None).append("", events(1))


# --------------------------------------------------------------------------- concurrency


def test_threads_appending_at_once_keep_one_chain_without_duplicates(log_path: Path) -> None:
    shared = AuditLog(log_path, KEY, checkpoint_every=16)
    logs = [shared, shared, AuditLog(log_path, KEY, checkpoint_every=16), AuditLog(log_path, KEY)]
    start = threading.Barrier(len(logs))

    def writer(number: int, log: AuditLog) -> None:
        start.wait()
        for batch in range(10):
            log.append(WF, events(3, run=f"t{number}", start=3 * batch))
            log.append(WF, events(2, run="common", start=2 * batch))  # every thread logs these

    threads = [threading.Thread(target=writer, args=(n, log)) for n, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    shared.checkpoint()  # sign the tail, as the engine's every append does
    report = verify_log(log_path, public_keys=[KEY.public_key()])
    assert report.entries == len(logs) * 30 + 20
    keys = [(e["workflow_id"], e["event_id"]) for e in lines_of(log_path)]
    assert len(keys) == len(set(keys))
    assert report.checkpoints >= 1


def test_verifying_while_the_engine_appends_sees_a_consistent_prefix(log_path: Path) -> None:
    log = AuditLog(log_path, KEY, checkpoint_every=3)
    log.append(WF, events(1))
    done = threading.Event()

    def engine() -> None:
        for batch in range(1, 60):
            log.append(WF, events(5, start=5 * batch))
        done.set()

    writer = threading.Thread(target=engine)
    writer.start()
    reports = []
    while not done.is_set():
        reports.append(verify_log(log_path, public_keys=[KEY.public_key()]))
    writer.join()

    assert len(reports) > 1
    assert [r.entries for r in reports] == sorted(r.entries for r in reports)


def wait_until(start: float) -> None:
    """Line child processes up on one instant, so their work overlaps."""
    while datetime.now(UTC).timestamp() < start:
        pass


def append_from_a_process(path: str, run: str, start: float) -> int:
    """Run in a child process: its own batches, plus a set of events every process logs."""
    log = AuditLog(Path(path), KEY, checkpoint_every=8)
    wait_until(start)
    for batch in range(40):
        log.append(WF, events(2, run=run, start=2 * batch))
        log.append(WF, events(2, run="common", start=2 * batch))
    return log.append(WF, []).size


def test_processes_appending_at_once_keep_one_chain_without_duplicates(log_path: Path) -> None:
    start = datetime.now(UTC).timestamp() + 2.0
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        sizes = pool.starmap(
            append_from_a_process, [(str(log_path), "p1", start), (str(log_path), "p2", start)]
        )

    report = verify_log(log_path, public_keys=[KEY.public_key()])
    assert report.entries == 2 * 80 + 80
    assert max(sizes) == report.entries
    keys = [(e["workflow_id"], e["event_id"]) for e in lines_of(log_path)]
    assert len(keys) == len(set(keys))
    assert [e["seq"] for e in lines_of(log_path)] == list(range(report.entries))


# --------------------------------------------------------------------------- tampering


def test_an_edited_field_is_named_by_entry(log_of_ten: Path) -> None:
    entries = lines_of(log_of_ten)
    entries[7]["actor"] = "mallory"
    write_lines(log_of_ten, entries)

    error = verify(log_of_ten)

    assert error.seq == 7
    assert str(error) == "entry 7 (deploy-x-prod 9f3a/7): hash does not match its content (edited?)"


def test_an_edited_entry_with_a_recomputed_hash_breaks_the_next_link(log_of_ten: Path) -> None:
    entries = lines_of(log_of_ten)
    entries[4]["message"] = "nothing happened"
    entries[4]["hash"] = hashlib.sha256(
        json.dumps(
            {k: v for k, v in entries[4].items() if k != "hash"},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    write_lines(log_of_ten, entries)

    error = verify(log_of_ten)

    assert error.seq == 5
    assert "entry 5 (deploy-x-prod 9f3a/5): prev_hash does not match" in str(error)


def test_a_deleted_entry_is_named(log_of_ten: Path) -> None:
    entries = lines_of(log_of_ten)
    del entries[4]
    write_lines(log_of_ten, entries)

    error = verify(log_of_ten)

    assert error.seq == 4
    assert str(error).startswith("entry 4: missing: line 5 holds entry 5 (deploy-x-prod 9f3a/5)")


def test_swapped_entries_are_named(log_of_ten: Path) -> None:
    entries = lines_of(log_of_ten)
    entries[2], entries[3] = entries[3], entries[2]
    write_lines(log_of_ten, entries)

    error = verify(log_of_ten)

    assert error.seq == 2
    assert "reordered" in str(error)


def test_truncation_behind_a_checkpoint_is_detected(log_of_ten: Path) -> None:
    write_lines(log_of_ten, lines_of(log_of_ten)[:8])

    error = verify(log_of_ten)

    assert error.seq == 8
    assert str(error) == (
        "entry 8: missing: the log ends here, but checkpoint 0 covers 10 entries (truncated?)"
    )
    with pytest.raises(AuditLogError, match=r"truncated.*zdp audit verify"):
        AuditLog(log_of_ten, KEY).append(WF, events(1, run="new"))


def test_a_tail_rewritten_behind_a_checkpoint_is_detected(log_of_ten: Path) -> None:
    """A whole new chain from entry 8 on is self-consistent; only the checkpoint catches it."""
    write_lines(log_of_ten, lines_of(log_of_ten)[:8])
    forged = log_of_ten.with_name("forged.jsonl")
    forged.write_bytes(log_of_ten.read_bytes())
    AuditLog(forged, None).append(WF, [event(8), event(9, run="fake")])
    log_of_ten.write_bytes(forged.read_bytes())

    error = verify(log_of_ten)

    assert error.seq == 9
    assert str(error).startswith("entry 9 (deploy-x-prod fake/9): hash differs from the head")


def test_a_checkpoint_signed_by_another_key_fails(log_of_ten: Path) -> None:
    path = checkpoints_path_for(log_of_ten)
    good = Checkpoint.model_validate_json(path.read_text())
    forged = good.model_copy(
        update={"signature": base64.b64encode(OTHER.sign(good.signed_bytes())).decode()}
    )
    path.write_text(forged.model_dump_json() + "\n")

    error = verify(log_of_ten)

    assert error.checkpoint == 0
    assert str(error) == (
        "checkpoint 0 (covers 10 entries): signature does not verify (forged or edited?)"
    )


def test_a_checkpoint_by_an_unknown_key_fails(log_of_ten: Path) -> None:
    path = checkpoints_path_for(log_of_ten)
    good = Checkpoint.model_validate_json(path.read_text())
    forged = Checkpoint.sign(good.size, good.head_hash, good.at, OTHER)
    path.write_text(forged.model_dump_json() + "\n")

    error = verify(log_of_ten)

    assert f"signed by unknown key {fingerprint(OTHER.public_key())}" in str(error)
    assert verify_log(log_of_ten, public_keys=[OTHER.public_key()]).checkpoints == 1


def test_a_partial_last_line_is_reported_and_blocks_appending(log_of_ten: Path) -> None:
    head = str(lines_of(log_of_ten)[-1]["hash"])
    line = AuditEntry.chained(10, head, WF, event(10)).line()
    with log_of_ten.open("ab") as handle:
        handle.write(line[: len(line) // 2])  # the writer crashed mid-write

    error = verify(log_of_ten)
    assert error.seq == 10
    assert "the last line is incomplete" in str(error)

    with pytest.raises(AuditLogError, match="zdp audit verify"):
        AuditLog(log_of_ten, KEY).append(WF, [event(10)])
    with log_of_ten.open("ab") as handle:
        handle.write(line[len(line) // 2 : -1])  # complete JSON, still no newline
    assert "incomplete" in str(verify(log_of_ten))


def test_a_malformed_line_is_named(log_of_ten: Path) -> None:
    text = log_of_ten.read_text().splitlines()
    text[3] = text[3][:40]
    log_of_ten.write_text("\n".join(text) + "\n")

    error = verify(log_of_ten)

    assert error.seq == 3
    assert str(error).startswith("entry 3: malformed line 4 (not valid JSON)")


def test_the_first_problem_in_log_order_is_reported(log_path: Path) -> None:
    AuditLog(log_path, KEY, checkpoint_every=4).append(WF, events(4))
    AuditLog(log_path, KEY, checkpoint_every=4).append(WF, events(6, start=4))
    entries = lines_of(log_path)
    entries[8]["message"] = "edited late"
    entries[6]["message"] = "edited early"
    write_lines(log_path, entries)
    cp_path = checkpoints_path_for(log_path)
    checkpoints = cp_path.read_text().splitlines()
    second = Checkpoint.model_validate_json(checkpoints[1])  # covers 8: after entry 6's edit
    forged = base64.b64encode(OTHER.sign(second.signed_bytes())).decode()
    checkpoints[1] = second.model_copy(update={"signature": forged}).model_dump_json()
    cp_path.write_text("\n".join(checkpoints) + "\n")

    assert verify(log_path).seq == 6

    entries[2]["message"] = "edited first"  # before the forged checkpoint too
    write_lines(log_path, entries)
    assert verify(log_path).seq == 2


# --------------------------------------------------------------------------- checkpoints


def test_append_signs_a_checkpoint_every_n_entries(log_path: Path) -> None:
    log = AuditLog(log_path, KEY, checkpoint_every=4)
    for i in range(10):
        log.append(WF, [event(i)])
    sizes = [json.loads(line)["size"] for line in checkpoints_path_for(log_path).open()]
    assert sizes == [4, 8]

    last = log.checkpoint(at=T0)
    assert (last.size, last.at) == (10, T0)
    assert log.checkpoint() == last  # nothing new: no second checkpoint
    assert AuditLog(log_path, KEY).checkpoint() == last  # another process sees it too
    report = verify_log(log_path, public_keys=[KEY.public_key()])
    assert (report.checkpoints, report.last_checkpoint) == (3, last)


def test_without_a_signer_nothing_is_signed(log_path: Path) -> None:
    log = AuditLog(log_path, None, checkpoint_every=1)
    log.append(WF, events(3))
    assert not checkpoints_path_for(log_path).exists()
    with pytest.raises(AuditLogError, match="no signing key"):
        log.checkpoint()


def test_default_paths_live_under_zdp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZDP_HOME", str(tmp_path / "home"))
    assert default_log_path() == tmp_path / "home" / "audit" / "audit.jsonl"
    assert checkpoints_path_for(default_log_path()).name == "audit.checkpoints.jsonl"


# --------------------------------------------------------------------------- engine key


def test_engine_key_is_created_once_with_a_private_file(tmp_path: Path) -> None:
    key = engine_key(tmp_path)

    private = tmp_path / "keys" / "engine.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert engine_public_key_path(tmp_path).is_file()
    assert fingerprint(engine_key(tmp_path).public_key()) == fingerprint(key.public_key())
    assert fingerprint(load_private_key(private).public_key()) == fingerprint(key.public_key())


def test_engine_key_rewrites_a_missing_public_half(tmp_path: Path) -> None:
    key = engine_key(tmp_path)
    engine_public_key_path(tmp_path).unlink()
    assert fingerprint(engine_key(tmp_path).public_key()) == fingerprint(key.public_key())
    assert engine_public_key_path(tmp_path).is_file()


def engine_fingerprint_in_a_process(home: str, start: float) -> str:
    wait_until(start)
    return fingerprint(engine_key(Path(home)).public_key())


def test_processes_racing_to_create_the_engine_key_end_with_one(tmp_path: Path) -> None:
    start = datetime.now(UTC).timestamp() + 2.0
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        found = pool.starmap(engine_fingerprint_in_a_process, [(str(tmp_path), start)] * 4)
    assert len(set(found)) == 1
    assert found[0] == fingerprint(engine_key(tmp_path).public_key())


# --------------------------------------------------------------------------- CLI


def run(*args: str | Path, home: Path) -> Result:
    """The CLI with no Temporal server to ask for anchors (port 9 refuses at once)."""
    env = {"ZDP_HOME": str(home), "TEMPORAL_ADDRESS": "127.0.0.1:9"}
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def test_cli_verify_summarises_a_good_log(tmp_path: Path) -> None:
    log = AuditLog(default_log_path(tmp_path), engine_key(tmp_path), checkpoint_every=10)
    log.append(WF, events(10))
    log.append(WF, events(12))  # 2 more: not enough for the next checkpoint

    # The engine signs every append it makes; entries no checkpoint covers were added by
    # something else (or an interrupted append left them): an error, never "not yet signed".
    assert_one_line_error(
        run("audit", "verify", "--no-temporal", home=tmp_path),
        "entry 10: no checkpoint covers entries 10-11: the engine signs every append",
    )
    head = log.checkpoint().head_hash
    verified = run("audit", "verify", "--no-temporal", home=tmp_path)
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.strip() == (
        f"audit log OK: 12 entries, 2 checkpoints, head {head[:12]}…, last checkpoint covers "
        "12; no anchors found outside the log"
    )
    # What could not be cross-checked is said, never skipped silently.
    assert "the anchors in Temporal histories were not checked" in verified.stderr
    assert "no evidence folder" in verified.stderr


def test_cli_verify_names_the_first_bad_entry_in_one_line(tmp_path: Path) -> None:
    log_path = default_log_path(tmp_path)
    AuditLog(log_path, engine_key(tmp_path)).append(WF, events(20))
    entries = lines_of(log_path)
    entries[17]["data"] = {"index": 1700}
    write_lines(log_path, entries)

    assert_one_line_error(
        run("audit", "verify", "--no-temporal", home=tmp_path),
        "entry 17 (deploy-x-prod 9f3a/17): hash does not match its content (edited?)",
    )


def test_cli_verify_trusts_only_the_keys_it_is_given(tmp_path: Path) -> None:
    signer = generate_key_pair(tmp_path / "ci", "signer")
    log_path = tmp_path / "elsewhere.jsonl"
    AuditLog(log_path, load_private_key(signer.private_key), checkpoint_every=1).append(
        WF, events(2)
    )
    engine_key(tmp_path)  # the default key is not the one that signed
    unknown = f"checkpoint 0 (covers 2 entries): signed by unknown key {signer.fingerprint}"

    assert_one_line_error(
        run("audit", "verify", "--no-temporal", "--log", log_path, home=tmp_path), unknown
    )
    other = generate_key_pair(tmp_path / "ci", "other").public_key
    assert_one_line_error(
        run("audit", "verify", "--no-temporal", "--log", log_path, "--key", other, home=tmp_path),
        unknown,
    )
    trusted = run(
        "audit", "verify", "--no-temporal", "--log", log_path, "--key", other,
        "--key", signer.public_key, home=tmp_path,
    )  # fmt: skip
    assert trusted.exit_code == 0, trusted.output
    assert trusted.stdout.startswith("audit log OK: 2 entries, 1 checkpoint, ")


def test_cli_verify_without_a_log_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(
        run("audit", "verify", "--no-temporal", home=tmp_path), "audit log not found"
    )
    (tmp_path / "audit").mkdir()
    default_log_path(tmp_path).write_text("")
    assert_one_line_error(
        run("audit", "verify", "--no-temporal", home=tmp_path), "engine public key not found"
    )


# --------------------------------------------------------------------------- unsigned tails


def test_the_engine_never_signs_over_entries_it_did_not_write(log_path: Path) -> None:
    """Someone who can write the file chains a forged entry after the last checkpoint: the
    verifier names it, and the engine's next append refuses to sign over it."""
    log = AuditLog(log_path, KEY)
    log.append(WF, events(3), checkpoint=True)
    head = str(lines_of(log_path)[-1]["hash"])
    forged = AuditEntry.chained(3, head, WF, event(3, "forged"))
    with log_path.open("ab") as handle:
        handle.write(forged.line())

    assert "no checkpoint covers entries 3-3" in str(verify(log_path))
    with pytest.raises(AuditLogError, match=r"entry 3 \(deploy-x-prod forged/3\).*will not sign"):
        AuditLog(log_path, KEY).append(WF, events(2, start=10), checkpoint=True)
    assert len(lines_of(log_path)) == 4  # nothing appended, nothing signed
    assert len(checkpoints_path_for(log_path).read_text().splitlines()) == 1


def test_an_interrupted_append_is_signed_by_its_retry(log_path: Path) -> None:
    """Entries written but not yet signed (the process died in between) are this append's own
    events: the retried append recognises them and signs them."""
    log = AuditLog(log_path, KEY, checkpoint_every=0)
    log.append(WF, events(2), checkpoint=True)
    log.append(WF, events(3, start=2))  # written; the checkpoint never came
    retry = AuditLog(log_path, KEY).append(WF, events(3, start=2), checkpoint=True)
    assert (retry.appended, retry.skipped) == (0, 3)
    assert retry.checkpoint is not None and retry.checkpoint.size == 5
    assert verify_log(log_path, public_keys=[KEY.public_key()]).entries == 5
