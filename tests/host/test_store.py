"""make gc's decisions on backups/: which archives go, which stay, what killed store commands
left behind; and how freed bytes read."""

from __future__ import annotations

import os

from stackctl import store

SQLITE = [f"mlflow-2026120{day}T010000Z.tar.gz" for day in range(1, 8)]
TEAM = [f"mlflow-team-2026120{day}T010000Z.tar.gz" for day in range(1, 4)]


def test_gc_keeps_the_newest_backups_of_each_mode_and_every_file_of_the_user():
    mine = ["mlflow-before-the-demo.tar.gz", "notes.txt", "mlflow-team-copy.tar.gz"]
    doomed = store.old_backups(SQLITE + TEAM + mine, kept=2)
    assert doomed == sorted(SQLITE[:5] + TEAM[:1])
    assert store.old_backups(SQLITE + TEAM, kept=10) == []


def test_pruning_deletes_old_archives_and_only_stale_leftovers(tmp_path):
    for name in SQLITE + ["mine.tar.gz"]:
        (tmp_path / name).write_bytes(b"x" * 100)
    stale_partial = tmp_path / ".mlflow-20261207T010000Z.tar.gz.partial"
    stale_scratch = tmp_path / ".dumps-abc"
    fresh_scratch = tmp_path / ".restore-def"
    stale_partial.write_bytes(b"x" * 50)
    stale_scratch.mkdir()
    (stale_scratch / "mlflow.dump").write_bytes(b"x" * 25)
    fresh_scratch.mkdir()
    now = 1_000_000_000.0
    for path in (stale_partial, stale_scratch):
        os.utime(path, (now - store.LEFTOVER_AGE - 1,) * 2)
    os.utime(fresh_scratch, (now - 10,) * 2)

    freed = store.prune_backups(tmp_path, kept=3, now=now)

    left = sorted(path.name for path in tmp_path.iterdir())
    # A command running now may own the fresh scratch folder: it stays
    assert left == sorted(SQLITE[4:] + ["mine.tar.gz", ".restore-def"])
    assert freed == 4 * 100 + 50 + 25


def test_freed_bytes_read_in_binary_units():
    assert store.human(0) == "0"
    assert store.human(1536) == "1.5K"
    assert store.human(20 * 1024**2) == "20M"
    assert store.human(3 * 1024**3) == "3.0G"
