//! `fs-floor`: the durable writes one delivered message needs, done alone in a loop, with the
//! CPU time and context switches they cost this process per message. With Postfix's
//! `smtp-sink` (an SMTP server that stores nothing) under the same load, this gives the floor
//! under `scripts/bench-smtpd.sh`'s CPU per message: what talking SMTP and making a message
//! durable cost on this machine and file system before any of Postern's own work.
//!
//! Per message, exactly what Postern's durability contract needs and nothing else:
//! - the queue: a header and the message written into a preallocated slot file with one
//!   `pwritev`, then `fdatasync` (the queue's one flush per message);
//! - the Maildir: a new `tmp/` file (`O_EXCL`) written and `fsync`ed, moved to `new/` with
//!   `renameat2(RENAME_NOREPLACE)`, and `new/` fsynced (the Maildir's two flushes).

use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use anyhow::Context;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use nix::sys::resource::{UsageWho, getrusage};

/// CPU time (user + system) and context switches of this process so far.
fn usage() -> anyhow::Result<(f64, i64)> {
    let u = getrusage(UsageWho::RUSAGE_SELF)?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok((
        secs(u.user_time()) + secs(u.system_time()),
        u.voluntary_context_switches() + u.involuntary_context_switches(),
    ))
}

/// Runs `op` `count` times; returns (CPU ms, context switches) per run.
fn per_op(count: u32, mut op: impl FnMut(u32) -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    let (cpu0, cs0) = usage()?;
    for i in 0..count {
        op(i)?;
    }
    let (cpu1, cs1) = usage()?;
    let n = f64::from(count.max(1));
    Ok(((cpu1 - cpu0) * 1e3 / n, (cs1 - cs0) as f64 / n))
}

/// Measures both parts in `dir` (created; removed afterwards unless `keep`) and prints one
/// line: `fs-floor: size=… count=… slot_cpu_ms=… slot_cs=… maildir_cpu_ms=… maildir_cs=…`.
///
/// `keep` is for a benchmark that runs a server on the same file system next: on ext4
/// without a journal, files created within seconds of many deletions cost more (the
/// allocator scans past recently freed inodes), so removing the files here would charge the
/// next run.
pub(crate) fn run(dir: &Path, count: u32, size: usize, keep: bool) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = measure(dir, count, size);
    if !keep {
        let _ = fs::remove_dir_all(dir);
    }
    let (slot, maildir) = result?;
    println!(
        "fs-floor: size={size} count={count} slot_cpu_ms={:.3} slot_cs={:.1} maildir_cpu_ms={:.3} maildir_cs={:.1}",
        slot.0, slot.1, maildir.0, maildir.1
    );
    Ok(())
}

fn measure(dir: &Path, count: u32, size: usize) -> anyhow::Result<((f64, f64), (f64, f64))> {
    let body: Vec<u8> = (0..size).map(|i| b"abcdefghij\r\n"[i % 12]).collect();
    let header = [0u8; 64];

    // The slot, written out and fsynced once first (as a new queue slot is).
    let slot_path = dir.join("slot");
    let slot = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&slot_path)?;
    slot.write_all_at(&vec![0; (size + 64).max(16 << 10)], 0)?;
    slot.sync_all()?;
    let whole = [&header[..], &body[..]].concat();
    let slot_cost = per_op(count, |_| {
        let parts = [IoSlice::new(&header), IoSlice::new(&body)];
        // One call in practice; a short write is finished from where it stopped.
        let n = nix::sys::uio::pwritev(&slot, &parts, 0)?;
        if n < whole.len() {
            slot.write_all_at(&whole[n..], n as u64)?;
        }
        slot.sync_data()?;
        Ok(())
    })?;

    let (tmp, new) = (dir.join("md/tmp"), dir.join("md/new"));
    fs::create_dir_all(&tmp)?;
    fs::create_dir_all(&new)?;
    let maildir_cost = per_op(count, |i| {
        let name = format!("{i}.floor");
        let (from, to) = (tmp.join(&name), new.join(&name));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&from)?;
        f.write_all(&body)?;
        f.sync_all()?;
        drop(f);
        renameat2(
            AT_FDCWD,
            &from,
            AT_FDCWD,
            &to,
            RenameFlags::RENAME_NOREPLACE,
        )?;
        File::open(&new)?.sync_all()?;
        Ok(())
    })?;
    Ok((slot_cost, maildir_cost))
}
