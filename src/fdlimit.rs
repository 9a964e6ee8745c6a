//! The open-files limit: room for `maxclients` clients plus what the server
//! itself keeps open, as redis-server's `adjustOpenFilesLimit` does.
//!
//! Every client is a descriptor. Without a cap tied to the limit, a burst of
//! connections takes the last descriptors and the store, which opens table
//! and journal files as it works, fails instead; fjall treats a failed flush
//! or compaction as fatal.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::engine::storage::fjall::CACHED_FILES;

/// Descriptors kept for everything but clients. The store may hold
/// [`CACHED_FILES`] table files open (fjall's descriptor cache, capped at
/// that) and opens more apart from the cache: a flush or compaction reads
/// each input table through a descriptor of its own (one per level-0 run,
/// and fjall slows writers once there are 20, plus one per deeper level)
/// and writes one output, on each of its worker threads; a journal, the
/// lock file, version and directory fsyncs, and the writer's own journal
/// handle. The rest: stdin/out/err, the listeners, the runtime's epoll,
/// eventfd and signal descriptors, and up to 32 metrics scrapes. 128 covers
/// those with room to spare.
pub const RESERVED_FDS: u64 = CACHED_FILES as u64 + 128;

/// Makes room for `maxclients` clients: raises the soft open-files limit if
/// it is too low (up to the hard limit, or beyond it where the process may),
/// and returns how many clients fit, which is less than `maxclients` only if
/// the limit could not be raised far enough (a warning says so).
///
/// # Errors
///
/// The limit leaves no room for a single client (the message says what
/// limit is needed).
pub fn fit(maxclients: usize) -> Result<usize, String> {
    let wanted = (maxclients as u64).saturating_add(RESERVED_FDS);
    let old = getrlimit(Resource::Nofile);
    // `None` is RLIM_INFINITY.
    let soft = old.current.unwrap_or(u64::MAX);
    if soft >= wanted {
        return Ok(maxclients);
    }
    // As asked first (a privileged process may raise the hard limit too),
    // else as far as the hard limit goes.
    let raise = |current: u64, maximum: Option<u64>| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(current),
                maximum,
            },
        )
    };
    let error = raise(wanted, old.maximum.map(|hard| hard.max(wanted))).err();
    if error.is_some()
        && let Some(hard) = old.maximum.filter(|hard| *hard > soft)
    {
        let _ = raise(hard, Some(hard));
    }
    let best = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if best >= wanted {
        tracing::info!(
            "Increased maximum number of open files to {wanted} (it was originally set to {soft})."
        );
        return Ok(maxclients);
    }
    if best <= RESERVED_FDS {
        return Err(format!(
            "Your current 'ulimit -n' of {soft} is not enough for the server to start. \
             Please increase your open file limit to at least {wanted}. Exiting."
        ));
    }
    let fits = usize::try_from(best - RESERVED_FDS).unwrap_or(usize::MAX);
    tracing::warn!(
        "You requested maxclients of {maxclients} requiring at least {wanted} max file descriptors \
         ({RESERVED_FDS} kept for the store and listeners)."
    );
    tracing::warn!(
        "Server can't set maximum open files to {wanted} because of OS error: {}.",
        error.map_or_else(|| "none".to_string(), |e| e.to_string())
    );
    tracing::warn!(
        "Current maximum open files is {best}. maxclients has been reduced to {fits} to \
         compensate for low ulimit. If you need higher maxclients increase 'ulimit -n'."
    );
    Ok(fits)
}
