//! `procsync`: see and clean procsync's named segments in `/dev/shm`.
//!
//! - `procsync ls [--all] [--json]`: every procsync segment, as a table or
//!   as JSON (see [`listing`]);
//! - `procsync inspect NAME`: a segment's header and, for the procsync
//!   primitives, their state (see [`state`]);
//! - `procsync gc [--dry-run]`: removes the segments nobody will use again;
//! - `procsync rm NAME [--force]`: removes one, refusing while it is used.
//!
//! Every error is one line on stderr, `procsync: error: ...`, and an exit
//! code: see [`Failure`]. Everything is written to stdout through [`emit`]:
//! a reader that has gone (`procsync ls | head -1`) ends the program
//! quietly, any other write error is an error like the others.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod listing;
mod owner;
mod state;

const AFTER_HELP: &str = "\
Exit codes:
  0  done
  1  error: no such name, not a procsync segment (foreign or truncated file),
     another user's segment this user may not read or remove, or a system error
  2  usage: a bad option or argument, or an invalid segment name
  3  refused: `rm` of a segment that live processes map or hold open
     (the message names their pids; `--force` removes it anyway)

Output: if the reader of stdout goes away (procsync ls | head -1), procsync
stops quietly with exit code 0; any other write error (a full disk) is one
line on stderr and exit code 1.";

/// See and clean procsync's named shared-memory segments in /dev/shm.
///
/// A procsync segment starts with a header naming what it holds (a value,
/// a slice or bytes, and the element type), the process that created it and
/// whether it is persistent. This tool reads it from the file without
/// changing anything, and finds which processes map a segment now by
/// reading /proc.
#[derive(Parser, Debug)]
#[command(name = "procsync", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List procsync segments: name, kind, type, size, mode, owner,
    /// creator and whether it runs, persistence, processes that map it.
    ///
    /// USERS counts the processes that map the segment or hold it open now
    /// (of those whose /proc entries this user may read; found by the
    /// file's device and inode, whatever path they opened it by). ALIVE is
    /// `?` when the header records the creator's pid without its identity
    /// (an older layout: the pid may be another process's now). Names and
    /// type names are escaped as `ls -b` does (`\xNN`).
    ///
    /// Examples:
    ///   procsync ls
    ///   procsync ls --all          # also other programs' files, marked foreign
    ///   procsync ls --json | jq '.[] | select(.creator_alive == false) | .name'
    #[command(after_help = AFTER_HELP, verbatim_doc_comment)]
    Ls {
        /// Every name in /dev/shm, not only procsync's: other programs'
        /// files are shown as foreign, unreadable ones with the reason.
        #[arg(long)]
        all: bool,
        /// A JSON array of objects instead of the table (fields: see the
        /// crate's README): for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show a segment's header and, for a procsync primitive, its state.
    ///
    /// Primitives are recognised by the type their header names, checked by
    /// its layout: Lock, Mutex<T> (by its RawLock field, not its name),
    /// RLock, Condvar, Semaphore, RobustSemaphore, Event, Barrier, and
    /// queues (a slice of `Line`). The state is read without taking any
    /// lock, from a private copy of the file (a snapshot, never a mapping):
    /// holder pid and whether it runs, sleepers, permits and holders, set
    /// or clear, parties and generation, queue depth and endpoints (or
    /// "state: corrupt: ..." for words that contradict each other).
    ///
    /// Examples:
    ///   procsync inspect jobs-lock
    ///   procsync inspect /work-queue     # a leading slash is accepted
    #[command(after_help = AFTER_HELP, verbatim_doc_comment)]
    Inspect {
        /// The segment's name (as given to `create`; with or without the
        /// leading slash). Any bytes: a name need not be UTF-8.
        name: OsString,
    },
    /// Remove every abandoned segment of this user's: not persistent, its
    /// creator has died, and no process maps it or holds it open.
    ///
    /// Prints each name removed (or, with --dry-run, that would be).
    ///
    /// Examples:
    ///   procsync gc --dry-run
    ///   procsync gc
    ///   procsync gc --prefix myapp-    # only names starting with myapp-
    #[command(after_help = AFTER_HELP, verbatim_doc_comment)]
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Only names that start with PREFIX (one program's names).
        #[arg(long, value_name = "PREFIX", default_value = "")]
        prefix: String,
    },
    /// Remove one segment's name, refusing while live processes map it or
    /// hold it open (exit code 3, naming them).
    ///
    /// With --force it is removed anyway: processes that map it keep their
    /// mappings (the memory is freed when the last lets go), but nobody can
    /// open it by name again. A file whose first bytes are not procsync's
    /// magic is never removed (use rm /dev/shm/NAME); a truncated one
    /// (shorter than its header, as a creator killed in `create` leaves,
    /// or than its data) is.
    ///
    /// Examples:
    ///   procsync rm stale-counter
    ///   procsync rm --force jobs-queue
    #[command(after_help = AFTER_HELP, verbatim_doc_comment)]
    Rm {
        /// The segment's name (any bytes, as for inspect).
        name: OsString,
        /// Remove it even while processes map it.
        #[arg(long)]
        force: bool,
    },
}

/// Why the command failed, and its exit code.
#[derive(Debug)]
enum Failure {
    /// Exit code 1: the segment or the system said no.
    Error(String),
    /// Exit code 2: a bad argument (clap's usage errors exit 2 too).
    Usage(String),
    /// Exit code 3: `rm` refused, processes use the segment.
    Refused(String),
    /// Exit code 0, nothing said: the reader of stdout has gone (a closed
    /// pipe), so there is nobody to write the rest to.
    ReaderGone,
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Error(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Refused(_) => 3,
            Failure::ReaderGone => 0,
        }
    }

    /// The line for stderr (`None`: say nothing).
    fn message(&self) -> Option<&str> {
        match self {
            Failure::Error(m) | Failure::Usage(m) | Failure::Refused(m) => Some(m),
            Failure::ReaderGone => None,
        }
    }
}

impl From<shm::Error> for Failure {
    fn from(error: shm::Error) -> Failure {
        match error {
            shm::Error::InvalidName { .. } => Failure::Usage(error.to_string()),
            shm::Error::InUse { .. } => Failure::Refused(error.to_string()),
            shm::Error::PermissionDenied { ref name } => Failure::Error(format!(
                "{error}{}",
                owner::describe_other_owner(name).unwrap_or_default()
            )),
            _ => Failure::Error(error.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::Ls { all, json } => listing::ls(all, json),
        Command::Inspect { name } => state::inspect(&name),
        Command::Gc { dry_run, prefix } => gc(dry_run, &prefix),
        Command::Rm { name, force } => rm(&name, force),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message() {
                // One line, and nothing raw for the terminal: a name or a
                // type name in a message may hold control characters.
                // (A failing stderr is not reported: nowhere to.)
                let line = format!("procsync: error: {}\n", printable(message));
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            ExitCode::from(failure.code())
        }
    }
}

/// `text` with each control character (newline, escape, ...) shown as
/// `\xNN` (its UTF-8 bytes), so that it stays on its line and nothing of
/// it reaches the terminal raw. For messages and values made of words and
/// names; a name itself is shown by `shm::inventory::escape`, which also
/// escapes backslashes and bytes that are not UTF-8.
pub(crate) fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.encode_utf8(&mut [0; 4])
                    .bytes()
                    .map(|b| format!("\\x{b:02x}"))
                    .collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Writes `text` to stdout, whole, and flushes it: the one way this program
/// writes its output. A reader that has gone (`EPIPE`: `procsync ls | head
/// -1`) is [`Failure::ReaderGone`] (exit 0, nothing said); any other write
/// error (`ENOSPC`, `EIO`) is [`Failure::Error`] (exit 1).
pub(crate) fn emit(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::ReaderGone),
        Err(e) => Err(Failure::Error(format!("writing the output: {e}"))),
    }
}

/// `procsync gc`.
fn gc(dry_run: bool, prefix: &str) -> Result<(), Failure> {
    let removed = shm::inventory::collect_garbage_prefixed(dry_run, prefix)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for name in &removed {
        let name = shm::inventory::escape(name.as_bytes());
        out.push_str(&format!("{verb} {name}\n"));
    }
    if removed.is_empty() {
        out.push_str("nothing to remove\n");
    }
    emit(&out)
}

/// `procsync rm`: only procsync segments (a damaged one included), never
/// another program's file. The name is checked as `inspect` checks it (by
/// the library, as given: one leading '/' at most).
fn rm(name: &OsStr, force: bool) -> Result<(), Failure> {
    // For messages only, once the library has found `name` valid.
    let bytes = name.as_bytes();
    let bare = shm::inventory::escape(bytes.strip_prefix(b"/").unwrap_or(bytes));
    match shm::inventory::inspect(name) {
        Ok(_) | Err(shm::Error::Truncated { .. }) | Err(shm::Error::PermissionDenied { .. }) => {}
        Err(error @ shm::Error::Foreign { .. }) => {
            return Err(Failure::Error(format!(
                "{error}; not removed (remove another program's file with rm {}/{bare})",
                shm::inventory::SHM_DIR
            )))
        }
        Err(other) => return Err(other.into()),
    }
    shm::inventory::remove(name, force)?;
    emit(&format!("removed {bare}\n"))
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(printable("plain \\ text"), "plain \\ text");
        assert_eq!(printable("a\nb\x1b[2J\u{85}"), "a\\x0ab\\x1b[2J\\xc2\\x85");
    }
}
