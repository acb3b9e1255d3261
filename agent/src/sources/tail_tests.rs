//! Following files: appends, rotation, truncation, restarts.

use super::*;
use crate::sources::Interest;
use crate::sources::RecordStart;
use std::io::Write;

fn follower(path: &Path) -> Follower {
    Follower::new(
        "s",
        path.to_path_buf(),
        Assembly { start: RecordStart::Line, max_bytes: 4096, max_lines: 10, interest: Interest::All },
    )
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
}

fn poll(f: &mut Follower) -> Vec<String> {
    let mut out = Vec::new();
    // A tiny budget: every path through poll() is taken in small steps.
    while f.poll(Budget { bytes: 7, time: Duration::MAX }, &mut |r| out.push(r.text())).unwrap() {}
    f.flush_if_quiet(RecordWindow { settle: Duration::ZERO, flush: Duration::ZERO }, &mut |r| out.push(r.text()));
    out
}

#[test]
fn follows_appends_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("server.log");
    append(&p, "old history\n");
    let mut f = follower(&p);
    f.start(None, None, StartAt::End, &mut |_| panic!("history is skipped")).unwrap();
    append(&p, "one\n");
    assert_eq!(poll(&mut f), ["one"]);
    append(&p, "two\n");
    std::fs::rename(&p, dir.path().join("server.log.1")).unwrap();
    append(&p, "three\n");
    assert_eq!(poll(&mut f), ["two", "three"]);
    std::fs::write(&p, "").unwrap();
    append(&p, "four\n");
    assert_eq!(poll(&mut f), ["four"]);
}

#[test]
fn file_appearing_later_is_read_from_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("late.log");
    let mut f = follower(&p);
    f.start(None, None, StartAt::End, &mut |_| {}).unwrap();
    assert!(poll(&mut f).is_empty());
    append(&p, "hello\n");
    assert_eq!(poll(&mut f), ["hello"]);
}

#[test]
fn restart_from_checkpoint_neither_replays_nor_skips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "a\nb\n");
    let mut f = follower(&p);
    f.start(None, None, StartAt::Beginning, &mut |_| {}).unwrap();
    assert_eq!(poll(&mut f), ["a", "b"]);
    let cp = f.checkpoint().unwrap();
    append(&p, "c\n");
    let mut g = follower(&p);
    let mut seen = Vec::new();
    g.start(Some(&cp), None, StartAt::End, &mut |r| seen.push(r.text())).unwrap();
    seen.extend(poll(&mut g));
    assert_eq!(seen, ["c"]);
}

#[test]
fn rotation_while_down_finishes_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "first line long enough\n");
    let mut f = follower(&p);
    f.start(None, None, StartAt::Beginning, &mut |_| {}).unwrap();
    poll(&mut f);
    let cp = f.checkpoint().unwrap();
    append(&p, "written before rotation\n");
    std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
    append(&p, "new file\n");
    let mut g = follower(&p);
    let mut seen = Vec::new();
    g.start(Some(&cp), None, StartAt::End, &mut |r| seen.push(r.text())).unwrap();
    seen.extend(poll(&mut g));
    assert_eq!(seen, ["written before rotation", "new file"]);
}

/// Runs `rotate` while the agent is "down" after reading the first line,
/// then starts again from the checkpoint: what does it read, and say?
fn down_while(rotate: impl FnOnce(&Path)) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "first line long enough to fingerprint\n");
    let mut f = follower(&p);
    f.start(None, None, StartAt::Beginning, &mut |_| {}).unwrap();
    poll(&mut f);
    let cp = f.checkpoint().unwrap();
    let since = std::time::SystemTime::now() - Duration::from_secs(1);
    rotate(&p);
    let mut g = follower(&p);
    let mut seen = Vec::new();
    let notes = g.start(Some(&cp), Some(since), StartAt::End, &mut |r| seen.push(r.text())).unwrap();
    seen.extend(poll(&mut g));
    (seen, notes)
}

fn gzip(path: &Path) {
    use std::io::Write;
    let text = std::fs::read(path).unwrap();
    let gz = std::fs::File::create(format!("{}.gz", path.display())).unwrap();
    let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
    enc.write_all(&text).unwrap();
    enc.finish().unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn two_rotations_while_down_read_every_file_in_order() {
    let (seen, notes) = down_while(|p| {
        let rotated = |n: u32| p.with_file_name(format!("a.log.{n}"));
        append(p, "before the first rotation\n");
        std::fs::rename(p, rotated(1)).unwrap();
        append(p, "in the middle file\n");
        std::thread::sleep(Duration::from_millis(20)); // distinct modification times
        std::fs::rename(rotated(1), rotated(2)).unwrap();
        std::fs::rename(p, rotated(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        append(p, "in the new file\n");
    });
    assert_eq!(seen, ["before the first rotation", "in the middle file", "in the new file"]);
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn copytruncate_and_gzip_while_down_lose_nothing() {
    let (seen, notes) = down_while(|p| {
        append(p, "before the copy\n");
        let copy = p.with_file_name("a.log.1");
        std::fs::copy(p, &copy).unwrap();
        std::fs::write(p, "").unwrap();
        gzip(&copy);
        std::thread::sleep(Duration::from_millis(20));
        append(p, "after the truncation\n");
    });
    assert_eq!(seen, ["before the copy", "after the truncation"]);
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn removed_while_down_is_reported_and_unreadable_copies_named() {
    let (seen, notes) = down_while(|p| {
        append(p, "lost with the file\n");
        std::fs::remove_file(p).unwrap();
        std::fs::write(p.with_file_name("a.log.2.xz"), "not really xz").unwrap();
        append(p, "recreated\n");
    });
    assert_eq!(seen, ["recreated"]);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("no readable copy") && notes[0].contains("after that were not read"), "{notes:?}");
    assert!(notes[1].contains("a.log.2.xz: not read: compressed with xz"), "{notes:?}");
}

#[test]
fn a_whole_line_settles_quickly_and_a_half_line_waits_the_full_window() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    std::fs::write(&p, "").unwrap();
    let mut f = follower(&p);
    f.start(None, None, StartAt::Beginning, &mut |_| {}).unwrap();
    let window = RecordWindow { settle: Duration::from_millis(20), flush: Duration::from_millis(300) };
    append(&p, "2026-11-25 10:00:00 ERROR boom\njava.lang.Exception: x\n\tat a.b(C.java:1)\n");
    f.poll(Budget::UNLIMITED, &mut |_| {}).unwrap();
    assert_eq!(f.quiet_needed(window), window.settle);
    append(&p, "\tat a.b(C.ja");
    f.poll(Budget::UNLIMITED, &mut |_| {}).unwrap();
    assert_eq!(f.quiet_needed(window), window.flush);
}

#[test]
fn records_decided_before_a_restart_are_not_handed_out_again_the_last_one_included() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "first line long enough to fingerprint\nsecond, the last one\nthird\n");
    let inode = std::fs::metadata(&p).unwrap().ino();
    let second = "first line long enough to fingerprint\n".len() as u64;
    let third = second + "second, the last one\n".len() as u64;
    let mut f = follower(&p);
    // Decided through the last record: it waits for quiet, then is flushed.
    f.skip_decided(vec![(inode, third)]);
    f.start(None, None, StartAt::Beginning, &mut |_| {}).unwrap();
    assert!(poll(&mut f).is_empty());
    assert_eq!(f.take_skipped(), 3);
    append(&p, "fourth\n");
    assert_eq!(poll(&mut f), ["fourth"]);
}

/// A backlog read in passes that each stop at their budget: however long the
/// worker spends between two passes, a record is complete only once the
/// reader has found the end of the file, so none is cut where a pass ended.
#[test]
fn a_pass_that_stops_at_its_budget_never_ends_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    std::fs::write(&p, "").unwrap();
    let mut f = Follower::new(
        "s",
        p.clone(),
        Assembly { start: RecordStart::Timestamp, max_bytes: 4096, max_lines: 10, interest: Interest::All },
    );
    f.start(None, None, StartAt::Beginning, &mut |_| {}).unwrap();
    let record = |i: usize| {
        format!("2026-11-25 10:00:00,000 ERROR boom {i}\njava.lang.Exception: x\n\tat a.b(C.java:1)\nCaused by: y\n")
    };
    // Several read chunks' worth: passes end inside records.
    append(&p, &(0..3000).map(record).collect::<String>());
    // Every pass is followed by a look for quiet, as the daemon's loop does;
    // a zero window stands for "the worker was busy longer than the settle".
    let window = RecordWindow { settle: Duration::ZERO, flush: Duration::ZERO };
    let mut out = Vec::new();
    let mut emit = |r: Record| out.push(r.text());
    while f.poll(Budget { bytes: 1, time: Duration::MAX }, &mut emit).unwrap() {
        assert_eq!(f.pending_for(window).map(|d| d.is_zero()), Some(true));
        f.flush_if_quiet(window, &mut emit);
    }
    f.flush_if_quiet(window, &mut emit);
    let whole: Vec<String> = (0..3000).map(|i| record(i).trim_end().to_string()).collect();
    assert!(out == whole, "{} records cut", out.len().abs_diff(whole.len()));
}
